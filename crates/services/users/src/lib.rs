//! The users service (port 8081): accounts, argon2id password hashes, and the JWTs every service
//! verifies.
//!
//! Public: `POST /v1/users` (register) and `POST /v1/sessions` (log in → bearer token, rate-limited
//! per account and per client address). Authenticated: `GET`/`PATCH /v1/users/me`,
//! `GET /v1/users/{id}` (self, admin, or a service token with the scope `users:read` — orders',
//! in `shop all`). Admin: `GET /v1/users` (paging). At start, an admin account is created from
//! configuration when none exists ([`bootstrap`]).
//!
//! Every new account (a registration, and the configured admin) publishes `user.registered`
//! (subject: the account id; data [`model::UserRegistered`]: `{user_id, email, name}`, `name`
//! being the display name or `null`) through the outbox, in the transaction that inserts it.
//!
//! Layout as in the catalog: [`model`] (API types and validation), [`store`] (a `Store` trait, one
//! implementation per database), [`api`] (handlers with their OpenAPI annotations), plus
//! [`password`] (argon2id off the async runtime) and [`config`] (`users.*` settings).

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod model;
pub mod password;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::auth::{JwtKeys, TokenChecker};
use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Context, RoutesFuture, Service};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;
use crate::config::UsersConfig;
use crate::password::Hasher;

/// The users service, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "users",
    default_port: 8081,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[],
};

/// The users service's embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/users/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/users/postgres"),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Palisade Shop users",
        description = "Accounts and login. Log in with `POST /v1/sessions` and send the token as \
                       `Authorization: Bearer <token>`. Errors are RFC 9457 problem documents."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts"),
        (name = "sessions", description = "Logging in"),
    ),
)]
struct ApiDoc;

/// The users service's OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router().split_for_parts();
    let mut doc = kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"));
    model::require_password_pair(&mut doc);
    doc
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let config: UsersConfig = context.settings.extract("users")?;
        let hasher = tokio::task::spawn_blocking({
            let hashing = config.password_hashing.clone();
            move || Hasher::new(&hashing)
        })
        .await??;
        let store = store::for_db(&context.db);
        let weak_allowed = context.global.weak_secrets_allowed(&context.config.host);
        bootstrap::ensure_admin(store.as_ref(), &hasher, &config, weak_allowed).await?;
        // The same keys the kit's extractors verify with (`kit::service::Service::app`).
        let keys = JwtKeys::new(
            context.global.jwt_secret.expose().as_bytes(),
            Duration::from_secs(context.global.jwt_ttl_secs),
        );
        let state = AppState {
            store,
            hasher,
            keys,
            token_ttl_secs: context.global.jwt_ttl_secs,
            limits: Arc::new(config.login_limits.limiters()),
        };
        let (router, _) = api::router().split_for_parts();
        // Users checks token versions in its own database; the kit asks it on the others' behalf.
        let checker = TokenChecker::new(api::LocalTokenCheck(Arc::clone(&state.store)));
        Ok(router.with_state(state).layer(axum::Extension(checker)))
    })
}

/// The service's own settings sections (for the start-up check of unknown keys).
fn config_keys() -> Vec<String> {
    kit::config::keys_of("", &UsersConfig::default())
}
