//! The `/v1/stock` and `/v1/reservations` handlers.
//!
//! | outcome | status |
//! |---|---|
//! | SKU in the path malformed / reservation id not a UUID | 400 |
//! | SKU without a stock row (`GET`, adjustments) / unknown reservation | 404 |
//! | `on_hand` below what is reserved, or out of range after an adjustment | 409 |
//! | reservation: a line asks for more than is available | 409 `insufficient-stock`, `errors` per line |
//! | reservation: the `order_id` already has a reservation with other lines | 409 `order-id-taken` |
//! | reservation: a line names a SKU without a stock row | 422, `errors` per line |
//! | commit of a released/expired reservation, release of a committed one | 409 `reservation-state` |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kit::auth::AdminUser;
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{Json, Path};
use kit::openapi::{AuthErrors, NotAdmin};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::expiry::Sweeper;
use crate::model::{Adjustment, Reservation, ReservationRequest, SKU_RULE, SetStock, Stock, valid_sku};
use crate::store::{Action, ReserveOutcome, Store, Transition};

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
        .routes(routes!(reserve))
        .routes(routes!(get_reservation, release))
        .routes(routes!(commit))
}

const INSUFFICIENT_STOCK: &str = "https://palisade.dev/problems/insufficient-stock";
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

/// The stock of one SKU.
#[utoipa::path(
    get, path = "/v1/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The stock", body = Stock),
        (status = 400, description = "The SKU is malformed", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No stock for this SKU", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_stock(State(state): State<AppState>, Path(sku): Path<String>) -> Result<Json<Stock>, ApiError> {
    let sku = checked_sku(sku)?;
    state.store.stock(&sku).await?.map(Json).ok_or_else(|| no_stock(&sku))
}

/// Set a SKU's on-hand count (admin); creates the SKU's stock when absent.
#[utoipa::path(
    put, path = "/v1/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body(content = SetStock, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Stock),
        (status = 201, description = "Created", body = Stock,
            headers(("Location" = String, description = "The stock's URL"))),
        (status = 400, description = "The SKU is malformed or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 409, description = "Below what is currently reserved", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn set_stock(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(sku): Path<String>,
    Json(input): Json<SetStock>,
) -> Result<Response, ApiError> {
    let sku = checked_sku(sku)?;
    input.validate().map_err(ApiError::validation)?;
    let (stock, created) = state.store.set_stock(&sku, input.on_hand, OffsetDateTime::now_utc()).await?;
    Ok(if created {
        with_location(StatusCode::CREATED, &format!("/v1/stock/{sku}"), stock)
    } else {
        Json(stock).into_response()
    })
}

/// Add to or remove from a SKU's on-hand count (admin): a delivery, breakage, a recount.
#[utoipa::path(
    post, path = "/v1/stock/{sku}/adjustments", tag = "stock",
    params(("sku" = String, Path, description = "Stock keeping unit", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body(content = Adjustment, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock after the adjustment", body = Stock),
        (status = 400, description = "The SKU is malformed or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No stock for this SKU", body = Problem, content_type = PROBLEM),
        (status = 409, description = "On-hand would drop below what is reserved or exceed the maximum", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn adjust_stock(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(sku): Path<String>,
    Json(input): Json<Adjustment>,
) -> Result<Json<Stock>, ApiError> {
    let sku = checked_sku(sku)?;
    input.validate().map_err(ApiError::validation)?;
    let stock = state.store.adjust_stock(&sku, input.delta, OffsetDateTime::now_utc()).await?;
    stock.map(Json).ok_or_else(|| no_stock(&sku))
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
            and its SKU), or the order id already has a reservation with other lines (type `order-id-taken`)",
            body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields, or lines naming SKUs without stock", body = Problem, content_type = PROBLEM),
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
            Err(ApiError::validation(errors))
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
    _admin: AdminUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    let transition = state.store.transition(id, Action::Commit, OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "committed")
}

/// Release a reservation (admin/service token): its units are available again.
///
/// Releasing a released or expired reservation returns it unchanged (200).
#[utoipa::path(
    delete, path = "/v1/reservations/{id}", tag = "reservations",
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
    _admin: AdminUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    let transition = state.store.transition(id, Action::Release, OffsetDateTime::now_utc()).await?;
    transition_response(id, transition, "released")
}
