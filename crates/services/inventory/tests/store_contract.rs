//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;
use std::time::Duration;

use kit::db::StoreError;
use kit::extract::Preconditions;
use shop_inventory::MIGRATIONS;
use shop_inventory::model::{LedgerReason, ReservationLine, ReservationRequest, ReservationStatus, Stock};
use shop_inventory::store::{self, Action, ReserveOutcome, StockWrite, Store, Transition};
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

const ACTOR: &str = "tester";

/// An unconditional set (the API refuses those; the store takes them).
async fn set(
    store: &dyn Store,
    sku: &str,
    on_hand: i64,
    now: OffsetDateTime,
) -> Result<(Stock, bool), StoreError> {
    match store.set_stock(sku, on_hand, &Preconditions::default(), ACTOR, now).await? {
        StockWrite::Done(stock, created) => Ok((stock, created)),
        other => panic!("expected a write, got {other:?}"),
    }
}

async fn adjust(
    store: &dyn Store,
    sku: &str,
    delta: i64,
    now: OffsetDateTime,
) -> Result<Option<Stock>, StoreError> {
    match store.adjust_stock(sku, delta, &Preconditions::default(), ACTOR, now).await? {
        StockWrite::Done(stock, _) => Ok(Some(stock)),
        StockWrite::NotFound => Ok(None),
        other @ StockWrite::PreconditionFailed(_) => panic!("expected a write, got {other:?}"),
    }
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
        let (s, was_created) = set(store.as_ref(), "MUG-1", 10, t0()).await.unwrap();
        assert!(was_created);
        assert_eq!(s, Stock::new("MUG-1".into(), 10, 0, 1));
        let (s, was_created) = set(store.as_ref(), "MUG-1", 7, t0()).await.unwrap();
        assert!(!was_created);
        assert_eq!(s.on_hand, 7);
        assert_eq!(adjust(store.as_ref(), "MUG-1", 5, t0()).await.unwrap().unwrap().on_hand, 12);
        assert_eq!(adjust(store.as_ref(), "MUG-1", -12, t0()).await.unwrap().unwrap().on_hand, 0);
        assert!(matches!(adjust(store.as_ref(), "MUG-1", -1, t0()).await, Err(StoreError::Conflict(_))));
        assert_eq!(adjust(store.as_ref(), "NOPE", 1, t0()).await.unwrap(), None);

        // Never below what is reserved, by either route.
        set(store.as_ref(), "MUG-1", 5, t0()).await.unwrap();
        created(store.as_ref(), &request("o-1", &[("MUG-1", 3)]), t0()).await;
        match set(store.as_ref(), "MUG-1", 2, t0()).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("3 units reserved"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(adjust(store.as_ref(), "MUG-1", -3, t0()).await, Err(StoreError::Conflict(_))));
        assert_eq!(stock(store.as_ref(), "MUG-1").await, (5, 3));
        assert_eq!(set(store.as_ref(), "MUG-1", 3, t0()).await.unwrap().0.available, 0);
    })
    .await;
}

#[tokio::test]
async fn reserve_is_all_or_nothing() {
    each_store(|store| async move {
        set(store.as_ref(), "A", 5, t0()).await.unwrap();
        set(store.as_ref(), "B", 1, t0()).await.unwrap();
        set(store.as_ref(), "C", 0, t0()).await.unwrap();

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
        set(store.as_ref(), "A", 10, t0()).await.unwrap();
        set(store.as_ref(), "B", 10, t0()).await.unwrap();
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
        store.transition(first.id, Action::Release, ACTOR, later).await.unwrap();
        match store.reserve(&request("o-1", &[("A", 2), ("B", 1)]), later, TTL).await.unwrap() {
            ReserveOutcome::Replayed(r) => assert_eq!(r.status, ReservationStatus::Released),
            other => panic!("expected the same reservation, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (10, 0));

        // By order id: the same reservation; none for an unknown order.
        let found = store.reservation_for_order("o-1", later).await.unwrap().unwrap();
        assert_eq!((found.id, found.status), (first.id, ReservationStatus::Released));
        assert_eq!(store.reservation_for_order("o-unknown", later).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_replay_past_the_deadline_expires_the_reservation() {
    each_store(|store| async move {
        set(store.as_ref(), "A", 10, t0()).await.unwrap();
        let first = created(store.as_ref(), &request("o-1", &[("A", 4)]), t0()).await;
        let late = t0() + TTL + Duration::from_secs(1);
        match store.reserve(&request("o-1", &[("A", 4)]), late, TTL).await.unwrap() {
            ReserveOutcome::Replayed(r) => {
                assert_eq!((r.id, r.status), (first.id, ReservationStatus::Expired));
            }
            other => panic!("expected the expired reservation, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (10, 0), "its stock is back");
        let second = created(store.as_ref(), &request("o-2", &[("A", 1)]), t0()).await;
        let found = store.reservation_for_order("o-2", late).await.unwrap().unwrap();
        assert_eq!(
            (found.id, found.status),
            (second.id, ReservationStatus::Expired),
            "read by order: expired"
        );
        assert_eq!(stock(store.as_ref(), "A").await, (10, 0));
    })
    .await;
}

#[tokio::test]
async fn commit_and_release() {
    each_store(|store| async move {
        set(store.as_ref(), "A", 10, t0()).await.unwrap();
        let now = t0() + Duration::from_secs(1);
        let a = created(store.as_ref(), &request("o-1", &[("A", 3)]), t0()).await;
        match store.transition(a.id, Action::Commit, ACTOR, now).await.unwrap() {
            Transition::Done(r) => {
                assert_eq!(r.status, ReservationStatus::Committed);
                assert_eq!(r.updated_at, now);
            }
            other => panic!("expected a commit, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "committed units left on-hand");
        assert!(matches!(
            store.transition(a.id, Action::Commit, ACTOR, now).await.unwrap(),
            Transition::AlreadyDone(_)
        ));
        match store.transition(a.id, Action::Release, ACTOR, now).await.unwrap() {
            Transition::Refused(r) => assert_eq!(r.status, ReservationStatus::Committed),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0));

        let b = created(store.as_ref(), &request("o-2", &[("A", 4)]), t0()).await;
        assert_eq!(stock(store.as_ref(), "A").await, (7, 4));
        assert!(matches!(
            store.transition(b.id, Action::Release, ACTOR, now).await.unwrap(),
            Transition::Done(_)
        ));
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "released units are available again");
        match store.transition(b.id, Action::Release, ACTOR, now).await.unwrap() {
            Transition::AlreadyDone(r) => assert_eq!(r.status, ReservationStatus::Released),
            other => panic!("releasing twice is harmless, got {other:?}"),
        }
        assert_eq!(stock(store.as_ref(), "A").await, (7, 0), "the second release gave nothing back");
        assert!(matches!(
            store.transition(b.id, Action::Commit, ACTOR, now).await.unwrap(),
            Transition::Refused(_)
        ));

        let missing = uuid::Uuid::new_v4();
        assert_eq!(
            store.transition(missing, Action::Commit, ACTOR, now).await.unwrap(),
            Transition::NotFound
        );
        assert_eq!(store.reservation(missing, now).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn reservations_expire() {
    each_store(|store| async move {
        set(store.as_ref(), "A", 10, t0()).await.unwrap();
        let first = created(store.as_ref(), &request("o-a", &[("A", 1)]), t0()).await;
        let second = created(store.as_ref(), &request("o-b", &[("A", 2)]), t0()).await;
        let third =
            created(store.as_ref(), &request("o-c", &[("A", 3)]), t0() + Duration::from_secs(30)).await;
        let fourth = created(store.as_ref(), &request("o-d", &[("A", 4)]), t0()).await;
        assert_eq!(stock(store.as_ref(), "A").await, (10, 10));
        let late = t0() + TTL + Duration::from_secs(1);

        // Lazily: committing a due reservation expires it instead (409 at the API).
        match store.transition(first.id, Action::Commit, ACTOR, late).await.unwrap() {
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
            store.transition(second.id, Action::Release, ACTOR, late).await.unwrap(),
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
            store.transition(third.id, Action::Commit, ACTOR, late).await.unwrap(),
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
        set(store.as_ref(), "HOT", 10, t0()).await.unwrap();
        set(store.as_ref(), "COLD", 100, t0()).await.unwrap();
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

#[tokio::test]
async fn preconditions_are_checked_against_the_row_version() {
    each_store(|store| async move {
        let create = Preconditions::new(None, Some("*"));
        match store.set_stock("A", 5, &create, ACTOR, t0()).await.unwrap() {
            StockWrite::Done(s, true) => assert_eq!(s.etag(), "\"1\""),
            other => panic!("expected a creation, got {other:?}"),
        }
        match store.set_stock("A", 6, &create, ACTOR, t0()).await.unwrap() {
            StockWrite::PreconditionFailed(Some(s)) => assert_eq!((s.on_hand, s.version), (5, 1)),
            other => panic!("expected a failed precondition, got {other:?}"),
        }
        // A reservation changes the row, so an ETag read before it no longer matches.
        created(store.as_ref(), &request("o-1", &[("A", 2)]), t0()).await;
        let stale = Preconditions::new(Some("\"1\""), None);
        assert!(matches!(
            store.set_stock("A", 9, &stale, ACTOR, t0()).await.unwrap(),
            StockWrite::PreconditionFailed(Some(_))
        ));
        assert!(matches!(
            store.adjust_stock("A", 1, &stale, ACTOR, t0()).await.unwrap(),
            StockWrite::PreconditionFailed(Some(_))
        ));
        let current = Preconditions::new(Some("\"2\""), None);
        match store.adjust_stock("A", 1, &current, ACTOR, t0()).await.unwrap() {
            StockWrite::Done(s, false) => assert_eq!((s.on_hand, s.reserved, s.version), (6, 2, 3)),
            other => panic!("expected a write, got {other:?}"),
        }
        assert!(matches!(
            store.set_stock("B", 1, &current, ACTOR, t0()).await.unwrap(),
            StockWrite::PreconditionFailed(None)
        ));
        assert_eq!(store.adjust_stock("B", 1, &current, ACTOR, t0()).await.unwrap(), StockWrite::NotFound);
        assert_eq!(store.stock("B").await.unwrap(), None, "nothing was created");
        let ledger = store.ledger("A", 100, 0).await.unwrap().unwrap();
        let got: Vec<_> = ledger.iter().map(|e| (e.delta, e.on_hand_after, e.reason)).collect();
        assert_eq!(
            got,
            [(5, 5, LedgerReason::Set), (1, 6, LedgerReason::Adjustment)],
            "refused writes left none"
        );
    })
    .await;
}

#[tokio::test]
async fn the_ledger_adds_up_to_on_hand_after_concurrent_sets_adjustments_and_commits() {
    each_store(|store| async move {
        set(store.as_ref(), "HOT", 50, t0()).await.unwrap();
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    match i % 3 {
                        // A recount: set on-hand outright (refused when below what is reserved).
                        0 => match set(store.as_ref(), "HOT", 40 + i, t0()).await {
                            Ok(_) | Err(StoreError::Conflict(_)) => {}
                            Err(err) => panic!("{err}"),
                        },
                        1 => match adjust(store.as_ref(), "HOT", -1, t0()).await {
                            Ok(Some(_)) | Err(StoreError::Conflict(_)) => {}
                            other => panic!("{other:?}"),
                        },
                        _ => {
                            let req = request(&format!("o-{i}"), &[("HOT", 2)]);
                            if let ReserveOutcome::Created(r) = store.reserve(&req, t0(), TTL).await.unwrap()
                            {
                                let done =
                                    store.transition(r.id, Action::Commit, "buyer", t0()).await.unwrap();
                                assert!(matches!(done, Transition::Done(_)), "{done:?}");
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (on_hand, reserved) = stock(store.as_ref(), "HOT").await;
        assert_eq!(reserved, 0);
        let ledger = store.ledger("HOT", 1000, 0).await.unwrap().unwrap();
        assert_eq!(ledger.iter().map(|e| e.delta).sum::<i64>(), on_hand, "{ledger:#?}");
        assert_eq!(ledger.last().unwrap().on_hand_after, on_hand);
        // Each entry follows from the one before: nothing was lost or half-written.
        for pair in ledger.windows(2) {
            assert_eq!(pair[0].on_hand_after + pair[1].delta, pair[1].on_hand_after, "{pair:#?}");
        }
        let commits = ledger.iter().filter(|e| e.reason == LedgerReason::Commit).count();
        assert!(commits > 0 && ledger.iter().all(|e| e.reason != LedgerReason::Commit || e.actor == "buyer"));
        assert!(
            ledger.iter().filter(|e| e.reason == LedgerReason::Commit).all(|e| e.reservation_id.is_some())
        );
        assert_eq!(store.ledger("NOPE", 10, 0).await.unwrap(), None);
        let page = store.ledger("HOT", 2, 1).await.unwrap().unwrap();
        assert_eq!(page, ledger[1..3]);
    })
    .await;
}
