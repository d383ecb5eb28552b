//! The bare axum + sqlx SQLite baseline: `GET /v1/products/{id}` with no layers.
//!
//! What it shares with the catalog, so that the two differ only by the catalog's stack:
//! the database file and schema (the catalog's migrations), the pool ([`kit::db::Db::connect`]:
//! WAL, `synchronous = NORMAL`, 5 s busy timeout, [`POOL_SIZE`] connections, the catalog's
//! default), the query and the row it reads ([`SELECT_BY_ID`] and [`ProductRow`], the catalog's own), and
//! the response (the catalog's [`Product`] serialized with `serde_json`, `Content-Type` and `ETag`).
//!
//! What it leaves out: the palisade server stack (trace, metrics, problem, deadline, timeout,
//! breaker), the kit's other layers (body limit, JWT keys extension, problem context), the read
//! cache, `If-None-Match` handling and the `Store` trait object.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kit::db::{Db, SqliteDb};
use kit::error::ApiError;
use kit::extract::Path;
use shop_catalog::model::Product;
use shop_catalog::store::{ProductRow, SELECT_BY_ID};
use sqlx::SqlitePool;
use uuid::Uuid;

use crate::BoxError;

/// The catalog's default `db_max_connections`.
pub const POOL_SIZE: u32 = 8;

/// Opens the catalog's SQLite database at `url` as the catalog does (and applies its migrations,
/// so the baseline also starts on an empty file).
pub async fn connect(url: &str, pool_size: u32) -> Result<SqliteDb, BoxError> {
    if !url.starts_with("sqlite:") {
        return Err("the bare baseline needs a sqlite: URL".into());
    }
    let db = Db::connect(url, pool_size).await?;
    db.migrate(&shop_catalog::MIGRATIONS).await?;
    match db {
        Db::Sqlite(db) => Ok(db),
        Db::Postgres(_) => Err("the bare baseline needs a sqlite: URL".into()),
    }
}

/// The baseline's router on `db`'s read connections (it only reads, as the catalog's `get` does).
pub fn app(db: &SqliteDb) -> Router {
    Router::new().route("/v1/products/{id}", get(get_product)).with_state(db.reader().clone())
}

async fn get_product(State(pool): State<SqlitePool>, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let row: Option<ProductRow> =
        sqlx::query_as(SELECT_BY_ID).bind(id).fetch_optional(&pool).await.map_err(ApiError::internal)?;
    let product = Product::from(row.ok_or_else(|| ApiError::not_found(format!("no product with id {id}")))?);
    let body = Bytes::from(serde_json::to_vec(&product).map_err(ApiError::internal)?);
    let mut res = (StatusCode::OK, body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(etag) = HeaderValue::from_str(&product.etag()) {
        headers.insert(header::ETAG, etag);
    }
    Ok(res)
}
