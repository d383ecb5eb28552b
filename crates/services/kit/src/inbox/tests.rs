//! The inbox against real databases (SQLite; PostgreSQL when `TEST_DATABASE_URL` is set).

use std::time::Duration;

use sqlx::migrate::Migrator;

use super::{Inbox as _, is_id_taken, validate};
use crate::db::{Db, Migrations, SqlPool as _, temp_postgres_url, temp_sqlite_url};
use crate::outbox::Envelope;

/// A service with no tables of its own: only the kit's.
static KIT_ONLY: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

async fn databases(label: &str) -> Vec<Db> {
    let mut dbs = vec![Db::connect(&temp_sqlite_url(label), 4).await.unwrap()];
    if let Some(url) = temp_postgres_url().await {
        dbs.push(Db::connect(&url.unwrap(), 4).await.unwrap());
    } else if std::env::var_os("CI").is_some() {
        panic!("CI runs the inbox tests against PostgreSQL too: set TEST_DATABASE_URL");
    }
    for db in &dbs {
        db.migrate(&KIT_ONLY).await.unwrap();
    }
    dbs
}

fn envelope(id: &str, source: &str) -> Envelope {
    Envelope {
        specversion: "1.0".to_owned(),
        id: id.to_owned(),
        source: source.to_owned(),
        event_type: "order.confirmed".to_owned(),
        subject: Some("o-1".to_owned()),
        time: None,
        datacontenttype: Some("application/json".to_owned()),
        data: serde_json::json!({ "user_id": "u-1" }),
        traceparent: None,
    }
}

/// Receives `event` as `consumer` in a transaction that also counts one "effect" (an audit row)
/// when it is the first time, then commits or rolls back.
async fn handle(db: &Db, consumer: &str, event: &Envelope, commit: bool) -> Result<bool, sqlx::Error> {
    use crate::audit::AuditEntry;
    use crate::uow::UnitOfWork as _;
    let effect = AuditEntry::new("test", "effect", "event", &event.id);
    macro_rules! run {
        ($pool:expr) => {{
            let mut tx = $pool.begin_write().await?;
            let first = tx.receive(consumer, event).await?;
            if first {
                tx.audit(&effect).await?;
            }
            if commit {
                tx.commit().await?
            } else {
                tx.rollback().await?
            }
            Ok(first)
        }};
    }
    match db {
        Db::Sqlite(pool) => run!(pool),
        Db::Postgres(pool) => run!(pool),
    }
}

async fn effects(db: &Db) -> i64 {
    const SQL: &str = "SELECT COUNT(*) FROM kit_audit";
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
    }
}

#[tokio::test]
async fn an_event_takes_effect_once_and_a_rolled_back_receipt_is_forgotten() {
    for db in databases("inbox-once").await {
        let event = envelope("e-1", "/shop/orders");
        assert!(handle(&db, "notifications", &event, false).await.unwrap(), "first, then rolled back");
        assert_eq!(effects(&db).await, 0);
        assert!(
            handle(&db, "notifications", &event, true).await.unwrap(),
            "the rollback took the receipt too"
        );
        assert!(!handle(&db, "notifications", &event, true).await.unwrap(), "a redelivery");
        assert!(!handle(&db, "notifications", &event, true).await.unwrap());
        assert_eq!(effects(&db).await, 1, "one effect for three deliveries");
        // Another consumer in the same database has its own record.
        assert!(handle(&db, "mailer", &event, true).await.unwrap());
        assert!(handle(&db, "notifications", &envelope("e-2", "/shop/orders"), true).await.unwrap());
        assert_eq!(effects(&db).await, 3);
    }
}

#[tokio::test]
async fn the_same_id_from_another_source_is_refused_not_dropped() {
    for db in databases("inbox-source").await {
        assert!(handle(&db, "notifications", &envelope("e-1", "/shop/orders"), true).await.unwrap());
        let err = handle(&db, "notifications", &envelope("e-1", "/shop/payments"), true).await.unwrap_err();
        assert!(is_id_taken(&err), "{err}");
        assert!(err.to_string().contains("/shop/orders"), "{err}");
        assert!(!is_id_taken(&sqlx::Error::RowNotFound));
        assert_eq!(effects(&db).await, 1);
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_take_effect_once() {
    for db in databases("inbox-race").await {
        let event = envelope("e-race", "/shop/orders");
        let deliveries = (0..4).map(|_| {
            let (db, event) = (db.clone(), event.clone());
            tokio::spawn(async move {
                // Hold the transaction a little so the others really overlap it.
                macro_rules! run {
                    ($pool:expr) => {{
                        let mut tx = $pool.begin_write().await.unwrap();
                        let first = tx.receive("notifications", &event).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        tx.commit().await.unwrap();
                        first
                    }};
                }
                match &db {
                    Db::Sqlite(pool) => run!(pool),
                    Db::Postgres(pool) => run!(pool),
                }
            })
        });
        let firsts: Vec<bool> =
            futures_util::future::join_all(deliveries).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(firsts.iter().filter(|first| **first).count(), 1, "{firsts:?}");
    }
}

#[test]
fn validate_names_each_bad_attribute() {
    assert!(validate(&envelope("e-1", "/shop/orders")).is_ok());
    let mut bad = envelope(" ", "");
    bad.specversion = "0.3".to_owned();
    bad.event_type = format!("order.{}confirmed", '\u{202e}');
    let pointers: Vec<String> = validate(&bad).unwrap_err().into_iter().map(|e| e.pointer).collect();
    assert_eq!(pointers, ["#/specversion", "#/id", "#/source", "#/type"]);
    let long = envelope(&"x".repeat(super::MAX_ATTRIBUTE_LEN + 1), "/shop/orders");
    assert_eq!(validate(&long).unwrap_err()[0].pointer, "#/id");
}
