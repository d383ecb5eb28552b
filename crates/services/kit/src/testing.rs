//! Test support shared by the services' test suites (feature `testing`, which each service turns on
//! for its dev-dependencies only): an in-process client for a service's router, the assertion every
//! problem document must pass, and the runner that puts a store contract suite through SQLite and
//! PostgreSQL.

use std::future::Future;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::auth::{JwtKeys, Role};
use crate::db::{Db, Migrations};

/// Status, headers and JSON body of a response (`Value::Null` for an empty body).
pub type Answer = (StatusCode, HeaderMap, Value);

/// Sends `req` through `router` in-process (as `axum::serve` would, minus the socket) and reads the
/// whole body as JSON.
///
/// # Panics
/// When the body is not empty and not JSON: every answer of the services is JSON.
pub async fn send(router: &Router, req: Request<Body>) -> Answer {
    let res = router.clone().oneshot(req).await.unwrap_or_else(|never| match never {});
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("read the body").to_bytes();
    let value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    (parts.status, parts.headers, value)
}

/// A token for a test user (`user-1`, `someone@example.com`) with `role`, signed with `keys`.
///
/// # Panics
/// When the keys cannot sign (they always can).
pub fn token(keys: &JwtKeys, role: Role) -> String {
    keys.issue("user-1", "someone@example.com", role).expect("sign a test token")
}

/// Asserts that an answer is an RFC 9457 problem document with status `expected`: the
/// `application/problem+json` content type, `status`, `title`, `type`, the request's path as
/// `instance`, and a 32-digit `trace_id`.
///
/// # Panics
/// When it is not.
pub fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["title"].is_string() && body["type"].is_string(), "{body}");
    assert!(body["instance"].as_str().is_some_and(|i| i.starts_with('/')), "{body}");
    assert_eq!(body["trace_id"].as_str().map(str::len), Some(32), "{body}");
}

/// Runs `suite` on a fresh SQLite database (a temporary file named after `name`), then on a fresh
/// PostgreSQL database when `TEST_DATABASE_URL` (or `DATABASE_URL`) names a server; each is migrated
/// with `migrations` first and pooled with at most `max_connections`.
///
/// # Panics
/// When a database cannot be created, connected to or migrated.
pub async fn each_database<F, Fut>(name: &str, migrations: &Migrations, max_connections: u32, suite: F)
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let open = |url: String| async move {
        let db = Db::connect(&url, max_connections).await.expect("connect");
        db.migrate(migrations).await.expect("migrate");
        db
    };
    suite(open(crate::db::temp_sqlite_url(name)).await).await;
    match crate::db::temp_postgres_url().await {
        Some(url) => suite(open(url.expect("create a test database")).await).await,
        None => eprintln!("note: TEST_DATABASE_URL is not a postgres URL; PostgreSQL run of {name} skipped"),
    }
}
