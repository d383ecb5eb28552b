//! A world for the saga tests: the workspace's real users, catalog and inventory on real loopback
//! ports, a [`FakePayments`] on another, and orders in-process calling them all over HTTP.
//!
//! **`FakePayments`** implements the payments contract (`/work/checkout-contracts.md`) in memory,
//! with fault switches; the real payments service replaces it once merged.
//!
//! **`AdminBridge`**: on this branch users and inventory still take admin user tokens on the routes
//! orders calls (the contracts branch moves them to `kit::service_auth::Caller`); the bridge swaps
//! orders' service token (EdDSA) for an admin token in front of them. Remove it once they accept
//! service tokens.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use figment::Figment;
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::server::{Shutdown, ShutdownTrigger};
use kit::testing::{Answer, send};
use serde_json::{Value, json};

pub const SECRET: &str = "orders-test-secret-of-enough-bytes";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_EMAIL: &str = "admin@palisade.local";
pub const ADMIN_PASSWORD: &str = "palisade-admin-password";

fn settings(service: &str, extra: &[(String, Value)]) -> Settings {
    let mut figment = Figment::new()
        .merge((format!("{service}.port"), 0))
        .merge((format!("{service}.database_url"), kit::db::temp_sqlite_url(&format!("orders-{service}"))))
        .merge(("jwt_secret", SECRET));
    for (key, value) in extra {
        figment = figment.merge((key.as_str(), value.clone()));
    }
    Settings::from_figment(figment)
}

pub fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap()
}

/// Swaps a service token (EdDSA) for `admin` (see the module docs).
fn bridge(router: Router, admin: String) -> Router {
    router.layer(axum::middleware::map_request(move |mut req: Request| {
        let admin = admin.clone();
        async move {
            let service = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| jsonwebtoken::decode_header(t).ok())
                .is_some_and(|h| h.alg == jsonwebtoken::Algorithm::EdDSA);
            if service {
                req.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {admin}").parse().unwrap());
            }
            req
        }
    }))
}

async fn serve(router: Router, app: &kit::service::App, triggers: &mut Vec<ShutdownTrigger>) -> String {
    let server = kit::server::Server::bind(
        "127.0.0.1:0",
        router,
        app.health.clone(),
        kit::server::Limits::from_config(&app.config),
    )
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = Shutdown::manual();
    tokio::spawn(server.run(shutdown));
    triggers.push(trigger);
    url
}

/// What the fake payments does with the next charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Captures.
    Capture,
    /// Declines (402, stored for the key).
    Decline,
    /// 500, nothing stored.
    Fail,
    /// Never answers, captures nothing.
    Hang,
    /// Captures, stores the answer, then never answers (the answer is lost on the way).
    CaptureThenHang,
    /// Waits this many milliseconds, then captures and answers.
    CaptureAfter(u64),
}

#[derive(Debug, Default)]
struct Ledger {
    /// Stored answers by Idempotency-Key.
    answers: HashMap<String, (StatusCode, Value)>,
    /// Payments by id.
    payments: HashMap<String, Value>,
    /// Refunds (payment id, amount).
    refunds: Vec<(String, i64)>,
    /// Charge requests that reached the fake.
    charge_calls: u32,
}

/// The payments contract in memory, with fault switches.
#[derive(Clone, Debug)]
pub struct FakePayments {
    mode: Arc<Mutex<Mode>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl FakePayments {
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Captured payments of `order_id`.
    pub fn captured(&self, order_id: &str) -> Vec<Value> {
        let ledger = self.ledger.lock().unwrap();
        ledger
            .payments
            .values()
            .filter(|p| p["order_id"] == order_id && p["status"] == "captured")
            .cloned()
            .collect()
    }

    /// Refunded amount of payment `id`.
    pub fn refunded(&self, payment_id: &str) -> i64 {
        self.ledger.lock().unwrap().refunds.iter().filter(|(p, _)| p == payment_id).map(|(_, a)| a).sum()
    }

    pub fn charge_calls(&self) -> u32 {
        self.ledger.lock().unwrap().charge_calls
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/v1/payments", post(charge).get(list))
            .route("/v1/payments/{id}/refunds", post(refund))
            .with_state(self.clone())
    }
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = json!({ "type": format!("https://palisade.dev/problems/{kind}"), "title": kind, "status": status.as_u16(), "detail": detail });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let ct = if status.is_success() { "application/json" } else { "application/problem+json" };
    (status, [(header::CONTENT_TYPE, ct)], body.to_string()).into_response()
}

async fn charge(State(fake): State<FakePayments>, headers: HeaderMap, body: String) -> Response {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return problem(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key required");
    };
    if headers.get(header::AUTHORIZATION).is_none() {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", "token required");
    }
    let input: Value = serde_json::from_str(&body).unwrap_or_default();
    let mode = *fake.mode.lock().unwrap();
    {
        let mut ledger = fake.ledger.lock().unwrap();
        ledger.charge_calls += 1;
        if let Some((status, body)) = ledger.answers.get(&key) {
            return reply(*status, body);
        }
    }
    if let Mode::CaptureAfter(ms) = mode {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match mode {
        Mode::Fail => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "boom"),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unreachable")
        }
        Mode::Decline => {
            let id = uuid::Uuid::new_v4().to_string();
            let payment = json!({ "id": id, "order_id": input["order_id"], "customer_id": input["customer_id"],
                "status": "declined", "decline_reason": "insufficient_funds", "amount": input["amount"],
                "refunded": { "amount": 0, "currency": input["amount"]["currency"] } });
            let body = json!({ "type": "https://palisade.dev/problems/payment-declined", "title": "Payment declined",
                "status": 402, "detail": "the card was declined" });
            let mut ledger = fake.ledger.lock().unwrap();
            ledger.payments.insert(id, payment);
            ledger.answers.insert(key, (StatusCode::PAYMENT_REQUIRED, body.clone()));
            reply(StatusCode::PAYMENT_REQUIRED, &body)
        }
        Mode::Capture | Mode::CaptureThenHang | Mode::CaptureAfter(_) => {
            let id = uuid::Uuid::new_v4().to_string();
            let payment = json!({ "id": id, "order_id": input["order_id"], "customer_id": input["customer_id"],
                "status": "captured", "amount": input["amount"],
                "refunded": { "amount": 0, "currency": input["amount"]["currency"] },
                "created_at": "2026-01-01T00:00:00Z" });
            {
                let mut ledger = fake.ledger.lock().unwrap();
                ledger.payments.insert(id, payment.clone());
                ledger.answers.insert(key, (StatusCode::CREATED, payment.clone()));
            }
            if mode == Mode::CaptureThenHang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            reply(StatusCode::CREATED, &payment)
        }
    }
}

async fn list(State(fake): State<FakePayments>, Query(query): Query<HashMap<String, String>>) -> Response {
    let order = query.get("order_id").cloned().unwrap_or_default();
    let ledger = fake.ledger.lock().unwrap();
    let items: Vec<Value> =
        ledger.payments.values().filter(|p| p["order_id"] == order.as_str()).cloned().collect();
    reply(StatusCode::OK, &json!({ "items": items }))
}

async fn refund(
    State(fake): State<FakePayments>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return problem(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key required");
    };
    let input: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut ledger = fake.ledger.lock().unwrap();
    if let Some((status, body)) = ledger.answers.get(&key) {
        return reply(*status, body);
    }
    let Some(payment) = ledger.payments.get(&id) else {
        return problem(StatusCode::NOT_FOUND, "not-found", "no payment");
    };
    if payment["status"] != "captured" {
        return problem(StatusCode::CONFLICT, "payment-not-captured", "not captured");
    }
    let amount = input["amount"]["amount"].as_i64().unwrap_or(0);
    let refund = json!({ "id": uuid::Uuid::new_v4().to_string(), "payment_id": id, "amount": input["amount"],
        "created_at": "2026-01-01T00:00:00Z" });
    ledger.refunds.push((id, amount));
    ledger.answers.insert(key, (StatusCode::CREATED, refund.clone()));
    reply(StatusCode::CREATED, &refund)
}

/// Every service of a test.
pub struct World {
    pub users: Router,
    pub catalog: Router,
    pub inventory: Router,
    pub orders: Router,
    pub catalog_keys: JwtKeys,
    pub inventory_keys: JwtKeys,
    pub payments: FakePayments,
    pub admin: String,
    pub orders_db_url: String,
    pub payments_url: String,
    triggers: Vec<ShutdownTrigger>,
}

impl Drop for World {
    fn drop(&mut self) {
        for trigger in &self.triggers {
            trigger.trigger();
        }
    }
}

/// Options of [`World::start`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds before the recovery worker takes an unfinished order.
    pub recovery_after_secs: u64,
    /// payments' URL instead of the fake's (a closed port: payments down).
    pub payments_url: Option<String>,
    /// inventory's URL instead of the real one's (a closed port: inventory down).
    pub inventory_url: Option<String>,
    /// How often the recovery worker runs (its first run is after one interval).
    pub recovery_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { recovery_after_secs: 60, payments_url: None, inventory_url: None, recovery_interval_ms: 100 }
    }
}

impl World {
    pub async fn start(options: Options) -> Self {
        let mut triggers = Vec::new();
        let users_app = shop_users::SERVICE.app(&settings("users", &[])).await.unwrap();
        let users = users_app.router.clone();
        let admin = login(&users, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let users_url = serve(bridge(users.clone(), admin.clone()), &users_app, &mut triggers).await;

        let catalog_app = shop_catalog::SERVICE.app(&settings("catalog", &[])).await.unwrap();
        let catalog = catalog_app.router.clone();
        let catalog_url = serve(catalog.clone(), &catalog_app, &mut triggers).await;

        let inventory_app = shop_inventory::SERVICE.app(&settings("inventory", &[])).await.unwrap();
        let inventory = inventory_app.router.clone();
        let inventory_admin = kit::testing::token(&inventory_app.keys, Role::Admin);
        let inventory_url =
            serve(bridge(inventory.clone(), inventory_admin), &inventory_app, &mut triggers).await;
        let inventory_url = options.inventory_url.clone().unwrap_or(inventory_url);

        let payments = FakePayments { mode: Arc::new(Mutex::new(Mode::Capture)), ledger: Arc::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake_url = format!("http://{}", listener.local_addr().unwrap());
        let fake = payments.router();
        tokio::spawn(async move { axum::serve(listener, fake).await });
        let payments_url = options.payments_url.clone().unwrap_or(fake_url);

        let orders_db_url = kit::db::temp_sqlite_url("orders-orders");
        let mut extra: Vec<(String, Value)> = vec![
            ("orders.database_url".into(), json!(orders_db_url)),
            ("orders.recovery_after_secs".into(), json!(options.recovery_after_secs)),
            ("orders.recovery_interval_ms".into(), json!(options.recovery_interval_ms)),
        ];
        for (name, url) in [
            ("users", &users_url),
            ("catalog", &catalog_url),
            ("inventory", &inventory_url),
            ("payments", &payments_url),
        ] {
            extra.push((format!("orders.downstreams.{name}.url"), json!(url)));
            extra.push((format!("orders.downstreams.{name}.attempt_timeout_ms"), json!(700)));
            extra.push((format!("orders.downstreams.{name}.total_budget_ms"), json!(1500)));
        }
        // One attempt per charge: a retry with the same key would recover a lost answer itself,
        // leaving nothing for the recovery tests to show.
        extra.push(("orders.downstreams.payments.retry_max_attempts".into(), json!(1)));
        let orders = shop_orders::SERVICE.app(&settings("orders", &extra)).await.unwrap().router;
        World {
            users,
            catalog,
            inventory,
            orders,
            catalog_keys: catalog_app.keys,
            inventory_keys: inventory_app.keys,
            payments,
            admin,
            orders_db_url,
            payments_url,
            triggers,
        }
    }

    /// A new customer's id and token.
    pub async fn customer(&self, email: &str) -> (String, String) {
        let body = json!({ "email": email, "password": PASSWORD });
        let (status, _, user) = send(&self.users, request("POST", "/v1/users", None, Some(body))).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        (user["id"].as_str().unwrap().to_owned(), login(&self.users, email, PASSWORD).await)
    }

    /// A product priced `amount` `currency` with `stock` units; its id.
    pub async fn product(&self, sku: &str, amount: i64, currency: &str, stock: i64) -> String {
        let token = kit::testing::token(&self.catalog_keys, Role::Admin);
        let body = json!({ "sku": sku, "name": format!("Product {sku}"), "category": "kitchen",
            "price": { "amount": amount, "currency": currency } });
        let (status, _, product) =
            send(&self.catalog, request("POST", "/v1/products", Some(&token), Some(body))).await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        let token = kit::testing::token(&self.inventory_keys, Role::Admin);
        let mut req =
            request("PUT", &format!("/v1/stock/{sku}"), Some(&token), Some(json!({ "on_hand": stock })));
        req.headers_mut().insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        let (status, _, body) = send(&self.inventory, req).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        product["id"].as_str().unwrap().to_owned()
    }

    /// `(on_hand, reserved)` of `sku`.
    pub async fn stock(&self, sku: &str) -> (i64, i64) {
        let (status, _, stock) =
            send(&self.inventory, request("GET", &format!("/v1/stock/{sku}"), None, None)).await;
        assert_eq!(status, StatusCode::OK, "{stock}");
        (stock["on_hand"].as_i64().unwrap(), stock["reserved"].as_i64().unwrap())
    }

    /// `POST /v1/orders` with `key`.
    pub async fn place(&self, token: &str, key: &str, lines: Value) -> Answer {
        let mut req = request("POST", "/v1/orders", Some(token), Some(json!({ "lines": lines })));
        req.headers_mut().insert("idempotency-key", key.parse().unwrap());
        send(&self.orders, req).await
    }

    pub async fn get(&self, token: &str, uri: &str) -> Answer {
        send(&self.orders, request("GET", uri, Some(token), None)).await
    }

    pub async fn post(&self, token: &str, uri: &str) -> Answer {
        send(&self.orders, request("POST", uri, Some(token), None)).await
    }

    /// The events orders wrote to its outbox: `(type, subject, data)`, oldest first.
    pub async fn events(&self) -> Vec<(String, String, Value)> {
        let db = kit::db::Db::connect(&self.orders_db_url, 1).await.unwrap();
        let kit::db::Db::Sqlite(pool) = &db else { unreachable!("the tests' orders run on SQLite") };
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT type, subject, data FROM kit_outbox ORDER BY rowid")
                .fetch_all(pool)
                .await
                .unwrap();
        db.close().await;
        rows.into_iter().map(|(t, s, d)| (t, s, serde_json::from_str(&d).unwrap())).collect()
    }

    /// Waits (generously) until order `id` is in `status`; the order.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            let (_, _, order) = self.get(&self.admin, &format!("/v1/orders/{id}")).await;
            if order["status"] == status {
                return order;
            }
            last = order;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order {id} never became {status}: {last}");
    }
}

/// A loopback URL that refuses connections, for as long as the returned socket lives (bound, never
/// listening: the port is neither served nor handed to another test's server).
pub fn closed_url() -> (String, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (format!("http://{}", socket.local_addr().unwrap()), socket)
}

pub async fn login(users: &Router, email: &str, password: &str) -> String {
    let body = json!({ "email": email, "password": password });
    let (status, _, session) = send(users, request("POST", "/v1/sessions", None, Some(body))).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session["access_token"].as_str().unwrap().to_owned()
}
