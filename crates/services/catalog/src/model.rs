//! The catalog's types: what the API sends and receives, and their validation.
//!
//! # Limits
//!
//! - **Prices** are integer minor units from 0 to [`MAX_PRICE_MINOR_UNITS`] (1,000,000,000: ten
//!   million in major units of a two-decimal currency), in an active ISO 4217 currency
//!   ([`is_active_currency`]). A price above the ceiling is a 422, a list filter (`min_price`,
//!   `max_price`) above it a 400. The schemas state the ceiling as `maximum`.
//! - **Text** is measured in characters (Unicode scalar values, as JSON Schema's `maxLength`
//!   counts them) of the value as the client sent it, before any trimming, so that the spec's
//!   `maxLength` is exactly what is checked: a 200-character name plus a trailing space is 201.
//!   `name` and `category` must not be blank, and are stored with surrounding whitespace trimmed;
//!   `description` is stored as sent.
//! - **List filters**: `q` up to [`MAX_Q_CHARS`] and `category` up to [`MAX_CATEGORY_CHARS`]
//!   characters as sent (400 naming the parameter otherwise); a blank one filters nothing.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use kit::error::FieldError;

/// The price ceiling, in minor units: 10 million in major units of a two-decimal currency. The
/// schemas state it as a literal `maximum`; a test checks that they agree.
pub const MAX_PRICE_MINOR_UNITS: i64 = 1_000_000_000;
/// Longest product name, in characters as sent.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest product description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest category, in characters as sent (the `category` list filter too).
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Longest `q` (name search) of the product list, in characters as sent.
pub const MAX_Q_CHARS: usize = 200;

/// Whether `code` is an active ISO 4217 currency code with a minor unit.
///
/// The list is the `iso_currency` crate's (bundled in the crate, taken from the ISO 4217 tables; no
/// download at build time). Not accepted: codes it marks superseded (`HRK`, `SLL`, …) and the
/// special codes without a minor unit or meaning as a price (gold `XAU`, the IMF's `XDR`, testing
/// `XTS`, and the no-currency code). Codes are case-sensitive: `eur` is not `EUR`.
pub fn is_active_currency(code: &str) -> bool {
    iso_currency::Currency::from_code(code).is_some_and(|currency| {
        currency.is_superseded().is_none() && !currency.is_special() && currency.exponent().is_some()
    })
}

/// Every code [`is_active_currency`] accepts, sorted (the spec's `enum` of `currency`).
pub fn active_currencies() -> Vec<String> {
    let letters = b'A'..=b'Z';
    letters
        .clone()
        .flat_map(|a| letters.clone().flat_map(move |b| (b'A'..=b'Z').map(move |c| [a, b, c])))
        .filter_map(|code| String::from_utf8(code.to_vec()).ok())
        .filter(|code| is_active_currency(code))
        .collect()
}

/// At most `max` characters as sent, and [`kit::text::check`]: not blank, nothing a reader cannot
/// see (control, invisible or text-direction characters).
fn bounded_non_blank(text: &str, max: usize) -> bool {
    text.chars().count() <= max && kit::text::check(text).is_ok()
}

/// An amount of money in integer minor units (cents) of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (`1999` = 19.99 EUR): 0 to 1,000,000,000 (10 million in major units).
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 1999)]
    pub amount: i64,
    /// An active ISO 4217 code (`EUR`, `USD`, `JPY`, …); withdrawn codes (`HRK`) and codes without a
    /// minor unit (`XAU`, `XTS`, the no-currency code) are refused.
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
    /// Incremented by every update (and by archiving); the `ETag`.
    pub version: i64,
    /// Archived (`DELETE`): no longer for sale, hidden from lists unless `include_archived=true`,
    /// still readable by id.
    pub archived: bool,
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

/// The data of a `product.price_changed` event (subject: the product's id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChanged {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU.
    pub sku: String,
    /// The price before the update.
    pub old_price: Money,
    /// The price after it.
    pub new_price: Money,
}

/// The event type of [`PriceChanged`].
pub const PRICE_CHANGED: &str = "product.price_changed";

/// The body of `POST /v1/products` and `PUT /v1/products/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// Unique SKU: 1–64 characters of `A-Z a-z 0-9 - _ .`. Immutable: a `PUT` must send the
    /// product's SKU (422 `sku-immutable` otherwise).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "MUG-001")]
    pub sku: String,
    /// 1–200 characters as sent (surrounding whitespace counts), not blank; stored trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Coffee mug")]
    pub name: String,
    /// Up to 2000 characters; stored as sent.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// 1–100 characters as sent (surrounding whitespace counts), not blank; stored trimmed.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "kitchen")]
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
        // Lengths of what was sent, not of the trimmed value: the spec's `maxLength` (module docs).
        if !bounded_non_blank(&self.name, MAX_NAME_CHARS) {
            errors.push(FieldError::new(
                "#/name",
                format!("must be 1-{MAX_NAME_CHARS} characters (as sent), not blank, without control or invisible characters"),
            ));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(FieldError::new(
                "#/description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if !bounded_non_blank(&self.category, MAX_CATEGORY_CHARS) {
            errors.push(FieldError::new(
                "#/category",
                format!("must be 1-{MAX_CATEGORY_CHARS} characters (as sent), not blank, without control or invisible characters"),
            ));
        }
        if !(0..=MAX_PRICE_MINOR_UNITS).contains(&self.price.amount) {
            errors.push(FieldError::new(
                "#/price/amount",
                format!("must be between 0 and {MAX_PRICE_MINOR_UNITS} (minor units)"),
            ));
        }
        if !is_active_currency(&self.price.currency) {
            errors.push(FieldError::new(
                "#/price/currency",
                "must be an active ISO 4217 currency code, such as EUR or USD",
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
    /// Only this category (exact match); up to 100 characters as sent (a 400 otherwise).
    #[param(max_length = 100)]
    pub category: Option<String>,
    /// Only prices ≥ this amount (minor units, at most 1,000,000,000). Must not exceed `max_price`
    /// when both are given: `min_price` above `max_price` is a 400 naming `min_price`.
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub min_price: Option<i64>,
    /// Only prices ≤ this amount (minor units, at most 1,000,000,000). Must be at least
    /// `min_price` when both are given (a 400 otherwise).
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub max_price: Option<i64>,
    /// Only names containing this text (case-insensitive; ASCII case folding on SQLite); up to 200
    /// characters as sent (a 400 otherwise).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Also list archived products (default `false`: archived ones are hidden).
    pub include_archived: Option<bool>,
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
    /// Archived products too.
    pub include_archived: bool,
}

impl ListQuery {
    /// Validates the parameters into a filter.
    pub fn into_filter(self) -> Result<ListFilter, Vec<FieldError>> {
        let mut errors = Vec::new();
        let (limit, offset) = kit::paging::check(self.limit, self.offset, &mut errors);
        for (name, value) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if value.is_some_and(|v| !(0..=MAX_PRICE_MINOR_UNITS).contains(&v)) {
                errors.push(FieldError::new(name, format!("must be between 0 and {MAX_PRICE_MINOR_UNITS}")));
            }
        }
        for (name, value, max) in
            [("category", &self.category, MAX_CATEGORY_CHARS), ("q", &self.q, MAX_Q_CHARS)]
        {
            if value.as_deref().is_some_and(|v| v.chars().count() > max) {
                errors.push(FieldError::new(name, format!("must be at most {max} characters")));
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
            include_archived: self.include_archived.unwrap_or(false),
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
