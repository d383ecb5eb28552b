//! The store contract, on SQLite and (with `TEST_DATABASE_URL`) on PostgreSQL.

use std::sync::Arc;

use kit::audit::{AuditFilter, AuditLog};
use kit::db::{Db, StoreError};
use kit::outbox::Event;
use shop_orders::model::{FailureReason, LineRequest, Money, OrderStatus, Step};
use shop_orders::store::{Change, NewOrder, Priced, PricedLine, Stage, Store};
use time::{Duration, OffsetDateTime};

fn new_order(customer: &str, key: Option<&str>, lease_until: OffsetDateTime) -> NewOrder {
    NewOrder {
        id: uuid::Uuid::new_v4().to_string(),
        customer_id: customer.to_owned(),
        idempotency_key: key.map(str::to_owned),
        lines: vec![
            LineRequest { product_id: uuid::Uuid::new_v4().to_string(), quantity: 2 },
            LineRequest { product_id: uuid::Uuid::new_v4().to_string(), quantity: 1 },
        ],
        lease_until,
    }
}

fn priced() -> Priced {
    Priced {
        lines: vec![
            PricedLine { sku: "A".into(), name: "A".into(), unit_amount: 100, line_amount: 200 },
            PricedLine { sku: "B".into(), name: "B".into(), unit_amount: 50, line_amount: 50 },
        ],
        total: Money { amount: 250, currency: "EUR".into() },
    }
}

const ACCOUNT: Stage = Stage { status: OrderStatus::Pending, step: Step::Account };
const RESERVING: Stage = Stage { status: OrderStatus::Pending, step: Step::Reserving };

async fn outbox_types(db: &Db) -> Vec<String> {
    let sql = "SELECT type FROM kit_outbox ORDER BY seq";
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
    }
}

async fn suite(db: Db) {
    let store: Arc<dyn Store> = shop_orders::store::for_db(&db);
    let now = kit::db::now();
    let order =
        store.create(&new_order("c1", Some("k1"), now + Duration::minutes(1)), "c1", now).await.unwrap();
    assert_eq!((order.status, order.step), (OrderStatus::Pending, Step::Account));
    assert_eq!(order.lines.len(), 2);
    assert!(order.total.is_none() && order.lines[0].unit_price.is_none());
    assert_eq!(store.get(&order.id).await.unwrap(), Some(order.clone()));
    assert_eq!(store.by_key("c1", "k1").await.unwrap(), Some(order.clone()));
    assert_eq!(store.by_key("c2", "k1").await.unwrap(), None, "keys belong to their customer");
    let taken = store.create(&new_order("c1", Some("k1"), now), "c1", now).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");

    // Pricing stores the snapshot; a stale stage changes nothing.
    let change = Change { priced: Some(priced()), ..Change::to(OrderStatus::Pending, Step::Reserving) };
    let (priced_order, answer) =
        store.advance(&order.id, ACCOUNT, &change, "c1", None, None, now).await.unwrap().unwrap();
    assert!(answer.is_none());
    assert_eq!(priced_order.step, Step::Reserving);
    assert_eq!(priced_order.total, Some(Money { amount: 250, currency: "EUR".into() }));
    assert_eq!(priced_order.lines[0].line_total, Some(Money { amount: 200, currency: "EUR".into() }));
    assert_eq!(priced_order.lines[1].sku.as_deref(), Some("B"));
    assert!(store.advance(&order.id, ACCOUNT, &change, "c1", None, None, now).await.unwrap().is_none());

    // A terminal change with its event; a retryable failure frees the key.
    let fail = Change {
        failure_reason: Some(FailureReason::DownstreamFailure),
        clear_key: true,
        ..Change::to(OrderStatus::Failed, Step::Reserving)
    };
    let event = Event::new("order.failed", &order.id, &serde_json::json!({ "order_id": order.id })).unwrap();
    let (failed, _) =
        store.advance(&order.id, RESERVING, &fail, "c1", Some(&event), None, now).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.failure_reason),
        (OrderStatus::Failed, Some(FailureReason::DownstreamFailure))
    );
    assert_eq!(store.by_key("c1", "k1").await.unwrap(), None);
    assert_eq!(outbox_types(&db).await, ["order.failed"]);
    let trail = AuditLog::new(db.clone())
        .list(&AuditFilter { entity_id: Some(order.id.clone()), ..AuditFilter::default() }, 10, 0)
        .await
        .unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["order.create", "order.step.reserving", "order.failed"]);

    // Leases: only lapsed, non-terminal orders are claimed, and only once.
    let held = store.create(&new_order("c1", None, now + Duration::minutes(1)), "c1", now).await.unwrap();
    let lapsed = store.create(&new_order("c2", None, now - Duration::seconds(1)), "c2", now).await.unwrap();
    let claimed = store.claim_stuck(now, now + Duration::minutes(1), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [lapsed.id.as_str()]);
    assert!(store.claim_stuck(now, now + Duration::minutes(1), 10).await.unwrap().is_empty());
    assert!(store.take_lease(&held.id, now, now + Duration::minutes(1)).await.unwrap().is_none());
    let later = now + Duration::minutes(2);
    assert!(store.take_lease(&held.id, later, later + Duration::minutes(1)).await.unwrap().is_some());
    assert!(
        store.take_lease(&order.id, later, later).await.unwrap().is_none(),
        "terminal orders are not leased"
    );

    // Lists: newest first, per customer, paged.
    let mine: Vec<String> = store.list(Some("c1"), 10, 0).await.unwrap().into_iter().map(|o| o.id).collect();
    assert_eq!(mine, [held.id.clone(), order.id.clone()]);
    let all = store.list(None, 2, 0).await.unwrap();
    assert_eq!(all.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [lapsed.id.as_str(), held.id.as_str()]);
    assert_eq!(store.list(None, 2, 2).await.unwrap().len(), 1);

    // Two workers (replicas) claiming at once never get the same order.
    let mut stuck = Vec::new();
    for _ in 0..4 {
        stuck.push(
            store.create(&new_order("c3", None, later - Duration::seconds(1)), "c3", now).await.unwrap().id,
        );
    }
    let (a, b) = tokio::join!(
        store.claim_stuck(later, later + Duration::minutes(1), 2),
        store.claim_stuck(later, later + Duration::minutes(1), 2)
    );
    let mut claimed: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).map(|o| o.id).collect();
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(before, claimed.len(), "an order claimed twice: {claimed:?}");
    // Five are claimable (the four and the one claimed above, whose lease lapsed by then).
    assert_eq!(claimed.len(), 4, "{claimed:?}");
    assert!(claimed.iter().filter(|id| stuck.contains(id)).count() >= 3, "{claimed:?}");
}

#[tokio::test]
async fn store_contract() {
    kit::testing::each_database("orders-store", &shop_orders::MIGRATIONS, 4, suite).await;
}
