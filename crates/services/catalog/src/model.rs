//! The catalog's types: what the API sends and receives, and their validation.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use kit::error::FieldError;

/// An amount of money in integer minor units (cents) of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units (`1999` = 19.99 EUR); at least 0.
    #[schema(minimum = 0, example = 1999)]
    pub amount: i64,
    /// ISO 4217 code: three uppercase letters.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

/// A product in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Product {
    /// Identifier.
    pub id: Uuid,
    /// Stock keeping unit, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer description (may be empty).
    pub description: String,
    /// Category (exact-match filter).
    pub category: String,
    /// Price.
    pub price: Money,
    /// Incremented by every update; the `ETag`.
    pub version: i64,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Product {
    /// The strong `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id.simple(), self.version)
    }
}

/// The body of `POST /v1/products` and `PUT /v1/products/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// Unique SKU: 1–64 characters of `A-Z a-z 0-9 - _ .`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "MUG-001")]
    pub sku: String,
    /// 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Coffee mug")]
    pub name: String,
    /// Up to 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// 1–100 characters.
    #[schema(min_length = 1, max_length = 100, example = "kitchen")]
    pub category: String,
    /// Price.
    pub price: Money,
}

impl ProductInput {
    /// Checks every field; one [`FieldError`] per problem.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let sku_ok = (1..=64).contains(&self.sku.len())
            && self.sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !sku_ok {
            errors.push(FieldError::new("#/sku", "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'"));
        }
        let name = self.name.trim().chars().count();
        if name == 0 || name > 200 {
            errors.push(FieldError::new("#/name", "must be 1-200 characters"));
        }
        if self.description.chars().count() > 2000 {
            errors.push(FieldError::new("#/description", "must be at most 2000 characters"));
        }
        let category = self.category.trim().chars().count();
        if category == 0 || category > 100 {
            errors.push(FieldError::new("#/category", "must be 1-100 characters"));
        }
        if self.price.amount < 0 {
            errors.push(FieldError::new("#/price/amount", "must be at least 0"));
        }
        if !(self.price.currency.len() == 3 && self.price.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            errors.push(FieldError::new(
                "#/price/currency",
                "must be an ISO 4217 code: three uppercase letters",
            ));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

pub use kit::paging::{DEFAULT_LIMIT, MAX_LIMIT};

/// Query parameters of `GET /v1/products`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// Only this category (exact match).
    pub category: Option<String>,
    /// Only prices ≥ this amount (minor units); not above `max_price` when both are given.
    #[param(minimum = 0)]
    pub min_price: Option<i64>,
    /// Only prices ≤ this amount (minor units).
    #[param(minimum = 0)]
    pub max_price: Option<i64>,
    /// Only names containing this text (case-insensitive; ASCII case folding on SQLite).
    pub q: Option<String>,
}

/// A validated list filter, as the store receives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Rows to return.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
    /// Exact category.
    pub category: Option<String>,
    /// Lowest price.
    pub min_price: Option<i64>,
    /// Highest price.
    pub max_price: Option<i64>,
    /// Name substring.
    pub q: Option<String>,
}

impl ListQuery {
    /// Validates the parameters into a filter.
    pub fn into_filter(self) -> Result<ListFilter, Vec<FieldError>> {
        let mut errors = Vec::new();
        let (limit, offset) = kit::paging::check(self.limit, self.offset, &mut errors);
        for (name, value) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if value.is_some_and(|v| v < 0) {
                errors.push(FieldError::new(name, "must be at least 0"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            errors.push(FieldError::new("min_price", "must not exceed max_price"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(ListFilter {
            limit,
            offset,
            category: non_empty(self.category),
            min_price: self.min_price,
            max_price: self.max_price,
            q: non_empty(self.q),
        })
    }
}

/// One page of `GET /v1/products`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProductPage {
    /// The products, oldest first.
    pub items: Vec<Product>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The `offset` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}
