//! The calls the saga makes: what it sends and reads, and what a failed call means.

use kit::client::{ClientError, Downstream};
use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::model::Money;

/// What a failed call means for the order (see the [saga docs](super)).
pub(super) fn classify(downstream: &Downstream, err: &ClientError) -> Outcome {
    match err.status() {
        // A refusal answers this very request (same key, same order id): it stands, even after an
        // attempt that went unanswered.
        Some(status) if status.is_client_error() => {
            return Outcome::Refused(status, err.problem().unwrap_or_default());
        }
        // Any other failure after an unanswered attempt may hide that attempt's effect.
        _ if err.after_unanswered() => return Outcome::Unknown(downstream.api_error(err)),
        _ => {}
    }
    match err {
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
pub(super) fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
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

/// Account states that refuse orders, should users' account model have a `status`.
pub(super) const UNUSABLE: [&str; 4] = ["disabled", "locked", "suspended", "deleted"];

/// What orders reads of users' account: whether it may order (`disabled`/`locked` flags or a
/// `status`, whichever the model has; an account with none of them may).
#[derive(Deserialize)]
pub(super) struct Account {
    #[serde(default)]
    pub(super) disabled: bool,
    #[serde(default)]
    pub(super) locked: bool,
    #[serde(default)]
    pub(super) status: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Product {
    pub(super) sku: String,
    pub(super) name: String,
    pub(super) price: Money,
    #[serde(default)]
    pub(super) archived: bool,
}

#[derive(Serialize)]
pub(super) struct ReserveLine<'a> {
    pub(super) sku: &'a str,
    pub(super) quantity: i64,
}

#[derive(Serialize)]
pub(super) struct ReserveBody<'a> {
    pub(super) order_id: &'a str,
    pub(super) lines: Vec<ReserveLine<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Reservation {
    pub(super) id: String,
}

#[derive(Serialize)]
pub(super) struct ChargeBody<'a> {
    pub(super) order_id: &'a str,
    pub(super) customer_id: &'a str,
    pub(super) amount: &'a Money,
}

#[derive(Serialize)]
pub(super) struct RefundBody<'a> {
    pub(super) amount: &'a Money,
}

#[derive(Deserialize)]
pub(super) struct Payment {
    pub(super) id: String,
    pub(super) status: String,
}

#[derive(Deserialize)]
pub(super) struct Refund {
    pub(super) id: String,
}

#[derive(Deserialize)]
pub(super) struct Items<T> {
    pub(super) items: Vec<T>,
}

/// The charge's Idempotency-Key.
pub fn charge_key(order_id: &str) -> String {
    format!("order-{order_id}-charge")
}

/// The refund's Idempotency-Key.
pub fn refund_key(order_id: &str) -> String {
    format!("order-{order_id}-refund")
}
