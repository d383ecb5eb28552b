//! The inventory service (port 8083): stock per SKU and reservations against it.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/stock/{sku}` | public | `{sku, on_hand, reserved, available}`, its version as a strong `ETag` |
//! | `PUT /v1/stock/{sku}` | admin | set `on_hand` (creates the SKU's row; never below `reserved`); needs `If-Match` (overwrite) or `If-None-Match: *` (create), else 428 |
//! | `POST /v1/stock/{sku}/adjustments` | admin | add a signed `delta` to `on_hand` (`If-Match` optional) |
//! | `GET /v1/stock/{sku}/ledger` | admin | every change of `on_hand`, paged: delta, result, reason, actor |
//! | `POST /v1/reservations` | service¹ | reserve every line for an order, or none; idempotent per `order_id` |
//! | `GET /v1/reservations?order_id=` | service¹ | `{items: [..]}`: the order's reservation (0 or 1) |
//! | `GET /v1/reservations/{id}` | service¹ | one reservation |
//! | `POST /v1/reservations/{id}/commit` | service¹ | reserved units leave `on_hand` for good |
//! | `POST /v1/reservations/{id}/release` | service¹ | release: the units are available again (repeatable; the reservation stays readable) |
//!
//! ¹ A service token ([`kit::service_auth`]) with the scope `inventory:reserve`, addressed to
//! `inventory` and signed by a key in `inventory.trusted_keys` — in `shop all`, orders' key,
//! wired from its `calls` — or an admin's token. A customer's token is a 403; a token meant for
//! another service (its `aud`) or from an untrusted key is a 401. Ledger entries of a commit name
//! the caller (`service:orders`, or the admin's id).
//!
//! Replaying `POST /v1/reservations` (same order id, same lines) answers by the reservation's
//! state now: 200 while `reserved` or once `committed`; 409 `reservation-expired` once it expired
//! (a replay never answers `reserved` for it: one past its deadline expires on the spot); 409
//! `reservation-state` once it was released — its stock was given back on purpose, and a new
//! attempt needs a new order id.
//!
//! Pending reservations expire `reservation_ttl_secs` after they are made: see [`expiry`].
//! Overselling is prevented in the [`store`] (see its docs for the SQL and the locking).
//!
//! Settings (under `inventory:`, env `SHOP__INVENTORY__*`), besides the kit's per-service keys:
//! see [`InventoryConfig`].

pub mod api;
pub mod expiry;
pub mod model;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Context, RoutesFuture, Service};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;
use crate::expiry::Sweeper;

/// The inventory, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "inventory",
    default_port: 8083,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[],
};

/// The inventory's embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/inventory/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/inventory/postgres"),
};

/// The inventory's own settings (`inventory.*`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct InventoryConfig {
    /// How long a reservation holds stock unless committed (default 900 s; at least 1).
    pub reservation_ttl_secs: u64,
    /// How often the expiry sweep runs (default 5000 ms; at least 10).
    pub expiry_interval_ms: u64,
    /// Reservations expired per sweep query (default 100).
    pub expiry_batch: u32,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { reservation_ttl_secs: 900, expiry_interval_ms: 5_000, expiry_batch: 100 }
    }
}

impl InventoryConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), kit::BoxError> {
        if self.reservation_ttl_secs == 0 {
            return Err("inventory.reservation_ttl_secs must be at least 1".into());
        }
        if self.expiry_interval_ms < 10 {
            return Err("inventory.expiry_interval_ms must be at least 10".into());
        }
        if self.expiry_batch == 0 {
            return Err("inventory.expiry_batch must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Palisade Shop inventory",
        description = "Stock per SKU and reservations for orders. Errors are RFC 9457 problem documents. \
                       Reservations expire unless committed within the configured TTL."
    ),
    components(schemas(Problem, FieldError, model::LedgerReason)),
    modifiers(&BearerAuth),
    tags(
        (name = "stock", description = "Stock per SKU"),
        (name = "reservations", description = "Stock held for orders: reserve, commit, release"),
    ),
)]
struct ApiDoc;

/// The inventory's OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router().split_for_parts();
    let mut doc = kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"));
    model::forbid_zero_delta(&mut doc);
    doc
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let config: InventoryConfig = context.settings.extract("inventory")?;
        config.validate()?;
        let store = store::with_retry(&context.db, context.config.db_retry());
        let sweeper = Sweeper::spawn(
            store.clone(),
            &context.db,
            Duration::from_millis(config.expiry_interval_ms),
            config.expiry_batch,
        );
        let state = AppState {
            store,
            reservation_ttl: Duration::from_secs(config.reservation_ttl_secs),
            sweeper: Arc::new(sweeper),
        };
        let (router, _) = api::router().split_for_parts();
        Ok(router.with_state(state))
    })
}

/// The service's own settings sections (for the start-up check of unknown keys).
fn config_keys() -> Vec<String> {
    kit::config::keys_of("", &InventoryConfig::default())
}
