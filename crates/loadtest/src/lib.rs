//! Loopback load tests of Palisade Shop (`make load`, `scripts/load.sh`; results in
//! `docs/performance.md`).
//!
//! The catalog is measured against two baselines that run on the same machine in the same run:
//!
//! - [`hello`]: bare axum answering `"Hello, World!"` — the ceiling of the HTTP path alone;
//! - [`bare`]: bare axum + sqlx answering `GET /v1/products/{id}` with the catalog's own `SELECT`
//!   by primary key, on the catalog's database file, with the same pool settings and the same JSON
//!   body and `ETag` — but no layers, no cache, no `Store` trait object.
//!
//! The ratio of the catalog (full kit stack, cache off) to [`bare`] is what the stack costs.
//! [`seed`] creates the product both read, through the catalog's real API; [`breakdown`] holds
//! the variants in between, to see where the difference goes.

pub mod bare;
pub mod breakdown;
pub mod commits;
pub mod hello;
pub mod seed;

pub use kit::BoxError;

/// Serves `app` on `addr` until the process is killed, printing the bound address first.
pub async fn serve(addr: &str, app: axum::Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
