//! The payments service (port 8084): charges against a simulated provider, and refunds.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/payments` | admin, service `payments:charge` | charge `{order_id, customer_id, amount}`; `Idempotency-Key` required |
//! | `GET /v1/payments/{id}` | admin, service `payments:read` | one payment |
//! | `GET /v1/payments?order_id=` | admin, service `payments:read` | `{items}`: an order's payments |
//! | `POST /v1/payments/{id}/refunds` | admin, service `payments:refund` | refund `{amount}`, full or partial; `Idempotency-Key` required |
//! | `GET /v1/payments/{id}/audit` | admin | the payment's audit trail (`limit`, `offset`, `action`, `actor`) |
//! | `GET`/`PUT /ops/provider` | admin | the simulated provider's settings, changed live |
//!
//! A customer's token is a 403 everywhere. The outcomes and their statuses are in [`api`]; the
//! transactions (payment row, outbox event, audit entry and idempotent answer in one) in [`store`];
//! the provider in [`provider`].
//!
//! **The operational route `/ops/provider`** is one of the service's own routes ([`Service::routes`]
//! may return any path; the kit only merges them): it lies outside `/v1` and its OpenAPI operations
//! get none of the `/v1` stack answers, but it is served behind the same layers as `/v1` (which also
//! carry the JWT keys the admin check needs), load shedding included.
//!
//! **Deadlines**: a charge waits for the provider until shortly before the request's propagated
//! deadline ([`palisade::Deadline`], from `x-request-timeout-ms`) or the server's own
//! `request_timeout_ms`, whichever comes first; then it answers 504, stores nothing, frees the
//! idempotency key and counts `shop_payments_abandoned_total{reason="deadline"|"timeout"}`.
//!
//! Settings (under `payments:`, env `SHOP__PAYMENTS__*`), besides the kit's per-service keys
//! (`idempotency`, `trusted_keys`, …): `provider.*`, see [`ProviderConfig`].
//!
//! Events (`payment.captured`, `payment.failed`, `payment.refunded`) are written to the outbox in
//! their change's transaction; the relay that sends them is the kit's to start.

pub mod api;
pub mod model;
pub mod provider;
pub mod store;

use std::sync::Arc;

use kit::audit::AuditLog;
use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Context, RoutesFuture, Service};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;
use crate::provider::Provider;
pub use crate::provider::ProviderConfig;

/// The payments service, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "payments",
    default_port: 8084,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[],
};

/// The payments' embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/payments/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/payments/postgres"),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Palisade Shop payments",
        description = "Charges against a simulated provider, and refunds. Errors are RFC 9457 problem documents. \
                       POSTs need an Idempotency-Key. `/ops/provider` is an operational route (admin) to change the \
                       simulated provider's latency and failure rates live."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "payments", description = "Charges"),
        (name = "refunds", description = "Refunds of captured payments"),
        (name = "ops", description = "Operational controls, outside /v1 (admin)"),
    ),
)]
struct ApiDoc;

/// The payments' OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router().split_for_parts();
    let mut doc = kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"));
    if let Some(currency) = kit::openapi::object_mut(&mut doc, "Money", Some("currency")) {
        currency.enum_values = Some(model::active_currencies().into_iter().map(Into::into).collect());
    }
    doc
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let provider: ProviderConfig = context.settings.extract("payments.provider")?;
        provider.validate()?;
        let (keys, expiry) = context.idempotency()?;
        let state = AppState {
            store: store::with_retry(&context.db, context.config.db_retry()),
            provider: Provider::new(provider),
            audit: AuditLog::new(context.db.clone()),
            request_timeout: context.config.request_timeout(),
            expiry: Arc::new(expiry),
        };
        let (posts, _) = api::idempotent_routes().split_for_parts();
        let (others, _) = api::other_routes().split_for_parts();
        Ok(posts
            .route_layer(axum::middleware::from_fn_with_state(keys, api::idempotent_posts))
            .merge(others)
            .with_state(state))
    })
}

/// The service's own settings sections (for the start-up check of unknown keys).
fn config_keys() -> Vec<String> {
    kit::config::keys_of("provider", &ProviderConfig::default())
}
