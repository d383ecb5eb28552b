//! The `/v1/events` and `/v1/notifications` handlers.
//!
//! | outcome | status |
//! |---|---|
//! | an event received, the first time or again | 204 |
//! | body not JSON | 400 |
//! | no or an invalid token | 401 |
//! | a customer's token, or a service token without `events:deliver` (`POST /v1/events`) | 403 |
//! | a customer naming another user (`GET /v1/notifications?user_id=`) | 403 |
//! | an event id another source already sent | 409 |
//! | body not `application/cloudevents+json` or `application/json` | 415 |
//! | not a CloudEvent: a missing attribute, `specversion` other than `1.0`, blank `id`/`source`/`type` | 422 |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use kit::auth::{AuthUser, Role};
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Query};
use kit::openapi::AuthErrors;
use kit::outbox::Envelope;
use kit::service_auth::Caller;
use palisade::trace::TraceContext;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::model::{ListQuery, MAX_USER_ID_LEN, NotificationPage};
use crate::store::Store;

/// The scope a service token needs to deliver events here.
pub const DELIVER_SCOPE: &str = "events:deliver";

/// Handler state.
#[derive(Clone)]
pub struct AppState {
    /// Notifications and the inbox.
    pub store: Arc<dyn Store>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_event)).routes(routes!(list_notifications))
}

/// Receive one event (HTTP push from a producer's outbox relay).
///
/// A structured CloudEvent 1.0. Each event (`source`, `id`) takes effect once: the first delivery
/// stores a notification for the event's `data.user_id` (events without one are acknowledged and
/// ignored); a redelivery changes nothing. Both answer 204, so the relay stops retrying.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(
        description = "A structured CloudEvent 1.0",
        content((Envelope = "application/cloudevents+json"), (Envelope = "application/json")),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Received (the first time, or again)"),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "Not a service token with the scope `events:deliver` (nor an admin)",
            body = Problem, content_type = PROBLEM),
        (status = 409, description = "Another source already sent an event with this id; nothing was stored",
            body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/cloudevents+json or application/json",
            body = Problem, content_type = PROBLEM),
        (status = 422, description = "Not a CloudEvent 1.0: `errors` names each attribute", body = Problem,
            content_type = PROBLEM),
    )
)]
async fn receive_event(
    State(state): State<AppState>,
    caller: Caller,
    Json(event): Json<Envelope>,
) -> Result<StatusCode, ApiError> {
    caller.require(DELIVER_SCOPE)?;
    kit::inbox::validate(&event).map_err(ApiError::validation)?;
    let draft = crate::summary::draft(&event);
    let first = state.store.receive(&event, draft.as_ref(), kit::db::now()).await?;
    // The event's own trace (its `traceparent`), so the producer's request can be followed here.
    let trace_id = event
        .trace()
        .map(|trace| trace.trace_id())
        .or_else(TraceContext::current_trace_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    tracing::info!(
        trace_id = %trace_id,
        event_id = %event.id,
        source = %event.source,
        r#type = %event.event_type,
        first,
        notified = first && draft.is_some(),
        caller = %caller.actor(),
        "event received"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// My notifications, newest first (admins: anyone's, with `user_id`).
#[utoipa::path(
    get, path = "/v1/notifications", tag = "notifications",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of notifications, newest first", body = NotificationPage),
        (status = 400, description = "Invalid query parameters", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "A customer asked for another user's notifications", body = Problem,
            content_type = PROBLEM),
    )
)]
async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = kit::paging::check(query.limit, query.offset, &mut errors);
    if query.user_id.as_ref().is_some_and(|id| id.trim().is_empty() || id.len() > MAX_USER_ID_LEN) {
        errors.push(FieldError::new("user_id", format!("must be 1-{MAX_USER_ID_LEN} bytes, not blank")));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_params(errors));
    }
    let user_id = match query.user_id {
        Some(other) if other != user.id => {
            if user.role != Role::Admin {
                return Err(ApiError::forbidden("only admins may list another user's notifications"));
            }
            other
        }
        _ => user.id,
    };
    let mut items = state.store.list(&user_id, limit.saturating_add(1), offset).await?;
    let next_offset = kit::paging::finish(&mut items, limit, offset);
    Ok(Json(NotificationPage { items, limit, offset, next_offset }))
}
