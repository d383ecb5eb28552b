//! [`Store`](super::Store) on SQLite ([`SqliteStore`]) and PostgreSQL ([`PgStore`]), from one body.

use futures_util::future::BoxFuture;
use kit::audit::AuditEntry;
use kit::db::{SqlPool as _, StoreError};
use kit::outbox::Event;
use kit::uow::UnitOfWork as _;
use time::OffsetDateTime;

use super::{
    Advanced, Answer, Change, LineRow, NewOrder, ORDER_COLUMNS, OrderRow, Stage, Store, StoreResult,
    action_of, to_ms,
};
use crate::model::{FailureReason, Order, OrderStatus, Step};

/// The order `$id` read through `$exec` (evaluated once per query: the pool or `&mut *tx`), with
/// `$lock` appended to the order's `SELECT`.
macro_rules! load {
    ($exec:expr, $id:expr, $lock:expr) => {{
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{}", $lock);
        let row: Option<OrderRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind($id).fetch_optional($exec).await?;
        match row {
            None => None,
            Some(row) => {
                let lines: Vec<LineRow> = sqlx::query_as(
                    "SELECT product_id, quantity, sku, name, unit_amount, line_amount FROM order_lines \
                     WHERE order_id = $1 ORDER BY line_no",
                )
                .bind($id)
                .fetch_all($exec)
                .await?;
                Some(row.into_order(lines)?)
            }
        }
    }};
}

kit::sql_store! {
    /// Orders in SQLite.
    sqlite: SqliteStore,
    /// Orders in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn create<'a>(&'a self, new: &'a NewOrder, actor: &'a str, now: OffsetDateTime) -> BoxFuture<'a, StoreResult<Order>> {
            Box::pin(self.retry.run(move || async move {
                let now_ms = to_ms(now);
                let mut tx = self.pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO orders (id, customer_id, idempotency_key, status, step, lease_until, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&new.id)
                .bind(&new.customer_id)
                .bind(&new.idempotency_key)
                .bind(OrderStatus::Pending.as_str())
                .bind(Step::Account.as_str())
                .bind(to_ms(new.lease_until))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                for (line_no, line) in new.lines.iter().enumerate() {
                    sqlx::query("INSERT INTO order_lines (order_id, line_no, product_id, quantity) VALUES ($1, $2, $3, $4)")
                        .bind(&new.id)
                        .bind(i64::try_from(line_no).unwrap_or(i64::MAX))
                        .bind(line.product_id.to_ascii_lowercase())
                        .bind(line.quantity)
                        .execute(&mut *tx)
                        .await?;
                }
                let order = load!(&mut *tx, &new.id, "")
                    .ok_or_else(|| StoreError::Conflict("the new order vanished".to_owned()))?;
                tx.audit(&AuditEntry::new(actor, "order.create", "order", &order.id).after(&order)).await?;
                tx.commit().await?;
                Ok(order)
            }))
        }

        fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Order>>> {
            Box::pin(async move { Ok(load!(&self.pool, id, "")) })
        }

        fn by_key<'a>(&'a self, customer: &'a str, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Order>>> {
            Box::pin(async move {
                let id: Option<String> =
                    sqlx::query_scalar("SELECT id FROM orders WHERE customer_id = $1 AND idempotency_key = $2")
                        .bind(customer)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?;
                match id {
                    Some(id) => Ok(load!(&self.pool, &id, "")),
                    None => Ok(None),
                }
            })
        }

        fn list<'a>(&'a self, customer: Option<&'a str>, limit: u32, offset: u64) -> BoxFuture<'a, StoreResult<Vec<Order>>> {
            Box::pin(async move {
                let sql = format!(
                    "SELECT id FROM orders WHERE ($1 IS NULL OR customer_id = $1) ORDER BY {} DESC LIMIT $2 OFFSET $3",
                    self.pool.dialect().insertion_order
                );
                let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(customer)
                    .bind(i64::from(limit))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                let mut orders = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(order) = load!(&self.pool, id, "") {
                        orders.push(order);
                    }
                }
                Ok(orders)
            })
        }

        fn advance<'a>(
            &'a self,
            id: &'a str,
            expected: Stage,
            change: &'a Change,
            actor: &'a str,
            event: Option<&'a Event>,
            answer: Option<Answer<'a>>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<Advanced>> {
            Box::pin(async move {
            let answer = &answer;
            self.retry.run(move || async move {
                let lock = self.pool.dialect().row_lock;
                let mut tx = self.pool.begin_write().await?;
                let Some(before) = load!(&mut *tx, id, lock) else { return Ok(None) };
                if Stage::of(&before) != expected {
                    return Ok(None);
                }
                let (currency, total) = match &change.priced {
                    Some(p) => (Some(p.total.currency.clone()), Some(p.total.amount)),
                    None => (None, None),
                };
                sqlx::query(
                    "UPDATE orders SET status = $2, step = $3, failure_reason = COALESCE($4, failure_reason), \
                     currency = COALESCE($5, currency), total_amount = COALESCE($6, total_amount), \
                     reservation_id = COALESCE($7, reservation_id), payment_id = COALESCE($8, payment_id), \
                     refund_id = COALESCE($9, refund_id), \
                     idempotency_key = CASE WHEN $10 THEN NULL ELSE idempotency_key END, \
                     lease_until = COALESCE($11, lease_until), updated_at = $12 WHERE id = $1",
                )
                .bind(id)
                .bind(change.status.as_str())
                .bind(change.step.as_str())
                .bind(change.failure_reason.map(FailureReason::as_str))
                .bind(currency)
                .bind(total)
                .bind(&change.reservation_id)
                .bind(&change.payment_id)
                .bind(&change.refund_id)
                .bind(change.clear_key)
                .bind(change.lease_until.map(to_ms))
                .bind(to_ms(now))
                .execute(&mut *tx)
                .await?;
                if let Some(priced) = &change.priced {
                    for (line_no, line) in priced.lines.iter().enumerate() {
                        sqlx::query(
                            "UPDATE order_lines SET sku = $3, name = $4, unit_amount = $5, line_amount = $6 \
                             WHERE order_id = $1 AND line_no = $2",
                        )
                        .bind(id)
                        .bind(i64::try_from(line_no).unwrap_or(i64::MAX))
                        .bind(&line.sku)
                        .bind(&line.name)
                        .bind(line.unit_amount)
                        .bind(line.line_amount)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let after = load!(&mut *tx, id, "")
                    .ok_or_else(|| StoreError::Conflict("the order vanished".to_owned()))?;
                let entry = AuditEntry::new(actor, &action_of(&before, change), "order", id).before(&before).after(&after);
                tx.audit(&entry).await?;
                if let Some(event) = event {
                    tx.publish(event).await?;
                }
                let response = match answer {
                    Some(a) => {
                        let body = match &a.body {
                            Some(body) => body.clone(),
                            None => serde_json::to_value(&after)
                                .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?,
                        };
                        Some(a.claim.store(&mut *tx, a.status, &body, &a.headers).await?)
                    }
                    None => None,
                };
                tx.commit().await?;
                Ok(Some((after, response)))
            }).await
            })
        }

        fn take_lease<'a>(&'a self, id: &'a str, now: OffsetDateTime, until: OffsetDateTime) -> BoxFuture<'a, StoreResult<Option<Order>>> {
            Box::pin(self.retry.run(move || async move {
                let mut tx = self.pool.begin_write().await?;
                let taken = sqlx::query(
                    "UPDATE orders SET lease_until = $3 WHERE id = $1 AND lease_until <= $2 \
                     AND status IN ('pending', 'compensating')",
                )
                .bind(id)
                .bind(to_ms(now))
                .bind(to_ms(until))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let order = if taken == 1 { load!(&mut *tx, id, "") } else { None };
                tx.commit().await?;
                Ok(order)
            }))
        }

        fn claim_stuck(&self, now: OffsetDateTime, until: OffsetDateTime, limit: u32) -> BoxFuture<'_, StoreResult<Vec<Order>>> {
            Box::pin(self.retry.run(move || async move {
                let sql = format!(
                    "SELECT id FROM orders WHERE status IN ('pending', 'compensating') AND lease_until <= $1 \
                     ORDER BY lease_until LIMIT $2{}",
                    self.pool.dialect().claim_lock
                );
                let mut tx = self.pool.begin_write().await?;
                let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(to_ms(now))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                let mut orders = Vec::with_capacity(ids.len());
                for id in &ids {
                    sqlx::query("UPDATE orders SET lease_until = $2 WHERE id = $1")
                        .bind(id)
                        .bind(to_ms(until))
                        .execute(&mut *tx)
                        .await?;
                    if let Some(order) = load!(&mut *tx, id, "") {
                        orders.push(order);
                    }
                }
                tx.commit().await?;
                Ok(orders)
            }))
        }
    }
}
