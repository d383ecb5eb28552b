//! The payments' persistence, behind [`Store`]: one body of SQL (`store/sql.rs`) generated for
//! SQLite and PostgreSQL by [`kit::sql_store!`].
//!
//! Every write is one transaction (run again by the store's [`kit::db::Retry`] when it loses to a
//! concurrent one) holding the domain rows, the outbox event ([`UnitOfWork::publish`]), the audit
//! entry ([`UnitOfWork::audit`]) and the idempotent answer ([`Seal`], the request's
//! `kit::idempotency::Claim`): after a crash either all of them exist or none.
//!
//! **Refunds never exceed the capture**, even concurrently: the refund is
//! `UPDATE payments SET refunded = refunded + $a WHERE id = $id AND status = 'captured' AND
//! currency = $c AND refunded + $a <= amount`, and its `rows_affected`, in the refund's transaction.
//! On PostgreSQL (`READ COMMITTED`) a concurrent refund waits for the row lock and re-checks the
//! `WHERE` against the committed total; on SQLite the write transaction (`BEGIN IMMEDIATE`) holds the
//! database's write lock. The table's `CHECK (refunded <= amount)` is the last line of defence.
//!
//! [`UnitOfWork::publish`]: kit::uow::UnitOfWork::publish
//! [`UnitOfWork::audit`]: kit::uow::UnitOfWork::audit

mod sql;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, StatusCode, header};
use kit::db::{Db, Retry, StoreError};
use kit::idempotency::{Claim, StoreAnswer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{Money, Payment, PaymentStatus, Refund};

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// The answer of a write, stored with it: status, JSON body, extra headers.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Headers beside `Content-Type: application/json` (a `Content-Type` here replaces it).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Keeps the answer of a write in the write's own transaction: the request's
/// [`Claim`] in the API, [`Unsealed`] in tests of the store alone.
pub trait Seal: Send + Sync {
    /// Stores `answer` through `conn` (the write's transaction) and returns it as the response.
    fn seal<'a>(
        &'a self,
        conn: &'a mut dyn StoreAnswer,
        answer: &'a Answer,
    ) -> BoxFuture<'a, Result<Response, StoreError>>;
}

impl Seal for Claim {
    fn seal<'a>(
        &'a self,
        conn: &'a mut dyn StoreAnswer,
        answer: &'a Answer,
    ) -> BoxFuture<'a, Result<Response, StoreError>> {
        self.store(conn, answer.status, &answer.body, &answer.headers)
    }
}

/// Stores nothing: the answer as a plain response (for the store's own tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unsealed;

impl Seal for Unsealed {
    fn seal<'a>(
        &'a self,
        _conn: &'a mut dyn StoreAnswer,
        answer: &'a Answer,
    ) -> BoxFuture<'a, Result<Response, StoreError>> {
        Box::pin(async move {
            let mut response = (
                answer.status,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(answer.body.to_string()),
            )
                .into_response();
            for (name, value) in &answer.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            Ok(response)
        })
    }
}

/// What [`Store::refund`] did.
#[derive(Debug)]
pub enum RefundOutcome {
    /// Refunded: the payment after it, and the sealed answer.
    Refunded(Payment, Response),
    /// No payment with that id (nothing written).
    NotFound,
    /// The payment was declined: nothing to refund (nothing written).
    NotCaptured(Payment),
    /// The refund is in another currency than the payment (nothing written).
    CurrencyMismatch(Payment),
    /// With the earlier refunds it would exceed the captured amount (nothing written).
    ExceedsCaptured(Payment),
}

/// Payments and refunds.
pub trait Store: Send + Sync + 'static {
    /// The payment `id`.
    fn payment(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Payment>>>;

    /// The payments of `order_id`, oldest first.
    fn payments_of_order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<Payment>>>;

    /// Inserts `payment` (captured or declined) with its event (`payment.captured` /
    /// `payment.failed`) and its audit entry by `actor`, and seals `answer`, in one transaction.
    fn record_payment<'a>(
        &'a self,
        payment: &'a Payment,
        actor: &'a str,
        seal: &'a dyn Seal,
        answer: &'a Answer,
    ) -> BoxFuture<'a, StoreResult<Response>>;

    /// Adds `refund` to its payment if it stays within the captured amount, with the refund row, its
    /// `payment.refunded` event and audit entry by `actor`, and seals `answer`, in one transaction.
    fn refund<'a>(
        &'a self,
        refund: &'a Refund,
        actor: &'a str,
        seal: &'a dyn Seal,
        answer: &'a Answer,
    ) -> BoxFuture<'a, StoreResult<RefundOutcome>>;

    /// The refunds of payment `id`, oldest first.
    fn refunds(&self, payment_id: Uuid) -> BoxFuture<'_, StoreResult<Vec<Refund>>>;
}

/// The store for `db`, retrying with [`Retry::default`].
pub fn for_db(db: &Db) -> Arc<dyn Store> {
    with_retry(db, Retry::default())
}

/// The store for `db`, retrying busy transactions with `retry`.
pub fn with_retry(db: &Db, retry: Retry) -> Arc<dyn Store> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone()).with_retry(retry)),
        Db::Postgres(pool) => Arc::new(PgStore::new(pool.clone()).with_retry(retry)),
    }
}

/// A row of `payments`.
#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: Uuid,
    order_id: String,
    customer_id: String,
    status: String,
    amount: i64,
    currency: String,
    refunded: i64,
    decline_reason: Option<String>,
    created_at: i64,
}

const PAYMENT_COLUMNS: &str =
    "id, order_id, customer_id, status, amount, currency, refunded, decline_reason, created_at";

impl PaymentRow {
    fn into_payment(self) -> StoreResult<Payment> {
        let status = PaymentStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown payment status {}", self.status).into(),
            ))
        })?;
        Ok(Payment {
            id: self.id,
            order_id: self.order_id,
            customer_id: self.customer_id,
            status,
            refunded: Money::new(self.refunded, &self.currency),
            amount: Money { amount: self.amount, currency: self.currency },
            decline_reason: self.decline_reason,
            created_at: from_ms(self.created_at),
        })
    }
}

/// A row of `refunds`.
type RefundRow = (Uuid, Uuid, i64, String, i64);

fn refund_of((id, payment_id, amount, currency, created_at): RefundRow) -> Refund {
    Refund { id, payment_id, amount: Money { amount, currency }, created_at: from_ms(created_at) }
}

/// Unix epoch milliseconds (how both databases store times).
fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A JSON (de)serialisation failure inside a store write, as a store error.
fn json_error(err: serde_json::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(err.into()))
}
