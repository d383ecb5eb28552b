//! [`Store`] on SQLite ([`SqliteStore`]) and PostgreSQL ([`PgStore`]), one body for both
//! ([`kit::sql_store!`]); the list's tie-break column comes from the pool's
//! [`Dialect`](kit::db::Dialect).

use futures_util::future::BoxFuture;
use kit::db::SqlPool as _;
use kit::inbox::Inbox as _;
use kit::outbox::Envelope;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CONSUMER, Row, Store, StoreResult, inbox_error, notification, to_ms};
use crate::model::{Draft, Notification};

const COLUMNS: &str = "id, user_id, event_id, event_type, source, subject, title, summary, data, created_at";

kit::sql_store! {
    /// Notifications in SQLite.
    sqlite: SqliteStore,
    /// Notifications in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn receive<'a>(
            &'a self,
            event: &'a Envelope,
            draft: Option<&'a Draft>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(self.retry.run(move || async move {
                let mut tx = self.pool.begin_write().await?;
                let first = tx.receive(CONSUMER, event).await.map_err(inbox_error)?;
                if first && let Some(draft) = draft {
                    let sql = format!("INSERT INTO notifications ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(Uuid::new_v4())
                        .bind(&draft.user_id)
                        .bind(&event.id)
                        .bind(&event.event_type)
                        .bind(&event.source)
                        .bind(event.subject.as_deref())
                        .bind(&draft.title)
                        .bind(&draft.summary)
                        .bind(event.data.to_string())
                        .bind(to_ms(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(first)
            }))
        }

        fn list<'a>(
            &'a self,
            user_id: &'a str,
            limit: u32,
            offset: u64,
        ) -> BoxFuture<'a, StoreResult<Vec<Notification>>> {
            Box::pin(async move {
                let order = self.pool.dialect().insertion_order;
                let sql = format!(
                    "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 \
                     ORDER BY created_at DESC, {order} DESC LIMIT $2 OFFSET $3"
                );
                let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(user_id)
                    .bind(i64::from(limit))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(notification).collect())
            })
        }
    }
}
