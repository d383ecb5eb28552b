//! The checkout saga: account → price → reserve → charge → commit → confirmed, each step committed
//! ([`Store::advance`]) before the next begins, and its compensation (refund, release).
//!
//! A failed call is classified: a refusal (4xx) or a failure that certainly did
//! nothing (5xx — the callees answer 5xx only when their transaction did not commit —, an open
//! breaker, a refused connection) fails the order and undoes what was done; a call whose effect is
//! unknown (a timeout, a connection lost after sending) leaves the order where it is, for a retry
//! of the same request or for the [recovery worker](crate::recovery), which repeats the call:
//! every call is idempotent (reservations per order id, charges and refunds per
//! `order-<id>-charge`/`-refund` key), so the repeat tells the truth.
//!
//! The recovery worker drives an order stuck at `charging` or `committing` forward (its money may
//! be taken); one stuck before charging is undone (`abandoned`).

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use kit::client::{ClientError, Downstream, RemoteProblem};
use kit::error::{ApiError, FieldError, PROBLEM_JSON};
use kit::idempotency::Claim;
use kit::outbox::Event;
use palisade::trace::TraceContext;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{FailureReason, MAX_TOTAL, Money, Order, OrderEvent, OrderStatus, Step};
use crate::store::{Answer, Change, Priced, PricedLine, Stage, Store};

/// The four downstreams and the store: everything a step needs.
#[derive(Clone, Debug)]
pub struct Saga {
    /// Orders.
    pub store: Arc<dyn Store>,
    /// users (`users:read`).
    pub users: Downstream,
    /// catalog (public).
    pub catalog: Downstream,
    /// inventory (`inventory:reserve`).
    pub inventory: Downstream,
    /// payments (`payments:charge payments:refund payments:read`).
    pub payments: Downstream,
    /// How long a driver holds an order.
    pub lease: Duration,
}

/// Who drives an order, and for which request.
#[derive(Clone, Debug)]
pub struct Driver {
    /// The audit actor (the customer's id, or `orders-recovery`).
    pub actor: String,
    /// The placing request's key: its answer is stored with the final change.
    pub claim: Option<Claim>,
}

/// How a drive ended.
#[derive(Debug)]
pub enum Driven {
    /// Terminal, and the placing request's answer was stored with the last change.
    Answered(Response),
    /// Terminal (or left for recovery after a compensation call failed): the order as it is.
    Order(Order),
}

/// What a step decided.
enum Next {
    /// Go on with this change.
    Change(Change),
    /// Fail the order for `reason`, answering `error` once it is undone.
    Fail(FailureReason, ApiError),
    /// The step's outcome is unknown: leave the order, answer the error.
    Unknown(ApiError),
}

/// How a failed call ended.
enum Outcome {
    /// The callee refused (4xx) with this problem.
    Refused(StatusCode, RemoteProblem),
    /// Certainly nothing happened there.
    NotDone(ApiError),
    /// It may have happened.
    Unknown(ApiError),
}

fn classify(downstream: &Downstream, err: &ClientError) -> Outcome {
    match err {
        ClientError::Status(status, _) if status.is_client_error() => {
            Outcome::Refused(*status, err.problem().unwrap_or_default())
        }
        ClientError::Status(..) => Outcome::NotDone(downstream.api_error(err)),
        _ if err.circuit_open().is_some() => Outcome::NotDone(downstream.api_error(err)),
        _ if err.timed_out() => Outcome::Unknown(downstream.api_error(err)),
        ClientError::Call(cause) if never_connected(cause.as_ref()) => {
            Outcome::NotDone(downstream.api_error(err))
        }
        _ => Outcome::Unknown(downstream.api_error(err)),
    }
}

/// Whether the request never left: the connection was refused or could not be made.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

fn refusal(
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: impl Into<String>,
) -> ApiError {
    ApiError::new(status).with_type(kind, title).with_detail(detail)
}

macro_rules! problem {
    ($status:expr, $kind:literal, $title:literal, $detail:expr) => {
        refusal($status, concat!("https://palisade.dev/problems/", $kind), $title, $detail)
    };
}

/// The answer of a failed order, when no richer one was made at the time (a replay after a crash).
pub fn failure_error(reason: FailureReason) -> ApiError {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match reason {
        FailureReason::UnknownAccount => {
            problem!(
                unprocessable,
                "unknown-account",
                "Unknown account",
                "the customer's account does not exist"
            )
        }
        FailureReason::AccountUnusable => {
            problem!(
                unprocessable,
                "account-unusable",
                "Account unusable",
                "the customer's account is disabled"
            )
        }
        FailureReason::UnknownProduct => {
            problem!(unprocessable, "unknown-product", "Unknown product", "a line names an unknown product")
        }
        FailureReason::ProductArchived => {
            problem!(
                unprocessable,
                "product-archived",
                "Product archived",
                "a line names an archived product"
            )
        }
        FailureReason::MixedCurrencies => problem!(
            unprocessable,
            "mixed-currencies",
            "Mixed currencies",
            "the products are priced in different currencies: order them separately"
        ),
        FailureReason::TotalTooLarge => problem!(
            unprocessable,
            "total-too-large",
            "Total too large",
            format!("the total exceeds {MAX_TOTAL} minor units")
        ),
        FailureReason::UnknownSku => {
            problem!(unprocessable, "unknown-sku", "No stock for product", "a product has no stock")
        }
        FailureReason::InsufficientStock => problem!(
            StatusCode::CONFLICT,
            "insufficient-stock",
            "Insufficient stock",
            "not enough stock; nothing was reserved or charged"
        ),
        FailureReason::PaymentDeclined => problem!(
            StatusCode::PAYMENT_REQUIRED,
            "payment-declined",
            "Payment declined",
            "the payment was declined; the stock was released"
        ),
        FailureReason::ReservationExpired => problem!(
            StatusCode::CONFLICT,
            "reservation-expired",
            "Reservation expired",
            "the stock reservation expired before the order completed; the payment was refunded"
        ),
        FailureReason::Cancelled => {
            problem!(StatusCode::CONFLICT, "order-cancelled", "Order cancelled", "the order was cancelled")
        }
        FailureReason::DownstreamFailure | FailureReason::Abandoned => ApiError::new(StatusCode::BAD_GATEWAY)
            .with_type("https://palisade.dev/problems/downstream-error", "Downstream error")
            .with_detail("the order could not be completed; nothing is reserved or charged; place it again"),
    }
}

/// Account states that refuse orders, should users' account model have a `status`.
const UNUSABLE: [&str; 4] = ["disabled", "locked", "suspended", "deleted"];

/// What orders reads of users' account: whether it may order (`disabled`/`locked` flags or a
/// `status`, whichever the model has; an account with none of them may).
#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Product {
    sku: String,
    name: String,
    price: Money,
    #[serde(default)]
    archived: bool,
}

#[derive(Serialize)]
struct ReserveLine<'a> {
    sku: &'a str,
    quantity: i64,
}

#[derive(Serialize)]
struct ReserveBody<'a> {
    order_id: &'a str,
    lines: Vec<ReserveLine<'a>>,
}

#[derive(Deserialize)]
struct Reservation {
    id: String,
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    order_id: &'a str,
    customer_id: &'a str,
    amount: &'a Money,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    amount: &'a Money,
}

#[derive(Deserialize)]
struct Payment {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct Refund {
    id: String,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

/// The charge's Idempotency-Key.
pub fn charge_key(order_id: &str) -> String {
    format!("order-{order_id}-charge")
}

/// The refund's Idempotency-Key.
pub fn refund_key(order_id: &str) -> String {
    format!("order-{order_id}-refund")
}

fn busy() -> ApiError {
    ApiError::unavailable(Duration::from_secs(1), "the order is being processed; retry shortly")
        .with_type("https://palisade.dev/problems/order-in-progress", "Order in progress")
}

impl Saga {
    /// Runs `order` forward from its step to a terminal state (or until a step's outcome is unknown).
    pub async fn drive(&self, mut order: Order, driver: &Driver) -> Result<Driven, ApiError> {
        let mut failure: Option<ApiError> = None;
        loop {
            if order.status.is_terminal() {
                return Ok(Driven::Order(order));
            }
            let next = match (order.status, order.step) {
                (OrderStatus::Compensating, _) => return self.compensate(order, driver, failure).await,
                (_, Step::Account) => self.check_account(&order).await,
                (_, Step::Pricing) => self.price(&order).await,
                (_, Step::Reserving) => self.reserve(&order).await,
                (_, Step::Charging) => self.charge(&order).await,
                (_, Step::Committing | Step::Done) => self.commit(&order).await,
            };
            let change = match next {
                Next::Change(change) => change,
                Next::Fail(reason, error) => {
                    failure = Some(error);
                    Change {
                        failure_reason: Some(reason),
                        clear_key: reason.retryable(),
                        ..Change::to(OrderStatus::Compensating, order.step)
                    }
                }
                Next::Unknown(error) => return Err(error),
            };
            if change.status == OrderStatus::Confirmed {
                return self.finish(&order, change, driver, None).await;
            }
            order = self.advance(&order, &change, driver).await?;
        }
    }

    /// What the recovery worker does with a stuck order: one stopped before charging is undone
    /// (`abandoned`: no money was asked for); the others are driven on (their money may be taken).
    pub async fn recover(&self, order: Order, driver: &Driver) -> Result<Driven, ApiError> {
        let order = match (order.status, order.step) {
            (OrderStatus::Pending, Step::Account | Step::Pricing | Step::Reserving) => {
                let change = Change {
                    failure_reason: Some(FailureReason::Abandoned),
                    clear_key: true,
                    ..Change::to(OrderStatus::Compensating, order.step)
                };
                self.advance(&order, &change, driver).await?
            }
            _ => order,
        };
        self.drive(order, driver).await
    }

    /// Starts undoing a pending or confirmed order for its customer or an admin (the caller holds
    /// its lease, or it is terminal); then drives the compensation.
    pub async fn cancel(&self, order: Order, driver: &Driver) -> Result<Driven, ApiError> {
        let change = Change {
            failure_reason: Some(FailureReason::Cancelled),
            ..Change::to(OrderStatus::Compensating, order.step)
        };
        let order = self.advance(&order, &change, driver).await?;
        self.drive(order, driver).await
    }

    async fn advance(&self, order: &Order, change: &Change, driver: &Driver) -> Result<Order, ApiError> {
        let now = OffsetDateTime::now_utc();
        let done =
            self.store.advance(&order.id, Stage::of(order), change, &driver.actor, None, None, now).await?;
        done.map(|(order, _)| order).ok_or_else(busy)
    }

    /// The terminal change, with its event and (for the placing request) its answer.
    async fn finish(
        &self,
        order: &Order,
        change: Change,
        driver: &Driver,
        failure: Option<&ApiError>,
    ) -> Result<Driven, ApiError> {
        let mut data = OrderEvent::of(order);
        data.status = change.status;
        data.failure_reason =
            change.failure_reason.or(order.failure_reason).filter(|r| *r != FailureReason::Cancelled);
        let event = Event::new(&format!("order.{}", change.status.as_str()), &order.id, &data)
            .map_err(ApiError::internal)?;
        let answer = driver.claim.as_ref().and_then(|claim| match failure {
            None => Some(Answer {
                claim,
                status: StatusCode::CREATED,
                body: None,
                headers: location(&order.id).into_iter().collect(),
            }),
            Some(err) if err.status().is_client_error() => Some(problem_answer(claim, err)),
            Some(_) => None,
        });
        let now = OffsetDateTime::now_utc();
        let done = self
            .store
            .advance(&order.id, Stage::of(order), &change, &driver.actor, Some(&event), answer, now)
            .await?;
        match done {
            Some((_, Some(response))) => Ok(Driven::Answered(response)),
            Some((order, None)) => match failure {
                Some(err) if driver.claim.is_some() => Err(err.clone()),
                _ => Ok(Driven::Order(order)),
            },
            None => Err(busy()),
        }
    }

    async fn check_account(&self, order: &Order) -> Next {
        let path = format!("/v1/users/{}", order.customer_id);
        match self.users.get_json::<Account>(&path).await {
            Ok(account) => {
                let unusable = account.disabled
                    || account.locked
                    || account.status.as_deref().is_some_and(|s| UNUSABLE.contains(&s));
                if unusable {
                    Next::Fail(FailureReason::AccountUnusable, failure_error(FailureReason::AccountUnusable))
                } else {
                    Next::Change(Change::to(OrderStatus::Pending, Step::Pricing))
                }
            }
            Err(err) => match classify(&self.users, &err) {
                Outcome::Refused(StatusCode::NOT_FOUND, _) => {
                    Next::Fail(FailureReason::UnknownAccount, failure_error(FailureReason::UnknownAccount))
                }
                // Reading changes nothing: any failure fails the order, with nothing to undo.
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.users.api_error(&err))
                }
                Outcome::NotDone(e) | Outcome::Unknown(e) => Next::Fail(FailureReason::DownstreamFailure, e),
            },
        }
    }

    async fn price(&self, order: &Order) -> Next {
        let mut lines = Vec::with_capacity(order.lines.len());
        let mut currency: Option<String> = None;
        let mut total: i64 = 0;
        for (i, line) in order.lines.iter().enumerate() {
            let product =
                match self.catalog.get_json::<Product>(&format!("/v1/products/{}", line.product_id)).await {
                    Ok(product) => product,
                    Err(err) => {
                        return match classify(&self.catalog, &err) {
                            Outcome::Refused(StatusCode::NOT_FOUND, _) => Next::Fail(
                                FailureReason::UnknownProduct,
                                failure_error(FailureReason::UnknownProduct)
                                    .with_detail(format!("line {i}: no product {}", line.product_id))
                                    .with_errors(vec![FieldError::new(
                                        format!("#/lines/{i}/product_id"),
                                        format!("no product {}", line.product_id),
                                    )]),
                            ),
                            Outcome::Refused(..) => {
                                Next::Fail(FailureReason::DownstreamFailure, self.catalog.api_error(&err))
                            }
                            Outcome::NotDone(e) | Outcome::Unknown(e) => {
                                Next::Fail(FailureReason::DownstreamFailure, e)
                            }
                        };
                    }
                };
            if product.archived {
                return Next::Fail(
                    FailureReason::ProductArchived,
                    failure_error(FailureReason::ProductArchived)
                        .with_detail(format!("line {i}: product {} is archived", line.product_id))
                        .with_errors(vec![FieldError::new(format!("#/lines/{i}/product_id"), "archived")]),
                );
            }
            match &currency {
                Some(c) if *c != product.price.currency => {
                    return Next::Fail(
                        FailureReason::MixedCurrencies,
                        failure_error(FailureReason::MixedCurrencies).with_errors(vec![FieldError::new(
                            format!("#/lines/{i}/product_id"),
                            format!("priced in {}, the order so far in {c}", product.price.currency),
                        )]),
                    );
                }
                Some(_) => {}
                None => currency = Some(product.price.currency.clone()),
            }
            let line_amount = product.price.amount.checked_mul(line.quantity).filter(|a| *a >= 0);
            let sum = line_amount.and_then(|a| total.checked_add(a)).filter(|t| *t <= MAX_TOTAL);
            let (Some(line_amount), Some(sum)) = (line_amount, sum) else {
                return Next::Fail(FailureReason::TotalTooLarge, failure_error(FailureReason::TotalTooLarge));
            };
            total = sum;
            lines.push(PricedLine {
                sku: product.sku,
                name: product.name,
                unit_amount: product.price.amount,
                line_amount,
            });
        }
        let Some(currency) = currency else {
            return Next::Fail(FailureReason::UnknownProduct, failure_error(FailureReason::UnknownProduct));
        };
        Next::Change(Change {
            priced: Some(Priced { lines, total: Money { amount: total, currency } }),
            ..Change::to(OrderStatus::Pending, Step::Reserving)
        })
    }

    /// Reserves (idempotent per order id): a new reservation, or the one a previous attempt made.
    async fn reserve_call(&self, order: &Order) -> Result<Reservation, ClientError> {
        let lines = order
            .lines
            .iter()
            .map(|l| ReserveLine { sku: l.sku.as_deref().unwrap_or_default(), quantity: l.quantity })
            .collect();
        let body = ReserveBody { order_id: &order.id, lines };
        self.inventory.send(Method::POST, "/v1/reservations", Some(&body), &[]).await
    }

    async fn reserve(&self, order: &Order) -> Next {
        match self.reserve_call(order).await {
            Ok(reservation) => Next::Change(Change {
                reservation_id: Some(reservation.id),
                ..Change::to(OrderStatus::Pending, Step::Charging)
            }),
            Err(err) => match classify(&self.inventory, &err) {
                Outcome::Refused(_, problem) if problem.is("insufficient-stock") => {
                    let errors = problem
                        .errors
                        .iter()
                        .map(|e| FieldError::new(e.pointer.clone(), e.detail.clone()))
                        .collect();
                    Next::Fail(
                        FailureReason::InsufficientStock,
                        failure_error(FailureReason::InsufficientStock).with_errors(errors),
                    )
                }
                Outcome::Refused(_, problem) if problem.is("unknown-sku") => {
                    Next::Fail(FailureReason::UnknownSku, failure_error(FailureReason::UnknownSku))
                }
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.inventory.api_error(&err))
                }
                Outcome::NotDone(e) => Next::Fail(FailureReason::DownstreamFailure, e),
                Outcome::Unknown(e) => Next::Unknown(e),
            },
        }
    }

    async fn charge(&self, order: &Order) -> Next {
        let Some(amount) = &order.total else {
            return Next::Fail(
                FailureReason::DownstreamFailure,
                ApiError::internal("an order at charging has no total"),
            );
        };
        let body = ChargeBody { order_id: &order.id, customer_id: &order.customer_id, amount };
        let key = charge_key(&order.id);
        let charged: Result<Payment, _> =
            self.payments.send(Method::POST, "/v1/payments", Some(&body), &[("idempotency-key", &key)]).await;
        match charged {
            Ok(payment) if payment.status == "captured" => Next::Change(Change {
                payment_id: Some(payment.id),
                ..Change::to(OrderStatus::Pending, Step::Committing)
            }),
            Ok(_) => {
                Next::Fail(FailureReason::PaymentDeclined, failure_error(FailureReason::PaymentDeclined))
            }
            Err(err) => match classify(&self.payments, &err) {
                Outcome::Refused(StatusCode::PAYMENT_REQUIRED, problem) => {
                    let mut error = failure_error(FailureReason::PaymentDeclined);
                    if let Some(detail) = problem.detail {
                        error = error.with_detail(format!("{detail}; the stock was released"));
                    }
                    Next::Fail(FailureReason::PaymentDeclined, error)
                }
                // Another attempt with this key is running there: its outcome is not known yet.
                Outcome::Refused(StatusCode::CONFLICT, problem)
                    if problem.is("idempotency-key-in-flight") =>
                {
                    Next::Unknown(busy())
                }
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.payments.api_error(&err))
                }
                Outcome::NotDone(e) => Next::Fail(FailureReason::DownstreamFailure, e),
                Outcome::Unknown(e) => Next::Unknown(e),
            },
        }
    }

    async fn commit(&self, order: &Order) -> Next {
        let Some(reservation) = &order.reservation_id else {
            return Next::Fail(
                FailureReason::DownstreamFailure,
                ApiError::internal("no reservation to commit"),
            );
        };
        let path = format!("/v1/reservations/{reservation}/commit");
        match self.inventory.send::<(), Reservation>(Method::POST, &path, None, &[]).await {
            Ok(_) => Next::Change(Change::to(OrderStatus::Confirmed, Step::Done)),
            Err(err) => match classify(&self.inventory, &err) {
                // Expired or released meanwhile: the stock is gone; the payment is refunded.
                Outcome::Refused(StatusCode::CONFLICT, _) => Next::Fail(
                    FailureReason::ReservationExpired,
                    failure_error(FailureReason::ReservationExpired),
                ),
                // Paid: never give up on committing; the recovery worker repeats it.
                Outcome::Refused(..) | Outcome::NotDone(_) | Outcome::Unknown(_) => {
                    Next::Unknown(self.inventory.api_error(&err))
                }
            },
        }
    }

    /// Undoes what the order did (refund, release), then ends it `failed` or `cancelled`.
    async fn compensate(
        &self,
        mut order: Order,
        driver: &Driver,
        failure: Option<ApiError>,
    ) -> Result<Driven, ApiError> {
        let reason = order.failure_reason.unwrap_or(FailureReason::Abandoned);
        // Only an abandoned or cancelled order can stand at a step whose call has no known outcome.
        let unknown_outcome = matches!(reason, FailureReason::Abandoned | FailureReason::Cancelled);
        let fail = |e: ApiError| failure.clone().unwrap_or(e);
        // Cancelled while a charge's answer was lost: payments knows whether it captured. (A
        // charge that failed to an answer, or certainly did nothing, left nothing to look up.)
        if unknown_outcome && order.payment_id.is_none() && order.step == Step::Charging {
            let path = format!("/v1/payments?order_id={}", order.id);
            let payments: Items<Payment> =
                self.payments.get_json(&path).await.map_err(|e| fail(self.payments.api_error(&e)))?;
            if let Some(captured) = payments.items.into_iter().find(|p| p.status == "captured") {
                let change = Change { payment_id: Some(captured.id), ..Change::to(order.status, order.step) };
                order = self.advance(&order, &change, driver).await?;
            }
        }
        if let (Some(payment), None, Some(amount)) = (&order.payment_id, &order.refund_id, &order.total) {
            let path = format!("/v1/payments/{payment}/refunds");
            let key = refund_key(&order.id);
            let refund: Refund = self
                .payments
                .send(Method::POST, &path, Some(&RefundBody { amount }), &[("idempotency-key", &key)])
                .await
                .map_err(|e| fail(self.payments.api_error(&e)))?;
            let change = Change { refund_id: Some(refund.id), ..Change::to(order.status, order.step) };
            order = self.advance(&order, &change, driver).await?;
        }
        let reservation = match &order.reservation_id {
            Some(id) => Some(id.clone()),
            // Undoing a reservation whose answer was lost: asking again (idempotent per order id)
            // finds it. (A reservation refused or certainly not made left nothing to find.)
            None if order.step == Step::Reserving && unknown_outcome => match self.reserve_call(&order).await
            {
                Ok(reservation) => Some(reservation.id),
                Err(err) => match classify(&self.inventory, &err) {
                    Outcome::Refused(..) => None,
                    Outcome::NotDone(e) | Outcome::Unknown(e) => return Err(fail(e)),
                },
            },
            None => None,
        };
        if let Some(id) = reservation {
            let path = format!("/v1/reservations/{id}/release");
            match self.inventory.send::<(), Reservation>(Method::POST, &path, None, &[]).await {
                // Committed (a cancelled confirmed order: restocking is an admin adjustment) or gone.
                Ok(_) | Err(ClientError::Status(StatusCode::CONFLICT | StatusCode::NOT_FOUND, _)) => {}
                Err(err) => return Err(fail(self.inventory.api_error(&err))),
            }
        }
        let status =
            if reason == FailureReason::Cancelled { OrderStatus::Cancelled } else { OrderStatus::Failed };
        let change = Change::to(status, order.step);
        self.finish(&order, change, driver, failure.as_ref()).await
    }
}

fn location(id: &str) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::from_str(&format!("/v1/orders/{id}")).ok().map(|v| (header::LOCATION, v))
}

/// A 4xx problem stored as the placing request's answer: the document as the kit would send it.
fn problem_answer<'a>(claim: &'a Claim, err: &ApiError) -> Answer<'a> {
    let mut problem = err.problem().clone();
    problem.instance = Some("/v1/orders".to_owned());
    problem.trace_id = TraceContext::current_trace_id().map(|id| id.to_string());
    Answer {
        claim,
        status: err.status(),
        body: serde_json::to_value(&problem).ok(),
        headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
    }
}

/// The answer for a terminal order found by its key (the first answer was lost).
pub fn answer_for(order: &Order) -> Response {
    match (order.status, order.failure_reason) {
        (OrderStatus::Failed, Some(reason)) => failure_error(reason).into_response(),
        (OrderStatus::Pending | OrderStatus::Compensating, _) => busy().into_response(),
        _ => {
            let mut res = (StatusCode::CREATED, axum::Json(order)).into_response();
            if let Some((name, value)) = location(&order.id) {
                res.headers_mut().insert(name, value);
            }
            res
        }
    }
}
