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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kit::auth::AdminUser;
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Path, Preconditions, Query};
use kit::openapi::{AuthErrors, NotAdmin};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::expiry::Sweeper;
use crate::model::{
    Adjustment, LedgerPage, LedgerQuery, Reservation, ReservationRequest, SKU_RULE, SetStock, Stock,
    valid_sku,
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
        .routes(routes!(reserve))
        .routes(routes!(get_reservation))
        .routes(routes!(release))
        .routes(routes!(commit))
}

const INSUFFICIENT_STOCK: &str = "https://palisade.dev/problems/insufficient-stock";
const UNKNOWN_SKU: &str = "https://palisade.dev/problems/unknown-sku";
const ORDER_ID_TAKEN: &str = "https://palisade.dev/problems/order-id-taken";
const RESERVATION_STATE: &str = "https://palisade.dev/problems/reservation-state";

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

const PRECONDITION_FAILED: &str = "https://palisade.dev/problems/precondition-failed";
const PRECONDITION_REQUIRED: &str = "https://palisade.dev/problems/precondition-required";

/// 412, with the current `ETag` when the stock exists.
fn precondition_failed(sku: &str, current: Option<&Stock>) -> ApiError {
    let err =
        ApiError::new(StatusCode::PRECONDITION_FAILED).with_type(PRECONDITION_FAILED, "Precondition failed");
    match current {
        Some(stock) => err
            .with_detail(format!(
                "the stock of SKU {sku} is at ETag {}, which If-Match/If-None-Match do not allow; read it again",
                stock.etag()
            ))
            .with_header(header::ETAG, etag_value(stock)),
        None => err.with_detail(format!("SKU {sku} has no stock, which If-Match does not allow")),
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
    if pre.is_empty() {
        return Err(ApiError::new(StatusCode::PRECONDITION_REQUIRED)
            .with_type(PRECONDITION_REQUIRED, "Precondition required")
            .with_detail(format!(
                "send If-Match with the ETag of GET /v1/stock/{sku} to overwrite its stock, or If-None-Match: * to \
                 create it: others change the stock concurrently"
            )));
    }
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

/// Reserve stock for an order (admin/service token): every line or none.
///
/// Idempotent per `order_id`: repeating the request returns the same reservation with 200 (in
/// whatever state it is now); the same `order_id` with different lines is a 409.
#[utoipa::path(
    post, path = "/v1/reservations", tag = "reservations",
    request_body(content = ReservationRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This order's existing reservation (a repeated request)", body = Reservation),
        (status = 201, description = "Reserved", body = Reservation,
            headers(("Location" = String, description = "The reservation's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 409, description = "Insufficient stock (type `insufficient-stock`; `errors` names each short line \
            and its SKU), a line naming a SKU without stock (type `unknown-sku`), or the order id already has a \
            reservation with other lines (type `order-id-taken`)",
            body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn reserve(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(request): Json<ReservationRequest>,
) -> Result<Response, ApiError> {
    request.validate().map_err(ApiError::validation)?;
    let outcome = state.store.reserve(&request, OffsetDateTime::now_utc(), state.reservation_ttl).await?;
    match outcome {
        ReserveOutcome::Created(reservation) => {
            let location = format!("/v1/reservations/{}", reservation.id);
            Ok(with_location(StatusCode::CREATED, &location, reservation))
        }
        ReserveOutcome::Replayed(reservation) => Ok(Json(reservation).into_response()),
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

/// One reservation (admin/service token). One past its deadline shows as expired.
#[utoipa::path(
    get, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_reservation(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
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

/// Commit a reservation (admin/service token): its units leave on-hand for good.
///
/// Committing a committed reservation again returns it unchanged (200).
#[utoipa::path(
    post, path = "/v1/reservations/{id}/commit", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Committed", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Released or expired: nothing to commit", body = Problem, content_type = PROBLEM),
    )
)]
async fn commit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    let transition = state.store.transition(id, Action::Commit, &admin.id, OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "committed")
}

/// Release a reservation (admin/service token): its units are available again.
///
/// Releasing a released or expired reservation returns it unchanged (200).
#[utoipa::path(
    post, path = "/v1/reservations/{id}/release", tag = "reservations",
    params(("id" = Uuid, Path, description = "Reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Released (or already released/expired)", body = Reservation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such reservation", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Committed: its units are gone", body = Problem, content_type = PROBLEM),
    )
)]
async fn release(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    let transition =
        state.store.transition(id, Action::Release, &admin.id, OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "released")
}
