//! [`Store`](super::Store) on SQLite ([`SqliteStore`]) and on PostgreSQL ([`PgStore`]): one
//! implementation, written once and generated for both pools by [`kit::sql_store!`], so the
//! transaction logic that prevents overselling exists once. What differs comes from the pool
//! ([`kit::db::SqlPool`]): how a write transaction starts (`begin_write`) and the row-lock suffix of
//! a `SELECT` (`dialect().row_lock`); see the [module docs](super). Every write is one transaction
//! run by the store's `retry` ([`kit::db::Retry::run`]).

use std::time::Duration;

use futures_util::future::BoxFuture;
use kit::db::{SqlPool as _, StoreError};
use kit::extract::Preconditions;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Action, LedgerRow, LineRef, RESERVATION_COLUMNS, ReservationRow, ReserveOutcome, STOCK_COLUMNS,
    SYSTEM_ACTOR, Shortage, StockRow, StockWrite, Store, StoreResult, Transition, below_reserved, settled,
    stock_of, to_ms, ttl_ms,
};
use crate::model::{
    LedgerEntry, LedgerReason, MAX_ON_HAND, Reservation, ReservationLine, ReservationRequest,
    ReservationStatus, Stock,
};

/// The lines of reservation `id`, in request order, read through `$executor` (the pool or a
/// transaction of either backend); a macro so it is typed per backend like the store body.
macro_rules! lines {
    ($executor:expr, $id:expr) => {{
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT sku, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY line_no",
        )
        .bind($id)
        .fetch_all($executor)
        .await?;
        rows.into_iter().map(|(sku, quantity)| ReservationLine { sku, quantity }).collect::<Vec<_>>()
    }};
}

/// Appends a ledger entry through `$tx`: `$delta` units, `$after` on hand, `$reason`, `$actor`,
/// the committed reservation (`Option<Uuid>`), at `$now` (ms).
macro_rules! ledger {
    ($tx:expr, $sku:expr, $delta:expr, $after:expr, $reason:expr, $actor:expr, $reservation:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO stock_ledger (sku, delta, on_hand_after, reason, actor, reservation_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($sku)
        .bind($delta)
        .bind($after)
        .bind(LedgerReason::as_str($reason))
        .bind($actor)
        .bind($reservation)
        .bind($now)
        .execute($tx)
        .await?
    };
}

kit::sql_store! {
    /// Stock and reservations in SQLite.
    sqlite: SqliteStore,
    /// Stock and reservations in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn stock<'a>(&'a self, sku: &'a str) -> BoxFuture<'a, StoreResult<Option<Stock>>> {
            Box::pin(async move {
                let sql = format!("SELECT {STOCK_COLUMNS} FROM stock WHERE sku = $1");
                let row: Option<StockRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(sku).fetch_optional(&self.pool).await?;
                Ok(row.map(stock_of))
            })
        }

        fn set_stock<'a>(
            &'a self,
            sku: &'a str,
            on_hand: i64,
            pre: &'a Preconditions,
            actor: &'a str,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<StockWrite>> {
            Box::pin(self.retry.run(move || async move {
                let now = to_ms(now);
                let lock = self.pool.dialect().row_lock;
                let select = format!("SELECT {STOCK_COLUMNS} FROM stock WHERE sku = $1{lock}");
                let mut tx = self.pool.begin_write().await?;
                let mut current: Option<StockRow> = sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
                    .bind(sku)
                    .fetch_optional(&mut *tx)
                    .await?;
                if current.is_none() {
                    if !pre.hold(None) {
                        return Ok(StockWrite::PreconditionFailed(None));
                    }
                    let sql = format!(
                        "INSERT INTO stock (sku, on_hand, reserved, version, updated_at) VALUES ($1, $2, 0, 1, $3) \
                         ON CONFLICT (sku) DO NOTHING RETURNING {STOCK_COLUMNS}"
                    );
                    let inserted: Option<StockRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(sku)
                        .bind(on_hand)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = inserted {
                        ledger!(&mut *tx, sku, on_hand, on_hand, LedgerReason::Set, actor, None::<Uuid>, now);
                        tx.commit().await?;
                        return Ok(StockWrite::Done(stock_of(row), true));
                    }
                    // Created by a concurrent request that committed meanwhile (PostgreSQL; the
                    // INSERT waited for it): under READ COMMITTED this statement sees and locks it.
                    current = sqlx::query_as(sqlx::AssertSqlSafe(select))
                        .bind(sku)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                let Some(row) = current else {
                    return Err(StoreError::Conflict(format!("SKU {sku} is being changed concurrently; try again")));
                };
                let before = stock_of(row);
                if !pre.hold(Some(&before.etag())) {
                    return Ok(StockWrite::PreconditionFailed(Some(before)));
                }
                if before.reserved > on_hand {
                    return Err(below_reserved(sku, on_hand, before.reserved));
                }
                let sql = format!(
                    "UPDATE stock SET on_hand = $2, version = version + 1, updated_at = $3 WHERE sku = $1 \
                     RETURNING {STOCK_COLUMNS}"
                );
                let row: StockRow =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(sku).bind(on_hand).bind(now).fetch_one(&mut *tx).await?;
                let delta = on_hand - before.on_hand;
                ledger!(&mut *tx, sku, delta, on_hand, LedgerReason::Set, actor, None::<Uuid>, now);
                tx.commit().await?;
                Ok(StockWrite::Done(stock_of(row), false))
            }))
        }

        fn adjust_stock<'a>(
            &'a self,
            sku: &'a str,
            delta: i64,
            pre: &'a Preconditions,
            actor: &'a str,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<StockWrite>> {
            Box::pin(self.retry.run(move || async move {
                let now = to_ms(now);
                let lock = self.pool.dialect().row_lock;
                let select = format!("SELECT {STOCK_COLUMNS} FROM stock WHERE sku = $1{lock}");
                let mut tx = self.pool.begin_write().await?;
                let current: Option<StockRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(select)).bind(sku).fetch_optional(&mut *tx).await?;
                let Some(row) = current else { return Ok(StockWrite::NotFound) };
                let before = stock_of(row);
                if !pre.hold(Some(&before.etag())) {
                    return Ok(StockWrite::PreconditionFailed(Some(before)));
                }
                let after = before.on_hand.saturating_add(delta);
                if after < before.reserved || after > MAX_ON_HAND {
                    return Err(StoreError::Conflict(format!(
                        "adjusting SKU {sku} by {delta} would leave {after} on hand; it must stay between \
                         {} (reserved) and {MAX_ON_HAND}",
                        before.reserved
                    )));
                }
                // Events: `stock.low` is written here (and in `reserve`), in this transaction,
                // when the outbox lands (a later issue).
                let sql = format!(
                    "UPDATE stock SET on_hand = $2, version = version + 1, updated_at = $3 WHERE sku = $1 \
                     RETURNING {STOCK_COLUMNS}"
                );
                let row: StockRow =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(sku).bind(after).bind(now).fetch_one(&mut *tx).await?;
                ledger!(&mut *tx, sku, delta, after, LedgerReason::Adjustment, actor, None::<Uuid>, now);
                tx.commit().await?;
                Ok(StockWrite::Done(stock_of(row), false))
            }))
        }

        fn ledger<'a>(
            &'a self,
            sku: &'a str,
            limit: u32,
            offset: u64,
        ) -> BoxFuture<'a, StoreResult<Option<Vec<LedgerEntry>>>> {
            Box::pin(async move {
                let exists: Option<i64> = sqlx::query_scalar("SELECT on_hand FROM stock WHERE sku = $1")
                    .bind(sku)
                    .fetch_optional(&self.pool)
                    .await?;
                if exists.is_none() {
                    return Ok(None);
                }
                let rows: Vec<LedgerRow> = sqlx::query_as(
                    "SELECT sku, delta, on_hand_after, reason, actor, reservation_id, at FROM stock_ledger \
                     WHERE sku = $1 ORDER BY seq LIMIT $2 OFFSET $3",
                )
                .bind(sku)
                .bind(i64::from(limit))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(LedgerRow::into_entry).collect::<StoreResult<Vec<_>>>().map(Some)
            })
        }

        fn reserve<'a>(
            &'a self,
            request: &'a ReservationRequest,
            now: OffsetDateTime,
            ttl: Duration,
        ) -> BoxFuture<'a, StoreResult<ReserveOutcome>> {
            Box::pin(async move {
                let outcome = self.retry.run(move || async move {
                let now = to_ms(now);
                let mut tx = self.pool.begin_write().await?;
                // The header first: a concurrent request for the same order waits here (unique
                // index) until this transaction ends, then finds this reservation.
                let id: Option<Uuid> = sqlx::query_scalar(
                    "INSERT INTO reservations (id, order_id, status, created_at, expires_at, updated_at) \
                     VALUES ($1, $2, 'reserved', $3, $4, $3) ON CONFLICT (order_id) DO NOTHING RETURNING id",
                )
                .bind(Uuid::new_v4())
                .bind(&request.order_id)
                .bind(now)
                .bind(now.saturating_add(ttl_ms(ttl)))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else {
                    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1");
                    let row: ReservationRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(&request.order_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let lines = lines!(&mut *tx, row.id);
                    let existing = row.into_reservation(lines)?;
                    return Ok(if existing.same_lines(&request.lines) {
                        ReserveOutcome::Replayed(existing)
                    } else {
                        ReserveOutcome::OrderIdTaken(existing)
                    });
                };

                let mut order: Vec<_> = request.lines.iter().enumerate().collect();
                order.sort_by(|a, b| a.1.sku.cmp(&b.1.sku));
                let (mut unknown, mut short) = (Vec::new(), Vec::new());
                for &(index, line) in &order {
                    let done = sqlx::query(
                        "UPDATE stock SET reserved = reserved + $2, version = version + 1, updated_at = $3 \
                         WHERE sku = $1 AND on_hand - reserved >= $2",
                    )
                    .bind(&line.sku)
                    .bind(line.quantity)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if done == 1 {
                        continue;
                    }
                    let current: Option<(i64, i64)> =
                        sqlx::query_as("SELECT on_hand, reserved FROM stock WHERE sku = $1")
                            .bind(&line.sku)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let line_ref = LineRef { index, sku: line.sku.clone() };
                    match current {
                        None => unknown.push(line_ref),
                        Some((on_hand, reserved)) => short.push(Shortage {
                            line: line_ref,
                            requested: line.quantity,
                            available: on_hand - reserved,
                        }),
                    }
                }
                if !unknown.is_empty() {
                    unknown.sort_by_key(|l| l.index);
                    return Ok(ReserveOutcome::UnknownSkus(unknown)); // dropping `tx` rolls back
                }
                if !short.is_empty() {
                    short.sort_by_key(|s| s.line.index);
                    return Ok(ReserveOutcome::Insufficient(short));
                }
                for (index, line) in request.lines.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO reservation_lines (reservation_id, line_no, sku, quantity) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(i64::try_from(index).unwrap_or(i64::MAX))
                    .bind(&line.sku)
                    .bind(line.quantity)
                    .execute(&mut *tx)
                    .await?;
                }
                // Events: `stock.low` for SKUs now below their threshold is written here, in
                // this transaction, when the outbox lands (a later issue).
                tx.commit().await?;
                let row = ReservationRow {
                    id,
                    order_id: request.order_id.clone(),
                    status: ReservationStatus::Reserved.as_str().to_owned(),
                    created_at: now,
                    expires_at: now.saturating_add(ttl_ms(ttl)),
                    updated_at: now,
                };
                Ok(ReserveOutcome::Created(row.into_reservation(request.lines.clone())?))
                }).await?;
                // A replay never shows a due reservation as pending: it expires first (its stock
                // is given back), as a read of it would.
                match outcome {
                    ReserveOutcome::Replayed(r)
                        if r.status == ReservationStatus::Reserved && r.expires_at <= now =>
                    {
                        Ok(ReserveOutcome::Replayed(settled(self.transition(r.id, Action::Expire, SYSTEM_ACTOR, now).await?).unwrap_or(r)))
                    }
                    other => Ok(other),
                }
            })
        }

        fn reservation(
            &self,
            id: Uuid,
            now: OffsetDateTime,
        ) -> BoxFuture<'_, StoreResult<Option<Reservation>>> {
            Box::pin(async move {
                let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1");
                let row: Option<ReservationRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
                let Some(row) = row else { return Ok(None) };
                if row.status == ReservationStatus::Reserved.as_str() && row.expires_at <= to_ms(now) {
                    return Ok(settled(self.transition(id, Action::Expire, SYSTEM_ACTOR, now).await?));
                }
                let lines = lines!(&self.pool, id);
                Ok(Some(row.into_reservation(lines)?))
            })
        }

        fn reservation_for_order<'a>(
            &'a self,
            order_id: &'a str,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<Option<Reservation>>> {
            Box::pin(async move {
                let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM reservations WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&self.pool)
                    .await?;
                match id {
                    Some(id) => self.reservation(id, now).await,
                    None => Ok(None),
                }
            })
        }

        fn transition<'a>(
            &'a self,
            id: Uuid,
            action: Action,
            actor: &'a str,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, StoreResult<Transition>> {
            Box::pin(self.retry.run(move || async move {
                let now = to_ms(now);
                let mut tx = self.pool.begin_write().await?;
                let lock = self.pool.dialect().row_lock;
                let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1{lock}");
                let row: Option<ReservationRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await?;
                let Some(mut row) = row else { return Ok(Transition::NotFound) };
                let lines = lines!(&mut *tx, id);
                if row.status != ReservationStatus::Reserved.as_str() {
                    let status = row.status.clone();
                    let reservation = row.into_reservation(lines)?;
                    return Ok(if action.settled_by(reservation.status) {
                        Transition::AlreadyDone(reservation)
                    } else {
                        tracing::debug!(%id, %status, ?action, "reservation transition refused");
                        Transition::Refused(reservation)
                    });
                }
                let due = row.expires_at <= now;
                let target = match action {
                    Action::Commit if !due => ReservationStatus::Committed,
                    Action::Release if !due => ReservationStatus::Released,
                    Action::Commit | Action::Release => ReservationStatus::Expired,
                    Action::Expire if due => ReservationStatus::Expired,
                    Action::Expire => {
                        return Ok(Transition::Refused(row.into_reservation(lines)?));
                    }
                };
                let changed = sqlx::query(
                    "UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1 AND status = 'reserved'",
                )
                .bind(id)
                .bind(target.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Err(StoreError::Conflict(format!("reservation {id} changed concurrently; try again")));
                }
                let mut sorted: Vec<&ReservationLine> = lines.iter().collect();
                sorted.sort_by(|a, b| a.sku.cmp(&b.sku));
                for line in sorted {
                    if target == ReservationStatus::Committed {
                        let on_hand: i64 = sqlx::query_scalar(
                            "UPDATE stock SET on_hand = on_hand - $2, reserved = reserved - $2, \
                             version = version + 1, updated_at = $3 WHERE sku = $1 RETURNING on_hand",
                        )
                        .bind(&line.sku)
                        .bind(line.quantity)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        ledger!(&mut *tx, &line.sku, -line.quantity, on_hand, LedgerReason::Commit, actor, Some(id), now);
                    } else {
                        sqlx::query(
                            "UPDATE stock SET reserved = reserved - $2, version = version + 1, updated_at = $3 \
                             WHERE sku = $1",
                        )
                        .bind(&line.sku)
                        .bind(line.quantity)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                target.as_str().clone_into(&mut row.status);
                row.updated_at = now;
                let reservation = row.into_reservation(lines)?;
                Ok(if action.settled_by(target) {
                    Transition::Done(reservation)
                } else {
                    Transition::Refused(reservation)
                })
            }))
        }

        fn expire_due(&self, now: OffsetDateTime, limit: u32) -> BoxFuture<'_, StoreResult<u64>> {
            Box::pin(async move {
                let due: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM reservations WHERE status = 'reserved' AND expires_at <= $1 \
                     ORDER BY expires_at LIMIT $2",
                )
                .bind(to_ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let mut expired = 0;
                for id in due {
                    if matches!(self.transition(id, Action::Expire, SYSTEM_ACTOR, now).await?, Transition::Done(_)) {
                        expired += 1;
                    }
                }
                Ok(expired)
            })
        }
    }
}
