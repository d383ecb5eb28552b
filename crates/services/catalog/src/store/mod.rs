//! The catalog's persistence, behind [`Store`]: one implementation per database
//! ([`SqliteStore`], [`PgStore`]), both generated from the one body in `store/sql.rs`.

mod sql;

pub use sql::SELECT_BY_ID;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use kit::db::{Db, StoreError};
use kit::extract::Preconditions;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{ListFilter, Money, Product, ProductInput};

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// What [`Store::update`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Written: the product now.
    Done(Product),
    /// No product with that id.
    NotFound,
    /// The preconditions do not hold for the product as it is (shown). Nothing written.
    PreconditionFailed(Product),
    /// The update changes the SKU, which never changes (the product as it is). Nothing written.
    SkuImmutable(Product),
}

/// What [`Store::archive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Archive {
    /// Archived now: the product now.
    Done(Product),
    /// It was archived already (shown; its preconditions are not checked, so a retried `DELETE`
    /// whose first answer was lost still succeeds). Nothing written.
    AlreadyArchived(Product),
    /// No product with that id.
    NotFound,
    /// The preconditions do not hold for the product as it is (shown). Nothing written.
    PreconditionFailed(Product),
}

/// Product persistence. SKU uniqueness is enforced by the database ([`StoreError::Conflict`]).
///
/// Writes of an existing product read its row first (`FOR UPDATE` on PostgreSQL; SQLite's write
/// transaction holds the database) and check the caller's [`Preconditions`] against its `ETag`
/// there, so two admins editing from the same version cannot both win.
pub trait Store: Send + Sync + 'static {
    /// Inserts a product (version 1, not archived).
    fn create<'a>(&'a self, input: &'a ProductInput) -> BoxFuture<'a, StoreResult<Product>>;
    /// The product with `id` (archived or not).
    fn get(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Product>>>;
    /// A page of products, oldest first, matching `filter` (archived ones only when it says so).
    fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, StoreResult<Vec<Product>>>;
    /// Replaces the product's fields and increments its version if `pre` holds and the SKU is
    /// the same; when the price changes, publishes `product.price_changed` ([`PriceChanged`]) in
    /// the same transaction.
    ///
    /// [`PriceChanged`]: crate::model::PriceChanged
    fn update<'a>(
        &'a self,
        id: Uuid,
        input: &'a ProductInput,
        pre: &'a Preconditions,
    ) -> BoxFuture<'a, StoreResult<Update>>;
    /// Archives the product if `pre` holds (its version increments); an archived product is
    /// [`Archive::AlreadyArchived`].
    fn archive<'a>(&'a self, id: Uuid, pre: &'a Preconditions) -> BoxFuture<'a, StoreResult<Archive>>;
}

/// The store for `db`.
pub fn for_db(db: &Db) -> Arc<dyn Store> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
        Db::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
    }
}

/// A row of `products`, shared by both backends (and by the load test's bare baseline).
#[derive(Debug, sqlx::FromRow)]
pub struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    category: String,
    price_amount: i64,
    price_currency: String,
    version: i64,
    archived: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            category: row.category,
            price: Money { amount: row.price_amount, currency: row.price_currency.trim_end().to_owned() },
            version: row.version,
            archived: row.archived,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// `q` with LIKE wildcards escaped (escape character `\`).
fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A JSON error building an event, as a store error (a bug: the event types always serialize).
fn encode_error(err: serde_json::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(Box::new(err)))
}

/// A duplicate SKU, with a message for the client.
fn on_conflict(err: sqlx::Error, sku: &str) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("a product with SKU {sku} already exists")),
        other @ (StoreError::Busy(_) | StoreError::Database(_)) => other,
    }
}
