//! `Idempotency-Key` over a real loopback port, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::Extension;
use axum::response::IntoResponse as _;
use axum::routing::post;
use axum::{Json, Router};
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sqlx::migrate::Migrator;
use time::OffsetDateTime;

use super::{Claim, Idempotency, IdempotencyConfig};
use crate::auth::{JwtKeys, Role};
use crate::db::{Db, Migrations, SqlPool as _, temp_postgres_url, temp_sqlite_url};

static KIT_ONLY: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

struct Fixture {
    url: String,
    keys: JwtKeys,
    runs: Arc<AtomicU32>,
    idempotency: Idempotency,
}

async fn databases(label: &str) -> Vec<Db> {
    let mut dbs = vec![Db::connect(&temp_sqlite_url(label), 4).await.unwrap()];
    if let Some(url) = temp_postgres_url().await {
        dbs.push(Db::connect(&url.unwrap(), 4).await.unwrap());
    }
    for db in &dbs {
        db.migrate(&KIT_ONLY).await.unwrap();
    }
    dbs
}

/// `POST /v1/charges`: counts runs; `{"fail":true}` → 400, `{"busy":true}` → 503,
/// `{"tx":true}` stores its answer in its own transaction, `{"slow":true}` takes 200 ms.
async fn serve(db: Db) -> Fixture {
    let keys = JwtKeys::new(b"idempotency-test-secret-of-32-bytes!!", Duration::from_secs(600));
    let runs = Arc::new(AtomicU32::new(0));
    let idempotency = Idempotency::new(db.clone(), IdempotencyConfig::default(), 64 * 1024);
    let counted = runs.clone();
    let handler = move |Extension(claim): Extension<Claim>, Json(body): Json<serde_json::Value>| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let db = db.clone();
        async move {
            if body["slow"] == true {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if body["fail"] == true {
                return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "declined": n }))).into_response();
            }
            if body["busy"] == true {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let answer = serde_json::json!({ "charge": n, "body": body });
            if body["tx"] == true {
                let location = [(header::LOCATION, http::HeaderValue::from_static("/v1/charges/1"))];
                return match &db {
                    Db::Sqlite(pool) => {
                        let mut tx = pool.begin_write().await.unwrap();
                        let res =
                            claim.store(&mut *tx, StatusCode::CREATED, &answer, &location).await.unwrap();
                        tx.commit().await.unwrap();
                        res
                    }
                    Db::Postgres(pool) => {
                        let mut tx = pool.begin_write().await.unwrap();
                        let res =
                            claim.store(&mut *tx, StatusCode::CREATED, &answer, &location).await.unwrap();
                        tx.commit().await.unwrap();
                        res
                    }
                };
            }
            (StatusCode::CREATED, Json(answer)).into_response()
        }
    };
    let app = Router::new()
        .route("/v1/charges", post(handler))
        .route_layer(axum::middleware::from_fn_with_state(idempotency.clone(), super::layer))
        .layer(Extension(keys.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/charges", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { url, keys, runs, idempotency }
}

/// Status, `Idempotent-Replayed`, `Location` and body of one POST.
async fn post_json(
    fixture: &Fixture,
    user: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, bool, Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let token = fixture.keys.issue(user, &format!("{user}@example.com"), Role::Customer).unwrap();
    let mut req = http::Request::post(&fixture.url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = client.request(req.body(Full::from(body.to_owned())).unwrap()).await.unwrap();
    let status = res.status();
    let replayed = res.headers().get("idempotent-replayed").is_some();
    let location = res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, replayed, location, body)
}

#[tokio::test]
async fn a_key_is_required_and_must_be_sane() {
    let f = serve(Db::connect(&temp_sqlite_url("idem-key"), 2).await.unwrap()).await;
    f.idempotency.db.migrate(&KIT_ONLY).await.unwrap();
    let (status, _, _, body) = post_json(&f, "u1", None, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("idempotency-key-missing"), "{body}");
    for bad in ["", "   ", &"k".repeat(256), "with space"] {
        let (status, _, _, body) = post_json(&f, "u1", Some(bad), "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(body.contains("idempotency-key-invalid"), "{body}");
    }
    assert_eq!(f.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_repeated_key_replays_the_first_answer_and_a_changed_body_is_refused() {
    for db in databases("idem-replay").await {
        let f = serve(db).await;
        let first = post_json(&f, "u1", Some("k-1"), r#"{"amount":5}"#).await;
        assert_eq!((first.0, first.1), (StatusCode::CREATED, false));
        let again = post_json(&f, "u1", Some("k-1"), r#"{"amount":5}"#).await;
        assert_eq!((again.0, again.1, &again.3), (StatusCode::CREATED, true, &first.3), "the stored answer");
        assert_eq!(f.runs.load(Ordering::SeqCst), 1, "the handler ran once");

        let changed = post_json(&f, "u1", Some("k-1"), r#"{"amount":6}"#).await;
        assert_eq!(changed.0, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(changed.3.contains("idempotency-key-reused"), "{}", changed.3);

        let other_caller = post_json(&f, "u2", Some("k-1"), r#"{"amount":5}"#).await;
        assert_eq!((other_caller.0, other_caller.1), (StatusCode::CREATED, false), "keys are per caller");
        assert_eq!(f.runs.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn errors_are_replayed_but_5xx_frees_the_key() {
    for db in databases("idem-errors").await {
        let f = serve(db).await;
        let declined = post_json(&f, "u1", Some("k-fail"), r#"{"fail":true}"#).await;
        let again = post_json(&f, "u1", Some("k-fail"), r#"{"fail":true}"#).await;
        assert_eq!((declined.0, again.0, again.1), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST, true));
        assert_eq!(declined.3, again.3);
        assert_eq!(f.runs.load(Ordering::SeqCst), 1);

        let busy = post_json(&f, "u1", Some("k-busy"), r#"{"busy":true}"#).await;
        let retried = post_json(&f, "u1", Some("k-busy"), r#"{"busy":true}"#).await;
        assert_eq!(
            (busy.0, retried.0, retried.1),
            (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, false)
        );
        assert_eq!(f.runs.load(Ordering::SeqCst), 3, "a 503 is not stored: the retry ran again");
    }
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_run_once_and_agree() {
    for db in databases("idem-concurrent").await {
        let f = serve(db).await;
        let body = r#"{"slow":true,"amount":9}"#;
        let all =
            futures_util::future::join_all((0..20).map(|_| post_json(&f, "u1", Some("k-many"), body))).await;
        assert_eq!(f.runs.load(Ordering::SeqCst), 1, "one run for twenty requests");
        let created: Vec<_> = all.iter().filter(|r| r.0 == StatusCode::CREATED).collect();
        let in_flight = all.iter().filter(|r| r.0 == StatusCode::CONFLICT).count();
        assert_eq!(created.len() + in_flight, 20, "{all:?}");
        assert!(created.iter().all(|r| r.3 == created[0].3), "identical answers");
        // Once the first finished, a retry gets its answer.
        let late = post_json(&f, "u1", Some("k-many"), body).await;
        assert_eq!((late.0, late.1, &late.3), (StatusCode::CREATED, true, &created[0].3));
    }
}

#[tokio::test]
async fn an_answer_stored_in_the_handlers_transaction_is_replayed_with_its_headers() {
    for db in databases("idem-tx").await {
        let f = serve(db).await;
        let first = post_json(&f, "u1", Some("k-tx"), r#"{"tx":true}"#).await;
        let again = post_json(&f, "u1", Some("k-tx"), r#"{"tx":true}"#).await;
        assert_eq!((first.0, again.0, again.1), (StatusCode::CREATED, StatusCode::CREATED, true));
        assert_eq!(again.2.as_deref(), Some("/v1/charges/1"));
        assert_eq!(first.3, again.3);
        assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn expired_keys_are_removed_and_a_crashed_holder_is_taken_over() {
    for db in databases("idem-expiry").await {
        let f = serve(db.clone()).await;
        post_json(&f, "u1", Some("k-old"), "{}").await;
        let later = OffsetDateTime::now_utc() + time::Duration::days(2);
        assert_eq!(f.idempotency.expire(later, 100).await.unwrap(), 1);
        let fresh = post_json(&f, "u1", Some("k-old"), "{}").await;
        assert_eq!((fresh.0, fresh.1), (StatusCode::CREATED, false), "an expired key is a new key");

        // A holder that died: in flight, its lock lapsed.
        let sql = "UPDATE kit_idempotency SET status = NULL, locked_until = 0 WHERE key = 'k-old'";
        match &db {
            Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
        }
        let taken = post_json(&f, "u1", Some("k-old"), "{}").await;
        assert_eq!((taken.0, taken.1), (StatusCode::CREATED, false));
        assert_eq!(f.runs.load(Ordering::SeqCst), 3);
    }
}

#[tokio::test]
async fn a_request_dropped_by_its_client_frees_its_key_at_once() {
    for db in databases("idem-dropped").await {
        let f = serve(db).await;
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            post_json(&f, "u1", Some("k-gone"), r#"{"slow":true}"#),
        )
        .await;
        assert!(gone.is_err(), "the client gave up first");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Not 409 until the 60 s lock lapses: the dropped request left nothing, so this one runs.
        let retry = post_json(&f, "u1", Some("k-gone"), r#"{"slow":true}"#).await;
        assert_eq!((retry.0, retry.1), (StatusCode::CREATED, false), "{}", retry.3);
    }
}
