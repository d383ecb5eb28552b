//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;
use std::time::Duration;

use kit::db::StoreError;
use shop_inventory::MIGRATIONS;
use shop_inventory::model::{ReservationLine, ReservationRequest, ReservationStatus, Stock};
use shop_inventory::store::{self, Action, ReserveOutcome, Store, Transition};
use time::OffsetDateTime;

const TTL: Duration = Duration::from_mins(1);

fn request(order_id: &str, lines: &[(&str, i64)]) -> ReservationRequest {
    ReservationRequest {
        order_id: order_id.to_owned(),
        lines: lines
            .iter()
            .map(|&(sku, quantity)| ReservationLine { sku: sku.to_owned(), quantity })
            .collect(),
    }
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

/// Runs `suite` on SQLite, then on PostgreSQL when configured.
async fn each_store<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("inventory-store", &MIGRATIONS, 8, |db| suite(store::for_db(&db))).await;
}

async fn stock(store: &dyn Store, sku: &str) -> (i64, i64) {
    let s = store.stock(sku).await.unwrap().unwrap();
    assert_eq!(s.available, s.on_hand - s.reserved);
    (s.on_hand, s.reserved)
}

async fn created(
    store: &dyn Store,
    req: &ReservationRequest,
    now: OffsetDateTime,
) -> shop_inventory::model::Reservation {
    match store.reserve(req, now, TTL).await.unwrap() {
        ReserveOutcome::Created(r) => r,
        other => panic!("expected a new reservation, got {other:?}"),
    }
}

#[tokio::test]
async fn stock_set_get_adjust() {
    each_store(|store| async move {
        assert_eq!(store.stock("MUG-1").await.unwrap(), None);
        let (s, was_created) = store.set_stock("MUG-1", 10, t0()).await.unwrap();
        assert!(was_created);
        assert_eq!(s, Stock::new("MUG-1".into(), 10, 0));
        let (s, was_created) = store.set_stock("MUG-1", 7, t0()).await.unwrap();
        assert!(!was_created);
        assert_eq!(s.on_hand, 7);
        assert_eq!(store.adjust_stock("MUG-1", 5, t0()).await.unwrap().unwrap().on_hand, 12);
        assert_eq!(store.adjust_stock("MUG-1", -12, t0()).await.unwrap().unwrap().on_hand, 0);
        assert!(matches!(store.adjust_stock("MUG-1", -1, t0()).await, Err(StoreError::Conflict(_))));
        assert_eq!(store.adjust_stock("NOPE", 1, t0()).await.unwrap(), None);

        // Never below what is reserved, by either route.
        store.set_stock("MUG-1", 5, t0()).await.unwrap();
        created(store.as_ref(), &request("o-1", &[("MUG-1", 3)]), t0()).await;
        match store.set_stock("MUG-1", 2, t0()).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("3 units reserved"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(store.adjust_stock("MUG-1", -3, t0()).await, Err(StoreError::Conflict(_))));
        assert_eq!(stock(store.as_ref(), "MUG-1").await, (5, 3));
        assert_eq!(store.set_stock("MUG-1", 3, t0()).await.unwrap().0.available, 0);
    })
    .await;
}

#[tokio::test]
async fn reserve_is_all_or_nothing() {
    each_store(|store| async move {
        store.set_stock("A", 5, t0()).await.unwrap();
        store.set_stock("B", 1, t0()).await.unwrap();
        store.set_stock("C", 0, t0()).await.unwrap();

        match store.reserve(&request("o-1", &[("A", 2), ("B", 2), ("C", 1)]), t0(), TTL).await.unwrap() {
            ReserveOutcome::Insufficient(short) => {
                let got: Vec<_> = short
                    .iter()
                    .map(|s| (s.line.index, s.line.sku.as_str(), s.requested, s.available))
                    .collect();
                assert_eq!(got, [(1, "B", 2, 1), (2, "C", 1, 0)]);
            }
            other => panic!("expected insufficient stock, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (5, 0), "A was rolled back");
        match store.reserve(&request("o-1", &[("A", 1), ("GHOST", 1)]), t0(), TTL).await.unwrap() {
            ReserveOutcome::UnknownSkus(lines) => {
                assert_eq!((lines[0].index, lines[0].sku.as_str()), (1, "GHOST"));
            }
            other => panic!("expected unknown SKUs, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (5, 0));

        // The failed attempts left no trace of the order id.
        let r = created(store.as_ref(), &request("o-1", &[("B", 1), ("A", 5)]), t0()).await;
        assert_eq!(r.status, ReservationStatus::Reserved);
        assert_eq!(r.lines[0].sku, "B", "lines keep request order");
        assert_eq!(r.expires_at, t0() + TTL);
        assert_eq!(stock(store.as_ref(), "A").await, (5, 5));
        assert_eq!(stock(store.as_ref(), "B").await, (1, 1));
        assert_eq!(store.reservation(r.id, t0()).await.unwrap(), Some(r));
    })
    .await;
}

#[tokio::test]
async fn reserve_is_idempotent_per_order() {
    each_store(|store| async move {
        store.set_stock("A", 10, t0()).await.unwrap();
        store.set_stock("B", 10, t0()).await.unwrap();
        let first = created(store.as_ref(), &request("o-1", &[("A", 2), ("B", 1)]), t0()).await;
        let later = t0() + Duration::from_secs(5);
        match store.reserve(&request("o-1", &[("B", 1), ("A", 2)]), later, TTL).await.unwrap() {
            ReserveOutcome::Replayed(r) => assert_eq!(r, first),
            other => panic!("expected the same reservation, got {other:?}"),
        }
        match store.reserve(&request("o-1", &[("A", 3)]), later, TTL).await.unwrap() {
            ReserveOutcome::OrderIdTaken(r) => assert_eq!(r.id, first.id),
            other => panic!("expected order id taken, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (10, 2), "replays reserve nothing");
        // A replay after release returns the released reservation; it does not reserve again.
        store.transition(first.id, Action::Release, later).await.unwrap();
        match store.reserve(&request("o-1", &[("A", 2), ("B", 1)]), later, TTL).await.unwrap() {
            ReserveOutcome::Replayed(r) => assert_eq!(r.status, ReservationStatus::Released),
            other => panic!("expected the same reservation, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (10, 0));
    })
    .await;
}

#[tokio::test]
async fn commit_and_release() {
    each_store(|store| async move {
        store.set_stock("A", 10, t0()).await.unwrap();
        let now = t0() + Duration::from_secs(1);
        let a = created(store.as_ref(), &request("o-1", &[("A", 3)]), t0()).await;
        match store.transition(a.id, Action::Commit, now).await.unwrap() {
            Transition::Done(r) => {
                assert_eq!(r.status, ReservationStatus::Committed);
                assert_eq!(r.updated_at, now);
            }
            other => panic!("expected a commit, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "committed units left on-hand");
        assert!(matches!(
            store.transition(a.id, Action::Commit, now).await.unwrap(),
            Transition::AlreadyDone(_)
        ));
        match store.transition(a.id, Action::Release, now).await.unwrap() {
            Transition::Refused(r) => assert_eq!(r.status, ReservationStatus::Committed),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0));

        let b = created(store.as_ref(), &request("o-2", &[("A", 4)]), t0()).await;
        assert_eq!(stock(store.as_ref(), "A").await, (7, 4));
        assert!(matches!(store.transition(b.id, Action::Release, now).await.unwrap(), Transition::Done(_)));
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "released units are available again");
        match store.transition(b.id, Action::Release, now).await.unwrap() {
            Transition::AlreadyDone(r) => assert_eq!(r.status, ReservationStatus::Released),
            other => panic!("releasing twice is harmless, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "the second release gave nothing back");
        assert!(matches!(store.transition(b.id, Action::Commit, now).await.unwrap(), Transition::Refused(_)));

        let missing = uuid::Uuid::new_v4();
        assert_eq!(store.transition(missing, Action::Commit, now).await.unwrap(), Transition::NotFound);
        assert_eq!(store.reservation(missing, now).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn reservations_expire() {
    each_store(|store| async move {
        store.set_stock("A", 10, t0()).await.unwrap();
        let first = created(store.as_ref(), &request("o-a", &[("A", 1)]), t0()).await;
        let second = created(store.as_ref(), &request("o-b", &[("A", 2)]), t0()).await;
        let third =
            created(store.as_ref(), &request("o-c", &[("A", 3)]), t0() + Duration::from_secs(30)).await;
        let fourth = created(store.as_ref(), &request("o-d", &[("A", 4)]), t0()).await;
        assert_eq!(stock(store.as_ref(), "A").await, (10, 10));
        let late = t0() + TTL + Duration::from_secs(1);

        // Lazily: committing a due reservation expires it instead (409 at the API).
        match store.transition(first.id, Action::Commit, late).await.unwrap() {
            Transition::Refused(r) => assert_eq!(r.status, ReservationStatus::Expired),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (10, 9));
        // Reading a due reservation shows it expired; releasing one is harmless.
        assert_eq!(
            store.reservation(second.id, late).await.unwrap().unwrap().status,
            ReservationStatus::Expired
        );
        assert!(matches!(
            store.transition(second.id, Action::Release, late).await.unwrap(),
            Transition::AlreadyDone(_)
        ));
        assert_eq!(stock(store.as_ref(), "A").await, (10, 7));

        // The sweep: only `fourth` is still pending and due; `third` is not due yet.
        assert_eq!(store.expire_due(late, 100).await.unwrap(), 1);
        assert_eq!(store.expire_due(late, 100).await.unwrap(), 0);
        assert_eq!(
            store.reservation(fourth.id, late).await.unwrap().unwrap().status,
            ReservationStatus::Expired
        );
        assert_eq!(
            store.reservation(third.id, late).await.unwrap().unwrap().status,
            ReservationStatus::Reserved
        );
        assert_eq!(stock(store.as_ref(), "A").await, (10, 3));
        assert!(matches!(
            store.transition(third.id, Action::Commit, late).await.unwrap(),
            Transition::Done(_)
        ));
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0));

        // Batches: several due reservations, a batch of 2 at a time.
        for i in 0..5 {
            created(store.as_ref(), &request(&format!("o-batch-{i}"), &[("A", 1)]), t0()).await;
        }
        assert_eq!(store.expire_due(late, 2).await.unwrap(), 2);
        assert_eq!(shop_inventory::expiry::sweep(store.as_ref(), late, 2).await, 3);
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0));
    })
    .await;
}

#[tokio::test]
async fn concurrent_reservations_never_oversell() {
    each_store(|store| async move {
        store.set_stock("HOT", 10, t0()).await.unwrap();
        store.set_stock("COLD", 100, t0()).await.unwrap();
        let attempts = (0..40).map(|i| {
            let store = store.clone();
            // Two-line reservations taking the SKUs in both orders: no deadlocks either.
            let lines: &[(&str, i64)] =
                if i % 2 == 0 { &[("HOT", 1), ("COLD", 1)] } else { &[("COLD", 1), ("HOT", 1)] };
            let req = request(&format!("o-{i}"), lines);
            tokio::spawn(async move { store.reserve(&req, t0(), TTL).await })
        });
        let mut created = 0;
        let mut short = 0;
        for attempt in attempts.collect::<Vec<_>>() {
            match attempt.await.unwrap().unwrap() {
                ReserveOutcome::Created(_) => created += 1,
                ReserveOutcome::Insufficient(_) => short += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((created, short), (10, 30));
        assert_eq!(stock(store.as_ref(), "HOT").await, (10, 10));
        assert_eq!(stock(store.as_ref(), "COLD").await, (100, 10));
    })
    .await;
}
