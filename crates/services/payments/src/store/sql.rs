//! [`Store`](super::Store) on SQLite ([`SqliteStore`]) and PostgreSQL ([`PgStore`]): one body,
//! generated for both pools by [`kit::sql_store!`]; see the [module docs](super) for the
//! transactions and how refunds are kept within the capture.

use futures_util::future::BoxFuture;
use kit::audit::AuditEntry;
use kit::db::SqlPool as _;
use kit::outbox::Event;
use kit::uow::UnitOfWork as _;
use uuid::Uuid;

use super::{
    Answer, PAYMENT_COLUMNS, PaymentRow, RefundOutcome, RefundRow, Seal, Store, StoreResult, json_error,
    refund_of, to_ms,
};
use crate::model::{Money, Payment, PaymentEvent, PaymentStatus, Refund};

/// The audit entity of every entry.
const ENTITY: &str = "payment";

kit::sql_store! {
    /// Payments and refunds in SQLite.
    sqlite: SqliteStore,
    /// Payments and refunds in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn payment(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Payment>>> {
            Box::pin(async move {
                let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
                let row: Option<PaymentRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
                row.map(PaymentRow::into_payment).transpose()
            })
        }

        fn payments_of_order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<Payment>>> {
            Box::pin(async move {
                let order = self.pool.dialect().insertion_order;
                let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 ORDER BY {order}");
                let rows: Vec<PaymentRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(order_id).fetch_all(&self.pool).await?;
                rows.into_iter().map(PaymentRow::into_payment).collect()
            })
        }

        fn record_payment<'a>(
            &'a self,
            payment: &'a Payment,
            actor: &'a str,
            seal: &'a dyn Seal,
            answer: &'a Answer,
        ) -> BoxFuture<'a, StoreResult<axum::response::Response>> {
            Box::pin(self.retry.run(move || async move {
                let (event_type, action) = match payment.status {
                    PaymentStatus::Captured => ("payment.captured", "payment.capture"),
                    PaymentStatus::Declined => ("payment.failed", "payment.decline"),
                };
                let id = payment.id.to_string();
                let event = Event::new(event_type, &id, &PaymentEvent::of(payment)).map_err(json_error)?;
                let entry = AuditEntry::new(actor, action, ENTITY, &id).after(payment);
                let created = to_ms(payment.created_at);
                let mut tx = self.pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO payments (id, order_id, customer_id, status, amount, currency, refunded, \
                     decline_reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind(payment.id)
                .bind(&payment.order_id)
                .bind(&payment.customer_id)
                .bind(payment.status.as_str())
                .bind(payment.amount.amount)
                .bind(&payment.amount.currency)
                .bind(payment.refunded.amount)
                .bind(&payment.decline_reason)
                .bind(created)
                .execute(&mut *tx)
                .await?;
                tx.publish(&event).await?;
                tx.audit(&entry).await?;
                let response = seal.seal(&mut *tx, answer).await?;
                tx.commit().await?;
                Ok(response)
            }))
        }

        fn refund<'a>(
            &'a self,
            refund: &'a Refund,
            actor: &'a str,
            seal: &'a dyn Seal,
            answer: &'a Answer,
        ) -> BoxFuture<'a, StoreResult<RefundOutcome>> {
            Box::pin(self.retry.run(move || async move {
                let now = to_ms(refund.created_at);
                let mut tx = self.pool.begin_write().await?;
                // The check and the increment in one statement: a concurrent refund waits for the
                // row and re-checks against the committed total (module docs).
                let update = format!(
                    "UPDATE payments SET refunded = refunded + $2, updated_at = $3 \
                     WHERE id = $1 AND status = 'captured' AND currency = $4 AND refunded + $2 <= amount \
                     RETURNING {PAYMENT_COLUMNS}"
                );
                let updated: Option<PaymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(update))
                    .bind(refund.payment_id)
                    .bind(refund.amount.amount)
                    .bind(now)
                    .bind(&refund.amount.currency)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = updated else {
                    let select = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
                    let current: Option<PaymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                        .bind(refund.payment_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    // Nothing written: dropping `tx` rolls back.
                    return Ok(match current.map(PaymentRow::into_payment).transpose()? {
                        None => RefundOutcome::NotFound,
                        Some(p) if p.status != PaymentStatus::Captured => RefundOutcome::NotCaptured(p),
                        Some(p) if p.amount.currency != refund.amount.currency => RefundOutcome::CurrencyMismatch(p),
                        Some(p) => RefundOutcome::ExceedsCaptured(p),
                    });
                };
                let after = row.into_payment()?;
                let mut before = after.clone();
                before.refunded = Money::new(after.refunded.amount - refund.amount.amount, &after.refunded.currency);
                sqlx::query(
                    "INSERT INTO refunds (id, payment_id, amount, currency, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(refund.id)
                .bind(refund.payment_id)
                .bind(refund.amount.amount)
                .bind(&refund.amount.currency)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let id = after.id.to_string();
                let data = PaymentEvent {
                    amount: refund.amount.clone(),
                    refund_id: Some(refund.id),
                    decline_reason: None,
                    ..PaymentEvent::of(&after)
                };
                tx.publish(&Event::new("payment.refunded", &id, &data).map_err(json_error)?).await?;
                let entry = AuditEntry::new(actor, "payment.refund", ENTITY, &id).before(&before).after(&after);
                tx.audit(&entry).await?;
                let response = seal.seal(&mut *tx, answer).await?;
                tx.commit().await?;
                Ok(RefundOutcome::Refunded(after, response))
            }))
        }

        fn refunds(&self, payment_id: Uuid) -> BoxFuture<'_, StoreResult<Vec<Refund>>> {
            Box::pin(async move {
                let order = self.pool.dialect().insertion_order;
                let sql = format!(
                    "SELECT id, payment_id, amount, currency, created_at FROM refunds WHERE payment_id = $1 \
                     ORDER BY {order}"
                );
                let rows: Vec<RefundRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(payment_id).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(refund_of).collect())
            })
        }
    }
}
