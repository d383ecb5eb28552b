//! The `/v1/orders` handlers.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use kit::audit::{AuditFilter, AuditLog};
use kit::auth::{AdminUser, AuthUser, Role};
use kit::db::StoreError;
use kit::error::{ApiError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Path, Query};
use kit::idempotency::{Claim, Idempotency};
use kit::openapi::{AuthErrors, NotAdmin};
use time::OffsetDateTime;
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::model::{AuditPage, AuditQuery, ListQuery, Order, OrderPage, OrderRequest, OrderStatus};
use crate::saga::{Driven, Driver, Saga, answer_for};
use crate::store::NewOrder;

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The saga (store and downstreams).
    pub saga: Saga,
    /// The audit trail.
    pub audit: AuditLog,
    /// The recovery worker and the key expiry, stopped when the last clone of the state goes.
    pub jobs: Arc<Vec<kit::jobs::Job>>,
}

/// The routes with their OpenAPI operations; `POST /v1/orders` behind `idempotency` when given
/// (the document needs no database).
pub fn router(idempotency: Option<Idempotency>) -> OpenApiRouter<AppState> {
    let mut place = OpenApiRouter::new().routes(routes!(place_order));
    if let Some(idempotency) = idempotency {
        place = place.route_layer(axum::middleware::from_fn_with_state(idempotency, kit::idempotency::layer));
    }
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .merge(place)
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(order_audit))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no order with id {id}"))
}

fn is_admin(user: &AuthUser) -> bool {
    user.role == Role::Admin
}

/// The order `id` if `user` may see it (their own, or any for an admin); else 404.
async fn visible(state: &AppState, user: &AuthUser, id: &str) -> Result<Order, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found(id));
    }
    match state.saga.store.get(id).await? {
        Some(order) if is_admin(user) || order.customer_id == user.id => Ok(order),
        _ => Err(not_found(id)),
    }
}

fn respond(driven: Result<Driven, ApiError>) -> Response {
    match driven {
        Ok(Driven::Answered(response)) => response,
        Ok(Driven::Order(order)) => answer_for(&order),
        Err(err) => err.into_response(),
    }
}

/// Place an order (customer token; `Idempotency-Key` required).
///
/// The saga runs before the answer: the account is checked, every line is priced from the catalog
/// (the client never sends prices; the answer holds the price snapshot), the stock is reserved,
/// the total is charged and the reservation committed. Any failure undoes what was done (the
/// reservation released, the charge refunded) and the order stays readable as `failed` with its
/// `failure_reason`. A repeat with the same key answers the same (`Idempotent-Replayed: true`).
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    params(("Idempotency-Key" = String, Header, description = "Unique per order the client means to place (at most 255 characters)")),
    request_body(content = OrderRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Confirmed: paid and the stock committed", body = Order,
            headers(("Location" = String, description = "The order's URL"))),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key is missing or invalid", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 402, description = "The payment was declined (type `payment-declined`); the stock was released", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Insufficient stock (type `insufficient-stock`, `errors` per line; nothing reserved or \
            charged), or a request with this Idempotency-Key is in flight", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid lines; an unknown account (`unknown-account`), unusable account \
            (`account-unusable`), unknown product (`unknown-product`, naming the line), archived product \
            (`product-archived`), products in several currencies (`mixed-currencies`), a total over 10^12 minor \
            units (`total-too-large`), a product without stock (`unknown-sku`); or the Idempotency-Key was used \
            with another request", body = Problem, content_type = PROBLEM),
        (status = 502, description = "A downstream service failed; what was done is undone and the order is `failed`; \
            a retry with the same key places a new order", body = Problem, content_type = PROBLEM),
    )
)]
async fn place_order(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(claim): Extension<Claim>,
    Json(request): Json<OrderRequest>,
) -> Response {
    let errors = request.validate();
    if !errors.is_empty() {
        return ApiError::validation(errors).into_response();
    }
    // The saga runs in its own task: a client that hangs up, or the server's request timeout,
    // drops this future, and the order must still reach its end now (answered to the retry that
    // comes with the same key) rather than wait a lease out for the recovery worker.
    // It keeps the request's trace, span and deadline.
    let placing = async move { place(&state, &user, &claim, request).await };
    let placing = palisade::trace::propagate(palisade::deadline::propagate(placing));
    tokio::spawn(placing.instrument(tracing::Span::current())).await.unwrap_or_else(|err| {
        ApiError::internal(format_args!("the order's saga task failed: {err}")).into_response()
    })
}

/// Places `request` for `user` under `claim`, or finishes the order an earlier attempt with the
/// same key left.
async fn place(state: &AppState, user: &AuthUser, claim: &Claim, request: OrderRequest) -> Response {
    let saga = &state.saga;
    let driver = Driver { actor: user.id.clone(), claim: Some(claim.clone()) };
    let now = OffsetDateTime::now_utc();
    // The first attempt with this key crashed or was answered 5xx with the order left to finish.
    match saga.store.by_key(&user.id, claim.key()).await {
        Ok(Some(order)) if order.status.is_terminal() => return answer_for(&order),
        Ok(Some(order)) => {
            return match saga.store.take_lease(&order.id, now, now + saga.lease).await {
                Ok(Some(order)) => respond(saga.drive(order, &driver).await),
                Ok(None) => answer_for(&order),
                Err(err) => ApiError::from(err).into_response(),
            };
        }
        Ok(None) => {}
        Err(err) => return ApiError::from(err).into_response(),
    }
    let new = NewOrder {
        id: uuid::Uuid::new_v4().to_string(),
        customer_id: user.id.clone(),
        idempotency_key: Some(claim.key().to_owned()),
        lines: request.lines,
        lease_until: now + saga.lease,
    };
    match saga.store.create(&new, &user.id, now).await {
        Ok(order) => respond(saga.drive(order, &driver).await),
        Err(StoreError::Conflict(_)) => ApiError::unavailable(
            std::time::Duration::from_secs(1),
            "an order with this Idempotency-Key is being placed; retry shortly",
        )
        .into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// One order: customers see their own (404 for others'), admins any.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = Order),
        AuthErrors,
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    visible(&state, &user, &id).await.map(Json)
}

/// Orders, newest first: a customer's own; an admin's all (or one customer's with `customer_id`).
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "A query parameter is out of range", body = Problem, content_type = PROBLEM),
        AuthErrors,
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = kit::paging::check(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid_params(errors));
    }
    let customer = if is_admin(&user) { query.customer_id } else { Some(user.id.clone()) };
    let mut items = state.saga.store.list(customer.as_deref(), limit + 1, offset).await?;
    let next_offset = kit::paging::finish(&mut items, limit, offset);
    Ok(Json(OrderPage { items, limit, offset, next_offset }))
}

/// Cancel an order (its customer or an admin).
///
/// A pending order (one stopped mid-way, waiting for recovery) is undone: the stock released, a
/// charge refunded. A confirmed order is refunded in full; its stock stays committed (restocking
/// returned goods is an admin stock adjustment in inventory). Event `order.cancelled`.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = Order),
        AuthErrors,
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already failed or cancelled, or being placed right now (type `order-not-cancellable`)",
            body = Problem, content_type = PROBLEM),
        (status = 502, description = "payments or inventory failed; the cancellation is finished by the recovery worker",
            body = Problem, content_type = PROBLEM),
    )
)]
async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let order = visible(&state, &user, &id).await?;
    let not_cancellable = |why: &str| {
        ApiError::conflict(format!("order {id} {why}"))
            .with_type("https://palisade.dev/problems/order-not-cancellable", "Order cannot be cancelled")
    };
    let saga = &state.saga;
    let order = match order.status {
        OrderStatus::Failed | OrderStatus::Cancelled => {
            return Err(not_cancellable(&format!("is {} already", order.status.as_str())));
        }
        OrderStatus::Compensating => return Err(not_cancellable("is being undone already")),
        OrderStatus::Confirmed => order,
        OrderStatus::Pending => {
            let now = OffsetDateTime::now_utc();
            saga.store
                .take_lease(&id, now, now + saga.lease)
                .await?
                .ok_or_else(|| not_cancellable("is being placed right now; try again when it is confirmed"))?
        }
    };
    let driver = Driver { actor: user.id.clone(), claim: None };
    match saga.cancel(order, &driver).await? {
        Driven::Order(order) => Ok(Json(order)),
        Driven::Answered(_) => Err(ApiError::internal("a cancellation stored a placing answer")),
    }
}

/// An order's audit trail (admin): every state change, oldest first.
#[utoipa::path(
    get, path = "/v1/orders/{id}/audit", tag = "orders",
    params(("id" = String, Path, description = "Order id"), AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the trail", body = AuditPage),
        (status = 400, description = "A query parameter is out of range", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such order", body = Problem, content_type = PROBLEM),
    )
)]
async fn order_audit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = kit::paging::check(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid_params(errors));
    }
    visible(&state, &admin, &id).await?;
    let filter =
        AuditFilter { entity: Some("order".to_owned()), entity_id: Some(id), ..AuditFilter::default() };
    let mut items = state.audit.list(&filter, limit + 1, offset).await?;
    let next_offset = kit::paging::finish(&mut items, limit, offset);
    Ok(Json(AuditPage { items, limit, offset, next_offset }))
}
