//! The admin view of a service's outbox, mounted by the kit on every service: dead events, and
//! their replay.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/admin/events/dead` | admin | events parked after `max_attempts` failed deliveries, oldest first, paged |
//! | `POST /v1/admin/events/{id}/replay` | admin | put a dead event back in line (204); 404 when no dead event has that id |

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{DeadEvent, Outbox};
use crate::auth::AdminUser;
use crate::error::{ApiError, FieldError};
use crate::paging;

/// A page of dead events.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadEvents {
    /// The events, oldest first.
    pub items: Vec<DeadEvent>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The offset of the next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// Paging of the dead events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Events to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// The routes, with `outbox` as their state.
pub fn router(outbox: Outbox) -> Router {
    Router::new()
        .route("/v1/admin/events/dead", get(dead))
        .route("/v1/admin/events/{id}/replay", post(replay))
        .with_state(outbox)
}

/// Dead events.
#[utoipa::path(
    get, path = "/v1/admin/events/dead", tag = "events",
    params(DeadQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead events, oldest first", body = DeadEvents),
        (status = 400, description = "A paging parameter is not a number", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad paging", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn dead(
    _admin: AdminUser,
    State(outbox): State<Outbox>,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadEvents>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut errors: Vec<FieldError> = Vec::new();
    let (limit, offset) = paging::check(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut items = outbox.dead(limit.saturating_add(1), offset).await?;
    let next_offset = paging::finish(&mut items, limit, offset);
    Ok(Json(DeadEvents { items, limit, offset, next_offset }))
}

/// Replays one dead event.
#[utoipa::path(
    post, path = "/v1/admin/events/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "The event id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Back in line: the relay sends it to the subscribers that did not get it"),
        (status = 401, description = "No valid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No dead event has this id", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn replay(
    _admin: AdminUser,
    State(outbox): State<Outbox>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if outbox.replay(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no dead event has the id {id}")))
    }
}

/// The routes' OpenAPI paths, merged into every service's document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(dead, replay),
    components(schemas(DeadEvents, DeadEvent)),
    tags((name = "events", description = "The service's outbox: dead events and their replay (admins)")),
)]
#[derive(Debug)]
pub struct AdminDoc;
