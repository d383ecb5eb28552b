//! The notifications service (port 8086): the events of the other services, received once each,
//! become notifications a user lists.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/events` | services with `events:deliver` (and admins) | receive one structured CloudEvent; 204 the first time and for a redelivery |
//! | `GET /v1/notifications` | any user | mine, newest first, paged (`limit`/`offset`, `next_offset`); admins may name a `user_id` |
//!
//! Producers push their events here through their outbox relay ([`kit::outbox::HttpPush`],
//! `<producer>.events.subscribers.notifications`), signed with their service token (audience
//! `notifications`, scope `events:deliver`). Delivery is at least once; the [`kit::inbox`] makes each
//! event (`source`, `id`) take effect once, in the transaction that stores its notification
//! ([`store`]). What each event type says to its user: [`summary`]. Each received event is logged at
//! INFO (`event received`) with the event's `trace_id` (from its `traceparent`), `event_id`,
//! `source`, `type`, and whether it was the first delivery.
//!
//! No settings of its own besides the kit's per-service keys (`notifications.trusted_keys.<kid>`
//! names the producers' keys; `shop all` wires them).

pub mod api;
pub mod model;
pub mod store;
pub mod summary;

use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Context, RoutesFuture, Service};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;

/// The notifications service, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "notifications",
    default_port: 8086,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[],
};

/// The notifications' embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/notifications/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/notifications/postgres"),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Palisade Shop notifications",
        description = "Events from the other services (CloudEvents 1.0, pushed by their outbox relays), each \
                       received once, become notifications a user lists. Errors are RFC 9457 problem documents."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Receiving events from the other services"),
        (name = "notifications", description = "A user's notifications"),
    ),
)]
struct ApiDoc;

/// The notifications' OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router().split_for_parts();
    kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"))
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let state = AppState { store: store::with_retry(&context.db, context.config.db_retry()) };
        let (router, _) = api::router().split_for_parts();
        Ok(router.with_state(state))
    })
}

/// The service's own settings sections: none.
fn config_keys() -> Vec<String> {
    Vec::new()
}
