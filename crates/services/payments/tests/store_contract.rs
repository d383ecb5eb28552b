//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;

use http::StatusCode;
use kit::audit::{AuditFilter, AuditLog};
use kit::db::{Db, StoreError};
use serde_json::json;
use shop_payments::MIGRATIONS;
use shop_payments::model::{Money, Payment, PaymentStatus, Refund};
use shop_payments::store::{self, Answer, RefundOutcome, Store, Unsealed};
use uuid::Uuid;

/// Runs `suite` with a store and its database on SQLite, then on PostgreSQL when configured.
async fn each_store<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Store>, Db) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("payments-store", &MIGRATIONS, 8, |db| suite(store::for_db(&db), db)).await;
}

fn payment(order_id: &str, amount: i64, status: PaymentStatus) -> Payment {
    Payment {
        id: Uuid::new_v4(),
        order_id: order_id.to_owned(),
        customer_id: "user-1".to_owned(),
        status,
        amount: Money::new(amount, "EUR"),
        refunded: Money::new(0, "EUR"),
        decline_reason: (status == PaymentStatus::Declined).then(|| "card_declined".to_owned()),
        created_at: kit::db::now(),
    }
}

fn refund_of(payment: &Payment, amount: i64, currency: &str) -> Refund {
    Refund {
        id: Uuid::new_v4(),
        payment_id: payment.id,
        amount: Money::new(amount, currency),
        created_at: kit::db::now(),
    }
}

fn answer() -> Answer {
    Answer { status: StatusCode::CREATED, body: json!({ "ok": true }), headers: Vec::new() }
}

async fn record(store: &dyn Store, payment: &Payment) {
    let response = store.record_payment(payment, "service:orders", &Unsealed, &answer()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// The outbox's event types, in order of writing.
async fn events(db: &Db) -> Vec<String> {
    const SQL: &str = "SELECT type FROM kit_outbox ORDER BY created_at, type";
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
    }
}

#[tokio::test]
async fn payments_are_stored_with_their_event_and_audit_entry() {
    each_store(|store, db| async move {
        let captured = payment("order-1", 1000, PaymentStatus::Captured);
        let declined = payment("order-1", 1000, PaymentStatus::Declined);
        record(&*store, &captured).await;
        record(&*store, &declined).await;
        assert_eq!(store.payment(captured.id).await.unwrap().as_ref(), Some(&captured));
        assert_eq!(store.payment(Uuid::new_v4()).await.unwrap(), None);
        assert_eq!(store.payments_of_order("order-1").await.unwrap(), [captured.clone(), declined.clone()]);
        assert!(store.payments_of_order("order-2").await.unwrap().is_empty());

        let mut types = events(&db).await;
        types.sort();
        assert_eq!(types, ["payment.captured", "payment.failed"]);
        let audit = AuditLog::new(db.clone());
        let filter = AuditFilter { entity_id: Some(declined.id.to_string()), ..AuditFilter::default() };
        let entries = audit.list(&filter, 10, 0).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].action.as_str(), entries[0].actor.as_str()),
            ("payment.decline", "service:orders")
        );

        // The same id twice is refused, and nothing of the second attempt is left.
        let again = store.record_payment(&captured, "x", &Unsealed, &answer()).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(events(&db).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn refunds_stay_within_the_capture() {
    each_store(|store, db| async move {
        let captured = payment("order-3", 1000, PaymentStatus::Captured);
        record(&*store, &captured).await;

        let first = refund_of(&captured, 400, "EUR");
        match store.refund(&first, "admin-1", &Unsealed, &answer()).await.unwrap() {
            RefundOutcome::Refunded(after, response) => {
                assert_eq!(after.refunded, Money::new(400, "EUR"));
                assert_eq!(response.status(), StatusCode::CREATED);
            }
            other => panic!("{other:?}"),
        }
        let full = refund_of(&captured, 600, "EUR");
        assert!(matches!(
            store.refund(&full, "admin-1", &Unsealed, &answer()).await.unwrap(),
            RefundOutcome::Refunded(..)
        ));
        let over = refund_of(&captured, 1, "EUR");
        match store.refund(&over, "admin-1", &Unsealed, &answer()).await.unwrap() {
            RefundOutcome::ExceedsCaptured(p) => assert_eq!(p.refunded.amount, 1000),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.refunds(captured.id).await.unwrap(), [first, full]);

        let other = payment("order-4", 500, PaymentStatus::Captured);
        record(&*store, &other).await;
        assert!(matches!(
            store.refund(&refund_of(&other, 1, "USD"), "a", &Unsealed, &answer()).await.unwrap(),
            RefundOutcome::CurrencyMismatch(_)
        ));
        let declined = payment("order-4", 500, PaymentStatus::Declined);
        record(&*store, &declined).await;
        assert!(matches!(
            store.refund(&refund_of(&declined, 1, "EUR"), "a", &Unsealed, &answer()).await.unwrap(),
            RefundOutcome::NotCaptured(_)
        ));
        let ghost = Refund { payment_id: Uuid::new_v4(), ..refund_of(&other, 1, "EUR") };
        assert!(matches!(
            store.refund(&ghost, "a", &Unsealed, &answer()).await.unwrap(),
            RefundOutcome::NotFound
        ));
        assert!(store.refunds(other.id).await.unwrap().is_empty(), "refused refunds leave nothing");
        let refunded = events(&db).await.iter().filter(|t| *t == "payment.refunded").count();
        assert_eq!(refunded, 2);
    })
    .await;
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_capture() {
    each_store(|store, _db| async move {
        let captured = payment("order-5", 1000, PaymentStatus::Captured);
        record(&*store, &captured).await;
        let refunds: Vec<Refund> = (0..16).map(|_| refund_of(&captured, 100, "EUR")).collect();
        let outcomes = futures_util::future::join_all(refunds.iter().map(|r| {
            let store = Arc::clone(&store);
            async move { store.refund(r, "admin-1", &Unsealed, &answer()).await }
        }))
        .await;
        let done = outcomes.iter().filter(|o| matches!(o, Ok(RefundOutcome::Refunded(..)))).count();
        for outcome in &outcomes {
            assert!(
                matches!(
                    outcome,
                    Ok(RefundOutcome::Refunded(..) | RefundOutcome::ExceedsCaptured(_))
                        | Err(StoreError::Busy(_))
                ),
                "{outcome:?}"
            );
        }
        assert!(done <= 10, "{done} refunds of 100 against 1000");
        let after = store.payment(captured.id).await.unwrap().unwrap();
        assert_eq!(after.refunded.amount, 100 * i64::try_from(done).unwrap());
        assert_eq!(store.refunds(captured.id).await.unwrap().len(), done);
    })
    .await;
}

#[tokio::test]
async fn the_schema_refuses_refunds_above_the_capture() {
    each_store(|store, db| async move {
        let captured = payment("order-6", 100, PaymentStatus::Captured);
        record(&*store, &captured).await;
        let sql = "UPDATE payments SET refunded = 101 WHERE id = $1";
        let result = match &db {
            Db::Sqlite(pool) => sqlx::query(sql).bind(captured.id).execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query(sql).bind(captured.id).execute(pool).await.map(drop),
        };
        assert!(result.is_err(), "the CHECK constraint holds");
    })
    .await;
}
