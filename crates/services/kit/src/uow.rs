//! [`UnitOfWork`]: what a store writes beside its domain rows, in the same transaction — an outbox
//! [`Event`], an [`AuditEntry`] — so the change, its
//! announcement and its record commit together or not at all.
//!
//! Implemented for both backends' connections, so inside a [`sql_store!`](crate::sql_store) body
//! (where `tx` is a `sqlx::Transaction` of either database) the same line works on both:
//!
//! ```ignore
//! use kit::uow::UnitOfWork as _;
//!
//! let mut tx = self.pool.begin_write().await?;
//! sqlx::query("INSERT INTO users …").execute(&mut *tx).await?;
//! tx.publish(&Event::new("user.registered", &user.id, &user)?).await?;
//! tx.audit(&AuditEntry::new(actor, "user.create", "user", &user.id).after(&user)?).await?;
//! tx.commit().await?;
//! ```

use futures_util::future::BoxFuture;

use crate::audit::AuditEntry;
use crate::outbox::Event;

/// Writes of the kit's tables inside a store's transaction; see the [module docs](self).
pub trait UnitOfWork: Send {
    /// Adds `event` to the outbox: the relay delivers it once this transaction commits (and never
    /// if it rolls back).
    fn publish<'a>(&'a mut self, event: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// Appends `entry` to the audit trail.
    fn audit<'a>(&'a mut self, entry: &'a AuditEntry) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// One body for both connection types: the SQL is the same on both databases.
macro_rules! unit_of_work {
    ($conn:ty) => {
        impl UnitOfWork for $conn {
            fn publish<'a>(&'a mut self, event: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    let created = crate::outbox::millis(event.time);
                    sqlx::query(
                        "INSERT INTO kit_outbox (id, type, subject, data, traceparent, created_at, next_attempt_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    )
                    .bind(event.id.to_string())
                    .bind(&event.event_type)
                    .bind(&event.subject)
                    .bind(event.data.to_string())
                    .bind(&event.traceparent)
                    .bind(created)
                    .execute(&mut *self)
                    .await
                    .map(drop)
                })
            }

            fn audit<'a>(&'a mut self, entry: &'a AuditEntry) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO kit_audit (actor, action, entity, entity_id, before, after, trace_id, at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&entry.actor)
                    .bind(&entry.action)
                    .bind(&entry.entity)
                    .bind(&entry.entity_id)
                    .bind(entry.before.as_ref().map(ToString::to_string))
                    .bind(entry.after.as_ref().map(ToString::to_string))
                    .bind(&entry.trace_id)
                    .bind(crate::outbox::millis(entry.at))
                    .execute(&mut *self)
                    .await
                    .map(drop)
                })
            }
        }
    };
}

unit_of_work!(sqlx::SqliteConnection);
unit_of_work!(sqlx::PgConnection);
