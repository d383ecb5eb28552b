//! The audit trail: every state change a service makes, appended in the transaction that makes it
//! ([`UnitOfWork::audit`](crate::uow::UnitOfWork::audit)), readable by admins with paging and
//! filters ([`AuditLog`]).
//!
//! Append-only: nothing in the kit updates or deletes `kit_audit`, and the database refuses to —
//! triggers raise on `UPDATE` and `DELETE` (and `TRUNCATE` on PostgreSQL) whoever sends them.

use futures_util::future::BoxFuture;
use palisade::trace::TraceContext;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::{Db, StoreError};

/// One state change: who did what to which entity, what it was before and after, in which trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Who: the account id, `system`, or the service acting on its own (`orders-recovery`).
    pub actor: String,
    /// What: `payment.capture`, `order.cancel`, ….
    pub action: String,
    /// The kind of entity (`payment`, `order`).
    pub entity: String,
    /// Its id.
    pub entity_id: String,
    /// The entity before the change (none when it was created).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The entity after the change (none when it was removed).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// The W3C trace id of the request that made the change.
    pub trace_id: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl AuditEntry {
    /// An entry for `action` by `actor` on `entity`/`entity_id`, now, in the current trace.
    pub fn new(actor: &str, action: &str, entity: &str, entity_id: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            entity: entity.to_owned(),
            entity_id: entity_id.to_owned(),
            before: None,
            after: None,
            trace_id: TraceContext::current_trace_id().map(|id| id.to_string()),
            at: crate::db::now(),
        }
    }

    /// With the state before the change.
    #[must_use]
    pub fn before(mut self, state: &impl Serialize) -> Self {
        self.before = serde_json::to_value(state).ok();
        self
    }

    /// With the state after the change.
    #[must_use]
    pub fn after(mut self, state: &impl Serialize) -> Self {
        self.after = serde_json::to_value(state).ok();
        self
    }
}

/// Which entries to list (all when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this kind of entity.
    pub entity: Option<String>,
    /// Only this entity id.
    pub entity_id: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
}

/// Reads the audit trail of a service's database, oldest first.
#[derive(Clone, Debug)]
pub struct AuditLog {
    db: Db,
}

type AuditRow = (String, String, String, String, Option<String>, Option<String>, Option<String>, i64);

impl AuditLog {
    /// The trail in `db`.
    pub const fn new(db: Db) -> Self {
        Self { db }
    }

    /// Up to `limit` entries matching `filter`, after skipping `offset`, oldest first.
    pub fn list<'a>(
        &'a self,
        filter: &'a AuditFilter,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<AuditEntry>, StoreError>> {
        // `$n IS NULL OR column = $n`: one statement for every combination of filters.
        const SQL: &str = "SELECT actor, action, entity, entity_id, before, after, trace_id, at FROM kit_audit \
                           WHERE ($1 IS NULL OR entity = $1) AND ($2 IS NULL OR entity_id = $2) \
                           AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR action = $4) \
                           ORDER BY seq LIMIT $5 OFFSET $6";
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        Box::pin(async move {
            macro_rules! fetch {
                ($pool:expr) => {
                    sqlx::query_as::<_, AuditRow>(SQL)
                        .bind(&filter.entity)
                        .bind(&filter.entity_id)
                        .bind(&filter.actor)
                        .bind(&filter.action)
                        .bind(i64::from(limit))
                        .bind(offset)
                        .fetch_all($pool)
                        .await?
                };
            }
            let rows = match &self.db {
                Db::Sqlite(pool) => fetch!(pool),
                Db::Postgres(pool) => fetch!(pool),
            };
            Ok(rows.into_iter().map(entry_of).collect())
        })
    }
}

fn entry_of((actor, action, entity, entity_id, before, after, trace_id, at): AuditRow) -> AuditEntry {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    AuditEntry {
        actor,
        action,
        entity,
        entity_id,
        before: json(before),
        after: json(after),
        trace_id,
        at: crate::outbox::from_millis(at),
    }
}
