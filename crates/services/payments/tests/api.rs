//! The payments HTTP API in-process (`Router::oneshot`) behind the full kit stack: idempotency,
//! callers and scopes, validation, the provider's outcomes (decline, hang past the deadline),
//! refunds, the audit trail, `/ops/provider`, and the committed OpenAPI file.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use figment::Figment;
use http::{HeaderMap, Request, StatusCode, header};
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use kit::testing::assert_problem;
use serde_json::{Value, json};
use tower::ServiceExt as _;

type Answer = (StatusCode, HeaderMap, Value);

struct TestApp {
    router: Router,
    keys: JwtKeys,
    /// Signs as `orders` (key `orders-1`, trusted for charge, refund and read) …
    orders: ServiceSigner,
    /// … and as `catalog` (key `catalog-1`, trusted for `payments:read` only).
    catalog: ServiceSigner,
}

/// Who sends a request.
#[derive(Clone, Copy)]
enum As {
    Nobody,
    Admin,
    Customer,
    /// The orders service with these scopes.
    Orders(&'static [&'static str]),
    /// The catalog service with these scopes.
    Catalog(&'static [&'static str]),
}

const ALL: &[&str] = &["payments:charge", "payments:refund", "payments:read"];

fn trusted(issuer: &str, pair: &KeyPair, scopes: &[&str]) -> TrustedKey {
    TrustedKey {
        issuer: issuer.to_owned(),
        public_key: pair.public_key(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn app() -> TestApp {
    let (orders, catalog) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let trusted_keys = BTreeMap::from([
        ("orders-1".to_owned(), trusted("orders", &orders, ALL)),
        ("catalog-1".to_owned(), trusted("catalog", &catalog, &["payments:read"])),
    ]);
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("payments.port", 0))
            .merge(("payments.database_url", kit::db::temp_sqlite_url("payments-api")))
            .merge(("payments.trusted_keys", trusted_keys))
            .merge(("jwt_secret", "test-secret-test-secret-test-secret")),
    );
    kit::service::check_keys(&[&shop_payments::SERVICE], &settings).expect("known keys");
    let app = shop_payments::SERVICE.app(&settings).await.expect("app");
    TestApp {
        router: app.router,
        keys: app.keys,
        orders: ServiceSigner::new("orders", "orders-1", &orders),
        catalog: ServiceSigner::new("catalog", "catalog-1", &catalog),
    }
}

fn charge_body(order_id: &str, amount: i64, currency: &str) -> Value {
    json!({ "order_id": order_id, "customer_id": "user-7", "amount": { "amount": amount, "currency": currency } })
}

impl TestApp {
    fn bearer(&self, who: As) -> Option<String> {
        match who {
            As::Nobody => None,
            As::Admin => Some(kit::testing::token(&self.keys, Role::Admin)),
            As::Customer => Some(kit::testing::token(&self.keys, Role::Customer)),
            As::Orders(scopes) => Some(self.orders.token("payments", scopes).unwrap()),
            As::Catalog(scopes) => Some(self.catalog.token("payments", scopes).unwrap()),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        who: As,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(token) = self.bearer(who) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = match body {
            Some(body) => {
                req.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string()))
            }
            None => req.body(Body::empty()),
        };
        kit::testing::send(&self.router, req.unwrap()).await
    }

    async fn charge(&self, key: &str, body: &Value) -> Answer {
        self.call("POST", "/v1/payments", As::Orders(ALL), &[("idempotency-key", key)], Some(body)).await
    }

    async fn refund(&self, payment: &str, key: &str, amount: i64) -> Answer {
        let body = json!({ "amount": { "amount": amount, "currency": "EUR" } });
        let uri = format!("/v1/payments/{payment}/refunds");
        self.call("POST", &uri, As::Orders(ALL), &[("idempotency-key", key)], Some(&body)).await
    }

    async fn set_provider(&self, config: Value) {
        let (status, _, body) = self.call("PUT", "/ops/provider", As::Admin, &[], Some(&config)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn payments_of(&self, order_id: &str) -> Vec<Value> {
        let uri = format!("/v1/payments?order_id={order_id}");
        let (status, _, body) = self.call("GET", &uri, As::Orders(&["payments:read"]), &[], None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// The value of the counter line `name{labels}` on `/metrics` (0 when absent).
    async fn counter(&self, line: &str) -> u64 {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(line).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0)
    }
}

/// The counter of charges the handler abandoned at the caller's deadline.
const ABANDONED: &str = "shop_payments_abandoned_total{reason=\"deadline\"}";

fn provider(decline_rate: f64, hang_rate: f64) -> Value {
    json!({ "latency_ms_p50": 1, "latency_ms_p99": 5, "decline_rate": decline_rate, "error_rate": 0.0, "hang_rate": hang_rate })
}

#[tokio::test]
async fn a_charge_is_captured_readable_and_replayed_identically() {
    let app = app().await;
    let body = charge_body("order-1", 1999, "EUR");
    let (status, headers, first) = app.charge("k-1", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["status"].as_str(), first["amount"]["amount"].as_i64()),
        (Some("captured"), Some(1999))
    );
    assert_eq!(first["refunded"], json!({ "amount": 0, "currency": "EUR" }));
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/v1/payments/{id}"));

    let (status, headers, again) = app.charge("k-1", &body).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first), "the same status and body");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(app.payments_of("order-1").await.len(), 1, "charged once");

    let (status, _, read) = app.call("GET", &format!("/v1/payments/{id}"), As::Admin, &[], None).await;
    assert_eq!((status, &read), (StatusCode::OK, &first));
    let (status, headers, body) =
        app.call("GET", &format!("/v1/payments/{}", uuid::Uuid::new_v4()), As::Admin, &[], None).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, headers, body) = app.call("GET", "/v1/payments?order_id=%20", As::Admin, &[], None).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_idempotency_key_is_required_and_bound_to_its_body() {
    let app = app().await;
    let body = charge_body("order-2", 500, "EUR");
    let (status, headers, problem) =
        app.call("POST", "/v1/payments", As::Orders(ALL), &[], Some(&body)).await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST);
    assert!(problem["type"].as_str().unwrap().ends_with("idempotency-key-missing"), "{problem}");

    assert_eq!(app.charge("k-2", &body).await.0, StatusCode::CREATED);
    let (status, headers, problem) = app.charge("k-2", &charge_body("order-2", 501, "EUR")).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["type"].as_str().unwrap().ends_with("idempotency-key-reused"), "{problem}");
    assert_eq!(app.payments_of("order-2").await.len(), 1);
}

#[tokio::test]
async fn concurrent_charges_with_one_key_make_one_payment() {
    let app = app().await;
    app.set_provider(json!({ "latency_ms_p50": 50, "latency_ms_p99": 100, "decline_rate": 0.0, "error_rate": 0.0, "hang_rate": 0.0 })).await;
    let body = charge_body("order-3", 700, "EUR");
    let all = futures_util::future::join_all((0..10).map(|_| app.charge("k-3", &body))).await;
    let created: Vec<&Answer> = all.iter().filter(|a| a.0 == StatusCode::CREATED).collect();
    let in_flight = all.iter().filter(|a| a.0 == StatusCode::CONFLICT).count();
    assert!(!created.is_empty() && created.len() + in_flight == 10, "{all:?}");
    assert!(created.iter().all(|a| a.2 == created[0].2), "every 201 is the same payment");
    assert_eq!(app.payments_of("order-3").await.len(), 1, "one payment");
}

#[tokio::test]
async fn a_decline_is_402_stored_and_replayed() {
    let app = app().await;
    app.set_provider(provider(1.0, 0.0)).await;
    let body = charge_body("order-4", 1200, "EUR");
    let (status, headers, first) = app.charge("k-4", &body).await;
    assert_problem(status, &headers, &first, StatusCode::PAYMENT_REQUIRED);
    assert!(first["type"].as_str().unwrap().ends_with("/payment-declined"), "{first}");
    assert!(first["decline_reason"].is_string(), "{first}");
    // Declining is settled: a repeat with the key replays it even once the provider would capture.
    app.set_provider(provider(0.0, 0.0)).await;
    let (status, headers, again) = app.charge("k-4", &body).await;
    assert_eq!((status, &again), (StatusCode::PAYMENT_REQUIRED, &first));
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(headers["idempotent-replayed"], "true");
    let stored = app.payments_of("order-4").await;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0]["status"].as_str(), &stored[0]["id"]), (Some("declined"), &first["payment_id"]));
    assert_eq!(stored[0]["decline_reason"], first["decline_reason"]);
}

#[tokio::test]
async fn invalid_charges_are_422_naming_each_field() {
    let app = app().await;
    let cases = [
        (charge_body("order-5", 100, "XYZ"), "#/amount/currency"),
        (charge_body("order-5", 100, "eur"), "#/amount/currency"),
        (charge_body("order-5", 0, "EUR"), "#/amount/amount"),
        (charge_body("order-5", -5, "EUR"), "#/amount/amount"),
        (charge_body("", 100, "EUR"), "#/order_id"),
        (charge_body(&"o".repeat(101), 100, "EUR"), "#/order_id"),
    ];
    for (i, (body, pointer)) in cases.iter().enumerate() {
        let (status, headers, problem) = app.charge(&format!("k-5-{i}"), body).await;
        assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["pointer"], *pointer, "{problem}");
    }
    assert!(app.payments_of("order-5").await.is_empty());
}

#[tokio::test]
async fn customers_and_services_without_the_scope_are_refused() {
    let app = app().await;
    let body = charge_body("order-6", 100, "EUR");
    let key = [("idempotency-key", "k-6")];
    let (status, headers, problem) = app.call("POST", "/v1/payments", As::Customer, &key, Some(&body)).await;
    assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);
    let (status, headers, problem) =
        app.call("POST", "/v1/payments", As::Catalog(&["payments:charge"]), &key, Some(&body)).await;
    assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().unwrap().contains("payments:charge"), "{problem}");
    let (status, _, _) =
        app.call("POST", "/v1/payments", As::Orders(&["payments:read"]), &key, Some(&body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.payments_of("order-6").await.is_empty());
    let (status, _, _) = app.call("POST", "/v1/payments", As::Nobody, &key, Some(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Reading needs `payments:read`: catalog has it, a customer does not.
    let (status, _, _) =
        app.call("GET", "/v1/payments?order_id=order-6", As::Catalog(&["payments:read"]), &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app.call("GET", "/v1/payments?order_id=order-6", As::Customer, &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The admin may charge.
    let (status, _, _) =
        app.call("POST", "/v1/payments", As::Admin, &[("idempotency-key", "k-6a")], Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_hanging_provider_is_abandoned_at_the_deadline_and_nothing_is_stored() {
    let app = app().await;
    let before = app.counter(ABANDONED).await;
    app.set_provider(provider(0.0, 1.0)).await;
    let body = charge_body("order-7", 900, "EUR");
    let headers = [("idempotency-key", "k-7"), ("x-request-timeout-ms", "1000")];
    let (status, res_headers, problem) =
        app.call("POST", "/v1/payments", As::Orders(ALL), &headers, Some(&body)).await;
    assert_problem(status, &res_headers, &problem, StatusCode::GATEWAY_TIMEOUT);
    assert!(problem["type"].as_str().unwrap().ends_with("/deadline-exceeded"), "{problem}");
    assert_eq!(app.counter(ABANDONED).await, before + 1, "the handler itself gave up on the provider");
    assert!(app.payments_of("order-7").await.is_empty(), "nothing stored");
    // The key was freed: the retry runs again, and captures once the provider answers.
    app.set_provider(provider(0.0, 0.0)).await;
    let (status, res_headers, payment) =
        app.call("POST", "/v1/payments", As::Orders(ALL), &headers, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert!(res_headers.get("idempotent-replayed").is_none());
    assert_eq!(app.payments_of("order-7").await.len(), 1);
}

#[tokio::test]
async fn a_provider_error_is_502_stores_nothing_and_frees_the_key() {
    let app = app().await;
    app.set_provider(json!({ "latency_ms_p50": 1, "latency_ms_p99": 5, "decline_rate": 0.0, "error_rate": 1.0, "hang_rate": 0.0 })).await;
    let body = charge_body("order-12", 300, "EUR");
    let (status, headers, problem) = app.charge("k-12", &body).await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_GATEWAY);
    assert!(problem["type"].as_str().unwrap().ends_with("/provider-error"), "{problem}");
    assert!(app.payments_of("order-12").await.is_empty());
    app.set_provider(provider(0.0, 0.0)).await;
    let (status, headers, _) = app.charge("k-12", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.get("idempotent-replayed").is_none(), "the retry ran again");
}

#[tokio::test]
async fn refunds_are_partial_or_full_and_never_exceed_the_capture() {
    let app = app().await;
    let (_, _, payment) = app.charge("k-8", &charge_body("order-8", 1000, "EUR")).await;
    let id = payment["id"].as_str().unwrap().to_owned();

    let (status, _, refund) = app.refund(&id, "r-1", 300).await;
    assert_eq!(status, StatusCode::CREATED, "{refund}");
    assert_eq!(
        (refund["payment_id"].as_str(), refund["amount"]["amount"].as_i64()),
        (Some(id.as_str()), Some(300))
    );
    let (status, headers, again) = app.refund(&id, "r-1", 300).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &refund));
    assert_eq!(headers["idempotent-replayed"], "true");

    let (status, headers, problem) = app.refund(&id, "r-2", 701).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["type"].as_str().unwrap().ends_with("/refund-exceeds-captured"), "{problem}");
    assert_eq!(problem["errors"][0]["detail"], "must be at most 700");
    let usd = json!({ "amount": { "amount": 1, "currency": "USD" } });
    let (status, _, problem) = app
        .call(
            "POST",
            &format!("/v1/payments/{id}/refunds"),
            As::Orders(ALL),
            &[("idempotency-key", "r-usd")],
            Some(&usd),
        )
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["pointer"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("#/amount/currency"))
    );

    // Ten concurrent refunds of 100 against the 700 left: exactly seven succeed.
    let all = futures_util::future::join_all((0..10).map(|i| {
        let (app, id) = (&app, id.clone());
        async move { app.refund(&id, &format!("r-c-{i}"), 100).await }
    }))
    .await;
    let refunded = all.iter().filter(|a| a.0 == StatusCode::CREATED).count();
    assert!(
        all.iter().all(|a| a.0 == StatusCode::CREATED
            || a.0 == StatusCode::UNPROCESSABLE_ENTITY
            || a.0 == StatusCode::SERVICE_UNAVAILABLE),
        "{all:?}"
    );
    assert!(refunded <= 7, "{all:?}");
    let (_, _, after) = app.call("GET", &format!("/v1/payments/{id}"), As::Admin, &[], None).await;
    let total = after["refunded"]["amount"].as_i64().unwrap();
    assert_eq!(total, 300 + 100 * i64::try_from(refunded).unwrap());
    assert!(total <= 1000);

    let (status, _, _) = app.refund(&uuid::Uuid::new_v4().to_string(), "r-404", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = app
        .call(
            "POST",
            &format!("/v1/payments/{id}/refunds"),
            As::Orders(&["payments:charge"]),
            &[("idempotency-key", "r-s")],
            Some(&usd),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_declined_payment_cannot_be_refunded() {
    let app = app().await;
    app.set_provider(provider(1.0, 0.0)).await;
    let (_, _, declined) = app.charge("k-9", &charge_body("order-9", 1000, "EUR")).await;
    let id = declined["payment_id"].as_str().unwrap().to_owned();
    let (status, headers, problem) = app.refund(&id, "r-9", 100).await;
    assert_problem(status, &headers, &problem, StatusCode::CONFLICT);
    assert!(problem["type"].as_str().unwrap().ends_with("/payment-not-captured"), "{problem}");
}

#[tokio::test]
async fn the_audit_trail_records_who_did_what_for_admins_only() {
    let app = app().await;
    let (_, _, payment) = app.charge("k-10", &charge_body("order-10", 1000, "EUR")).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    app.refund(&id, "r-10", 250).await;
    let uri = format!("/v1/payments/{id}/audit");
    let (status, _, page) = app.call("GET", &uri, As::Admin, &[], None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let actions: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["payment.capture", "payment.refund"]);
    assert_eq!(page["items"][0]["actor"], "service:orders");
    assert_eq!(page["items"][1]["before"]["refunded"]["amount"], 0);
    assert_eq!(page["items"][1]["after"]["refunded"]["amount"], 250);
    let (_, _, filtered) =
        app.call("GET", &format!("{uri}?action=payment.refund&limit=1"), As::Admin, &[], None).await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert!(filtered.get("next_offset").is_none(), "{filtered}");
    let (_, _, paged) = app.call("GET", &format!("{uri}?limit=1"), As::Admin, &[], None).await;
    assert_eq!(paged["next_offset"], 1);
    let (status, headers, body) = app.call("GET", &format!("{uri}?limit=0"), As::Admin, &[], None).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.call("GET", &uri, As::Orders(ALL), &[], None).await.0,
        StatusCode::FORBIDDEN,
        "a service is no admin"
    );
    assert_eq!(app.call("GET", &uri, As::Customer, &[], None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ops_provider_is_for_admins_and_changes_the_next_charge() {
    let app = app().await;
    let (status, _, config) = app.call("GET", "/ops/provider", As::Admin, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config,
        json!({ "latency_ms_p50": 2, "latency_ms_p99": 10, "decline_rate": 0.0, "error_rate": 0.0, "hang_rate": 0.0 })
    );
    for who in [As::Nobody, As::Customer, As::Orders(ALL)] {
        let (status, _, _) = app.call("PUT", "/ops/provider", who, &[], Some(&provider(1.0, 0.0))).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{status}");
        assert!(app.call("GET", "/ops/provider", who, &[], None).await.0.is_client_error());
    }
    assert_eq!(
        app.call("PUT", "/ops/provider", As::Nobody, &[], Some(&provider(1.0, 0.0))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let bad = json!({ "latency_ms_p50": 20, "latency_ms_p99": 10, "decline_rate": 2.0, "error_rate": 0.0, "hang_rate": -1.0 });
    let (status, headers, problem) = app.call("PUT", "/ops/provider", As::Admin, &[], Some(&bad)).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["#/latency_ms_p99", "#/decline_rate", "#/hang_rate"]);
    let (status, _, _) =
        app.call("PUT", "/ops/provider", As::Admin, &[], Some(&json!({ "decline_rate": 1.0 }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "every field is required");

    assert_eq!(app.charge("k-11a", &charge_body("order-11", 100, "EUR")).await.0, StatusCode::CREATED);
    app.set_provider(provider(1.0, 0.0)).await;
    assert_eq!(app.call("GET", "/ops/provider", As::Admin, &[], None).await.2["decline_rate"], 1.0);
    assert_eq!(
        app.charge("k-11b", &charge_body("order-11", 100, "EUR")).await.0,
        StatusCode::PAYMENT_REQUIRED
    );
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = kit::service::openapi_json(&shop_payments::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/payments.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/payments.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}

#[test]
fn the_spec_documents_the_ops_route_and_the_idempotency_key() {
    let doc: Value =
        serde_json::from_str(&kit::service::openapi_json(&shop_payments::SERVICE).unwrap()).unwrap();
    assert!(doc["paths"]["/ops/provider"]["put"].is_object());
    let params = doc["paths"]["/v1/payments"]["post"]["parameters"].as_array().unwrap();
    assert!(params.iter().any(|p| p["name"] == "Idempotency-Key" && p["required"] == true), "{params:?}");
    assert!(doc["paths"]["/v1/payments"]["post"]["responses"]["402"].is_object());
}
