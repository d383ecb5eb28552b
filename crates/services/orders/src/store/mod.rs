//! The orders' persistence, behind [`Store`]: one body of SQL for both databases
//! ([`kit::sql_store!`], in `store/sql.rs`).
//!
//! Every saga step is one [`Store::advance`]: a transaction that reads the order (`FOR UPDATE` on
//! PostgreSQL), checks it is still at the [`Stage`] the caller saw (else nothing changes and the
//! caller gets `None`: someone else moved it), writes the change, its audit entry, the event of a
//! terminal state and, for the request that placed the order, the idempotent answer — all or
//! nothing. So two drivers of one order (the request and the recovery worker) never both apply a step.
//!
//! Leases: whoever drives an order holds `lease_until`; [`Store::claim_stuck`] hands orders past
//! their lease to the recovery worker (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas claim
//! different orders).

mod sql;

use std::sync::Arc;

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, StatusCode};
use kit::db::{Db, Retry, StoreError};
use kit::idempotency::Claim;
use kit::outbox::Event;
use time::OffsetDateTime;

use crate::model::{FailureReason, LineRequest, Money, Order, OrderLine, OrderStatus, Step};

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// What [`Store::advance`] returns: the order after the change and the stored answer, or `None`
/// when the order was not at the expected stage.
pub type Advanced = Option<(Order, Option<Response>)>;

/// A new order, before its first step.
#[derive(Clone, Debug)]
pub struct NewOrder {
    /// Its id.
    pub id: String,
    /// The customer.
    pub customer_id: String,
    /// The placing request's Idempotency-Key.
    pub idempotency_key: Option<String>,
    /// The requested lines.
    pub lines: Vec<LineRequest>,
    /// The placing request holds the order until then.
    pub lease_until: OffsetDateTime,
}

/// The price snapshot of one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    /// The product's SKU.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Unit price, minor units.
    pub unit_amount: i64,
    /// Unit price × quantity.
    pub line_amount: i64,
}

/// Every line priced, in request order, and the total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priced {
    /// One per line.
    pub lines: Vec<PricedLine>,
    /// The total (and the currency of every line).
    pub total: Money,
}

/// Where the caller saw the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Its status.
    pub status: OrderStatus,
    /// Its step.
    pub step: Step,
}

impl Stage {
    /// The stage of `order`.
    pub const fn of(order: &Order) -> Self {
        Self { status: order.status, step: order.step }
    }
}

/// A change of an order; `None` fields stay as they are.
#[derive(Clone, Debug)]
pub struct Change {
    /// The new status.
    pub status: OrderStatus,
    /// The new step.
    pub step: Step,
    /// Why it fails.
    pub failure_reason: Option<FailureReason>,
    /// The price snapshot.
    pub priced: Option<Priced>,
    /// The reservation.
    pub reservation_id: Option<String>,
    /// The captured payment.
    pub payment_id: Option<String>,
    /// The refund.
    pub refund_id: Option<String>,
    /// Give up the Idempotency-Key (a retry places a new order).
    pub clear_key: bool,
    /// A new lease.
    pub lease_until: Option<OffsetDateTime>,
}

impl Change {
    /// To `status`/`step`, nothing else.
    pub const fn to(status: OrderStatus, step: Step) -> Self {
        Self {
            status,
            step,
            failure_reason: None,
            priced: None,
            reservation_id: None,
            payment_id: None,
            refund_id: None,
            clear_key: false,
            lease_until: None,
        }
    }
}

/// The answer to store for the placing request, with the change that ends it.
#[derive(Debug)]
pub struct Answer<'a> {
    /// The request's key.
    pub claim: &'a Claim,
    /// Status (2xx or 4xx).
    pub status: StatusCode,
    /// JSON body; `None`: the order after the change.
    pub body: Option<serde_json::Value>,
    /// Extra headers (`Location`, `Content-Type` of a problem).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Order persistence.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts a new order at step `account`, audited as created by `actor`.
    /// [`StoreError::Conflict`] when the customer's key already has an order.
    fn create<'a>(
        &'a self,
        new: &'a NewOrder,
        actor: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<Order>>;
    /// The order `id`.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Order>>>;
    /// The customer's order placed with `key`.
    fn by_key<'a>(&'a self, customer: &'a str, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Order>>>;
    /// Up to `limit` orders (of `customer` when given) after `offset`, newest first.
    fn list<'a>(
        &'a self,
        customer: Option<&'a str>,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, StoreResult<Vec<Order>>>;
    /// Applies `change` if the order is still at `expected` (else `None`, nothing written), with
    /// an audit entry by `actor`, `event` and `answer` in the same transaction; returns the order
    /// after and the stored answer as a response.
    #[allow(clippy::too_many_arguments)]
    fn advance<'a>(
        &'a self,
        id: &'a str,
        expected: Stage,
        change: &'a Change,
        actor: &'a str,
        event: Option<&'a Event>,
        answer: Option<Answer<'a>>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<Advanced>>;
    /// Takes the lease of a non-terminal order whose lease has lapsed at `now`, until `until`.
    fn take_lease<'a>(
        &'a self,
        id: &'a str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<Option<Order>>>;
    /// Claims up to `limit` non-terminal orders whose lease lapsed at `now`, leasing them until `until`.
    fn claim_stuck(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Order>>>;
}

/// The store for `db`, retrying busy transactions with `retry`.
pub fn with_retry(db: &Db, retry: Retry) -> Arc<dyn Store> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone()).with_retry(retry)),
        Db::Postgres(pool) => Arc::new(PgStore::new(pool.clone()).with_retry(retry)),
    }
}

/// The store for `db`, retrying with [`Retry::default`].
pub fn for_db(db: &Db) -> Arc<dyn Store> {
    with_retry(db, Retry::default())
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: String,
    customer_id: String,
    status: String,
    step: String,
    failure_reason: Option<String>,
    currency: Option<String>,
    total_amount: Option<i64>,
    reservation_id: Option<String>,
    payment_id: Option<String>,
    refund_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const ORDER_COLUMNS: &str = "id, customer_id, status, step, failure_reason, currency, total_amount, \
                             reservation_id, payment_id, refund_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct LineRow {
    product_id: String,
    quantity: i64,
    sku: Option<String>,
    name: Option<String>,
    unit_amount: Option<i64>,
    line_amount: Option<i64>,
}

fn decode_error(what: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(format!("unknown {what} {value}").into()))
}

impl OrderRow {
    fn into_order(self, lines: Vec<LineRow>) -> StoreResult<Order> {
        let status = OrderStatus::parse(&self.status).ok_or_else(|| decode_error("status", &self.status))?;
        let step = Step::parse(&self.step).ok_or_else(|| decode_error("step", &self.step))?;
        let failure_reason = match self.failure_reason.as_deref() {
            Some(r) => Some(FailureReason::parse(r).ok_or_else(|| decode_error("failure reason", r))?),
            None => None,
        };
        let currency = self.currency;
        let money = |amount: Option<i64>| Some(Money { amount: amount?, currency: currency.clone()? });
        let lines = lines
            .into_iter()
            .map(|l| OrderLine {
                product_id: l.product_id,
                quantity: l.quantity,
                sku: l.sku,
                name: l.name,
                unit_price: money(l.unit_amount),
                line_total: money(l.line_amount),
            })
            .collect();
        Ok(Order {
            id: self.id,
            customer_id: self.customer_id,
            status,
            step,
            failure_reason,
            lines,
            total: money(self.total_amount),
            reservation_id: self.reservation_id,
            payment_id: self.payment_id,
            refund_id: self.refund_id,
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
        })
    }
}

/// Unix epoch milliseconds (how both databases store times).
fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The audit action of a change: `order.<status>` for a status change, else `order.<step>`.
fn action_of(before: &Order, change: &Change) -> String {
    if before.status == change.status {
        format!("order.step.{}", change.step.as_str())
    } else {
        format!("order.{}", change.status.as_str())
    }
}
