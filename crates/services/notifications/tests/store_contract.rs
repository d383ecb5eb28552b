//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each run creates its own database there).

use std::sync::Arc;

use kit::db::StoreError;
use kit::outbox::Envelope;
use shop_notifications::MIGRATIONS;
use shop_notifications::model::Draft;
use shop_notifications::store::{self, Store};
use time::OffsetDateTime;

async fn each_store<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("notifications-store", &MIGRATIONS, 8, |db| suite(store::for_db(&db))).await;
}

fn event(id: &str, source: &str) -> Envelope {
    Envelope {
        specversion: "1.0".into(),
        id: id.into(),
        source: source.into(),
        event_type: "order.confirmed".into(),
        subject: Some("o-1".into()),
        time: None,
        datacontenttype: None,
        data: serde_json::json!({ "user_id": "u-1", "n": id }),
        traceparent: None,
    }
}

fn draft(user: &str) -> Draft {
    Draft {
        user_id: user.into(),
        title: "Order confirmed".into(),
        summary: "Your order o-1 is confirmed.".into(),
    }
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
}

#[tokio::test]
async fn an_event_is_received_once_and_notifies_once() {
    each_store(|store| async move {
        let e = event("e-1", "/shop/orders");
        assert!(store.receive(&e, Some(&draft("u-1")), at(0)).await.unwrap());
        assert!(!store.receive(&e, Some(&draft("u-1")), at(1)).await.unwrap(), "a redelivery");
        let list = store.list("u-1", 10, 0).await.unwrap();
        assert_eq!(list.len(), 1);
        let n = &list[0];
        assert_eq!(
            (n.event_id.as_str(), n.source.as_str(), n.user_id.as_str()),
            ("e-1", "/shop/orders", "u-1")
        );
        assert_eq!(n.event_type, "order.confirmed");
        assert_eq!(n.subject.as_deref(), Some("o-1"));
        assert_eq!(
            (n.title.as_str(), n.summary.as_str()),
            ("Order confirmed", "Your order o-1 is confirmed.")
        );
        assert_eq!(n.data, e.data);
        assert_eq!(n.created_at, at(0));

        // No draft: received (and deduped) all the same, nothing to list.
        let quiet = event("e-2", "/shop/catalog");
        assert!(store.receive(&quiet, None, at(2)).await.unwrap());
        assert!(!store.receive(&quiet, Some(&draft("u-1")), at(3)).await.unwrap(), "still a redelivery");
        assert_eq!(store.list("u-1", 10, 0).await.unwrap().len(), 1);

        // The same id from another source is refused, not dropped or merged.
        let clash = store.receive(&event("e-1", "/shop/payments"), Some(&draft("u-1")), at(4)).await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
        assert_eq!(store.list("u-1", 10, 0).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_list_is_one_users_newest_first_and_pages() {
    each_store(|store| async move {
        // e-0 and e-1 at the same millisecond: the later received comes first.
        for (n, (user, secs)) in
            [("u-1", 5), ("u-1", 5), ("u-2", 6), ("u-1", 1), ("u-1", 9)].iter().enumerate()
        {
            let e = event(&format!("e-{n}"), "/shop/orders");
            assert!(store.receive(&e, Some(&draft(user)), at(*secs)).await.unwrap());
        }
        let ids = |list: Vec<shop_notifications::model::Notification>| -> Vec<String> {
            list.into_iter().map(|n| n.event_id).collect()
        };
        assert_eq!(ids(store.list("u-1", 10, 0).await.unwrap()), ["e-4", "e-1", "e-0", "e-3"]);
        assert_eq!(ids(store.list("u-1", 2, 1).await.unwrap()), ["e-1", "e-0"]);
        assert_eq!(ids(store.list("u-1", 2, 4).await.unwrap()), Vec::<String>::new());
        assert_eq!(ids(store.list("u-2", 10, 0).await.unwrap()), ["e-2"]);
        assert!(store.list("nobody", 10, 0).await.unwrap().is_empty());
        assert!(store.list("u-1", 10, u64::MAX).await.unwrap().is_empty(), "a huge offset is no error");
    })
    .await;
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_notify_once() {
    each_store(|store| async move {
        let e = event("e-race", "/shop/orders");
        let tasks = (0..4).map(|_| {
            let (store, e) = (store.clone(), e.clone());
            tokio::spawn(async move { store.receive(&e, Some(&draft("u-1")), at(0)).await.unwrap() })
        });
        let firsts: Vec<bool> =
            futures_util::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(firsts.iter().filter(|f| **f).count(), 1, "{firsts:?}");
        assert_eq!(store.list("u-1", 10, 0).await.unwrap().len(), 1);
    })
    .await;
}
