//! The bare axum + sqlx SQLite baseline: `GET /v1/products/{id}` with no layers.
//!
//! What it shares with the catalog, so that the two differ only by the catalog's stack:
//! the database file and schema (the catalog's migrations), the pool ([`kit::db::Db::connect`]:
//! WAL, `synchronous = NORMAL`, 5 s busy timeout, [`POOL_SIZE`] connections, the catalog's
//! default), the query ([`SELECT_BY_ID`], the text of the catalog's `SqliteStore::get`), and the
//! response (the catalog's [`Product`] serialized with `serde_json`, `Content-Type` and `ETag`).
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
use kit::db::Db;
use kit::error::ApiError;
use kit::extract::Path;
use shop_catalog::model::{Money, Product};
use sqlx::SqlitePool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::BoxError;

/// The catalog's default `db_max_connections`.
pub const POOL_SIZE: u32 = 8;

/// The catalog's `SELECT` by primary key, verbatim.
pub const SELECT_BY_ID: &str = "SELECT id, sku, name, description, category, price_amount, price_currency, \
     version, created_at, updated_at FROM products WHERE id = ?1";

/// A `products` row.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    category: String,
    price_amount: i64,
    price_currency: String,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<Row> for Product {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            price: Money { amount: row.price_amount, currency: row.price_currency.trim_end().to_owned() },
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Opens the catalog's SQLite database at `url` as the catalog does (and applies its migrations,
/// so the baseline also starts on an empty file).
pub async fn connect(url: &str, pool_size: u32) -> Result<SqlitePool, BoxError> {
    if !url.starts_with("sqlite:") {
        return Err("the bare baseline needs a sqlite: URL".into());
    }
    let db = Db::connect(url, pool_size).await?;
    db.migrate(&shop_catalog::MIGRATIONS).await?;
    match db {
        Db::Sqlite(pool) => Ok(pool),
        Db::Postgres(_) => Err("the bare baseline needs a sqlite: URL".into()),
    }
}

/// The baseline's router on `pool`.
pub fn app(pool: SqlitePool) -> Router {
    Router::new().route("/v1/products/{id}", get(get_product)).with_state(pool)
}

async fn get_product(State(pool): State<SqlitePool>, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let row: Option<Row> =
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
