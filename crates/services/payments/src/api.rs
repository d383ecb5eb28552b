//! The `/v1/payments` handlers and the provider's operational route `/ops/provider`.
//!
//! | outcome | status |
//! |---|---|
//! | `POST` without `Idempotency-Key` (or a malformed one) | 400 `idempotency-key-missing` / `-invalid` |
//! | the same key again | the first answer again (status and body), `Idempotent-Replayed: true` |
//! | the same key with another body | 422 `idempotency-key-reused` |
//! | the same key while the first request runs | 409 `idempotency-key-in-flight` |
//! | a customer's token, or a service token without the route's scope | 403 |
//! | invalid fields (amount ≤ 0, unknown currency, blank ids) | 422 `validation`, one error per field |
//! | the provider declined | 402 `payment-declined`; the declined payment is stored (and replayed) |
//! | the provider failed | 502 `provider-error`; nothing stored, the key is freed for a retry |
//! | the provider did not answer before the request's deadline | 504 `deadline-exceeded` (or `timeout`: the server's own limit); nothing stored, counted in `shop_payments_abandoned_total{reason}` |
//! | a refund above what is left of the capture | 422 `refund-exceeds-captured` |
//! | a refund of a declined payment | 409 `payment-not-captured` |

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, Method, StatusCode, header};
use kit::audit::{AuditFilter, AuditLog};
use kit::auth::{AuthUser, Role};
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Path, Query};
use kit::idempotency::{Claim, Idempotency};
use kit::jobs::Job;
use kit::openapi::{AuthErrors, NotAdmin};
use kit::service_auth::{Caller, Principal};
use palisade::Deadline;
use palisade::trace::TraceContext;
use serde_json::json;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::model::{
    AuditPage, AuditQuery, ChargeRequest, ListQuery, MAX_ID_CHARS, Money, Payment, PaymentList,
    PaymentStatus, Refund, RefundRequest,
};
use crate::provider::{Outcome, Provider, ProviderConfig};
use crate::store::{Answer, RefundOutcome, Store};

/// The counter of charges given up because the request's time ran out while the provider had not
/// answered (label `reason`: `deadline`, the caller's; `timeout`, the server's own).
pub const ABANDONED: &str = "shop_payments_abandoned_total";

const DECLINED: &str = "https://palisade.dev/problems/payment-declined";
const PROVIDER_ERROR: &str = "https://palisade.dev/problems/provider-error";
const DEADLINE_EXCEEDED: &str = "https://palisade.dev/problems/deadline-exceeded";
const TIMEOUT: &str = "https://palisade.dev/problems/timeout";
const EXCEEDS_CAPTURED: &str = "https://palisade.dev/problems/refund-exceeds-captured";
const NOT_CAPTURED: &str = "https://palisade.dev/problems/payment-not-captured";

/// Handler state.
#[derive(Clone)]
pub struct AppState {
    /// Payments and refunds.
    pub store: Arc<dyn Store>,
    /// The simulated provider.
    pub provider: Provider,
    /// The audit trail of this service's database.
    pub audit: AuditLog,
    /// The server's own limit for a request (`request_timeout_ms`): a charge without a caller
    /// deadline stops before it too.
    pub request_timeout: Duration,
    /// The idempotency keys' expiry job, stopped when the last clone of the state is dropped.
    pub expiry: Arc<Job>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("provider", &self.provider)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    idempotent_routes().merge(other_routes())
}

/// The paths with an idempotent `POST` (they need [`idempotent_posts`] around them). Kept apart so
/// that a `POST` to any other path is a plain 405, not a request for an `Idempotency-Key`.
pub fn idempotent_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(charge, list_payments)).routes(routes!(refund))
}

/// The other paths.
pub fn other_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_payment))
        .routes(routes!(payment_audit))
        .routes(routes!(get_provider, put_provider))
}

/// The `Idempotency-Key` middleware ([`kit::idempotency::layer`]) on every `POST` route; other
/// methods pass through.
pub async fn idempotent_posts(State(keys): State<Idempotency>, request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        kit::idempotency::layer(State(keys), request, next).await
    } else {
        next.run(request).await
    }
}

/// An admin's user token: the extractor of the admin-only routes. Anyone else authenticated (a
/// customer, or a service: `kit::auth::AdminUser` would call its token invalid, 401) is a 403.
#[derive(Clone, Debug)]
pub struct Admin(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::User(user) if user.role == Role::Admin => Ok(Self(user)),
            _ => Err(ApiError::forbidden("this operation needs the admin role")),
        }
    }
}

fn no_payment(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no payment with id {id}"))
}

/// When the provider call is given up: before the caller's deadline or the server's own limit,
/// whichever is first, less a reserve to answer and free the key before the timeout layer cuts the
/// request off. The reason label of [`ABANDONED`].
fn stop_at(deadline: Option<Deadline>, request_timeout: Duration) -> (Instant, &'static str) {
    let now = Instant::now();
    let own = now + request_timeout;
    let (end, reason) = match deadline {
        Some(deadline) if deadline.instant() <= own => (deadline.instant(), "deadline"),
        _ => (own, "timeout"),
    };
    // A fifth of the budget, 5 to 250 ms: the 504 and freeing the key are one small write.
    let reserve =
        (end.saturating_duration_since(now) / 5).clamp(Duration::from_millis(5), Duration::from_millis(250));
    (end.checked_sub(reserve).unwrap_or(now).max(now), reason)
}

/// Charge a customer for an order (admin, or a service token with `payments:charge`).
///
/// Needs an `Idempotency-Key` (orders sends `order-<order_id>-charge`): a repeat with the same key
/// and body gets the first answer again, a declined one included, and charges nothing more. The
/// provider call stops when the request's deadline (`x-request-timeout-ms`) is about to pass: 504,
/// nothing captured or stored, and the key is free for a retry; so is a 502.
#[utoipa::path(
    post, path = "/v1/payments", tag = "payments",
    params(("Idempotency-Key" = String, Header, description = "Unique per charge (1-255 visible ASCII characters); repeats replay the first answer")),
    request_body(content = ChargeRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Captured", body = Payment,
            headers(("Location" = String, description = "The payment's URL"),
                ("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "No or a malformed `Idempotency-Key`, or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 402, description = "Declined by the provider (type `payment-declined`, with `payment_id` and \
            `decline_reason`); the declined payment is stored and a repeat replays this answer",
            body = Problem, content_type = PROBLEM),
        (status = 403, description = "A customer's token, or a service token without `payments:charge`", body = Problem, content_type = PROBLEM),
        (status = 409, description = "A request with this key is still running (type `idempotency-key-in-flight`); retry after `Retry-After`",
            body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields (type `validation`: a blank or long id, an amount not above zero, \
            an unknown currency), or the key was used with another body (type `idempotency-key-reused`)",
            body = Problem, content_type = PROBLEM),
        (status = 502, description = "The provider failed (type `provider-error`): nothing captured or stored; retry with the same key",
            body = Problem, content_type = PROBLEM),
        (status = 504, description = "The provider did not answer before the request's deadline (type `deadline-exceeded`, \
            or `timeout` for the server's own limit): nothing captured or stored; retry with the same key",
            body = Problem, content_type = PROBLEM),
    )
)]
async fn charge(
    State(state): State<AppState>,
    caller: Caller,
    Extension(claim): Extension<Claim>,
    deadline: Option<Extension<Deadline>>,
    Json(request): Json<ChargeRequest>,
) -> Result<Response, ApiError> {
    caller.require("payments:charge")?;
    request.validate().map_err(ApiError::validation)?;
    let (stop, reason) = stop_at(deadline.map(|Extension(d)| d), state.request_timeout);
    // Dropping the provider's future at `stop` is what stops its work.
    let Ok(outcome) = tokio::time::timeout_at(stop, state.provider.charge(request.amount.amount)).await
    else {
        metrics::counter!(ABANDONED, "reason" => reason).increment(1);
        tracing::warn!(order_id = %request.order_id, reason, "payment provider call abandoned: out of time");
        let err = ApiError::new(StatusCode::GATEWAY_TIMEOUT).with_detail(
            "the payment provider did not answer before the request's deadline; nothing was charged",
        );
        return Err(if reason == "deadline" {
            err.with_type(DEADLINE_EXCEEDED, "Deadline exceeded")
        } else {
            err.with_type(TIMEOUT, "Timeout")
        });
    };
    let (status, decline_reason) = match outcome {
        Outcome::Captured => (PaymentStatus::Captured, None),
        Outcome::Declined(why) => (PaymentStatus::Declined, Some(why)),
        Outcome::Failed => {
            return Err(ApiError::new(StatusCode::BAD_GATEWAY)
                .with_type(PROVIDER_ERROR, "Payment provider error")
                .with_detail(
                    "the payment provider failed; nothing was charged: retry with the same Idempotency-Key",
                ));
        }
    };
    let payment = Payment {
        id: Uuid::new_v4(),
        order_id: request.order_id,
        customer_id: request.customer_id,
        status,
        refunded: Money::new(0, &request.amount.currency),
        amount: request.amount,
        decline_reason,
        created_at: kit::db::now(),
    };
    let answer = match &payment.decline_reason {
        None => Answer {
            status: StatusCode::CREATED,
            body: serde_json::to_value(&payment).map_err(ApiError::internal)?,
            headers: location(&format!("/v1/payments/{}", payment.id)),
        },
        Some(why) => Answer {
            status: StatusCode::PAYMENT_REQUIRED,
            // A whole problem document, `instance` and `trace_id` included: stored as sent, so a
            // replay is the same document.
            body: json!({
                "type": DECLINED,
                "title": "Payment declined",
                "status": 402,
                "detail": format!("the provider declined the payment: {why}"),
                "instance": "/v1/payments",
                "trace_id": TraceContext::current_trace_id().map(|id| id.to_string()),
                "payment_id": payment.id,
                "decline_reason": why,
            }),
            headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM))],
        },
    };
    Ok(state.store.record_payment(&payment, &caller.actor(), &claim, &answer).await?)
}

fn location(path: &str) -> Vec<(http::HeaderName, HeaderValue)> {
    HeaderValue::from_str(path).map(|value| vec![(header::LOCATION, value)]).unwrap_or_default()
}

/// One payment (admin, or a service token with `payments:read`).
#[utoipa::path(
    get, path = "/v1/payments/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "A customer's token, or a service token without `payments:read`", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such payment", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    caller.require("payments:read")?;
    state.store.payment(id).await?.map(Json).ok_or_else(|| no_payment(id))
}

/// The payments of an order, oldest first (admin, or a service token with `payments:read`).
#[utoipa::path(
    get, path = "/v1/payments", tag = "payments",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order's payments (declined ones included); none: an empty list", body = PaymentList),
        (status = 400, description = "`order_id` missing, blank or longer than 100 characters", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "A customer's token, or a service token without `payments:read`", body = Problem, content_type = PROBLEM),
    )
)]
async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<PaymentList>, ApiError> {
    caller.require("payments:read")?;
    if query.order_id.trim().is_empty() || query.order_id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::invalid_params(vec![FieldError::new(
            "order_id",
            format!("must be 1-{MAX_ID_CHARS} characters, not blank"),
        )]));
    }
    let items = state.store.payments_of_order(&query.order_id).await?;
    Ok(Json(PaymentList { items }))
}

/// Refund (part of) a captured payment (admin, or a service token with `payments:refund`).
///
/// Needs an `Idempotency-Key` (orders sends `order-<order_id>-refund`). Full or partial; the
/// refunds of a payment never add up to more than its capture, even when sent concurrently.
#[utoipa::path(
    post, path = "/v1/payments/{id}/refunds", tag = "refunds",
    params(
        ("id" = Uuid, Path, description = "Payment id"),
        ("Idempotency-Key" = String, Header, description = "Unique per refund (1-255 visible ASCII characters); repeats replay the first answer"),
    ),
    request_body(content = RefundRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Refunded", body = Refund,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "No or a malformed `Idempotency-Key`, the id is not a UUID, or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "A customer's token, or a service token without `payments:refund`", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such payment", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The payment was declined: nothing to refund (type `payment-not-captured`), or a \
            request with this key is still running (type `idempotency-key-in-flight`)", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "More than is left of the capture (type `refund-exceeds-captured`), invalid fields \
            or another currency than the payment's (type `validation`), or the key was used with another body \
            (type `idempotency-key-reused`)", body = Problem, content_type = PROBLEM),
    )
)]
async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    Extension(claim): Extension<Claim>,
    Path(id): Path<Uuid>,
    Json(request): Json<RefundRequest>,
) -> Result<Response, ApiError> {
    caller.require("payments:refund")?;
    request.validate().map_err(ApiError::validation)?;
    let refund =
        Refund { id: Uuid::new_v4(), payment_id: id, amount: request.amount, created_at: kit::db::now() };
    let answer = Answer {
        status: StatusCode::CREATED,
        body: serde_json::to_value(&refund).map_err(ApiError::internal)?,
        headers: Vec::new(),
    };
    match state.store.refund(&refund, &caller.actor(), &claim, &answer).await? {
        RefundOutcome::Refunded(_, response) => Ok(response),
        RefundOutcome::NotFound => Err(no_payment(id)),
        RefundOutcome::NotCaptured(payment) => Err(ApiError::conflict(format!(
            "payment {id} is {}: nothing was captured to refund",
            payment.status.as_str()
        ))
        .with_type(NOT_CAPTURED, "Payment not captured")),
        RefundOutcome::CurrencyMismatch(payment) => Err(ApiError::validation(vec![FieldError::new(
            "#/amount/currency",
            format!("must be the payment's currency, {}", payment.amount.currency),
        )])),
        RefundOutcome::ExceedsCaptured(payment) => {
            let left = payment.amount.amount - payment.refunded.amount;
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type(EXCEEDS_CAPTURED, "Refund exceeds the capture")
                .with_detail(format!(
                    "payment {id} captured {} and has {} refunded: at most {left} {} can still be refunded; nothing was refunded",
                    payment.amount.amount, payment.refunded.amount, payment.amount.currency
                ))
                .with_errors(vec![FieldError::new("#/amount/amount", format!("must be at most {left}"))]))
        }
    }
}

/// A payment's audit trail (admin): its capture or decline and its refunds, who did each and
/// when, oldest first, with paging and filters.
#[utoipa::path(
    get, path = "/v1/payments/{id}/audit", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id"), AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the trail", body = AuditPage),
        (status = 400, description = "The id is not a UUID, or a query parameter is out of range", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such payment", body = Problem, content_type = PROBLEM),
    )
)]
async fn payment_audit(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<Uuid>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = kit::paging::check(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid_params(errors));
    }
    if state.store.payment(id).await?.is_none() {
        return Err(no_payment(id));
    }
    let filter = AuditFilter {
        entity: Some("payment".to_owned()),
        entity_id: Some(id.to_string()),
        actor: query.actor,
        action: query.action,
    };
    let mut items = state.audit.list(&filter, limit + 1, offset).await?;
    let next_offset = kit::paging::finish(&mut items, limit, offset);
    Ok(Json(AuditPage { items, limit, offset, next_offset }))
}

/// The simulated provider's current settings (admin; operational, outside `/v1`).
#[utoipa::path(
    get, path = "/ops/provider", tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = ProviderConfig),
        AuthErrors,
        NotAdmin,
    )
)]
async fn get_provider(State(state): State<AppState>, _admin: Admin) -> Json<ProviderConfig> {
    Json(state.provider.config())
}

/// Change the simulated provider's behaviour live (admin; operational, outside `/v1`): every field
/// is required; the next charge uses the new settings. Not persisted: a restart goes back to the
/// configured `payments.provider.*`.
#[utoipa::path(
    put, path = "/ops/provider", tag = "ops",
    request_body(content = ProviderConfig, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings now in force", body = ProviderConfig),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field missing or out of range (rates 0-1, latencies 0-60000 ms, p99 ≥ p50)",
            body = Problem, content_type = PROBLEM),
    )
)]
async fn put_provider(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(config): Json<ProviderConfig>,
) -> Result<Response, ApiError> {
    config.check().map_err(ApiError::validation)?;
    tracing::info!(admin = %admin.id, ?config, "simulated provider settings changed");
    state.provider.set(config.clone());
    Ok(Json(config).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use palisade::Deadline;
    use tokio::time::Instant;

    use super::stop_at;

    #[tokio::test(start_paused = true)]
    async fn the_provider_stops_before_the_earlier_of_the_deadline_and_the_server_timeout() {
        let now = Instant::now();
        let caller = Deadline::after(Duration::from_secs(1));
        assert_eq!(
            stop_at(Some(caller), Duration::from_secs(10)),
            (now + Duration::from_millis(800), "deadline")
        );
        assert_eq!(stop_at(None, Duration::from_secs(10)), (now + Duration::from_millis(9_750), "timeout"));
        let late = Deadline::after(Duration::from_secs(60));
        assert_eq!(stop_at(Some(late), Duration::from_secs(2)).1, "timeout");
        // A deadline about to pass leaves no time at all, never an instant in the past.
        let gone = Deadline::after(Duration::from_millis(1));
        assert_eq!(stop_at(Some(gone), Duration::from_secs(2)), (now, "deadline"));
    }
}
