//! The checkout saga: account → price → reserve → charge → commit → confirmed, each step committed
//! ([`Store::advance`]) before the next begins, and its compensation (refund, release).
//!
//! A failed call is classified: a refusal (4xx) or a failure that certainly did
//! nothing (5xx — the callees answer 5xx only when their transaction did not commit —, an open
//! breaker, a refused connection) fails the order and undoes what was done — unless an earlier
//! attempt of the same call went unanswered ([`ClientError::AfterUnanswered`](kit::client::ClientError::AfterUnanswered): the client stack
//! retries inside one call, and that attempt may have been acted on); a call whose effect is
//! unknown (a timeout, a connection lost after sending) leaves the order where it is, for a retry
//! of the same request or for the [recovery worker](crate::recovery), which repeats the call:
//! every call is idempotent (reservations per order id, charges and refunds per
//! `order-<id>-charge`/`-refund` key), so the repeat tells the truth.
//!
//! The recovery worker drives an order stuck at `charging` or `committing` forward (its money may
//! be taken); one stuck before charging is undone (`abandoned`).

mod calls;
mod compensate;
mod errors;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use kit::client::{Downstream, RemoteProblem};
use kit::error::{ApiError, PROBLEM_JSON};
use kit::idempotency::Claim;
use kit::outbox::Event;
use palisade::trace::TraceContext;
use time::OffsetDateTime;

use crate::model::{FailureReason, Order, OrderEvent, OrderStatus, Step};
use crate::store::{Answer, Change, Stage, Store};

pub use self::calls::{charge_key, refund_key};
pub use self::errors::failure_error;

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
    /// (`abandoned`: no money was asked for). One stopped while charging (a crash, or the placing
    /// request's deadline passed: its customer was told 504) is never charged anew: by now its
    /// lease has outlived payments' own request timeout, so no charge for it is still running, and
    /// payments says whether one was captured — then the order carries on (commit, confirm), else it
    /// is undone. The others are driven on.
    pub async fn recover(&self, order: Order, driver: &Driver) -> Result<Driven, ApiError> {
        let order = match (order.status, order.step) {
            (OrderStatus::Pending, Step::Charging) if order.payment_id.is_none() => {
                let change = match self.captured(&order).await? {
                    Some(payment) => Change {
                        payment_id: Some(payment),
                        ..Change::to(OrderStatus::Pending, Step::Committing)
                    },
                    None => Change {
                        failure_reason: Some(FailureReason::Abandoned),
                        clear_key: true,
                        ..Change::to(OrderStatus::Compensating, order.step)
                    },
                };
                self.advance(&order, &change, driver).await?
            }
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
