//! The problems a failed order answers.

use http::StatusCode;
use kit::error::ApiError;

use crate::model::{FailureReason, MAX_TOTAL};

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
