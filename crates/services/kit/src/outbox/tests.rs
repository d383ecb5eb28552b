//! The outbox against real databases (SQLite; PostgreSQL when `TEST_DATABASE_URL` is set) and real
//! subscribers on loopback ports.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sqlx::migrate::Migrator;

use super::{Envelope, Event, HttpPush, Outbox, OutboxConfig, SubscriberConfig};
use crate::db::{Db, Migrations, SqlPool as _, temp_postgres_url, temp_sqlite_url};
use crate::uow::UnitOfWork as _;

/// A service with no tables of its own: only the kit's.
static KIT_ONLY: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

async fn databases(label: &str) -> Vec<Db> {
    let mut dbs = vec![Db::connect(&temp_sqlite_url(label), 4).await.unwrap()];
    if let Some(url) = temp_postgres_url().await {
        dbs.push(Db::connect(&url.unwrap(), 4).await.unwrap());
    } else if std::env::var_os("CI").is_some() {
        panic!("CI runs the outbox tests against PostgreSQL too: set TEST_DATABASE_URL");
    }
    for db in &dbs {
        db.migrate(&KIT_ONLY).await.unwrap();
    }
    dbs
}

/// What a subscriber received: the envelope and its `Content-Type`.
type Received = Arc<Mutex<Vec<(Envelope, String)>>>;

/// A subscriber on a loopback port answering `status` (changeable while it runs).
async fn subscriber(status: Arc<Mutex<StatusCode>>) -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = Router::new().route(
        "/v1/events",
        post(move |headers: HeaderMap, body: String| {
            let log = log.clone();
            let status = *status.lock().unwrap();
            async move {
                if status.is_success() {
                    let content_type = headers[http::header::CONTENT_TYPE].to_str().unwrap().to_owned();
                    log.lock().unwrap().push((serde_json::from_str(&body).unwrap(), content_type));
                }
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn config(subscribers: &[(&str, &str, &[&str])]) -> OutboxConfig {
    OutboxConfig {
        backoff_base_ms: 1,
        backoff_max_ms: 1,
        max_attempts: 3,
        subscribers: subscribers
            .iter()
            .map(|(name, url, types)| {
                let types = types.iter().map(|t| (*t).to_owned()).collect();
                (
                    (*name).to_owned(),
                    SubscriberConfig { url: (*url).to_owned(), types, ..SubscriberConfig::default() },
                )
            })
            .collect(),
        ..OutboxConfig::default()
    }
}

fn outbox(db: &Db, config: OutboxConfig) -> Outbox {
    let push = HttpPush::new(&config, None).unwrap();
    Outbox::new("users", db.clone(), config, Arc::new(push))
}

/// Writes `event` in a transaction and commits it, or rolls it back.
async fn publish(db: &Db, event: &Event, commit: bool) {
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_write().await.unwrap();
            tx.publish(event).await.unwrap();
            if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin_write().await.unwrap();
            tx.publish(event).await.unwrap();
            if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
        }
    }
}

/// Lets the backoff (1 ms) pass, then runs the relay once.
async fn relay(outbox: &Outbox) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    outbox.relay_once().await.unwrap()
}

#[tokio::test]
async fn committed_events_reach_each_subscriber_once_as_cloudevents_and_rolled_back_ones_never() {
    for db in databases("outbox-deliver").await {
        let (url, received) = subscriber(Arc::new(Mutex::new(StatusCode::ACCEPTED))).await;
        let outbox = outbox(&db, config(&[("notifications", &url, &["user.*"])]));
        let event =
            Event::new("user.registered", "u-1", &serde_json::json!({ "email": "a@example.com" })).unwrap();
        publish(&db, &event, true).await;
        let ignored = Event::new("product.price_changed", "p-1", &serde_json::json!({})).unwrap();
        publish(&db, &ignored, true).await;
        publish(&db, &Event::new("user.registered", "u-2", &1).unwrap(), false).await;
        assert_eq!(outbox.counts().await.unwrap(), (2, 0));

        assert_eq!(relay(&outbox).await, 2);
        assert_eq!(relay(&outbox).await, 0, "nothing left to send");
        let received = received.lock().unwrap().clone();
        assert_eq!(received.len(), 1, "one event for its one subscriber: {received:?}");
        let (envelope, content_type) = &received[0];
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(envelope.specversion, "1.0");
        assert_eq!(envelope.id, event.id.to_string());
        assert_eq!(envelope.source, "/shop/users");
        assert_eq!(envelope.event_type, "user.registered");
        assert_eq!(envelope.subject.as_deref(), Some("u-1"));
        assert_eq!(envelope.data["email"], "a@example.com");
        assert!(envelope.time.as_deref().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(outbox.counts().await.unwrap(), (0, 0), "an event nobody wants counts as delivered");
    }
}

#[tokio::test]
async fn a_failing_subscriber_is_retried_then_the_event_is_dead_until_replayed_and_others_get_it_once() {
    for db in databases("outbox-dead").await {
        let healthy = subscriber(Arc::new(Mutex::new(StatusCode::OK))).await;
        let status = Arc::new(Mutex::new(StatusCode::SERVICE_UNAVAILABLE));
        let failing = subscriber(status.clone()).await;
        let outbox =
            outbox(&db, config(&[("audit", &healthy.0, &["*"]), ("mail", &failing.0, &["order.confirmed"])]));
        let event = Event::new("order.confirmed", "o-1", &serde_json::json!({ "total": 10 })).unwrap();
        publish(&db, &event, true).await;

        for _ in 0..3 {
            assert_eq!(relay(&outbox).await, 1);
        }
        assert_eq!(relay(&outbox).await, 0, "dead after max_attempts (3): no longer sent");
        assert_eq!(outbox.counts().await.unwrap(), (0, 1));
        let dead = outbox.dead(10, 0).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event.id, event.id.to_string());
        assert_eq!(dead[0].attempts, 3);
        assert!(dead[0].last_error.as_deref().is_some_and(|e| e.contains("mail")), "{dead:?}");

        *status.lock().unwrap() = StatusCode::OK;
        assert!(outbox.replay(&event.id.to_string()).await.unwrap());
        assert!(!outbox.replay("no-such-event").await.unwrap());
        assert_eq!(relay(&outbox).await, 1);
        assert_eq!(outbox.counts().await.unwrap(), (0, 0));
        assert_eq!(healthy.1.lock().unwrap().len(), 1, "the healthy subscriber got it once, not per attempt");
        assert_eq!(failing.1.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn two_relays_at_once_send_each_event_once() {
    for db in databases("outbox-replicas").await {
        let (url, received) = subscriber(Arc::new(Mutex::new(StatusCode::OK))).await;
        let config = OutboxConfig { batch: 7, ..config(&[("notifications", &url, &["*"])]) };
        let (a, b) = (outbox(&db, config.clone()), outbox(&db, config));
        for n in 0..40 {
            publish(&db, &Event::new("user.registered", &format!("u-{n}"), &n).unwrap(), true).await;
        }
        loop {
            let (x, y) = tokio::join!(a.relay_once(), b.relay_once());
            if x.unwrap() + y.unwrap() == 0 {
                break;
            }
        }
        let received = received.lock().unwrap();
        let mut ids: Vec<&str> = received.iter().map(|(e, _)| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((received.len(), ids.len()), (40, 40), "every event once");
    }
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_audit_entries() {
    use crate::audit::{AuditEntry, AuditFilter, AuditLog};
    for db in databases("audit").await {
        let entry =
            AuditEntry::new("u-1", "payment.capture", "payment", "p-1").after(&serde_json::json!({ "s": 1 }));
        macro_rules! attempt {
            ($pool:expr) => {{
                let mut tx = $pool.begin_write().await.unwrap();
                tx.audit(&entry).await.unwrap();
                tx.commit().await.unwrap();
                let update = sqlx::query("UPDATE kit_audit SET actor = 'mallory'").execute($pool).await;
                let delete = sqlx::query("DELETE FROM kit_audit").execute($pool).await;
                (update.unwrap_err().to_string(), delete.unwrap_err().to_string())
            }};
        }
        let (update, delete) = match &db {
            Db::Sqlite(pool) => attempt!(pool),
            Db::Postgres(pool) => attempt!(pool),
        };
        assert!(update.contains("append-only") && delete.contains("append-only"), "{update} / {delete}");
        let log = AuditLog::new(db.clone());
        let all = log.list(&AuditFilter::default(), 10, 0).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].actor, "u-1");
        assert_eq!(all[0].after, Some(serde_json::json!({ "s": 1 })));
        let filter = AuditFilter { entity_id: Some("p-2".to_owned()), ..AuditFilter::default() };
        assert!(log.list(&filter, 10, 0).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn admins_list_and_replay_dead_events_and_nobody_else_can() {
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;

    use crate::auth::{JwtKeys, Role};
    use crate::testing::{send, token};

    let db = databases("outbox-admin").await.remove(0);
    let failing = subscriber(Arc::new(Mutex::new(StatusCode::SERVICE_UNAVAILABLE))).await;
    let outbox = outbox(&db, config(&[("mail", &failing.0, &["*"])]));
    let event = Event::new("order.failed", "o-9", &serde_json::json!({})).unwrap();
    publish(&db, &event, true).await;
    for _ in 0..3 {
        relay(&outbox).await;
    }
    let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
    let router = super::admin::router(outbox.clone()).layer(axum::Extension(keys.clone()));
    let request = |method: &str, uri: &str, role: Role| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", token(&keys, role)))
            .body(Body::empty())
            .unwrap()
    };

    let customer = send(&router, request("GET", "/v1/admin/events/dead", Role::Customer)).await;
    assert_eq!(customer.0, StatusCode::FORBIDDEN);
    let listed = send(&router, request("GET", "/v1/admin/events/dead?limit=10", Role::Admin)).await;
    assert_eq!(listed.0, StatusCode::OK, "{:?}", listed.2);
    assert_eq!(listed.2["items"][0]["event"]["id"], event.id.to_string());
    assert_eq!(listed.2["items"][0]["attempts"], 3);
    let bad = send(&router, request("GET", "/v1/admin/events/dead?limit=0", Role::Admin)).await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY);

    let path = format!("/v1/admin/events/{}/replay", event.id);
    assert_eq!(send(&router, request("POST", &path, Role::Customer)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&router, request("POST", &path, Role::Admin)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(&router, request("POST", &path, Role::Admin)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(outbox.counts().await.unwrap(), (1, 0), "back in line");
}

/// A transport whose way to the subscriber is paused (an open breaker) for its first `pauses` tries.
#[derive(Debug)]
struct PausedFor(std::sync::atomic::AtomicU32);

impl super::Transport for PausedFor {
    fn subscribers(&self, _: &str) -> Vec<String> {
        vec!["notifications".to_owned()]
    }

    fn deliver<'a>(
        &'a self,
        _: &'a str,
        _: &'a Envelope,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::BoxError>> {
        let left = self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if left > 0 {
                Err(Box::new(super::Paused { retry_after: std::time::Duration::from_millis(1) }) as _)
            } else {
                Ok(())
            }
        })
    }
}

/// An open breaker in front of the subscriber is no failed attempt: twice `max_attempts` paused
/// runs leave the event alive with no attempt counted, and it is delivered once the pause ends.
#[tokio::test]
async fn a_paused_subscriber_costs_no_attempt_and_parks_nothing() {
    for db in databases("outbox-paused").await {
        let config = OutboxConfig { relay_interval_ms: 10, ..config(&[]) };
        let transport = Arc::new(PausedFor(std::sync::atomic::AtomicU32::new(6)));
        let outbox = Outbox::new("orders", db.clone(), config, transport);
        publish(&db, &Event::new("order.confirmed", "o-1", &1).unwrap(), true).await;
        for run in 0..6 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(outbox.relay_once().await.unwrap(), 1, "run {run}: claimed again after the pause");
            assert_eq!(outbox.counts().await.unwrap(), (1, 0), "run {run}: still pending, not dead");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(outbox.relay_once().await.unwrap(), 1);
        assert_eq!(outbox.counts().await.unwrap(), (0, 0), "delivered once the pause ended");
    }
}
