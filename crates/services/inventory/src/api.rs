//! The `/v1/stock` and `/v1/reservations` handlers.
//!
//! | outcome | status |
//! |---|---|
//! | SKU in the path malformed / reservation id not a UUID | 400 |
//! | SKU without a stock row (`GET`, adjustments, ledger) / unknown reservation | 404 |
//! | `on_hand` below what is reserved, or out of range after an adjustment | 409 |
//! | `If-Match` / `If-None-Match` do not hold for the stock's `ETag` | 412, with the current `ETag` |
//! | `PUT /v1/stock/{sku}` with neither `If-Match` nor `If-None-Match` | 428 |
//! | the row stayed locked past the lock timeout, or the transaction kept losing to concurrent ones | 503 with `Retry-After` |
//! | reservation: a line asks for more than is available | 409 `insufficient-stock`, `errors` per line |
//! | reservation: the `order_id` already has a reservation with other lines | 409 `order-id-taken` |
//! | reservation: a line names a SKU without a stock row | 409 `unknown-sku`, `errors` per line |
//! | commit of a released/expired reservation, release of a committed one | 409 `reservation-state` |
//! | reservation replayed (same order id and lines) after it expired | 409 `reservation-expired` |
//! | reservation replayed after it was released | 409 `reservation-state` |
//! | reservation routes: a customer token, or a service token without `inventory:reserve` | 403 |
//! | reservation routes: a service token for another audience or from an untrusted key | 401 |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kit::auth::AdminUser;
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Path, Preconditions, Query};
use kit::openapi::{AuthErrors, NotAdmin};
use kit::service_auth::Caller;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::expiry::Sweeper;
use crate::model::{
    Adjustment, LedgerPage, LedgerQuery, Reservation, ReservationList, ReservationQuery, ReservationRequest,
    ReservationStatus, SKU_RULE, SetStock, Stock, valid_sku,
};
use crate::store::{Action, ReserveOutcome, StockWrite, Store, Transition};

/// Handler state.
#[derive(Clone)]
pub struct AppState {
    /// Stock and reservations.
    pub store: Arc<dyn Store>,
    /// How long a new reservation holds stock.
    pub reservation_ttl: Duration,
    /// The expiry sweep, stopped when the last clone of the state is dropped.
    pub sweeper: Arc<Sweeper>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("reservation_ttl", &self.reservation_ttl).finish_non_exhaustive()
    }
}

/// The routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_stock, set_stock))
        .routes(routes!(adjust_stock))
        .routes(routes!(stock_ledger))
        .routes(routes!(reserve, find_reservations))
        .routes(routes!(get_reservation))
        .routes(routes!(release))
        .routes(routes!(commit))
}

const INSUFFICIENT_STOCK: &str = "https://palisade.dev/problems/insufficient-stock";
const UNKNOWN_SKU: &str = "https://palisade.dev/problems/unknown-sku";
const ORDER_ID_TAKEN: &str = "https://palisade.dev/problems/order-id-taken";
const RESERVATION_STATE: &str = "https://palisade.dev/problems/reservation-state";
const RESERVATION_EXPIRED: &str = "https://palisade.dev/problems/reservation-expired";

fn checked_sku(sku: String) -> Result<String, ApiError> {
    if valid_sku(&sku) {
        Ok(sku)
    } else {
        Err(ApiError::bad_request("invalid SKU in the path")
            .with_errors(vec![FieldError::new("sku", SKU_RULE)]))
    }
}

fn no_stock(sku: &str) -> ApiError {
    ApiError::not_found(format!("no stock for SKU {sku}; an admin creates it with PUT /v1/stock/{sku}"))
}

fn no_reservation(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no reservation with id {id}"))
}

fn with_location<T: serde::Serialize>(status: StatusCode, location: &str, body: T) -> Response {
    let mut res = (status, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    res
}

fn etag_value(stock: &Stock) -> HeaderValue {
    HeaderValue::from_str(&stock.etag()).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The stock as a response with its `ETag`.
fn stock_response(status: StatusCode, stock: Stock) -> Response {
    let etag = etag_value(&stock);
    let mut res = if status == StatusCode::CREATED {
        with_location(status, &format!("/v1/stock/{}", stock.sku), stock)
    } else {
        (status, Json(stock)).into_response()
    };
    res.headers_mut().insert(header::ETAG, etag);
    res
}

/// 412, with the current `ETag` when the stock exists.
fn precondition_failed(sku: &str, current: Option<&Stock>) -> ApiError {
    match current {
        Some(stock) => Preconditions::failed(
            format!(
                "the stock of SKU {sku} is at ETag {}, which If-Match/If-None-Match do not allow; read it again",
                stock.etag()
            ),
            Some(&stock.etag()),
        ),
        None => Preconditions::failed(format!("SKU {sku} has no stock, which If-Match does not allow"), None),
    }
}

/// The stock of one SKU.
#[utoipa::path(
    get, path = "/v1/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The stock", body = Stock,
            headers(("ETag" = String, description = "The stock's version (strong): send it in `If-Match` to change it"))),
        (status = 400, description = "The SKU is malformed", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No stock for this SKU", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_stock(State(state): State<AppState>, Path(sku): Path<String>) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    let stock = state.store.stock(&sku).await?.ok_or_else(|| no_stock(&sku))?;
    Ok(stock_response(StatusCode::OK, stock))
}

/// Set a SKU's on-hand count (admin); creates the SKU's stock when absent.
///
/// A conditional request only: reservations and commits change the stock concurrently, so a blind
/// overwrite would silently undo them. Send `If-Match` with the `ETag` of a `GET` to overwrite
/// (412 when the stock changed since), or `If-None-Match: *` to create (412 when it exists).
/// Without either the answer is 428. Every change is recorded in the SKU's ledger.
#[utoipa::path(
    put, path = "/v1/stock/{sku}", tag = "stock",
    params(
        ("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("If-Match" = Option<String>, Header, description = "The stock's current `ETag` (or `*`: any existing stock)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: only create the stock, never overwrite it"),
    ),
    request_body(content = SetStock, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Stock,
            headers(("ETag" = String, description = "The stock's new version"))),
        (status = 201, description = "Created", body = Stock,
            headers(("Location" = String, description = "The stock's URL"), ("ETag" = String, description = "Its version"))),
        (status = 400, description = "The SKU is malformed or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 409, description = "Below what is currently reserved", body = Problem, content_type = PROBLEM),
        (status = 412, description = "`If-Match` or `If-None-Match` does not hold: the stock changed (or exists, or \
            does not); nothing was written. The current `ETag` is sent when the stock exists",
            body = Problem, content_type = PROBLEM,
            headers(("ETag" = String, description = "The stock's current version"))),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
        (status = 428, description = "Neither `If-Match` nor `If-None-Match` was sent: a blind overwrite is refused",
            body = Problem, content_type = PROBLEM),
    )
)]
async fn set_stock(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    pre: Preconditions,
    Path(sku): Path<String>,
    Json(input): Json<SetStock>,
) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    input.validate().map_err(ApiError::validation)?;
    pre.required(format!(
        "send If-Match with the ETag of GET /v1/stock/{sku} to overwrite its stock, or If-None-Match: * to \
         create it: others change the stock concurrently"
    ))?;
    let write =
        state.store.set_stock(&sku, input.on_hand, &pre, &admin.id, OffsetDateTime::now_utc()).await?;
    match write {
        StockWrite::Done(stock, true) => Ok(stock_response(StatusCode::CREATED, stock)),
        StockWrite::Done(stock, false) => Ok(stock_response(StatusCode::OK, stock)),
        StockWrite::PreconditionFailed(current) => Err(precondition_failed(&sku, current.as_ref())),
        StockWrite::NotFound => Err(no_stock(&sku)),
    }
}

/// Add to or remove from a SKU's on-hand count (admin): a delivery, breakage, a recount.
///
/// A delta commutes with concurrent changes, so no precondition is required; `If-Match` with the
/// stock's `ETag` makes it conditional (412 when the stock changed since). Recorded in the ledger.
#[utoipa::path(
    post, path = "/v1/stock/{sku}/adjustments", tag = "stock",
    params(
        ("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("If-Match" = Option<String>, Header, description = "Adjust only if the stock is still at this `ETag`"),
    ),
    request_body(content = Adjustment, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock after the adjustment", body = Stock,
            headers(("ETag" = String, description = "The stock's new version"))),
        (status = 400, description = "The SKU is malformed or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No stock for this SKU", body = Problem, content_type = PROBLEM),
        (status = 409, description = "On-hand would drop below what is reserved or exceed the maximum", body = Problem, content_type = PROBLEM),
        (status = 412, description = "`If-Match` does not hold: the stock changed since; nothing was written",
            body = Problem, content_type = PROBLEM,
            headers(("ETag" = String, description = "The stock's current version"))),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn adjust_stock(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    pre: Preconditions,
    Path(sku): Path<String>,
    Json(input): Json<Adjustment>,
) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    input.validate().map_err(ApiError::validation)?;
    let write =
        state.store.adjust_stock(&sku, input.delta, &pre, &admin.id, OffsetDateTime::now_utc()).await?;
    match write {
        StockWrite::Done(stock, _) => Ok(stock_response(StatusCode::OK, stock)),
        StockWrite::PreconditionFailed(current) => Err(precondition_failed(&sku, current.as_ref())),
        StockWrite::NotFound => Err(no_stock(&sku)),
    }
}

/// A SKU's ledger (admin): every change of its on-hand count, oldest first, with who made it.
///
/// The deltas add up to `on_hand`.
#[utoipa::path(
    get, path = "/v1/stock/{sku}/ledger", tag = "stock",
    params(
        ("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        LedgerQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the ledger", body = LedgerPage),
        (status = 400, description = "The SKU is malformed or a query parameter is out of range", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No stock for this SKU", body = Problem, content_type = PROBLEM),
    )
)]
async fn stock_ledger(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(sku): Path<String>,
    Query(query): Query<LedgerQuery>,
) -> Result<Json<LedgerPage>, ApiError> {
    let sku = checked_sku(sku)?;
    let mut errors = Vec::new();
    let (limit, offset) = kit::paging::check(query.limit, query.offset, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid_params(errors));
    }
    let mut items = state.store.ledger(&sku, limit + 1, offset).await?.ok_or_else(|| no_stock(&sku))?;
    let next_offset = kit::paging::finish(&mut items, limit, offset);
    Ok(Json(LedgerPage { items, limit, offset, next_offset }))
}

/// The 403 of the reservation routes: a customer's token, or a service token without the scope.
#[derive(Debug, utoipa::IntoResponses)]
pub enum NotAllowed {
    /// Neither an admin nor a service with `inventory:reserve`.
    #[response(
        status = 403,
        description = "A customer's token, or a service token without the scope `inventory:reserve`",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
}

/// The scope of every reservation route.
const RESERVE: &str = "inventory:reserve";

/// Reserve stock for an order: every line or none.
///
/// For admins and services with `inventory:reserve`. Idempotent per `order_id`: repeating the request with the same lines returns the reservation
/// with 200 while it still holds stock (`reserved`) or after it was committed. A replay never
/// answers `reserved` for a reservation past its deadline: that is 409 `reservation-expired` (the
/// order must start again under a new order id). A released reservation replayed is 409
/// `reservation-state`: its stock was given back, and reserving again under the same order id
/// would make the release meaningless. The same `order_id` with other lines is 409 `order-id-taken`.
#[utoipa::path(
    post, path = "/v1/reservations", tag = "reservations",
    request_body(content = ReservationRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This order's existing reservation (a repeated request), reserved or committed",
            body = Reservation),
        (status = 201, description = "Reserved", body = Reservation,
            headers(("Location" = String, description = "The reservation's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAllowed,
        (status = 409, description = "Insufficient stock (type `insufficient-stock`; `errors` names each short line \
            and its SKU), a line naming a SKU without stock (type `unknown-sku`), the order id already has a \
            reservation with other lines (type `order-id-taken`), or this order's reservation expired (type \
            `reservation-expired`) or was released (type `reservation-state`)",
            body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn reserve(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<ReservationRequest>,
) -> Result<Response, ApiError> {
    caller.require(RESERVE)?;
    request.validate().map_err(ApiError::validation)?;
    let outcome = state.store.reserve(&request, OffsetDateTime::now_utc(), state.reservation_ttl).await?;
    match outcome {
        ReserveOutcome::Created(reservation) => {
            let location = format!("/v1/reservations/{}", reservation.id);
            Ok(with_location(StatusCode::CREATED, &location, reservation))
        }
        ReserveOutcome::Replayed(reservation) => replayed(reservation),
        ReserveOutcome::OrderIdTaken(existing) => Err(ApiError::conflict(format!(
            "order {} already has reservation {} with different lines",
            existing.order_id, existing.id
        ))
        .with_type(ORDER_ID_TAKEN, "Order id already used")),
        ReserveOutcome::UnknownSkus(lines) => {
            let errors = lines
                .iter()
                .map(|l| {
                    FieldError::new(format!("#/lines/{}/sku", l.index), format!("no stock for SKU {}", l.sku))
                })
                .collect();
            // The stock there is (none) does not allow it: a conflict with the server's state, as
            // insufficient stock is, not a malformed request.
            Err(ApiError::conflict("no stock for some SKUs; nothing was reserved")
                .with_type(UNKNOWN_SKU, "No stock for SKU")
                .with_errors(errors))
        }
        ReserveOutcome::Insufficient(short) => {
            let skus: Vec<&str> = short.iter().map(|s| s.line.sku.as_str()).collect();
            let errors = short
                .iter()
                .map(|s| {
                    FieldError::new(
                        format!("#/lines/{}/quantity", s.line.index),
                        format!(
                            "SKU {}: requested {}, available {}",
                            s.line.sku,
                            s.requested,
                            s.available.max(0)
                        ),
                    )
                })
                .collect();
            Err(ApiError::conflict(format!(
                "insufficient stock for SKU {}; nothing was reserved",
                skus.join(", ")
            ))
            .with_type(INSUFFICIENT_STOCK, "Insufficient stock")
            .with_errors(errors))
        }
    }
}

/// The answer to a replayed reservation request, by the state the reservation is in now.
fn replayed(reservation: Reservation) -> Result<Response, ApiError> {
    let (id, order) = (reservation.id, &reservation.order_id);
    match reservation.status {
        ReservationStatus::Reserved | ReservationStatus::Committed => Ok(Json(reservation).into_response()),
        ReservationStatus::Expired => Err(ApiError::conflict(format!(
            "reservation {id} of order {order} expired: its stock was given back; nothing is reserved"
        ))
        .with_type(RESERVATION_EXPIRED, "Reservation expired")),
        ReservationStatus::Released => Err(ApiError::conflict(format!(
            "reservation {id} of order {order} was released: its stock was given back; nothing is reserved"
        ))
        .with_type(RESERVATION_STATE, "Reservation state does not allow this")),
    }
}

/// Find the reservation of an order: 0 or 1 items.
///
/// For admins and services with `inventory:reserve`. One past its deadline shows as expired.
#[utoipa::path(
    get, path = "/v1/reservations", tag = "reservations",
    params(ReservationQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order's reservation, if it has one", body = ReservationList),
        (status = 400, description = "`order_id` is missing or malformed", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAllowed,
    )
)]
async fn find_reservations(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ReservationQuery>,
) -> Result<Json<ReservationList>, ApiError> {
    caller.require(RESERVE)?;
    query.validate().map_err(ApiError::invalid_params)?;
    let found = state.store.reservation_for_order(&query.order_id, OffsetDateTime::now_utc()).await?;
    Ok(Json(ReservationList { items: found.into_iter().collect() }))
}

/// One reservation.
///
/// For admins and services with `inventory:reserve`. One past its deadline shows as expired.
#[utoipa::path(
    get, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAllowed,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_reservation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    caller.require(RESERVE)?;
    let reservation = state.store.reservation(id, OffsetDateTime::now_utc()).await?;
    reservation.map(Json).ok_or_else(|| no_reservation(id))
}

fn transition_response(id: Uuid, transition: Transition, verb: &str) -> Result<Json<Reservation>, ApiError> {
    match transition {
        Transition::Done(r) | Transition::AlreadyDone(r) => Ok(Json(r)),
        Transition::Refused(r) => {
            Err(ApiError::conflict(format!("reservation {id} is {}: it cannot be {verb}", r.status.as_str()))
                .with_type(RESERVATION_STATE, "Reservation state does not allow this"))
        }
        Transition::NotFound => Err(no_reservation(id)),
    }
}

/// Commit a reservation: its units leave on-hand for good.
///
/// For admins and services with `inventory:reserve`. Committing a committed reservation again
/// returns it unchanged (200).
#[utoipa::path(
    post, path = "/v1/reservations/{id}/commit", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Committed", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAllowed,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Released or expired: nothing to commit", body = Problem, content_type = PROBLEM),
    )
)]
async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    caller.require(RESERVE)?;
    let transition =
        state.store.transition(id, Action::Commit, &caller.actor(), OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "committed")
}

/// Release a reservation: its units are available again.
///
/// For admins and services with `inventory:reserve`. Releasing a released or expired reservation
/// returns it unchanged (200).
#[utoipa::path(
    post, path = "/v1/reservations/{id}/release", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Released (or already released/expired)", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAllowed,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Committed: its units are gone", body = Problem, content_type = PROBLEM),
    )
)]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    caller.require(RESERVE)?;
    let transition =
        state.store.transition(id, Action::Release, &caller.actor(), OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "released")
}
