//! The notifications' HTTP API in-process (`Router::oneshot`) with the full kit stack, service tokens
//! signed like a producer's relay signs them, and the committed OpenAPI file.

use axum::Router;
use axum::body::Body;
use figment::Figment;
use http::{HeaderMap, Request, StatusCode, header};
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use kit::testing::assert_problem;
use serde_json::{Value, json};

/// The producer the tests act as: its key is trusted with `events:deliver` and `other:scope`.
const KID: &str = "orders-1";

struct TestApp {
    router: Router,
    keys: JwtKeys,
    orders: ServiceSigner,
}

async fn app() -> TestApp {
    let pair = KeyPair::generate().unwrap();
    let trusted = TrustedKey {
        issuer: "orders".to_owned(),
        public_key: pair.public_key(),
        scopes: vec!["events:deliver".to_owned(), "other:scope".to_owned()],
    };
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("notifications.port", 0))
            .merge(("notifications.database_url", kit::db::temp_sqlite_url("notifications-api")))
            .merge(("jwt_secret", "test-secret-test-secret-test-secret"))
            .merge((format!("notifications.trusted_keys.{KID}"), trusted)),
    );
    let app = shop_notifications::SERVICE.app(&settings).await.expect("app");
    TestApp { router: app.router, keys: app.keys, orders: ServiceSigner::new("orders", KID, &pair) }
}

fn event(id: &str, event_type: &str, data: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": id,
        "source": "/shop/orders",
        "type": event_type,
        "subject": "o-1",
        "datacontenttype": "application/json",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    });
    event["data"] = data;
    event
}

impl TestApp {
    fn service_token(&self, scopes: &[&str]) -> String {
        self.orders.token("notifications", scopes).unwrap()
    }

    fn user_token(&self, id: &str, role: Role) -> String {
        self.keys.issue(id, &format!("{id}@example.com"), role).unwrap()
    }

    async fn post(&self, token: &str, content_type: &str, body: &str) -> (StatusCode, HeaderMap, Value) {
        let req = Request::post("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        kit::testing::send(&self.router, req).await
    }

    /// Delivers `event` as the orders relay does; asserts 204.
    async fn deliver(&self, event: &Value) {
        let token = self.service_token(&["events:deliver"]);
        let (status, _, body) = self.post(&token, "application/cloudevents+json", &event.to_string()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(body, Value::Null);
    }

    async fn list(&self, token: &str, query: &str) -> (StatusCode, HeaderMap, Value) {
        let req = Request::get(format!("/v1/notifications{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        kit::testing::send(&self.router, req).await
    }
}

#[tokio::test]
async fn a_duplicate_delivery_stores_one_notification_and_both_answer_204() {
    let app = app().await;
    let confirmed = event(
        "e-1",
        "order.confirmed",
        json!({ "order_id": "o-1", "user_id": "u-1", "total": { "amount": 1999, "currency": "EUR" } }),
    );
    app.deliver(&confirmed).await;
    app.deliver(&confirmed).await;
    // The relay's content type, or plain JSON: the same event again.
    let token = app.service_token(&["events:deliver"]);
    let (status, _, _) = app.post(&token, "application/json", &confirmed.to_string()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _, page) = app.list(&app.user_token("u-1", Role::Customer), "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let n = &items[0];
    assert_eq!(n["event_id"], "e-1");
    assert_eq!(n["event_type"], "order.confirmed");
    assert_eq!(n["source"], "/shop/orders");
    assert_eq!(n["subject"], "o-1");
    assert_eq!(n["user_id"], "u-1");
    assert_eq!(n["title"], "Order confirmed");
    assert_eq!(n["summary"], "Your order o-1 (19.99 EUR) is confirmed.");
    assert_eq!(n["data"]["total"]["amount"], 1999);
    assert!(n["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{n}");
    assert!(page.get("next_offset").is_none());
}

#[tokio::test]
async fn events_without_a_user_are_acknowledged_and_notify_nobody() {
    let app = app().await;
    app.deliver(&event("e-p", "product.price_changed", json!({ "product_id": "p-1" }))).await;
    app.deliver(&event("e-p", "product.price_changed", json!({ "product_id": "p-1" }))).await;
    app.deliver(&event("e-n", "order.cancelled", json!({ "user_id": 42 }))).await;
    let admin = app.user_token("admin-1", Role::Admin);
    for user in ["42", "admin-1"] {
        let (status, _, page) = app.list(&admin, &format!("?user_id={user}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"], json!([]), "{page}");
    }
}

#[tokio::test]
async fn only_services_with_events_deliver_may_post_events() {
    let app = app().await;
    let body = event("e-1", "order.confirmed", json!({ "user_id": "u-1", "order_id": "o-1" })).to_string();
    let customer = app.user_token("u-1", Role::Customer);
    let (status, headers, problem) = app.post(&customer, "application/cloudevents+json", &body).await;
    assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);

    let without_scope = app.service_token(&["other:scope"]);
    let (status, headers, problem) = app.post(&without_scope, "application/cloudevents+json", &body).await;
    assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().unwrap().contains("events:deliver"), "{problem}");

    // A token the orders relay minted for another service.
    let elsewhere = app.orders.token("payments", &["events:deliver"]).unwrap();
    let (status, headers, problem) = app.post(&elsewhere, "application/cloudevents+json", &body).await;
    assert_problem(status, &headers, &problem, StatusCode::UNAUTHORIZED);

    let req = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .body(Body::from(body))
        .unwrap();
    let (status, headers, problem) = kit::testing::send(&app.router, req).await;
    assert_problem(status, &headers, &problem, StatusCode::UNAUTHORIZED);

    // Nothing of the refused deliveries was stored: the event is new to a permitted one.
    let (status, _, page) = app.list(&customer, "").await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn malformed_envelopes_are_problems() {
    let app = app().await;
    let token = app.service_token(&["events:deliver"]);
    let ce = "application/cloudevents+json";

    let (status, headers, problem) = app.post(&token, ce, "{not json").await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST);

    let (status, headers, problem) = app.post(&token, "text/plain", "{}").await;
    assert_problem(status, &headers, &problem, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut missing = event("e-1", "order.confirmed", json!({}));
    missing.as_object_mut().unwrap().remove("source");
    let (status, headers, problem) = app.post(&token, ce, &missing.to_string()).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["errors"].to_string().contains("source"), "{problem}");

    let mut bad = event(" ", "", json!({ "user_id": "u-1" }));
    bad["specversion"] = json!("0.3");
    let (status, headers, problem) = app.post(&token, ce, &bad.to_string()).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["#/specversion", "#/id", "#/type"], "{problem}");

    let (status, headers, problem) = app.post(&token, ce, "[]").await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_same_event_id_from_another_source_is_a_conflict() {
    let app = app().await;
    app.deliver(&event("e-1", "order.confirmed", json!({ "user_id": "u-1", "order_id": "o-1" }))).await;
    let mut other = event("e-1", "payment.captured", json!({ "user_id": "u-1" }));
    other["source"] = json!("/shop/payments");
    let token = app.service_token(&["events:deliver"]);
    let (status, headers, problem) =
        app.post(&token, "application/cloudevents+json", &other.to_string()).await;
    assert_problem(status, &headers, &problem, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_list_shows_only_mine_newest_first_in_pages() {
    let app = app().await;
    for (n, user) in ["u-1", "u-2", "u-1", "u-1"].iter().enumerate() {
        let data = json!({ "user_id": user, "order_id": format!("o-{n}") });
        app.deliver(&event(&format!("e-{n}"), "order.cancelled", data)).await;
    }
    let mine = app.user_token("u-1", Role::Customer);
    let (status, _, first) = app.list(&mine, "?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|n| n["event_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&first), ["e-3", "e-2"], "newest first");
    assert_eq!(
        (first["limit"].clone(), first["offset"].clone(), first["next_offset"].clone()),
        (json!(2), json!(0), json!(2))
    );
    let (_, _, second) = app.list(&mine, "?limit=2&offset=2").await;
    assert_eq!(ids(&second), ["e-0"]);
    assert!(second.get("next_offset").is_none(), "{second}");
    // Naming myself is fine; naming another user is for admins.
    let (_, _, named) = app.list(&mine, "?user_id=u-1").await;
    assert_eq!(ids(&named), ["e-3", "e-2", "e-0"]);
    let (status, headers, problem) = app.list(&mine, "?user_id=u-2").await;
    assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);
    let (_, _, theirs) = app.list(&app.user_token("admin-1", Role::Admin), "?user_id=u-2").await;
    assert_eq!(ids(&theirs), ["e-1"]);
    let (_, _, other) = app.list(&app.user_token("u-2", Role::Customer), "").await;
    assert_eq!(ids(&other), ["e-1"]);

    for bad in ["?limit=0", "?limit=101", "?offset=-1", "?user_id="] {
        let (status, headers, problem) = app.list(&mine, bad).await;
        assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST);
    }
    let req = Request::get("/v1/notifications").body(Body::empty()).unwrap();
    let (status, headers, problem) = kit::testing::send(&app.router, req).await;
    assert_problem(status, &headers, &problem, StatusCode::UNAUTHORIZED);
    // A service token is not a user's.
    let service = app.service_token(&["events:deliver"]);
    let (status, _, _) = app.list(&service, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = kit::service::openapi_json(&shop_notifications::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/notifications.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/notifications.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}
