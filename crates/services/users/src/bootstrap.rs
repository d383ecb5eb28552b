//! The first admin: created from `users.admin_email`/`users.admin_password` at start when no admin
//! exists, so a fresh system can be administered. Idempotent across restarts and replicas (a
//! concurrent creation shows as a unique-email conflict, which is success here). Never logs the
//! password.
//!
//! The two settings apply **at first start only**: changing them later changes no account. So each
//! start checks the stored admin against the default password, whatever is configured now: while the
//! default is in use, the service refuses to start unless weak secrets are allowed (loopback only, or
//! the development profile; see `kit::config::GlobalConfig::weak_secrets_allowed`), and warns when
//! they are. A configured password that differs from the stored one is named in the log as ignored.

use kit::BoxError;
use kit::auth::Role;
use kit::db::StoreError;
use kit::secret::Secret;

use crate::config::{DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD, UsersConfig};
use crate::model::RegisterRequest;
use crate::password::Hasher;
use crate::store::{NewAccount, Store};

/// What [`ensure_admin`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// An admin already existed: nothing changed.
    AdminExists,
    /// The configured admin account was created.
    Created,
}

/// Creates the configured admin account unless an admin exists; refuses the default password
/// (configured, or still on the stored admin) unless `weak_allowed`.
pub async fn ensure_admin(
    store: &dyn Store,
    hasher: &Hasher,
    config: &UsersConfig,
    weak_allowed: bool,
) -> Result<Bootstrap, BoxError> {
    let request = RegisterRequest {
        email: config.admin_email.clone(),
        password: config.admin_password.clone(),
        display_name: Some("Administrator".to_owned()),
    };
    let (email, display_name) = request.validate().map_err(|errors| {
        let problems: Vec<String> = errors
            .iter()
            .map(|e| format!("users.admin_{} {}", e.pointer.trim_start_matches("#/"), e.detail))
            .collect();
        problems.join("; ")
    })?;
    let configured_default = config.admin_password.expose() == DEFAULT_ADMIN_PASSWORD;

    if store.count_admins().await? > 0 {
        check_existing_admin(store, hasher, config, &email, weak_allowed).await?;
        return Ok(Bootstrap::AdminExists);
    }
    if configured_default && !weak_allowed {
        return Err(refusal(&email).into());
    }
    if let Some(existing) = store.find_by_email(&email).await? {
        return Err(format!(
            "users.admin_email {email} belongs to a {:?} account and no admin exists: configure another admin_email",
            existing.role
        )
        .into());
    }
    let password_hash = Secret::new(hasher.hash(config.admin_password.expose()).await?);
    let account = NewAccount { email: email.clone(), password_hash, display_name, role: Role::Admin };
    match store.create(&account).await {
        Ok(created) => {
            tracing::info!(user_id = %created.id, email = %email, "created the admin account");
            if configured_default {
                warn_default(&email);
            }
            Ok(Bootstrap::Created)
        }
        // Another replica created it between our check and our insert.
        Err(StoreError::Conflict(_)) => Ok(Bootstrap::AdminExists),
        Err(err) => Err(err.into()),
    }
}

/// An admin exists: is it the one first started with the default password? The configured email is
/// looked up first, then the default one (the email may have been changed after first start too).
async fn check_existing_admin(
    store: &dyn Store,
    hasher: &Hasher,
    config: &UsersConfig,
    email: &str,
    weak_allowed: bool,
) -> Result<(), BoxError> {
    let mut candidates = vec![email.to_owned()];
    if email != DEFAULT_ADMIN_EMAIL {
        candidates.push(DEFAULT_ADMIN_EMAIL.to_owned());
    }
    for candidate in candidates {
        let Some(admin) = store.find_by_email(&candidate).await? else { continue };
        if admin.role != Role::Admin {
            continue;
        }
        let hash = admin.password_hash.expose();
        if hasher.verify(DEFAULT_ADMIN_PASSWORD, hash).await? {
            if config.admin_password.expose() != DEFAULT_ADMIN_PASSWORD {
                tracing::warn!(
                    email = %candidate,
                    "users.admin_password applies at first start only: the admin account still has the \
                     default password; log in with it and change it with PATCH /v1/users/me"
                );
            }
            if !weak_allowed {
                return Err(refusal(&candidate).into());
            }
            warn_default(&candidate);
        } else if config.admin_password.expose() != DEFAULT_ADMIN_PASSWORD
            && candidate == email
            && !hasher.verify(config.admin_password.expose(), hash).await?
        {
            tracing::info!(
                email = %candidate,
                "users.admin_password applies at first start only: the configured one is ignored and the \
                 admin account keeps its own password (change it with PATCH /v1/users/me)"
            );
        }
        return Ok(());
    }
    Ok(())
}

fn refusal(email: &str) -> String {
    format!(
        "users: refusing to start: the admin account {email} has (or would get) the default password from \
         the README, and the service is reachable beyond loopback. Before first start, set \
         SHOP__USERS__ADMIN_PASSWORD; once started, log in and change it with PATCH /v1/users/me (on a \
         loopback start or with SHOP__PROFILE=development)"
    )
}

fn warn_default(email: &str) {
    tracing::warn!(
        email = %email,
        "the admin account uses the default password (allowed on loopback or in development only): set \
         SHOP__USERS__ADMIN_PASSWORD before first start, or change it with PATCH /v1/users/me"
    );
}
