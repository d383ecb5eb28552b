//! The first admin: created from `users.admin_email`/`users.admin_password` at start when no admin
//! exists, so a fresh system can be administered. Idempotent across restarts and replicas (a
//! concurrent creation shows as a unique-email conflict, which is success here). Never logs the
//! password; warns while the default one is in use.

use kit::BoxError;
use kit::auth::Role;
use kit::db::StoreError;
use kit::secret::Secret;

use crate::config::{DEFAULT_ADMIN_PASSWORD, UsersConfig};
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

/// Creates the configured admin account unless an admin exists.
pub async fn ensure_admin(
    store: &dyn Store,
    hasher: &Hasher,
    config: &UsersConfig,
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
    let default_password = config.admin_password.expose() == DEFAULT_ADMIN_PASSWORD;

    if store.count_admins().await? > 0 {
        if default_password
            && let Some(admin) = store.find_by_email(&email).await?
            && admin.role == Role::Admin
            && hasher.verify(DEFAULT_ADMIN_PASSWORD, admin.password_hash.expose()).await?
        {
            warn_default(&email);
        }
        return Ok(Bootstrap::AdminExists);
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
            if default_password {
                warn_default(&email);
            }
            Ok(Bootstrap::Created)
        }
        // Another replica created it between our check and our insert.
        Err(StoreError::Conflict(_)) => Ok(Bootstrap::AdminExists),
        Err(err) => Err(err.into()),
    }
}

fn warn_default(email: &str) {
    tracing::warn!(
        email = %email,
        "the admin account uses the default password: set SHOP__USERS__ADMIN_PASSWORD before first start, \
         or change it with PATCH /v1/users/me"
    );
}
