//! The notifications' persistence, behind [`Store`]: one body for both databases in `store/sql.rs`,
//! generated for both pools by [`kit::sql_store!`].
//!
//! [`Store::receive`] runs one transaction inside the store's [`kit::db::Retry`]: the event's row in
//! the kit's inbox ([`kit::inbox::Inbox`], consumer [`CONSUMER`]) and, the first time only, its
//! notification. A redelivery finds the inbox row and writes nothing; two deliveries at once take
//! effect once (see the inbox's docs). `notifications` has `UNIQUE (source, event_id)` besides.

mod sql;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use kit::db::{Db, Retry, StoreError};
use kit::outbox::Envelope;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{Draft, Notification};

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// The inbox consumer name of this service's notifications.
pub const CONSUMER: &str = "notifications";

/// Notification persistence.
pub trait Store: Send + Sync + 'static {
    /// Records `event` as received and, the first time, stores `draft` (if any) as its notification
    /// at `now`, in one transaction. `true` the first time, `false` for a redelivery (nothing
    /// written). [`StoreError::Conflict`] when another source already sent an event with this id.
    fn receive<'a>(
        &'a self,
        event: &'a Envelope,
        draft: Option<&'a Draft>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// `user_id`'s notifications, newest first (ties: the later received first), `limit` from
    /// `offset`.
    fn list<'a>(
        &'a self,
        user_id: &'a str,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, StoreResult<Vec<Notification>>>;
}

/// The store for `db`.
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

/// A row of `notifications`, in column order.
type Row = (Uuid, String, String, String, String, Option<String>, String, String, String, i64);

fn notification(
    (id, user_id, event_id, event_type, source, subject, title, summary, data, at): Row,
) -> Notification {
    Notification {
        id,
        user_id,
        event_id,
        event_type,
        source,
        subject,
        title,
        summary,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        created_at: from_ms(at),
    }
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The inbox's refusal of an id another source sent first becomes a 409; the rest as usual.
fn inbox_error(err: sqlx::Error) -> StoreError {
    if kit::inbox::is_id_taken(&err) { StoreError::Conflict(err.to_string()) } else { err.into() }
}
