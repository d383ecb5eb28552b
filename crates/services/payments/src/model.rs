//! The payments service's types: what the API sends and receives, and their validation.
//!
//! Money is integer minor units of an active ISO 4217 currency (the catalog's `Money` shape); an
//! amount is 1 to [`MAX_AMOUNT`]. Ids given by callers (`order_id`, `customer_id`) are 1 to
//! [`MAX_ID_CHARS`] characters, not blank, nothing invisible ([`kit::text::check`]).

use kit::audit::AuditEntry;
use kit::error::FieldError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The largest amount of one payment or refund, in minor units (10 billion in major units of a
/// two-decimal currency).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Longest `order_id` and `customer_id`, in characters.
pub const MAX_ID_CHARS: usize = 100;

/// Whether `code` is an active ISO 4217 currency code with a minor unit (the catalog's rule: not
/// superseded, not a special code such as `XAU` or `XTS`; case-sensitive).
pub fn is_active_currency(code: &str) -> bool {
    iso_currency::Currency::from_code(code).is_some_and(|currency| {
        currency.is_superseded().is_none() && !currency.is_special() && currency.exponent().is_some()
    })
}

/// Every code [`is_active_currency`] accepts, sorted (the spec's `enum` of `currency`).
pub fn active_currencies() -> Vec<String> {
    let letters = b'A'..=b'Z';
    letters
        .clone()
        .flat_map(|a| letters.clone().flat_map(move |b| (b'A'..=b'Z').map(move |c| [a, b, c])))
        .filter_map(|code| String::from_utf8(code.to_vec()).ok())
        .filter(|code| is_active_currency(code))
        .collect()
}

/// An amount of money in integer minor units (cents) of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (`1999` = 19.99 EUR). In a request: 1 to 1,000,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64, example = 1999)]
    pub amount: i64,
    /// An active ISO 4217 code (`EUR`, `USD`, `JPY`, …).
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

impl Money {
    /// `amount` minor units of `currency`.
    pub fn new(amount: i64, currency: &str) -> Self {
        Self { amount, currency: currency.to_owned() }
    }

    /// Appends what is wrong with this amount of a request (at JSON pointer `at`) to `errors`.
    fn check(&self, at: &str, errors: &mut Vec<FieldError>) {
        if !(1..=MAX_AMOUNT).contains(&self.amount) {
            errors.push(FieldError::new(
                format!("{at}/amount"),
                format!("must be between 1 and {MAX_AMOUNT} (minor units)"),
            ));
        }
        if !is_active_currency(&self.currency) {
            errors.push(FieldError::new(
                format!("{at}/currency"),
                "must be an active ISO 4217 currency code, such as EUR or USD",
            ));
        }
    }
}

fn check_id(value: &str, at: &str, errors: &mut Vec<FieldError>) {
    if value.chars().count() > MAX_ID_CHARS || kit::text::check(value).is_err() {
        errors.push(FieldError::new(
            at,
            format!(
                "must be 1-{MAX_ID_CHARS} characters, not blank, without control or invisible characters"
            ),
        ));
    }
}

/// The body of `POST /v1/payments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// The order this payment is for (orders sends its order id).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "9b2f0c6e-order")]
    pub order_id: String,
    /// The customer charged (the user id).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "user-42")]
    pub customer_id: String,
    /// What to charge: more than zero.
    pub amount: Money,
}

impl ChargeRequest {
    /// Checks every field; one [`FieldError`] per problem.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_id(&self.order_id, "#/order_id", &mut errors);
        check_id(&self.customer_id, "#/customer_id", &mut errors);
        self.amount.check("#/amount", &mut errors);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// The provider captured the amount.
    Captured,
    /// The provider declined it; nothing was charged.
    Declined,
}

impl PaymentStatus {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Declined => "declined",
        }
    }

    /// The status of stored text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "captured" => Some(Self::Captured),
            "declined" => Some(Self::Declined),
            _ => None,
        }
    }
}

/// A payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    /// Identifier.
    pub id: Uuid,
    /// The order it is for.
    pub order_id: String,
    /// The customer charged.
    pub customer_id: String,
    /// `captured` or `declined`.
    pub status: PaymentStatus,
    /// The amount charged (or declined).
    pub amount: Money,
    /// The sum of its refunds, in the same currency (never more than `amount`).
    pub refunded: Money,
    /// Why the provider declined it (declined payments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /v1/payments?order_id=`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The order whose payments to list (required).
    #[param(min_length = 1, max_length = 100)]
    pub order_id: String,
}

/// The payments of an order, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentList {
    /// The payments.
    pub items: Vec<Payment>,
}

/// The body of `POST /v1/payments/{id}/refunds`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// What to give back: more than zero, in the payment's currency; with the earlier refunds at
    /// most the captured amount.
    pub amount: Money,
}

impl RefundRequest {
    /// Checks every field; one [`FieldError`] per problem.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        self.amount.check("#/amount", &mut errors);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// A refund of (part of) a captured payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    /// Identifier.
    pub id: Uuid,
    /// The payment refunded.
    pub payment_id: Uuid,
    /// The amount given back.
    pub amount: Money,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The data of the `payment.captured`, `payment.failed` and `payment.refunded` events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The payment.
    pub payment_id: Uuid,
    /// Its order.
    pub order_id: String,
    /// The customer (`customer_id`).
    pub user_id: String,
    /// The amount captured or declined; for a refund, the amount refunded.
    pub amount: Money,
    /// The refund (`payment.refunded` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<Uuid>,
    /// Why it was declined (`payment.failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
}

impl PaymentEvent {
    /// The event of `payment` (captured or declined).
    pub fn of(payment: &Payment) -> Self {
        Self {
            payment_id: payment.id,
            order_id: payment.order_id.clone(),
            user_id: payment.customer_id.clone(),
            amount: payment.amount.clone(),
            refund_id: None,
            decline_reason: payment.decline_reason.clone(),
        }
    }
}

/// `GET /v1/payments/{id}/audit`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// Only this action (`payment.capture`, `payment.decline`, `payment.refund`).
    pub action: Option<String>,
    /// Only this actor (an admin's id or `service:<name>`).
    pub actor: Option<String>,
}

/// One page of a payment's audit trail, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub items: Vec<AuditEntry>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The `offset` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_names_every_bad_field() {
        let request = ChargeRequest {
            order_id: " ".into(),
            customer_id: "c".repeat(101),
            amount: Money::new(0, "XTS"),
        };
        let pointers: Vec<String> = request.validate().unwrap_err().into_iter().map(|e| e.pointer).collect();
        assert_eq!(pointers, ["#/order_id", "#/customer_id", "#/amount/amount", "#/amount/currency"]);
        let ok =
            ChargeRequest { order_id: "o".into(), customer_id: "c".into(), amount: Money::new(1, "EUR") };
        assert!(ok.validate().is_ok());
        assert!(!is_active_currency("eur") && !is_active_currency("HRK") && is_active_currency("JPY"));
    }
}
