//! `/ops`, `/ops/state` and the breaker actions through `server::app_with_ops`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State};
use serde_json::Value;
use sqlx::migrate::Migrator;
use tower::ServiceExt as _;

use super::{Breakers, CSP, LOCKOUT_BREAKER, Ops};
use crate::auth::{JwtKeys, Role};
use crate::config::{DownstreamConfig, ServiceConfig};
use crate::db::{Db, Migrations, temp_sqlite_url};
use crate::health::Health;
use crate::outbox::{HttpPush, Outbox, OutboxConfig};

static KIT_ONLY: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

fn breaker(name: &str) -> CircuitBreakerHandle {
    CircuitBreakerLayer::builder().name(name).build().unwrap().handle()
}

struct Fixture {
    app: Router,
    keys: JwtKeys,
    stock: CircuitBreakerHandle,
}

async fn fixture() -> Fixture {
    let db = Db::connect(&temp_sqlite_url("kit-ops"), 2).await.unwrap();
    db.migrate(&KIT_ONLY).await.unwrap();
    let health = Health::new(db.clone(), Duration::from_secs(1));
    let push = HttpPush::new(&OutboxConfig::default(), None).unwrap();
    let outbox = Outbox::new("opsy", db, OutboxConfig::default(), Arc::new(push));
    let keys = JwtKeys::new(b"ops-test-secret", Duration::from_secs(60));
    let stock = breaker("stock");
    let breakers = Breakers::default();
    breakers.add(stock.clone());
    breakers.add(breaker(LOCKOUT_BREAKER));
    let ops = Ops::new("opsy").with_breakers(breakers).with_outbox(outbox);
    let api = Router::new().route("/v1/things", get(|| async { "things" }));
    let config = ServiceConfig::defaults("opsy", 0);
    let openapi = utoipa::openapi::OpenApiBuilder::new().build();
    let app =
        crate::server::app_with_ops("opsy", api, openapi, &health, &config, keys.clone(), None, ops).unwrap();
    Fixture { app, keys, stock }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap(),
    )
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post_req(path: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::post(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

async fn state(app: &Router) -> Value {
    let (status, headers, body) = send(app, get_req("/ops/state")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    serde_json::from_str(&body).unwrap()
}

fn breaker_state(state: &Value, name: &str) -> String {
    state["breakers"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary_under_a_strict_csp() {
    let Fixture { app, .. } = fixture().await;
    for (path, content_type, needle) in [
        ("/ops", "text/html", r#"<script src="/ops/app.js""#),
        ("/ops/app.js", "text/javascript", "/ops/state"),
        ("/ops/app.css", "text/css", ".state-open"),
    ] {
        let (status, headers, body) = send(&app, get_req(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(content_type), "{path}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert!(body.contains(needle), "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let (_, _, page) = send(&app, get_req("/ops")).await;
    assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");
}

#[tokio::test]
async fn the_state_lists_breakers_traffic_and_the_outbox_without_a_token() {
    let Fixture { app, .. } = fixture().await;
    assert_eq!(send(&app, get_req("/v1/things")).await.0, StatusCode::OK);
    let state = state(&app).await;
    assert_eq!(state["service"], "opsy");
    assert_eq!(breaker_state(&state, "stock"), "closed");
    let stock = state["breakers"].as_array().unwrap().iter().find(|b| b["name"] == "stock").unwrap();
    assert_eq!(stock["side"], "client");
    assert_eq!(stock["actions"], serde_json::json!(["force-open", "disable", "reset"]));
    assert_eq!(state["outbox"], serde_json::json!({ "backlog": 0, "dead": 0 }));
    assert!(state["downstreams"].as_array().unwrap().iter().any(|d| d["name"] == "stock"));
    // The recorder is process-wide; no route filter here (the document has no paths): `/v1/things`
    // is among the routes, counted.
    let things = state["routes"].as_array().unwrap().iter().find(|r| r["route"] == "/v1/things");
    assert!(things.is_some_and(|r| r["requests"].as_u64() >= Some(1)), "{state}");
}

#[tokio::test]
async fn breaker_actions_need_an_admin_and_change_what_the_state_shows() {
    let Fixture { app, keys, stock } = fixture().await;
    let admin = keys.issue("00000000-0000-4000-8000-000000000001", "a@x.test", Role::Admin).unwrap();
    let customer = keys.issue("00000000-0000-4000-8000-000000000002", "c@x.test", Role::Customer).unwrap();
    let problem = |headers: &http::HeaderMap| headers[header::CONTENT_TYPE] == "application/problem+json";

    let (status, headers, _) = send(&app, post_req("/ops/breakers/stock/force-open", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem(&headers));
    let (status, headers, _) = send(&app, post_req("/ops/breakers/stock/force-open", Some(&customer))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem(&headers));
    assert_eq!(stock.state(), State::Closed);

    let (status, headers, body) = send(&app, post_req("/ops/breakers/nope/force-open", Some(&admin))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(problem(&headers) && body.contains("nope"), "{body}");
    let (status, _, body) = send(&app, post_req("/ops/breakers/stock/explode", Some(&admin))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, headers, _) = send(&app, get_req("/ops/breakers/stock/reset")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(problem(&headers));

    for (action, expected, seen) in [
        ("force-open", State::ForcedOpen, "forced_open"),
        ("disable", State::Disabled, "disabled"),
        ("reset", State::Closed, "closed"),
    ] {
        let path = format!("/ops/breakers/stock/{action}");
        let (status, _, body) = send(&app, post_req(&path, Some(&admin))).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["state"], seen);
        assert_eq!(stock.state(), expected);
        assert_eq!(breaker_state(&state(&app).await, "stock"), seen);
    }
}

#[tokio::test]
async fn the_token_check_breaker_cannot_be_forced_open() {
    let Fixture { app, keys, .. } = fixture().await;
    let admin = keys.issue("00000000-0000-4000-8000-000000000001", "a@x.test", Role::Admin).unwrap();
    let path = format!("/ops/breakers/{LOCKOUT_BREAKER}/force-open");
    let (status, _, body) = send(&app, post_req(&path, Some(&admin))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(breaker_state(&state(&app).await, LOCKOUT_BREAKER), "closed");
    let path = format!("/ops/breakers/{LOCKOUT_BREAKER}/disable");
    assert_eq!(send(&app, post_req(&path, Some(&admin))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn downstreams_built_in_a_scope_register_their_breakers() {
    let breakers = Breakers::default();
    let config = DownstreamConfig { url: "http://127.0.0.1:9".to_owned(), ..DownstreamConfig::default() };
    breakers
        .clone()
        .scope(async {
            let first = crate::client::Downstream::new("inventory", &config).unwrap();
            let _clone = first.clone();
            let _other = crate::client::Downstream::new("payments", &config).unwrap();
        })
        .await;
    let _outside = crate::client::Downstream::new("outside", &config).unwrap();
    let names: Vec<_> = breakers.handles().iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["inventory", "payments"]);
}

#[tokio::test]
async fn ops_routes_sit_outside_the_api_layers() {
    // The page is mounted after the layers: no `/v1` middleware (load shedding, timeout) runs on it,
    // so a state request carries no trace header the server stack would add.
    let Fixture { app, .. } = fixture().await;
    let (_, headers, _) = send(&app, get_req("/ops/state")).await;
    assert!(!headers.contains_key("traceparent"));
    let (_, headers, _) = send(&app, get_req("/v1/things")).await;
    assert!(headers.contains_key("traceparent"), "the API's trace layer echoes traceparent");
}

#[tokio::test]
async fn swagger_ui_gets_its_own_csp() {
    let Fixture { app, .. } = fixture().await;
    let (status, headers, body) = send(&app, get_req("/docs/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], crate::server::DOCS_CSP);
    assert!(body.contains("swagger-initializer.js"), "the initializer is a file, not inline");
}
