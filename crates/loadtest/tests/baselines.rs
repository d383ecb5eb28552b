//! The baselines answer what the catalog answers, so a throughput ratio compares like with like;
//! the seeding step works over a real port.

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use kit::auth::Role;
use kit::config::Settings;
use kit::server::Shutdown;
use shop_loadtest::breakdown::{self, Variant};
use shop_loadtest::{bare, hello, seed};
use tower::ServiceExt;

const TEST_SECRET: &str = "test-secret-test-secret-test-secret";

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, bytes::Bytes) {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn baselines_and_breakdown_variants_answer_the_catalogs_bytes_for_the_same_row() {
    let url = kit::db::temp_sqlite_url("loadtest-bare");
    let catalog = shop_catalog::SERVICE.app(&Settings::for_test("catalog", &url)).await.unwrap();
    let token = catalog.keys.issue("admin-1", "admin@example.com", Role::Admin).unwrap();
    let create = Request::post("/v1/products")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(seed::product_json().to_string()))
        .unwrap();
    let (status, _, body) = send(&catalog.router, create).await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/products/{id}");
    let (status, catalog_headers, catalog_body) = send(&catalog.router, get(&path)).await;
    assert_eq!(status, StatusCode::OK);

    let baseline = bare::app(&bare::connect(&url, bare::POOL_SIZE).await.unwrap());
    let (status, headers, body) = send(&baseline, get(&path)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, catalog_body, "the same JSON, byte for byte");
    for name in [header::CONTENT_TYPE, header::ETAG] {
        assert_eq!(headers.get(&name), catalog_headers.get(&name), "{name}");
    }

    for variant in Variant::ALL {
        assert_eq!(Variant::from_name(variant.name()), Some(variant));
        let router = breakdown::app(variant, &url).await.unwrap();
        let (status, headers, body) = send(&router, get(&path)).await;
        assert_eq!(status, StatusCode::OK, "{variant:?}");
        assert_eq!(body, catalog_body, "{variant:?}: the same JSON, byte for byte");
        assert_eq!(headers.get(header::ETAG), catalog_headers.get(header::ETAG), "{variant:?}");
    }
    assert_eq!(Variant::from_name("catalog"), None);

    let missing = format!("/v1/products/{}", uuid::Uuid::new_v4());
    let (status, headers, _) = send(&baseline, get(&missing)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let (status, headers, _) = send(&baseline, get("/v1/products/not-a-uuid")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn bare_sqlite_refuses_a_postgres_url() {
    let err = bare::connect("postgres://127.0.0.1:1/catalog", 1).await.unwrap_err();
    assert!(err.to_string().contains("sqlite"), "{err}");
}

#[tokio::test]
async fn hello_says_hello() {
    let (status, headers, body) = send(&hello::app(), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(body, "Hello, World!");
}

#[tokio::test]
async fn seed_creates_a_product_through_the_catalog_api_over_a_real_port() {
    let url = kit::db::temp_sqlite_url("loadtest-seed");
    let server =
        shop_catalog::SERVICE.app(&Settings::for_test("catalog", &url)).await.unwrap().bind().await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = Shutdown::manual();
    let running = tokio::spawn(server.run(shutdown));

    let err = seed::create_product(&base, "not-the-catalogs-secret-not-the-catalogs").await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let id = seed::create_product(&base, TEST_SECRET).await.unwrap();
    let other = seed::create_product(&base, TEST_SECRET).await.unwrap();
    assert_ne!(id, other, "each seed is a new product with its own SKU");

    let baseline = bare::app(&bare::connect(&url, 1).await.unwrap());
    let (status, _, body) = send(&baseline, get(&format!("/v1/products/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    let product: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(product["id"], id.to_string());
    assert_eq!(product["price"]["amount"], 1499);

    trigger.trigger();
    running.await.unwrap().unwrap();
}
