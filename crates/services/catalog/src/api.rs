//! The `/v1/products` handlers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kit::auth::AdminUser;
use kit::error::{ApiError, FieldError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{IfNoneMatch, Json, Path, Preconditions, Query};
use kit::openapi::{AuthErrors, NotAdmin};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::cache::ProductCache;
use crate::model::{ListQuery, Product, ProductInput, ProductPage};
use crate::store::{Archive, Store, Update};

/// Handler state.
#[derive(Clone)]
pub struct AppState {
    /// The products.
    pub store: Arc<dyn Store>,
    /// The read cache of single products.
    pub cache: Arc<ProductCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("cache", &self.cache).finish_non_exhaustive()
    }
}

/// The routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_products, create_product)).routes(routes!(
        get_product,
        update_product,
        delete_product
    ))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no product with id {id}"))
}

fn json_response(status: StatusCode, etag: &str, body: Bytes) -> Response {
    let mut res = (status, body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    res
}

fn to_bytes(product: &Product) -> Result<Bytes, ApiError> {
    serde_json::to_vec(product).map(Bytes::from).map_err(ApiError::internal)
}

/// List products: paging, filters, name search; archived products only with `include_archived=true`.
#[utoipa::path(
    get, path = "/v1/products", tag = "products",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "Invalid query parameters, each named in `errors`: a value out of range, \
            `min_price` above `max_price`, `q` over 200 or `category` over 100 characters",
            body = Problem, content_type = PROBLEM),
    )
)]
async fn list_products(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ProductPage>, ApiError> {
    let mut filter = query.into_filter().map_err(ApiError::invalid_params)?;
    let limit = filter.limit;
    filter.limit += 1; // one more row tells whether there is a next page
    let mut items = state.store.list(&filter).await?;
    let next_offset = kit::paging::finish(&mut items, limit, filter.offset);
    Ok(Json(ProductPage { items, limit, offset: filter.offset, next_offset }))
}

/// Get one product; `If-None-Match` with its current `ETag` answers 304.
#[utoipa::path(
    get, path = "/v1/products/{id}", tag = "products",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier response"),
    ),
    responses(
        (status = 200, description = "The product", body = Product,
            headers(("ETag" = String, description = "The product's version"))),
        (status = 304, description = "Not modified: the ETag still matches",
            headers(("ETag" = String, description = "The product's version"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such product", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let (etag, body) = if let Some(cached) = state.cache.get(id) {
        (cached.etag, cached.body)
    } else {
        let ticket = state.cache.ticket();
        let product = state.store.get(id).await?.ok_or_else(|| not_found(id))?;
        let (etag, body) = (product.etag(), to_bytes(&product)?);
        state.cache.put(ticket, id, &etag, &body);
        (etag, body)
    };
    if if_none_match.matches(&etag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(&etag) {
            res.headers_mut().insert(header::ETAG, value);
        }
        return Ok(res);
    }
    Ok(json_response(StatusCode::OK, &etag, body))
}

/// Create a product (admin).
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    request_body(content = ProductInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Product,
            headers(("Location" = String, description = "The product's URL"), ("ETag" = String, description = "Its version"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 409, description = "The SKU is taken", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM),
    )
)]
async fn create_product(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(input): Json<ProductInput>,
) -> Result<Response, ApiError> {
    input.validate().map_err(ApiError::validation)?;
    let product = state.store.create(&input).await?;
    let mut res = json_response(StatusCode::CREATED, &product.etag(), to_bytes(&product)?);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/products/{}", product.id)) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

const SKU_IMMUTABLE: &str = "https://palisade.dev/problems/sku-immutable";

/// The 412 of a write whose `If-Match` names another version.
fn stale(current: &Product) -> ApiError {
    let etag = current.etag();
    Preconditions::failed(
        format!("product {} is at ETag {etag}, which If-Match does not name; read it again", current.id),
        Some(&etag),
    )
}

/// Replace a product's fields (admin); its version and ETag change.
///
/// Send `If-Match` with the product's `ETag` (from a `GET`): 428 without it, 412 when the product
/// changed since. The SKU never changes: the body must carry the product's SKU (422
/// `sku-immutable` otherwise). A new price publishes `product.price_changed` in the update's
/// transaction.
#[utoipa::path(
    put, path = "/v1/products/{id}", tag = "products",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("If-Match" = String, Header, description = "The product's current `ETag`"),
    ),
    request_body(content = ProductInput, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = Product,
            headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "The id is not a UUID or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such product", body = Problem, content_type = PROBLEM),
        (status = 412, description = "`If-Match` does not name the product's current version: it changed since; \
            nothing was written", body = Problem, content_type = PROBLEM,
            headers(("ETag" = String, description = "The product's current version"))),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields, or a SKU other than the product's (type `sku-immutable`)",
            body = Problem, content_type = PROBLEM),
        (status = 428, description = "No `If-Match`: a blind overwrite is refused", body = Problem, content_type = PROBLEM),
    )
)]
async fn update_product(
    State(state): State<AppState>,
    _admin: AdminUser,
    pre: Preconditions,
    Path(id): Path<Uuid>,
    Json(input): Json<ProductInput>,
) -> Result<Response, ApiError> {
    pre.if_match_required(format!(
        "send If-Match with the ETag of GET /v1/products/{id}: another admin may have changed it since"
    ))?;
    input.validate().map_err(ApiError::validation)?;
    let write = state.store.update(id, &input, &pre).await?;
    match write {
        Update::Done(product) => {
            state.cache.invalidate(id);
            Ok(json_response(StatusCode::OK, &product.etag(), to_bytes(&product)?))
        }
        Update::NotFound => Err(not_found(id)),
        Update::PreconditionFailed(current) => Err(stale(&current)),
        Update::SkuImmutable(current) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type(SKU_IMMUTABLE, "SKU is immutable")
            .with_detail(format!("product {id} has SKU {}, which never changes", current.sku))
            .with_errors(vec![FieldError::new("#/sku", format!("must be {}", current.sku))])),
    }
}

/// Archive a product (admin): it stays readable by id with `archived: true`, and lists hide it
/// unless `include_archived=true`.
///
/// Send `If-Match` with the product's `ETag`: 428 without it, 412 when the product changed since.
/// Idempotent: archiving an archived product is a 204 whatever its `If-Match` names (the change
/// is already made; RFC 9110 §13.1.1), so a retry whose first answer was lost succeeds.
#[utoipa::path(
    delete, path = "/v1/products/{id}", tag = "products",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("If-Match" = String, Header, description = "The product's current `ETag`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Archived (now, or before)"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such product", body = Problem, content_type = PROBLEM),
        (status = 412, description = "`If-Match` does not name the product's current version: it changed since; \
            nothing was written", body = Problem, content_type = PROBLEM,
            headers(("ETag" = String, description = "The product's current version"))),
        (status = 428, description = "No `If-Match`", body = Problem, content_type = PROBLEM),
    )
)]
async fn delete_product(
    State(state): State<AppState>,
    _admin: AdminUser,
    pre: Preconditions,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    pre.if_match_required(format!(
        "send If-Match with the ETag of GET /v1/products/{id}: another admin may have changed it since"
    ))?;
    match state.store.archive(id, &pre).await? {
        Archive::Done(_) => {
            state.cache.invalidate(id);
            Ok(StatusCode::NO_CONTENT)
        }
        Archive::AlreadyArchived(_) => Ok(StatusCode::NO_CONTENT),
        Archive::NotFound => Err(not_found(id)),
        Archive::PreconditionFailed(current) => Err(stale(&current)),
    }
}
