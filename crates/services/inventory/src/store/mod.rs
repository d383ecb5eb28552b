//! The inventory's persistence, behind [`Store`]: one implementation per database.
//!
//! Both implementations run the same SQL (`$n` placeholders work on SQLite too) from one body in
//! `store/sql.rs`, generated for both pools by [`kit::sql_store!`], so the transaction logic that
//! prevents overselling exists once. What differs (from [`kit::db::SqlPool`]):
//!
//! - SQLite: write transactions start with `BEGIN IMMEDIATE`, taking the database's write lock up
//!   front (waiting up to the busy timeout, the kit's `db_lock_timeout_ms`). A deferred transaction that reads and then
//!   writes can fail with `SQLITE_BUSY` at the upgrade, which the busy timeout does not cover.
//! - PostgreSQL: `READ COMMITTED`; a reservation row is locked with `SELECT … FOR UPDATE` before its
//!   status changes; conditional `UPDATE`s re-check their `WHERE` after waiting for a row lock.
//!
//! Every write runs in one transaction inside the store's [`kit::db::Retry`]: losing to a
//! concurrent transaction (serialization failure, deadlock, lock timeout, `SQLITE_BUSY`) runs it
//! again from scratch, and what is still busy is a [`StoreError::Busy`] (503). `set_stock` and
//! `adjust_stock` read the row `FOR UPDATE` first, check the caller's preconditions against its
//! version there, and write the row and its ledger entry (`stock_ledger`) in the same transaction;
//! so does a commit, one ledger row per line. Every change of a stock row bumps its `version`.
//!
//! Overselling is prevented by `UPDATE stock SET reserved = reserved + q WHERE sku = ? AND
//! on_hand - reserved >= q` and its `rows_affected`, inside one transaction per reservation, plus
//! the table's `CHECK (reserved <= on_hand)`. Stock rows are always updated in SKU order, so two
//! transactions never wait on each other in a cycle.

mod sql;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use kit::db::{Db, Retry, StoreError};
use kit::extract::Preconditions;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{
    LedgerEntry, LedgerReason, Reservation, ReservationLine, ReservationRequest, ReservationStatus, Stock,
};

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// The result of [`Store::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line was reserved: a new reservation.
    Created(Reservation),
    /// The order already has a reservation with the same lines: that one (nothing changed).
    Replayed(Reservation),
    /// The order already has a reservation with different lines (nothing changed).
    OrderIdTaken(Reservation),
    /// These lines name SKUs without stock rows (nothing reserved).
    UnknownSkus(Vec<LineRef>),
    /// These lines ask for more than is available (nothing reserved).
    Insufficient(Vec<Shortage>),
}

/// A line of the request, by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRef {
    /// Index into the request's `lines`.
    pub index: usize,
    /// Its SKU.
    pub sku: String,
}

/// A line that could not be reserved for lack of stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    /// The line.
    pub line: LineRef,
    /// Units asked for.
    pub requested: i64,
    /// Units available when the reservation was attempted.
    pub available: i64,
}

/// What a status change of a reservation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The reservation changed now: the returned state.
    Done(Reservation),
    /// It already was in the requested state (or, for a release, already gave its stock back).
    AlreadyDone(Reservation),
    /// Its state does not allow the change (committing a released or expired reservation,
    /// releasing a committed one). It may have just expired: its stock is back.
    Refused(Reservation),
    /// No reservation with that id.
    NotFound,
}

/// What a conditional write of a stock row did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StockWrite {
    /// Written: the row now (`true` when it was created).
    Done(Stock, bool),
    /// The SKU has no stock row (adjustments only; nothing written).
    NotFound,
    /// The preconditions do not hold for the row as it is (shown; `None`: absent). Nothing written.
    PreconditionFailed(Option<Stock>),
}

/// A requested status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reserved units leave on-hand for good.
    Commit,
    /// Reserved units go back to available.
    Release,
    /// Like release, because the reservation is past `expires_at` (no-op otherwise).
    Expire,
}

impl Action {
    /// Whether a reservation in `status` satisfies the action.
    const fn settled_by(self, status: ReservationStatus) -> bool {
        matches!(
            (self, status),
            (Self::Commit, ReservationStatus::Committed)
                | (Self::Release, ReservationStatus::Released | ReservationStatus::Expired)
                | (Self::Expire, ReservationStatus::Expired)
        )
    }
}

/// Stock and reservation persistence. Every method takes `now` so expiry is testable.
pub trait Store: Send + Sync + 'static {
    /// The stock of `sku`.
    fn stock<'a>(&'a self, sku: &'a str) -> BoxFuture<'a, StoreResult<Option<Stock>>>;
    /// Sets `on_hand` (creating the row when absent) if `pre` holds for the row's current `ETag`
    /// (empty preconditions always hold: refusing blind writes is the API's choice, 428), with a
    /// ledger entry by `actor`. [`StoreError::Conflict`] when that is less than what is
    /// reserved.
    fn set_stock<'a>(
        &'a self,
        sku: &'a str,
        on_hand: i64,
        pre: &'a Preconditions,
        actor: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<StockWrite>>;
    /// Adds `delta` to `on_hand` if `pre` holds, with a ledger entry by `actor`.
    /// [`StoreError::Conflict`] when the result would be below what is reserved or above
    /// [`crate::model::MAX_ON_HAND`].
    fn adjust_stock<'a>(
        &'a self,
        sku: &'a str,
        delta: i64,
        pre: &'a Preconditions,
        actor: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<StockWrite>>;
    /// Up to `limit` ledger entries of `sku` from `offset`, oldest first; `None` when the SKU has
    /// no stock row.
    fn ledger<'a>(
        &'a self,
        sku: &'a str,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, StoreResult<Option<Vec<LedgerEntry>>>>;
    /// Reserves every line of a validated `request` or none, idempotently per `order_id`; the
    /// reservation expires `ttl` after `now`. A replay of a reservation past its deadline expires
    /// it first, so [`ReserveOutcome::Replayed`] never shows a due reservation as reserved.
    fn reserve<'a>(
        &'a self,
        request: &'a ReservationRequest,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<ReserveOutcome>>;
    /// The reservation `id`; one past its deadline is expired first (its stock given back).
    fn reservation(&self, id: Uuid, now: OffsetDateTime) -> BoxFuture<'_, StoreResult<Option<Reservation>>>;
    /// The reservation of order `order_id`, expired first when past its deadline (as
    /// [`Store::reservation`]).
    fn reservation_for_order<'a>(
        &'a self,
        order_id: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<Option<Reservation>>>;
    /// Commits, releases or expires reservation `id` (see [`Transition`]) on behalf of `actor`
    /// (named in the ledger entries of a commit). A pending reservation past its deadline expires
    /// instead of committing.
    fn transition<'a>(
        &'a self,
        id: Uuid,
        action: Action,
        actor: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<Transition>>;
    /// Expires up to `limit` pending reservations whose deadline is at or before `now`, giving
    /// their stock back; returns how many.
    fn expire_due(&self, now: OffsetDateTime, limit: u32) -> BoxFuture<'_, StoreResult<u64>>;
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

/// The reservation a transition left behind, whatever it did (`None`: there is none).
fn settled(transition: Transition) -> Option<Reservation> {
    match transition {
        Transition::Done(r) | Transition::AlreadyDone(r) | Transition::Refused(r) => Some(r),
        Transition::NotFound => None,
    }
}

/// The actor of changes the service makes by itself (the expiry of reservations).
pub const SYSTEM_ACTOR: &str = "system:expiry";

/// A row of `stock`.
type StockRow = (String, i64, i64, i64);

const STOCK_COLUMNS: &str = "sku, on_hand, reserved, version";

fn stock_of((sku, on_hand, reserved, version): StockRow) -> Stock {
    Stock::new(sku, on_hand, reserved, version)
}

/// A row of `stock_ledger`.
#[derive(sqlx::FromRow)]
struct LedgerRow {
    sku: String,
    delta: i64,
    on_hand_after: i64,
    reason: String,
    actor: String,
    reservation_id: Option<Uuid>,
    at: i64,
}

impl LedgerRow {
    fn into_entry(self) -> StoreResult<LedgerEntry> {
        let reason = LedgerReason::parse(&self.reason).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(format!("unknown ledger reason {}", self.reason).into()))
        })?;
        Ok(LedgerEntry {
            sku: self.sku,
            delta: self.delta,
            on_hand_after: self.on_hand_after,
            reason,
            actor: self.actor,
            reservation_id: self.reservation_id,
            at: from_ms(self.at),
        })
    }
}

/// A row of `reservations`, shared by both backends.
#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: Uuid,
    order_id: String,
    status: String,
    created_at: i64,
    expires_at: i64,
    updated_at: i64,
}

const RESERVATION_COLUMNS: &str = "id, order_id, status, created_at, expires_at, updated_at";

impl ReservationRow {
    fn into_reservation(self, lines: Vec<ReservationLine>) -> StoreResult<Reservation> {
        let status = ReservationStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown reservation status {}", self.status).into(),
            ))
        })?;
        Ok(Reservation {
            id: self.id,
            order_id: self.order_id,
            status,
            lines,
            created_at: from_ms(self.created_at),
            expires_at: from_ms(self.expires_at),
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

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// The message of a `set_stock` refused because of reservations.
fn below_reserved(sku: &str, on_hand: i64, reserved: i64) -> StoreError {
    StoreError::Conflict(format!(
        "SKU {sku} has {reserved} units reserved: on_hand cannot be set to {on_hand}, below that"
    ))
}
