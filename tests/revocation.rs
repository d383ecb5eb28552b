//! Revocation across services: users bumps an account's token version on a role or password change,
//! and catalog, asking users about each token (cached `token_check_ttl_ms`), stops honouring the old
//! one. Users runs on a real port; catalog in-process, calling users over real HTTP.

use std::time::Duration;

use axum::body::Body;
use figment::Figment;
use http::{Request, StatusCode, header};
use kit::config::Settings;
use kit::testing::{Answer, send};
use serde_json::{Value, json};

const SECRET: &str = "revocation-test-secret-of-enough-bytes";
const PASSWORD: &str = "correct horse battery staple";

fn settings(service: &str, extra: &[(&str, Value)]) -> Settings {
    let mut figment = Figment::new()
        .merge((format!("{service}.port"), 0))
        .merge((
            format!("{service}.database_url"),
            kit::db::temp_sqlite_url(&format!("revocation-{service}")),
        ))
        .merge(("jwt_secret", SECRET));
    for (key, value) in extra {
        figment = figment.merge((*key, value.clone()));
    }
    Settings::from_figment(figment)
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap()
}

async fn login(users: &axum::Router, email: &str, password: &str) -> String {
    let body = json!({ "email": email, "password": password });
    let (status, _, session) = send(users, request("POST", "/v1/sessions", None, Some(body))).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session["access_token"].as_str().unwrap().to_owned()
}

fn product(sku: &str) -> Value {
    json!({ "sku": sku, "name": "Mug", "category": "kitchen", "price": { "amount": 1299, "currency": "EUR" } })
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_power_in_every_service() {
    let users_app = shop_users::SERVICE.app(&settings("users", &[])).await.unwrap();
    let users = users_app.router.clone();
    let server = users_app.bind().await.unwrap();
    let users_url = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = kit::server::Shutdown::manual();
    let running = tokio::spawn(server.run(shutdown));

    let catalog_settings = settings(
        "catalog",
        &[("catalog.downstreams.users.url", json!(users_url)), ("catalog.token_check_ttl_ms", json!(200))],
    );
    let catalog = shop_catalog::SERVICE.app(&catalog_settings).await.unwrap().router;

    // A customer, promoted by the admin, logs in again and manages the catalog.
    let body = json!({ "email": "dana@example.com", "password": PASSWORD });
    let (_, _, dana) = send(&users, request("POST", "/v1/users", None, Some(body))).await;
    let dana_path = format!("/v1/users/{}", dana["id"].as_str().unwrap());
    let admin = login(&users, "admin@palisade.local", "palisade-admin-password").await;
    let customer_token = login(&users, "dana@example.com", PASSWORD).await;
    let promote = json!({ "role": "admin" });
    let (status, _, body) = send(&users, request("PATCH", &dana_path, Some(&admin), Some(promote))).await;
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("admin")), "{body}");
    // The token from before the promotion is revoked: it says "customer".
    let (status, _, _) = send(&users, request("GET", "/v1/users/me", Some(&customer_token), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let dana_admin = login(&users, "dana@example.com", PASSWORD).await;
    let created: Answer =
        send(&catalog, request("POST", "/v1/products", Some(&dana_admin), Some(product("A-1")))).await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.2);

    // Demoted: refused in users at once, and in catalog once its cached answer is older than 200 ms.
    let demote = json!({ "role": "customer" });
    let (status, _, _) = send(&users, request("PATCH", &dana_path, Some(&admin), Some(demote))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&users, request("GET", "/v1/users", Some(&dana_admin), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, problem) =
        send(&catalog, request("POST", "/v1/products", Some(&dana_admin), Some(product("A-2")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("revoked"), "{problem}");

    // The last admin cannot be demoted.
    let me = send(&users, request("GET", "/v1/users/me", Some(&admin), None)).await.2;
    let admin_path = format!("/v1/users/{}", me["id"].as_str().unwrap());
    let demote = json!({ "role": "customer" });
    let (status, _, _) = send(&users, request("PATCH", &admin_path, Some(&admin), Some(demote))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Users gone: an admin token cannot be checked, so catalog refuses it (503, not a pass).
    trigger.trigger();
    running.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, problem) =
        send(&catalog, request("POST", "/v1/products", Some(&admin), Some(product("A-3")))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Public reads need no token and keep working.
    let (status, _, _) = send(&catalog, request("GET", "/v1/products", None, None)).await;
    assert_eq!(status, StatusCode::OK);
}
