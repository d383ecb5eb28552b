//! [`Inbox`]: the consumer side of at-least-once delivery. A consumer records each event it handles
//! in `kit_inbox` inside the transaction of the event's effect, so a redelivery (the relay retrying
//! after a lost answer, a replayed dead event) takes effect once: the effect and the inbox row commit
//! together or not at all.
//!
//! Implemented for both backends' connections, like [`UnitOfWork`](crate::uow::UnitOfWork), so inside
//! a [`sql_store!`](crate::sql_store) body the same lines work on both:
//!
//! ```ignore
//! use kit::inbox::Inbox as _;
//!
//! let mut tx = self.pool.begin_write().await?;
//! if tx.receive("notifications", &envelope).await? {
//!     sqlx::query("INSERT INTO notifications …").execute(&mut *tx).await?;
//! }
//! tx.commit().await?;
//! ```
//!
//! An event is known by its `id` within its `source` (CloudEvents 1.0). The table's key is
//! `(consumer, event_id)` and the source is stored beside it: an event id seen before from the same
//! source is a duplicate (`Ok(false)`); the same id from another source is refused
//! ([`sqlx::Error::InvalidArgument`], see [`is_id_taken`]) rather than dropped silently, so the
//! sender's relay keeps it (and parks it as dead, visible) instead of losing it. The producers' ids
//! are random UUIDs, so this takes a broken producer.
//!
//! Two deliveries of one event at once: on PostgreSQL the second `INSERT` waits for the first
//! transaction's row and then finds it (`ON CONFLICT DO NOTHING`); on SQLite write transactions
//! ([`SqlPool::begin_write`](crate::db::SqlPool::begin_write)) run one at a time. Either way exactly
//! one of them sees `true`.
//!
//! [`validate`] checks what a consumer needs of a received [`Envelope`] before it records it.

use futures_util::future::BoxFuture;

use crate::error::FieldError;
use crate::outbox::Envelope;

/// Longest `id`, `source` or `type` of a received event, in bytes (they are keys and labels, and
/// every one the kit produces is far shorter).
pub const MAX_ATTRIBUTE_LEN: usize = 256;

/// The consumer's record of handled events, inside a store's transaction; see the [module docs](self).
pub trait Inbox: Send {
    /// Records `envelope` as handled by `consumer`: `Ok(true)` the first time (do the effect in
    /// this transaction), `Ok(false)` for a redelivery (do nothing; answer success all the same).
    /// The record commits or rolls back with the transaction.
    fn receive<'a>(
        &'a mut self,
        consumer: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
}

/// One body for both connection types: the SQL is the same on both databases.
macro_rules! inbox {
    ($conn:ty) => {
        impl Inbox for $conn {
            fn receive<'a>(
                &'a mut self,
                consumer: &'a str,
                envelope: &'a Envelope,
            ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    let inserted = sqlx::query(
                        "INSERT INTO kit_inbox (consumer, event_id, source, type, received_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer, event_id) DO NOTHING",
                    )
                    .bind(consumer)
                    .bind(&envelope.id)
                    .bind(&envelope.source)
                    .bind(&envelope.event_type)
                    .bind(crate::outbox::millis(time::OffsetDateTime::now_utc()))
                    .execute(&mut *self)
                    .await?
                    .rows_affected();
                    if inserted > 0 {
                        return Ok(true);
                    }
                    let source: String = sqlx::query_scalar(
                        "SELECT source FROM kit_inbox WHERE consumer = $1 AND event_id = $2",
                    )
                    .bind(consumer)
                    .bind(&envelope.id)
                    .fetch_one(&mut *self)
                    .await?;
                    if source == envelope.source {
                        Ok(false)
                    } else {
                        Err(id_taken(&envelope.id, &envelope.source, &source))
                    }
                })
            }
        }
    };
}

inbox!(sqlx::SqliteConnection);
inbox!(sqlx::PgConnection);

const ID_TAKEN: &str = "event id already received from another source";

fn id_taken(id: &str, source: &str, first: &str) -> sqlx::Error {
    sqlx::Error::InvalidArgument(format!(
        "{ID_TAKEN}: event {id} from {source} was first received from {first}"
    ))
}

/// Whether `err` is [`Inbox::receive`] refusing an event id that another source sent first.
pub fn is_id_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::InvalidArgument(message) if message.starts_with(ID_TAKEN))
}

/// What is wrong with a received envelope, one [`FieldError`] per attribute (pointers `#/id`, …):
/// `specversion` must be `1.0`; `id`, `source` and `type` must pass [`crate::text::check`] (not blank,
/// no control or invisible characters) and be at most [`MAX_ATTRIBUTE_LEN`] bytes.
pub fn validate(envelope: &Envelope) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if envelope.specversion != "1.0" {
        errors.push(FieldError::new("#/specversion", "must be \"1.0\" (CloudEvents 1.0)"));
    }
    for (pointer, value) in
        [("#/id", &envelope.id), ("#/source", &envelope.source), ("#/type", &envelope.event_type)]
    {
        if let Err(refused) = crate::text::check(value) {
            errors.push(FieldError::new(pointer, refused.detail()));
        } else if value.len() > MAX_ATTRIBUTE_LEN {
            errors.push(FieldError::new(pointer, format!("must be at most {MAX_ATTRIBUTE_LEN} bytes")));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
