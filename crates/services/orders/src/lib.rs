//! The orders service (port 8085): the checkout saga.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/orders` | customer (`Idempotency-Key` required) | place an order: the [`saga`] runs, the answer is the confirmed order or why it failed |
//! | `GET /v1/orders` | customer: own; admin: all (`customer_id` filter) | newest first, paged |
//! | `GET /v1/orders/{id}` | customer: own (404 otherwise); admin | one order with its price snapshot |
//! | `POST /v1/orders/{id}/cancel` | customer: own; admin | undo a pending order, refund a confirmed one; `order.cancelled` |
//! | `GET /v1/orders/{id}/audit` | admin | every state change |
//!
//! **States.** `status` is `pending` (the saga runs; `step` says where: `account` → `pricing` →
//! `reserving` → `charging` → `committing`), `compensating` (failed or cancelled; being undone),
//! or terminal: `confirmed`, `failed` (with `failure_reason`), `cancelled`. Each step is committed
//! before the next starts; the terminal change carries its event (`order.confirmed`,
//! `order.failed`, `order.cancelled`) and the placing request's idempotent answer.
//!
//! **Calls** users (`users:read`), catalog (public), inventory (`inventory:reserve`) and payments
//! (`payments:charge payments:refund payments:read`), each through one [`kit::client::Downstream`]
//! configured under `orders.downstreams.<name>` (`url` required: the service refuses to start
//! without it). It never calls notifications: events go through the outbox.
//!
//! Settings (under `orders:`, env `SHOP__ORDERS__*`), besides the kit's: see [`OrdersConfig`].

pub mod api;
pub mod model;
pub mod recovery;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use kit::audit::AuditLog;
use kit::client::Downstream;
use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Calls, Context, RoutesFuture, Service};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;
use crate::saga::Saga;

/// The orders service, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "orders",
    default_port: 8085,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[
        Calls { service: "users", scopes: USERS_SCOPES },
        // Public reads: no scope, but `shop all` wires its address like the others'.
        Calls { service: "catalog", scopes: &[] },
        Calls { service: "inventory", scopes: INVENTORY_SCOPES },
        Calls { service: "payments", scopes: PAYMENTS_SCOPES },
    ],
};

const USERS_SCOPES: &[&str] = &["users:read"];
const INVENTORY_SCOPES: &[&str] = &["inventory:reserve"];
const PAYMENTS_SCOPES: &[&str] = &["payments:charge", "payments:refund", "payments:read"];

/// The orders' embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/orders/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/orders/postgres"),
};

/// The orders' own settings (`orders.*`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct OrdersConfig {
    /// How long a driver (a request, the recovery worker) holds an order; an order not finished by
    /// then is taken by the recovery worker (default 60 s; at least 1; keep it above the request
    /// timeout).
    pub recovery_after_secs: u64,
    /// How often the recovery worker looks for stuck orders (default 5000 ms; at least 10).
    pub recovery_interval_ms: u64,
    /// Orders claimed per recovery run (default 20; at least 1).
    pub recovery_batch: u32,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self { recovery_after_secs: 60, recovery_interval_ms: 5_000, recovery_batch: 20 }
    }
}

impl OrdersConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), kit::BoxError> {
        if self.recovery_after_secs == 0 {
            return Err("orders.recovery_after_secs must be at least 1".into());
        }
        if self.recovery_interval_ms < 10 {
            return Err("orders.recovery_interval_ms must be at least 10".into());
        }
        if self.recovery_batch == 0 {
            return Err("orders.recovery_batch must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Palisade Shop orders",
        description = "Orders and the checkout saga: account check, pricing from the catalog, stock reservation, \
                       payment, commit. Errors are RFC 9457 problem documents."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags((name = "orders", description = "Place, read and cancel orders")),
)]
struct ApiDoc;

/// The orders' OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router(None).split_for_parts();
    kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"))
}

/// The client for downstream `name`, refusing a missing or invalid `url`.
fn downstream(context: &Context, name: &str) -> Result<Downstream, kit::BoxError> {
    let config = context.config.downstreams.get(name).filter(|c| !c.url.is_empty()).ok_or_else(|| {
        format!(
            "orders needs orders.downstreams.{name}.url (SHOP__ORDERS__DOWNSTREAMS__{}__URL): it calls {name}",
            name.to_uppercase()
        )
    })?;
    config.validate(name).map_err(|e| format!("orders.downstreams.{name}: {e}"))?;
    Ok(Downstream::new(name, config)?)
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let config: OrdersConfig = context.settings.extract("orders")?;
        config.validate()?;
        let signer = context.signer.clone();
        let saga = Saga {
            store: store::with_retry(&context.db, context.config.db_retry()),
            users: downstream(&context, "users")?.authenticated(signer.clone(), "users", USERS_SCOPES),
            catalog: downstream(&context, "catalog")?,
            inventory: downstream(&context, "inventory")?.authenticated(
                signer.clone(),
                "inventory",
                INVENTORY_SCOPES,
            ),
            payments: downstream(&context, "payments")?.authenticated(signer, "payments", PAYMENTS_SCOPES),
            lease: Duration::from_secs(config.recovery_after_secs),
        };
        let (idempotency, expiry) = context.idempotency()?;
        let recovery = recovery::spawn(
            saga.clone(),
            &context.db,
            Duration::from_millis(config.recovery_interval_ms),
            config.recovery_batch,
        );
        let state = AppState {
            saga,
            audit: AuditLog::new(context.db.clone()),
            jobs: Arc::new(vec![expiry, recovery]),
        };
        let (router, _) = api::router(Some(idempotency)).split_for_parts();
        Ok(router.with_state(state))
    })
}

/// The service's own settings sections (for the start-up check of unknown keys).
fn config_keys() -> Vec<String> {
    kit::config::keys_of("", &OrdersConfig::default())
}
