//! The orders API's types and the saga's states.

use kit::error::FieldError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Most lines in one order.
pub const MAX_LINES: usize = 50;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 1_000;
/// The largest order total, in minor units (10^12: ten billion in major units of a two-decimal
/// currency). Larger totals are refused with 422 `total-too-large` before anything is reserved.
pub const MAX_TOTAL: i64 = 1_000_000_000_000;

/// An amount of money: integer minor units and an ISO 4217 code (the catalog's shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units (`1999` = 19.99 EUR).
    #[schema(example = 1999)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// One line of `POST /v1/orders`: what and how many; the price comes from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The catalog product id (a UUID).
    pub product_id: String,
    /// Units, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// The body of `POST /v1/orders`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// 1 to 50 lines, each product at most once.
    pub lines: Vec<LineRequest>,
}

impl OrderRequest {
    /// Every problem with the request, by JSON pointer.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            errors.push(FieldError::new("#/lines", format!("1 to {MAX_LINES} lines")));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if uuid::Uuid::parse_str(&line.product_id).is_err() {
                errors
                    .push(FieldError::new(format!("#/lines/{i}/product_id"), "must be a product id (UUID)"));
            } else if self.lines[..i].iter().any(|l| l.product_id.eq_ignore_ascii_case(&line.product_id)) {
                errors.push(FieldError::new(
                    format!("#/lines/{i}/product_id"),
                    "this product is already on another line: one line per product",
                ));
            }
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                errors.push(FieldError::new(format!("#/lines/{i}/quantity"), format!("1 to {MAX_QUANTITY}")));
            }
        }
        errors
    }
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// The saga is running (or waits for the recovery worker).
    Pending,
    /// The saga failed or was cancelled; what was done is being undone.
    Compensating,
    /// Paid, stock committed. Terminal (until cancelled).
    Confirmed,
    /// Failed; nothing is reserved and nothing is charged (or it was refunded). Terminal.
    Failed,
    /// Cancelled; refunded when it had been paid. Terminal.
    Cancelled,
}

impl OrderStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Compensating => "compensating",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Compensating, Self::Confirmed, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether the saga is over.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed | Self::Cancelled)
    }
}

/// The saga step an order is at (the next one to run, or the one whose outcome is unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Check the customer's account with users.
    Account,
    /// Price every line from the catalog.
    Pricing,
    /// Reserve the stock with inventory.
    Reserving,
    /// Charge the total with payments.
    Charging,
    /// Commit the reservation.
    Committing,
    /// Nothing left to run.
    Done,
}

impl Step {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Pricing => "pricing",
            Self::Reserving => "reserving",
            Self::Charging => "charging",
            Self::Committing => "committing",
            Self::Done => "done",
        }
    }

    /// The step of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Account, Self::Pricing, Self::Reserving, Self::Charging, Self::Committing, Self::Done]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why an order failed (or, `cancelled`, why it is being undone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// users does not know the customer.
    UnknownAccount,
    /// The account is disabled or locked.
    AccountUnusable,
    /// A line names a product the catalog does not have.
    UnknownProduct,
    /// A line names an archived product.
    ProductArchived,
    /// The products are priced in different currencies.
    MixedCurrencies,
    /// The total exceeds [`MAX_TOTAL`].
    TotalTooLarge,
    /// A product has no stock record in inventory.
    UnknownSku,
    /// Not enough stock.
    InsufficientStock,
    /// The payment was declined.
    PaymentDeclined,
    /// The reservation expired before it was committed (the payment is refunded).
    ReservationExpired,
    /// A downstream service failed or was unreachable.
    DownstreamFailure,
    /// The saga stopped before charging and the recovery worker undid it.
    Abandoned,
    /// Cancelled by the customer or an admin.
    Cancelled,
}

impl FailureReason {
    const ALL: [Self; 13] = [
        Self::UnknownAccount,
        Self::AccountUnusable,
        Self::UnknownProduct,
        Self::ProductArchived,
        Self::MixedCurrencies,
        Self::TotalTooLarge,
        Self::UnknownSku,
        Self::InsufficientStock,
        Self::PaymentDeclined,
        Self::ReservationExpired,
        Self::DownstreamFailure,
        Self::Abandoned,
        Self::Cancelled,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownAccount => "unknown_account",
            Self::AccountUnusable => "account_unusable",
            Self::UnknownProduct => "unknown_product",
            Self::ProductArchived => "product_archived",
            Self::MixedCurrencies => "mixed_currencies",
            Self::TotalTooLarge => "total_too_large",
            Self::UnknownSku => "unknown_sku",
            Self::InsufficientStock => "insufficient_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::ReservationExpired => "reservation_expired",
            Self::DownstreamFailure => "downstream_failure",
            Self::Abandoned => "abandoned",
            Self::Cancelled => "cancelled",
        }
    }

    /// The reason of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether a retry of the same request could succeed: the order then gives up its
    /// Idempotency-Key, so the retry places a new order.
    pub const fn retryable(self) -> bool {
        matches!(self, Self::DownstreamFailure | Self::Abandoned)
    }
}

/// One line of an order, with its price snapshot once priced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderLine {
    /// The catalog product.
    pub product_id: String,
    /// Units.
    pub quantity: i64,
    /// The product's SKU when priced.
    pub sku: Option<String>,
    /// The product's name when priced.
    pub name: Option<String>,
    /// The unit price when priced (what the customer pays, whatever the catalog says later).
    pub unit_price: Option<Money>,
    /// `unit_price × quantity`.
    pub line_total: Option<Money>,
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Order {
    /// Identifier (a UUID).
    pub id: String,
    /// The customer's user id.
    pub customer_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// The saga step it is at.
    pub step: Step,
    /// Why it failed (or that it was cancelled).
    pub failure_reason: Option<FailureReason>,
    /// The lines, in request order.
    pub lines: Vec<OrderLine>,
    /// The total once priced.
    pub total: Option<Money>,
    /// inventory's reservation, once reserved.
    pub reservation_id: Option<String>,
    /// payments' payment, once captured.
    pub payment_id: Option<String>,
    /// payments' refund, once refunded.
    pub refund_id: Option<String>,
    /// When it was placed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A page of orders, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// The orders.
    pub items: Vec<Order>,
    /// Page size.
    pub limit: u32,
    /// Orders skipped.
    pub offset: u64,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<u64>,
}

/// The query of `GET /v1/orders`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Orders to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// Admins: only this customer's orders (customers always see only their own).
    pub customer_id: Option<String>,
}

/// The query of `GET /v1/orders/{id}/audit`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// A page of an order's audit trail, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub items: Vec<kit::audit::AuditEntry>,
    /// Page size.
    pub limit: u32,
    /// Entries skipped.
    pub offset: u64,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<u64>,
}

/// The data of the `order.confirmed`, `order.failed` and `order.cancelled` events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// The total (zero in no currency when the order failed before pricing).
    pub total: Option<Money>,
    /// `confirmed`, `failed` or `cancelled`.
    pub status: OrderStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
}

impl OrderEvent {
    /// The event data of `order`.
    pub fn of(order: &Order) -> Self {
        Self {
            order_id: order.id.clone(),
            user_id: order.customer_id.clone(),
            total: order.total.clone(),
            status: order.status,
            failure_reason: order.failure_reason.filter(|r| *r != FailureReason::Cancelled),
        }
    }
}
