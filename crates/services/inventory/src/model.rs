//! The inventory's types: what the API sends and receives, and their validation.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use kit::error::FieldError;

/// Largest `on_hand` a SKU may have.
pub const MAX_ON_HAND: i64 = 1_000_000_000;
/// Largest quantity of one reservation line.
pub const MAX_LINE_QUANTITY: i64 = 1_000_000;
/// Most lines in one reservation.
pub const MAX_LINES: usize = 100;

/// Whether `sku` is 1–64 characters of `A-Z a-z 0-9 - _ .` (the catalog's rule).
pub fn valid_sku(sku: &str) -> bool {
    (1..=64).contains(&sku.len()) && sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What is wrong with an invalid SKU.
pub const SKU_RULE: &str = "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'";

/// The stock of one SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stock {
    /// Stock keeping unit.
    #[schema(example = "MUG-001")]
    pub sku: String,
    /// Units in the warehouse (reserved ones included).
    #[schema(minimum = 0, example = 10)]
    pub on_hand: i64,
    /// Units held by pending reservations.
    #[schema(minimum = 0, example = 3)]
    pub reserved: i64,
    /// `on_hand - reserved`: what can still be reserved.
    #[schema(minimum = 0, example = 7)]
    pub available: i64,
    /// Bumped by every change of the row (reservations included); sent as the strong `ETag`, not
    /// in the body.
    #[serde(skip)]
    #[schema(ignore)]
    pub version: i64,
}

impl Stock {
    /// A stock row at `version`; `available` is derived.
    pub const fn new(sku: String, on_hand: i64, reserved: i64, version: i64) -> Self {
        Self { sku, on_hand, reserved, available: on_hand - reserved, version }
    }

    /// The strong `ETag` of this version: `"<version>"`.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// Why `on_hand` changed (a ledger row's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LedgerReason {
    /// `on_hand` as it was when the ledger was introduced (migration).
    Baseline,
    /// `PUT /v1/stock/{sku}`.
    Set,
    /// `POST /v1/stock/{sku}/adjustments`.
    Adjustment,
    /// A reservation was committed: its units left.
    Commit,
}

impl LedgerReason {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Set => "set",
            Self::Adjustment => "adjustment",
            Self::Commit => "commit",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Baseline, Self::Set, Self::Adjustment, Self::Commit].into_iter().find(|v| v.as_str() == s)
    }
}

/// One change of a SKU's `on_hand`, written in the transaction that made it. The sum of a SKU's
/// `delta`s is its `on_hand`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerEntry {
    /// The SKU.
    #[schema(example = "MUG-001")]
    pub sku: String,
    /// Units added (positive) or removed (negative); 0 for a set to the same count.
    #[schema(example = -2)]
    pub delta: i64,
    /// `on_hand` right after the change.
    #[schema(minimum = 0, example = 8)]
    pub on_hand_after: i64,
    /// What changed it.
    pub reason: LedgerReason,
    /// Who: the subject (`sub`) of the admin token that made the request, or `service:<name>`
    /// for a service token (a commit by orders: `service:orders`).
    #[schema(example = "6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11")]
    pub actor: String,
    /// The committed reservation (reason `commit` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A page of a SKU's ledger, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerPage {
    /// The entries, oldest first.
    pub items: Vec<LedgerEntry>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The `offset` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// The query of `GET /v1/stock/{sku}/ledger`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// The body of `PUT /v1/stock/{sku}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// The new on-hand count: 0–1,000,000,000 and at least what is reserved.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 10)]
    pub on_hand: i64,
}

impl SetStock {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        if (0..=MAX_ON_HAND).contains(&self.on_hand) {
            Ok(())
        } else {
            Err(vec![FieldError::new("#/on_hand", format!("must be between 0 and {MAX_ON_HAND}"))])
        }
    }
}

/// The body of `POST /v1/stock/{sku}/adjustments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Units to add (positive: a delivery) or remove (negative: breakage, a count); non-zero,
    /// within ±1,000,000,000. The result must stay between what is reserved and 1,000,000,000.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000, example = -2)]
    pub delta: i64,
}

/// "Non-zero", which utoipa cannot derive: `not: {const: 0}` on `Adjustment.delta`.
pub fn forbid_zero_delta(doc: &mut utoipa::openapi::OpenApi) {
    if let Some(delta) = kit::openapi::object_mut(doc, "Adjustment", Some("delta")) {
        kit::openapi::add_keyword(delta, "not", serde_json::json!({ "const": 0 }));
    }
}

impl Adjustment {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        if self.delta != 0 && self.delta.abs() <= MAX_ON_HAND {
            Ok(())
        } else {
            Err(vec![FieldError::new("#/delta", format!("must be non-zero and within ±{MAX_ON_HAND}"))])
        }
    }
}

/// One line of a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationLine {
    /// The SKU (must have stock: see `PUT /v1/stock/{sku}`).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "MUG-001")]
    pub sku: String,
    /// Units, 1–1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000, example = 2)]
    pub quantity: i64,
}

/// Whether `order_id` is 1–100 characters of `A-Z a-z 0-9 - _ . :`.
fn valid_order_id(order_id: &str) -> bool {
    (1..=100).contains(&order_id.len())
        && order_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

const ORDER_ID_RULE: &str = "must be 1-100 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'";

/// The body of `POST /v1/reservations`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// The caller's order id: the idempotency key. 1–100 characters of `A-Z a-z 0-9 - _ . :`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,100}$", example = "order-6f1c1d0e")]
    pub order_id: String,
    /// 1–100 lines, each SKU at most once.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<ReservationLine>,
}

impl ReservationRequest {
    /// Checks every field; one [`FieldError`] per problem.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if !valid_order_id(&self.order_id) {
            errors.push(FieldError::new("#/order_id", ORDER_ID_RULE));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            errors.push(FieldError::new("#/lines", format!("must have 1-{MAX_LINES} lines")));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if !valid_sku(&line.sku) {
                errors.push(FieldError::new(format!("#/lines/{i}/sku"), SKU_RULE));
            } else if self.lines[..i].iter().any(|earlier| earlier.sku == line.sku) {
                errors.push(FieldError::new(format!("#/lines/{i}/sku"), "appears on an earlier line"));
            }
            if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
                errors.push(FieldError::new(
                    format!("#/lines/{i}/quantity"),
                    format!("must be between 1 and {MAX_LINE_QUANTITY}"),
                ));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    /// Holding stock until committed, released or expired.
    Reserved,
    /// The units left the warehouse for good (final).
    Committed,
    /// Given back by the caller (final).
    Released,
    /// Given back because it was not committed in time (final).
    Expired,
}

impl ReservationStatus {
    /// The database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Reserved, Self::Committed, Self::Released, Self::Expired].into_iter().find(|v| v.as_str() == s)
    }
}

/// A reservation of stock for one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reservation {
    /// Identifier.
    pub id: Uuid,
    /// The order it is for (unique).
    pub order_id: String,
    /// Its state.
    pub status: ReservationStatus,
    /// The reserved lines, in request order.
    pub lines: Vec<ReservationLine>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it expires unless committed first.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When its status last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Reservation {
    /// Whether `lines` asks for exactly this reservation's lines (in any order).
    pub fn same_lines(&self, lines: &[ReservationLine]) -> bool {
        fn key(lines: &[ReservationLine]) -> Vec<(&str, i64)> {
            let mut v: Vec<_> = lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
            v.sort_unstable();
            v
        }
        key(&self.lines) == key(lines)
    }
}

/// The query of `GET /v1/reservations`.
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReservationQuery {
    /// The order whose reservation to find (required).
    // Defaulted so a missing `order_id` is reported by name, like a malformed one.
    #[serde(default)]
    #[param(required = true, pattern = "^[A-Za-z0-9._:-]{1,100}$", example = "order-6f1c1d0e")]
    pub order_id: String,
}

impl ReservationQuery {
    /// Checks `order_id` (the rule of [`ReservationRequest::order_id`]).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        if valid_order_id(&self.order_id) {
            Ok(())
        } else {
            Err(vec![FieldError::new("order_id", ORDER_ID_RULE)])
        }
    }
}

/// The answer of `GET /v1/reservations?order_id=`: the order's reservation, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReservationList {
    /// 0 or 1 reservations (an order has at most one).
    #[schema(max_items = 1)]
    pub items: Vec<Reservation>,
}

#[cfg(test)]
mod tests {
    use super::{ReservationLine, ReservationRequest, valid_sku};

    fn line(sku: &str, quantity: i64) -> ReservationLine {
        ReservationLine { sku: sku.to_owned(), quantity }
    }

    #[test]
    fn skus() {
        assert!(valid_sku("MUG-001") && valid_sku("a.b_c") && valid_sku(&"x".repeat(64)));
        assert!(!valid_sku("") && !valid_sku("MUG 1") && !valid_sku(&"x".repeat(65)) && !valid_sku("é"));
    }

    #[test]
    fn reservation_requests() {
        let ok = ReservationRequest { order_id: "o:1".into(), lines: vec![line("A", 1), line("B", 2)] };
        assert_eq!(ok.validate(), Ok(()));
        let bad = ReservationRequest {
            order_id: String::new(),
            lines: vec![line("A", 0), line("A", 1), line("B C", 1_000_001)],
        };
        let pointers: Vec<_> = bad.validate().unwrap_err().into_iter().map(|e| e.pointer).collect();
        assert_eq!(
            pointers,
            ["#/order_id", "#/lines/0/quantity", "#/lines/1/sku", "#/lines/2/sku", "#/lines/2/quantity"]
        );
        let empty = ReservationRequest { order_id: "o".into(), lines: vec![] };
        assert_eq!(empty.validate().unwrap_err()[0].pointer, "#/lines");
    }
}
