//! [`Store`] on SQLite ([`SqliteStore`]) and on PostgreSQL ([`PgStore`]): one implementation, written
//! once and generated for both pools by [`kit::sql_store!`]. The SQL is the same on both (`$n`
//! placeholders, `CAST`) except two words from the pool's [`Dialect`](kit::db::Dialect): the column
//! that orders a list (`rowid` / `seq`) and the case-insensitive match (`LIKE` / `ILIKE`), and the
//! row lock of a write's first read (none / `FOR UPDATE`).

use futures_util::future::BoxFuture;
use kit::db::{SqlPool as _, now};
use kit::extract::Preconditions;
use kit::outbox::Event;
use kit::uow::UnitOfWork as _;
use uuid::Uuid;

use super::{Archive, ProductRow, Store, StoreResult, Update, encode_error, like_pattern, on_conflict};
use crate::model::{ListFilter, PRICE_CHANGED, PriceChanged, Product, ProductInput};

/// The columns of a product row, in `ProductRow` order (a macro so that `concat!` can build constant
/// SQL from it).
macro_rules! columns {
    () => {
        "id, sku, name, description, category, price_amount, price_currency, version, archived, created_at, updated_at"
    };
}
const COLUMNS: &str = columns!();

/// The SQL of [`Store::get`]: one product by primary key (`$1`). Public so that the load test's bare
/// baseline runs exactly this query.
pub const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM products WHERE id = $1");

kit::sql_store! {
    /// Products in SQLite.
    sqlite: SqliteStore,
    /// Products in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn create<'a>(&'a self, input: &'a ProductInput) -> BoxFuture<'a, StoreResult<Product>> {
            Box::pin(async move {
                let now = now();
                let sql = format!(
                    "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, FALSE, $8, $8) RETURNING {COLUMNS}"
                );
                let row: ProductRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(Uuid::new_v4())
                    .bind(&input.sku)
                    .bind(input.name.trim())
                    .bind(&input.description)
                    .bind(input.category.trim())
                    .bind(input.price.amount)
                    .bind(&input.price.currency)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| on_conflict(e, &input.sku))?;
                Ok(row.into())
            })
        }

        fn get(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Product>>> {
            Box::pin(async move {
                let row: Option<ProductRow> =
                    sqlx::query_as(SELECT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Product::from))
            })
        }

        fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, StoreResult<Vec<Product>>> {
            Box::pin(async move {
                let dialect = self.pool.dialect();
                let (ilike, order) = (dialect.ilike, dialect.insertion_order);
                let sql = format!(
                    "SELECT {COLUMNS} FROM products \
                     WHERE (CAST($1 AS TEXT) IS NULL OR category = $1) \
                       AND (CAST($2 AS BIGINT) IS NULL OR price_amount >= $2) \
                       AND (CAST($3 AS BIGINT) IS NULL OR price_amount <= $3) \
                       AND (CAST($4 AS TEXT) IS NULL OR name {ilike} $4 ESCAPE '\\') \
                       AND ($7 OR NOT archived) \
                     ORDER BY {order} LIMIT $5 OFFSET $6"
                );
                let rows: Vec<ProductRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(filter.category.as_deref())
                    .bind(filter.min_price)
                    .bind(filter.max_price)
                    .bind(filter.q.as_deref().map(like_pattern))
                    .bind(i64::from(filter.limit))
                    .bind(i64::try_from(filter.offset).unwrap_or(i64::MAX))
                    .bind(filter.include_archived)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Product::from).collect())
            })
        }

        fn update<'a>(
            &'a self,
            id: Uuid,
            input: &'a ProductInput,
            pre: &'a Preconditions,
        ) -> BoxFuture<'a, StoreResult<Update>> {
            Box::pin(async move {
                let mut tx = self.pool.begin_write().await?;
                let lock = self.pool.dialect().row_lock;
                let sql = format!("{SELECT_BY_ID}{lock}");
                let row: Option<ProductRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await?;
                let Some(current) = row.map(Product::from) else { return Ok(Update::NotFound) };
                if !pre.hold(Some(&current.etag())) {
                    return Ok(Update::PreconditionFailed(current));
                }
                if current.sku != input.sku {
                    return Ok(Update::SkuImmutable(current));
                }
                let sql = format!(
                    "UPDATE products SET name = $2, description = $3, category = $4, price_amount = $5, \
                     price_currency = $6, version = version + 1, updated_at = $7 WHERE id = $1 RETURNING {COLUMNS}"
                );
                let row: ProductRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(input.name.trim())
                    .bind(&input.description)
                    .bind(input.category.trim())
                    .bind(input.price.amount)
                    .bind(&input.price.currency)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
                let product = Product::from(row);
                if product.price != current.price {
                    let data = PriceChanged {
                        product_id: id,
                        sku: product.sku.clone(),
                        old_price: current.price,
                        new_price: product.price.clone(),
                    };
                    let event = Event::new(PRICE_CHANGED, &id.to_string(), &data).map_err(encode_error)?;
                    tx.publish(&event).await?;
                }
                tx.commit().await?;
                Ok(Update::Done(product))
            })
        }

        fn archive<'a>(&'a self, id: Uuid, pre: &'a Preconditions) -> BoxFuture<'a, StoreResult<Archive>> {
            Box::pin(async move {
                let mut tx = self.pool.begin_write().await?;
                let lock = self.pool.dialect().row_lock;
                let sql = format!("{SELECT_BY_ID}{lock}");
                let row: Option<ProductRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await?;
                let Some(current) = row.map(Product::from) else { return Ok(Archive::NotFound) };
                if current.archived {
                    return Ok(Archive::AlreadyArchived(current));
                }
                if !pre.hold(Some(&current.etag())) {
                    return Ok(Archive::PreconditionFailed(current));
                }
                let sql = format!(
                    "UPDATE products SET archived = TRUE, version = version + 1, updated_at = $2 \
                     WHERE id = $1 RETURNING {COLUMNS}"
                );
                let row: ProductRow =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(now()).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(Archive::Done(row.into()))
            })
        }
    }
}
