//! The bare axum "hello" baseline: one route, no layers.

use axum::Router;
use axum::routing::get;

/// `GET /` → `Hello, World!` (`text/plain`).
pub fn app() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}
