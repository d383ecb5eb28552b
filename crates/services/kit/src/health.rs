//! `/livez` and `/readyz`, `application/health+json`.
//!
//! `/livez` answers `pass` while the process runs. `/readyz` pings the database (bounded by
//! `readiness_timeout_ms`) and answers 503 `fail` when it does not answer in time or once the
//! server is draining after a shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::db::Db;

/// The `Content-Type` of health responses.
pub const HEALTH_JSON: &str = "application/health+json";

/// Readiness state shared by the server and its health routes.
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    db: Db,
    timeout: Duration,
    draining: AtomicBool,
}

impl Health {
    /// Readiness of a service backed by `db`, each check bounded by `timeout`.
    pub fn new(db: Db, timeout: Duration) -> Self {
        Self(Arc::new(Inner { db, timeout, draining: AtomicBool::new(false) }))
    }

    /// From now on `/readyz` answers 503 (called on the shutdown signal).
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Release);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire)
    }

    /// The database the checks use.
    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// The routes `/livez` and `/readyz`.
    pub fn routes(&self) -> Router {
        Router::new().route("/livez", get(livez)).route("/readyz", get(readyz)).with_state(self.clone())
    }
}

fn health_response(pass: bool, checks: &serde_json::Value) -> Response {
    let status = if pass { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": if pass { "pass" } else { "fail" }, "checks": checks });
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    res
}

async fn livez() -> Response {
    health_response(true, &json!({}))
}

async fn readyz(State(health): State<Health>) -> Response {
    let draining = health.is_draining();
    let db = match tokio::time::timeout(health.0.timeout, health.0.db.ping()).await {
        Ok(Ok(())) => json!({ "status": "pass" }),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            json!({ "status": "fail", "output": "database ping failed" })
        }
        Err(_) => json!({ "status": "fail", "output": "database ping timed out" }),
    };
    let db_pass = db["status"] == "pass";
    let checks = json!({
        "database": [db],
        "server:draining": [{ "status": if draining { "fail" } else { "pass" } }],
    });
    health_response(db_pass && !draining, &checks)
}
