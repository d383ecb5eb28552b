//! The catalog service (port 8082): products and prices.
//!
//! Public: `GET /v1/products` (paging, filter by category and price range, name search; archived
//! products only with `include_archived=true`) and `GET /v1/products/{id}` (`ETag`,
//! `If-None-Match` → 304; archived products too, with `archived: true`). Admin: `POST
//! /v1/products`, `PUT`/`DELETE /v1/products/{id}`. Single-product reads go through a [`cache`]
//! whose staleness bound is documented there.
//!
//! Writes of an existing product:
//!
//! - `PUT` and `DELETE` need `If-Match` with the product's `ETag` (428 `precondition-required`
//!   without it, 412 `precondition-failed` with the current `ETag` when the product changed since),
//!   checked in the write's transaction, so of two admins editing the same version one wins and the
//!   other is told.
//! - The SKU never changes: a `PUT` with another SKU is a 422 `sku-immutable`. (Stock and orders
//!   refer to products by SKU.)
//! - `DELETE` archives: the row, its id and its SKU stay (a new product cannot take the SKU),
//!   `archived` becomes `true` and the version increments. Archiving an archived product is a 204
//!   whatever `If-Match` names, so a retry whose first answer was lost succeeds.
//! - A `PUT` that changes the price publishes `product.price_changed` (subject: the product id; data
//!   [`model::PriceChanged`]: `{product_id, sku, old_price, new_price}`) through the outbox, in
//!   the update's transaction.
//!
//! This crate is the template for the other services: [`model`] (API types and validation),
//! [`store`] (a `Store` trait, one implementation per database), [`api`] (handlers with their
//! OpenAPI annotations), and [`SERVICE`], which the `shop` binary runs.

pub mod api;
pub mod cache;
pub mod model;
pub mod store;

use std::sync::Arc;

use kit::db::Migrations;
use kit::error::{FieldError, Problem};
use kit::openapi::BearerAuth;
use kit::service::{Context, RoutesFuture, Service};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

use crate::api::AppState;
use crate::cache::{CacheConfig, ProductCache};

/// The catalog, for the `shop` binary.
pub static SERVICE: Service = Service {
    name: "catalog",
    default_port: 8082,
    migrations: &MIGRATIONS,
    openapi,
    routes,
    config_keys,
    calls: &[],
};

/// The catalog's embedded migrations.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/catalog/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/catalog/postgres"),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Palisade Shop catalog", description = "Products and prices. Errors are RFC 9457 problem documents."),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags((name = "products", description = "The product catalog")),
)]
struct ApiDoc;

/// The catalog's OpenAPI document.
pub fn openapi() -> OpenApi {
    let (_, paths) = api::router().split_for_parts();
    let mut doc = kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"));
    list_currencies(&mut doc);
    doc
}

/// `Money.currency` lists the accepted codes, so a client (or a fuzzer) knows `XYZ` is refused.
fn list_currencies(doc: &mut OpenApi) {
    if let Some(currency) = kit::openapi::object_mut(doc, "Money", Some("currency")) {
        currency.enum_values = Some(model::active_currencies().into_iter().map(Into::into).collect());
    }
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let cache: CacheConfig = context.settings.extract("catalog.cache")?;
        let state =
            AppState { store: store::for_db(&context.db), cache: Arc::new(ProductCache::new(&cache)) };
        let (router, _) = api::router().split_for_parts();
        Ok(router.with_state(state))
    })
}

/// The service's own settings sections (for the start-up check of unknown keys).
fn config_keys() -> Vec<String> {
    kit::config::keys_of("cache", &CacheConfig::default())
}
