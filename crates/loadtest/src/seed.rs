//! Creates the product the load test reads, through the catalog's real API (`POST /v1/products`
//! with an admin token signed with the catalog's JWT secret).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kit::auth::{JwtKeys, Role};
use uuid::Uuid;

use crate::BoxError;

/// The product every run reads: a realistic size (about 400 bytes of JSON).
pub fn product_json() -> serde_json::Value {
    serde_json::json!({
        "sku": format!("LOAD-{}", Uuid::new_v4().simple()),
        "name": "Stoneware coffee mug, 350 ml",
        "description": "Hand-glazed stoneware mug with a wide handle. Dishwasher and microwave safe. \
                        Each piece varies slightly in colour.",
        "category": "kitchen",
        "price": { "amount": 1499, "currency": "EUR" },
    })
}

/// Creates one product at `base` (`http://127.0.0.1:8082`) as an admin whose token is signed with
/// `jwt_secret`; returns its id.
pub async fn create_product(base: &str, jwt_secret: &str) -> Result<Uuid, BoxError> {
    let token = JwtKeys::new(jwt_secret.as_bytes(), Duration::from_mins(5)).issue(
        "loadtest",
        "loadtest@example.com",
        Role::Admin,
    )?;
    let req = Request::post(format!("{}/v1/products", base.trim_end_matches('/')))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(product_json().to_string())))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "POST /v1/products timed out")??;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if status != StatusCode::CREATED {
        return Err(format!("POST /v1/products answered {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    let created: serde_json::Value = serde_json::from_slice(&body)?;
    let id = created.get("id").and_then(serde_json::Value::as_str).ok_or("the response has no id")?;
    Ok(id.parse()?)
}
