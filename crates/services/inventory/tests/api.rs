//! The inventory's HTTP API: in-process (`Router::oneshot`) with the full kit stack, over a real
//! port (including the overselling test on SQLite and PostgreSQL), expiry, and the committed
//! OpenAPI file.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use figment::Figment;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use kit::testing::assert_problem;
use serde_json::{Value, json};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    keys: JwtKeys,
}

/// Settings for a test: port 0, a fresh SQLite file, extra `inventory.*` keys.
fn settings(database_url: &str, extra: &[(&str, u64)]) -> Settings {
    Settings::from_figment(figment(database_url, extra))
}

fn figment(database_url: &str, extra: &[(&str, u64)]) -> Figment {
    let mut figment = Figment::new()
        .merge(("inventory.port", 0))
        .merge(("inventory.database_url", database_url))
        // PostgreSQL runs too: migrate at start there as SQLite does by default.
        .merge(("inventory.migrate_at_start", true))
        .merge(("jwt_secret", "test-secret-test-secret-test-secret"));
    for (key, value) in extra {
        figment = figment.merge((format!("inventory.{key}"), *value));
    }
    figment
}

async fn app_with(extra: &[(&str, u64)]) -> TestApp {
    let settings = settings(&kit::db::temp_sqlite_url("inventory-api"), extra);
    let app = shop_inventory::SERVICE.app(&settings).await.expect("app");
    TestApp { router: app.router, keys: app.keys }
}

async fn app() -> TestApp {
    app_with(&[]).await
}

impl TestApp {
    fn token(&self, role: Role) -> String {
        kit::testing::token(&self.keys, role)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        kit::testing::send(&self.router, req).await
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        role: Option<Role>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.call_with(method, uri, role, &[], body).await
    }

    async fn call_with(
        &self,
        method: &str,
        uri: &str,
        role: Option<Role>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(role) = role {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token(role)));
        }
        let req = match body {
            Some(body) => {
                req.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string()))
            }
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
        self.call(method, uri, Some(Role::Admin), body).await
    }

    async fn stock(&self, sku: &str) -> Value {
        self.stock_and_etag(sku).await.0
    }

    async fn stock_and_etag(&self, sku: &str) -> (Value, String) {
        let (status, headers, body) = self.call("GET", &format!("/v1/stock/{sku}"), None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body, headers[header::ETAG].to_str().unwrap().to_owned())
    }

    /// `PUT` with `If-None-Match: *` (create) or `If-Match` with the ETag of a `GET` (overwrite).
    async fn set_stock(&self, sku: &str, on_hand: i64) {
        let uri = format!("/v1/stock/{sku}");
        let (status, headers, _) = self.call("GET", &uri, None, None).await;
        let pre = if status == StatusCode::OK {
            ("If-Match", headers[header::ETAG].to_str().unwrap().to_owned())
        } else {
            ("If-None-Match", "*".to_owned())
        };
        let (status, _, body) = self
            .call_with(
                "PUT",
                &uri,
                Some(Role::Admin),
                &[(pre.0, &pre.1)],
                Some(json!({ "on_hand": on_hand })),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
}

fn reservation(order_id: &str, lines: &[(&str, i64)]) -> Value {
    let lines: Vec<Value> =
        lines.iter().map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity })).collect();
    json!({ "order_id": order_id, "lines": lines })
}

#[tokio::test]
async fn stock_set_read_adjust() {
    let app = app().await;
    let create = [("If-None-Match", "*")];
    let (status, headers, body) = app
        .call_with("PUT", "/v1/stock/MUG-1", Some(Role::Admin), &create, Some(json!({ "on_hand": 10 })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::LOCATION], "/v1/stock/MUG-1");
    assert_eq!(headers[header::ETAG], "\"1\"");
    assert_eq!(body, json!({ "sku": "MUG-1", "on_hand": 10, "reserved": 0, "available": 10 }));
    let update = [("If-Match", "\"1\"")];
    let (status, headers, body) = app
        .call_with("PUT", "/v1/stock/MUG-1", Some(Role::Admin), &update, Some(json!({ "on_hand": 8 })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ETAG], "\"2\"");
    assert_eq!(
        app.stock("MUG-1").await,
        json!({ "sku": "MUG-1", "on_hand": 8, "reserved": 0, "available": 8 })
    );

    let (status, _, body) =
        app.admin("POST", "/v1/stock/MUG-1/adjustments", Some(json!({ "delta": 5 }))).await;
    assert_eq!((status, &body["on_hand"]), (StatusCode::OK, &json!(13)));
    let (status, _, body) =
        app.admin("POST", "/v1/stock/MUG-1/adjustments", Some(json!({ "delta": -3 }))).await;
    assert_eq!((status, &body["available"]), (StatusCode::OK, &json!(10)));

    // Never below what is reserved: 409, and nothing changes.
    let (status, _, _) =
        app.admin("POST", "/v1/reservations", Some(reservation("o-1", &[("MUG-1", 4)]))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, etag) = app.stock_and_etag("MUG-1").await;
    let (status, headers, body) = app
        .call_with(
            "PUT",
            "/v1/stock/MUG-1",
            Some(Role::Admin),
            &[("If-Match", &etag)],
            Some(json!({ "on_hand": 3 })),
        )
        .await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("4 units reserved"), "{body}");
    let (status, headers, body) =
        app.admin("POST", "/v1/stock/MUG-1/adjustments", Some(json!({ "delta": -7 }))).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(
        app.stock("MUG-1").await,
        json!({ "sku": "MUG-1", "on_hand": 10, "reserved": 4, "available": 6 })
    );

    let (status, headers, body) = app.call("GET", "/v1/stock/NOPE", None, None).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, headers, body) =
        app.admin("POST", "/v1/stock/NOPE/adjustments", Some(json!({ "delta": 1 }))).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
}

/// The ledger after `stock_writes_are_conditional_and_recorded_in_the_ledger`: every change of
/// on-hand, by whom (the token's subject), adding up to on-hand; paged; admin only.
async fn ledger_of_mug_1(app: &TestApp) {
    let (status, _, page) = app.admin("GET", "/v1/stock/MUG-1/ledger", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entries: Vec<(i64, i64, &str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["delta"].as_i64().unwrap(),
                e["on_hand_after"].as_i64().unwrap(),
                e["reason"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (10, 10, "set", "user-1"),
            (-1, 9, "set", "user-1"),
            (-4, 5, "adjustment", "user-1"),
            (2, 7, "adjustment", "user-1")
        ]
    );
    assert_eq!(page["next_offset"], Value::Null);
    let (status, _, page) = app.admin("GET", "/v1/stock/MUG-1/ledger?limit=2&offset=1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((page["items"].as_array().unwrap().len(), &page["next_offset"]), (2, &json!(3)));
    assert_eq!(page["items"][0]["delta"], -1);
    let (status, headers, body) = app.admin("GET", "/v1/stock/MUG-1/ledger?limit=0", None).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let (status, headers, body) = app.admin("GET", "/v1/stock/NOPE/ledger", None).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, headers, body) = app.call("GET", "/v1/stock/MUG-1/ledger", Some(Role::Customer), None).await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stock_writes_are_conditional_and_recorded_in_the_ledger() {
    let app = app().await;
    let put = |headers: &'static [(&'static str, &'static str)], on_hand: i64| {
        let app = &app;
        async move {
            app.call_with(
                "PUT",
                "/v1/stock/MUG-1",
                Some(Role::Admin),
                headers,
                Some(json!({ "on_hand": on_hand })),
            )
            .await
        }
    };
    // A blind PUT is refused (428), on a new SKU as on an existing one.
    let (status, headers, body) = put(&[], 10).await;
    assert_problem(status, &headers, &body, StatusCode::PRECONDITION_REQUIRED);
    assert!(body["detail"].as_str().unwrap().contains("If-Match"), "{body}");
    let (status, headers, _) = put(&[("If-Match", "*")], 10).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "If-Match needs existing stock");
    assert!(headers.get(header::ETAG).is_none());
    let (status, headers, _) = put(&[("If-None-Match", "*")], 10).await;
    assert_eq!(
        (status, &headers[header::ETAG]),
        (StatusCode::CREATED, &"\"1\"".parse::<http::HeaderValue>().unwrap())
    );
    let (status, headers, body) = put(&[], 9).await;
    assert_problem(status, &headers, &body, StatusCode::PRECONDITION_REQUIRED);
    let (status, headers, body) = put(&[("If-None-Match", "*")], 9).await;
    assert_problem(status, &headers, &body, StatusCode::PRECONDITION_FAILED);
    assert_eq!(headers[header::ETAG], "\"1\"", "the 412 tells the current ETag");

    // A reservation changes the stock: the ETag read before it is stale, by PUT and by adjustment.
    let (_, etag) = app.stock_and_etag("MUG-1").await;
    assert_eq!(etag, "\"1\"");
    let (status, _, _) =
        app.admin("POST", "/v1/reservations", Some(reservation("o-1", &[("MUG-1", 2)]))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, fresh) = app.stock_and_etag("MUG-1").await;
    assert_eq!(fresh, "\"2\"");
    for headers in [&[("If-Match", "\"1\"")][..], &[("If-Match", "W/\"2\"")]] {
        let (status, problem_headers, body) = put(headers, 9).await;
        assert_problem(status, &problem_headers, &body, StatusCode::PRECONDITION_FAILED);
        assert_eq!(body["type"], "https://palisade.dev/problems/precondition-failed");
    }
    let (status, headers, body) = app
        .call_with(
            "POST",
            "/v1/stock/MUG-1/adjustments",
            Some(Role::Admin),
            &[("If-Match", "\"1\"")],
            Some(json!({ "delta": 1 })),
        )
        .await;
    assert_problem(status, &headers, &body, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.stock("MUG-1").await["on_hand"], 10, "nothing changed");
    let (status, headers, body) = put(&[("If-Match", "\"0\", \"2\"")], 9).await;
    assert_eq!(
        (status, &headers[header::ETAG]),
        (StatusCode::OK, &"\"3\"".parse::<http::HeaderValue>().unwrap())
    );
    assert_eq!(body, json!({ "sku": "MUG-1", "on_hand": 9, "reserved": 2, "available": 7 }));
    let (status, headers, _) = app
        .call_with(
            "POST",
            "/v1/stock/MUG-1/adjustments",
            Some(Role::Admin),
            &[("If-Match", "\"3\"")],
            Some(json!({ "delta": -4 })),
        )
        .await;
    assert_eq!(
        (status, &headers[header::ETAG]),
        (StatusCode::OK, &"\"4\"".parse::<http::HeaderValue>().unwrap())
    );
    let (status, _, _) = app.admin("POST", "/v1/stock/MUG-1/adjustments", Some(json!({ "delta": 2 }))).await;
    assert_eq!(status, StatusCode::OK, "adjustments need no precondition");

    ledger_of_mug_1(&app).await;
}

#[tokio::test]
async fn reservations_reserve_commit_release() {
    let app = app().await;
    app.set_stock("A", 10).await;
    app.set_stock("B", 2).await;

    // Reserve; the same request again is the same reservation (200).
    let req = reservation("order-1", &[("A", 3), ("B", 1)]);
    let (status, headers, first) = app.admin("POST", "/v1/reservations", Some(req.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/v1/reservations/{id}").as_str());
    assert_eq!(first["status"], "reserved");
    assert_eq!(first["lines"], req["lines"]);
    let (status, _, again) = app.admin("POST", "/v1/reservations", Some(req.clone())).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let (status, headers, body) =
        app.admin("POST", "/v1/reservations", Some(reservation("order-1", &[("A", 4)]))).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "https://palisade.dev/problems/order-id-taken");
    assert_eq!(app.stock("A").await["reserved"], 3);

    // All or nothing: B has 1 left; the problem names the short line's SKU.
    let (status, headers, body) =
        app.admin("POST", "/v1/reservations", Some(reservation("order-2", &[("A", 1), ("B", 2)]))).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "https://palisade.dev/problems/insufficient-stock");
    assert!(body["detail"].as_str().unwrap().contains('B'), "{body}");
    assert_eq!(
        body["errors"],
        json!([{ "pointer": "#/lines/1/quantity", "detail": "SKU B: requested 2, available 1" }])
    );
    assert_eq!(app.stock("A").await["reserved"], 3, "nothing reserved");
    // Unknown SKU: 409 naming the line (no stock is a state, like too little).
    let (status, headers, body) =
        app.admin("POST", "/v1/reservations", Some(reservation("order-2", &[("A", 1), ("GHOST", 1)]))).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "https://palisade.dev/problems/unknown-sku");
    assert_eq!(body["errors"][0]["pointer"], "#/lines/1/sku");

    // Commit: units leave on-hand; again is harmless; release after commit is refused.
    let (status, _, got) = app.admin("GET", &format!("/v1/reservations/{id}"), None).await;
    assert_eq!((status, &got), (StatusCode::OK, &first));
    let (status, _, committed) = app.admin("POST", &format!("/v1/reservations/{id}/commit"), None).await;
    assert_eq!((status, &committed["status"]), (StatusCode::OK, &json!("committed")));
    assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 7, "reserved": 0, "available": 7 }));
    assert_eq!(app.stock("B").await, json!({ "sku": "B", "on_hand": 1, "reserved": 0, "available": 1 }));
    let (status, _, _) = app.admin("POST", &format!("/v1/reservations/{id}/commit"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = app.admin("POST", &format!("/v1/reservations/{id}/release"), None).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "https://palisade.dev/problems/reservation-state");

    // Release: units are available again; twice is harmless; commit after release is refused.
    let (_, _, second) =
        app.admin("POST", "/v1/reservations", Some(reservation("order-3", &[("A", 7)]))).await;
    let id = second["id"].as_str().unwrap();
    assert_eq!(app.stock("A").await["available"], 0);
    for _ in 0..2 {
        let (status, _, released) = app.admin("POST", &format!("/v1/reservations/{id}/release"), None).await;
        assert_eq!((status, &released["status"]), (StatusCode::OK, &json!("released")));
        assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 7, "reserved": 0, "available": 7 }));
    }
    let (status, headers, body) = app.admin("POST", &format!("/v1/reservations/{id}/commit"), None).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);

    let unknown = "6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11";
    for (method, uri) in [
        ("GET", format!("/v1/reservations/{unknown}")),
        ("POST", format!("/v1/reservations/{unknown}/commit")),
        ("POST", format!("/v1/reservations/{unknown}/release")),
    ] {
        let (status, headers, body) = app.admin(method, &uri, None).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_input_is_problem_json() {
    let app = app().await;
    app.set_stock("A", 1).await;
    let id = "6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11";
    let admin_routes = [
        ("PUT", "/v1/stock/A".to_owned(), Some(json!({ "on_hand": 1 }))),
        ("POST", "/v1/stock/A/adjustments".to_owned(), Some(json!({ "delta": 1 }))),
        ("GET", "/v1/stock/A/ledger".to_owned(), None),
        ("POST", "/v1/reservations".to_owned(), Some(reservation("o", &[("A", 1)]))),
        ("GET", "/v1/reservations?order_id=o".to_owned(), None),
        ("GET", format!("/v1/reservations/{id}"), None),
        ("POST", format!("/v1/reservations/{id}/commit"), None),
        ("POST", format!("/v1/reservations/{id}/release"), None),
    ];
    for (method, uri, body) in &admin_routes {
        let (status, headers, problem) = app.call(method, uri, None, body.clone()).await;
        assert_problem(status, &headers, &problem, StatusCode::UNAUTHORIZED);
        assert!(headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
        let (status, headers, problem) = app.call(method, uri, Some(Role::Customer), body.clone()).await;
        assert_problem(status, &headers, &problem, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.stock("A").await["on_hand"], 1, "nothing changed");

    // Malformed SKUs and ids in the path: 400.
    for uri in ["/v1/stock/MUG%201", "/v1/stock/%C3%A9", &format!("/v1/stock/{}", "x".repeat(65))] {
        let (status, headers, body) = app.call("GET", uri, None, None).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["pointer"], "sku", "{uri}");
    }
    let (status, headers, body) = app.admin("PUT", "/v1/stock/a%20b", Some(json!({ "on_hand": 1 }))).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let (status, headers, body) = app.admin("POST", "/v1/reservations/not-a-uuid/commit", None).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);

    // Bodies: invalid values 422 with pointers, wrong shapes 422, not JSON 400, no content type 415.
    let cases = [
        ("PUT", "/v1/stock/A", json!({ "on_hand": -1 }), "#/on_hand"),
        ("PUT", "/v1/stock/A", json!({ "on_hand": "ten" }), "#/on_hand"),
        ("PUT", "/v1/stock/A", json!({}), "#"),
        ("POST", "/v1/stock/A/adjustments", json!({ "delta": 0 }), "#/delta"),
        ("POST", "/v1/reservations", json!({ "order_id": "o", "lines": [] }), "#/lines"),
        ("POST", "/v1/reservations", reservation("o", &[("A", 0)]), "#/lines/0/quantity"),
        ("POST", "/v1/reservations", reservation("o o", &[("A", 1)]), "#/order_id"),
        ("POST", "/v1/reservations", reservation("o", &[("A", 1), ("A", 1)]), "#/lines/1/sku"),
        ("POST", "/v1/reservations", reservation("o", &[("bad sku", 1)]), "#/lines/0/sku"),
    ];
    for (method, uri, body, pointer) in cases {
        let (status, headers, problem) = app.admin(method, uri, Some(body.clone())).await;
        assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{body}");
    }
    let req = Request::put("/v1/stock/A")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(Role::Admin)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"));
    let (status, headers, body) = app.send(req.unwrap()).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let req = Request::put("/v1/stock/A")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(Role::Admin)))
        .body(Body::from(r#"{"on_hand":1}"#));
    let (status, headers, body) = app.send(req.unwrap()).await;
    assert_problem(status, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let lines: Vec<Value> = (0..3000).map(|i| json!({ "sku": format!("SKU-{i}"), "quantity": 1 })).collect();
    let (status, headers, body) =
        app.admin("POST", "/v1/reservations", Some(json!({ "order_id": "o", "lines": lines }))).await;
    assert_problem(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, headers, body) = app.admin("PATCH", "/v1/stock/A", Some(json!({ "on_hand": 1 }))).await;
    assert_problem(status, &headers, &body, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.stock("A").await["on_hand"], 1, "nothing changed");
}

#[tokio::test]
async fn operational_routes() {
    let app = app().await;
    for path in ["/livez", "/readyz"] {
        let (status, headers, body) = app.call("GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
        assert_eq!(body["status"], "pass");
    }
    let (status, _, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/v1/reservations/{id}/commit"]["post"].is_object());
    let res = app.router.clone().oneshot(Request::get("/docs/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Polls `check` every 50 ms until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn the_sweep_expires_reservations_and_returns_stock() {
    let app = app_with(&[("reservation_ttl_secs", 1), ("expiry_interval_ms", 50)]).await;
    app.set_stock("A", 5).await;
    let (status, _, r) = app.admin("POST", "/v1/reservations", Some(reservation("o-1", &[("A", 2)]))).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(app.stock("A").await["reserved"], 2);
    // `GET /v1/stock` never expires anything itself: only the sweep can bring `reserved` back.
    eventually("the sweep returned the stock", || async { app.stock("A").await["reserved"] == 0 }).await;
    let id = r["id"].as_str().unwrap();
    let (_, _, got) = app.admin("GET", &format!("/v1/reservations/{id}"), None).await;
    assert_eq!(got["status"], "expired");
    let (status, headers, body) = app.admin("POST", &format!("/v1/reservations/{id}/commit"), None).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 5, "reserved": 0, "available": 5 }));
}

#[tokio::test]
async fn commit_checks_expiry_itself() {
    // The sweep runs once an hour here: only the lazy check can expire the reservation.
    let app = app_with(&[("reservation_ttl_secs", 1), ("expiry_interval_ms", 3_600_000)]).await;
    app.set_stock("A", 5).await;
    let (_, _, r) = app.admin("POST", "/v1/reservations", Some(reservation("o-1", &[("A", 2)]))).await;
    let id = r["id"].as_str().unwrap();
    let expires_at = time::OffsetDateTime::parse(
        r["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = expires_at - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    assert_eq!(app.stock("A").await["reserved"], 2, "not swept yet");
    let (status, headers, body) = app.admin("POST", &format!("/v1/reservations/{id}/commit"), None).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 5, "reserved": 0, "available": 5 }));
}

/// The app trusting two keys: orders' (`orders-1`, allowed `inventory:reserve`) and payments'
/// (`payments-1`, allowed nothing here); and the signers holding them.
async fn app_trusting_orders() -> (TestApp, ServiceSigner, ServiceSigner) {
    let (orders, payments) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let trust = |issuer: &str, pair: &KeyPair, scopes: &[&str]| TrustedKey {
        issuer: issuer.to_owned(),
        public_key: pair.public_key(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    let figment = figment(&kit::db::temp_sqlite_url("inventory-service-auth"), &[])
        .merge(("inventory.trusted_keys.orders-1", trust("orders", &orders, &["inventory:reserve"])))
        .merge(("inventory.trusted_keys.payments-1", trust("payments", &payments, &[])));
    let app = shop_inventory::SERVICE.app(&Settings::from_figment(figment)).await.expect("app");
    let app = TestApp { router: app.router, keys: app.keys };
    (
        app,
        ServiceSigner::new("orders", "orders-1", &orders),
        ServiceSigner::new("payments", "payments-1", &payments),
    )
}

impl TestApp {
    /// A request with `Authorization: Bearer <token>`.
    async fn bearer(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let auth = format!("Bearer {token}");
        self.call_with(method, uri, None, &[("authorization", &auth)], body).await
    }
}

#[tokio::test]
async fn reservation_routes_take_a_service_token_with_the_reserve_scope() {
    let (app, orders, payments) = app_trusting_orders().await;
    app.set_stock("A", 10).await;
    let token = orders.token("inventory", &["inventory:reserve"]).unwrap();

    let (status, _, r) =
        app.bearer("POST", "/v1/reservations", &token, Some(reservation("o-1", &[("A", 2)]))).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let (status, _, got) = app.bearer("GET", &format!("/v1/reservations/{id}"), &token, None).await;
    assert_eq!((status, &got), (StatusCode::OK, &r));
    let (status, _, found) = app.bearer("GET", "/v1/reservations?order_id=o-1", &token, None).await;
    assert_eq!((status, &found), (StatusCode::OK, &json!({ "items": [r] })));
    let (status, _, committed) =
        app.bearer("POST", &format!("/v1/reservations/{id}/commit"), &token, None).await;
    assert_eq!((status, &committed["status"]), (StatusCode::OK, &json!("committed")));
    let (_, _, ledger) = app.admin("GET", "/v1/stock/A/ledger", None).await;
    let last = &ledger["items"][ledger["items"].as_array().unwrap().len() - 1];
    assert_eq!((&last["reason"], &last["actor"]), (&json!("commit"), &json!("service:orders")), "{ledger}");

    // Refused: no scope (403); a scope the key is not allowed here (403); a token for catalog,
    // an unknown key (401).
    let (_, _, second) = app.admin("POST", "/v1/reservations", Some(reservation("o-2", &[("A", 1)]))).await;
    let second = second["id"].as_str().unwrap().to_owned();
    let no_scope = orders.token("inventory", &[]).unwrap();
    let not_allowed = payments.token("inventory", &["inventory:reserve"]).unwrap();
    let for_catalog = orders.token("catalog", &["inventory:reserve"]).unwrap();
    let untrusted = ServiceSigner::new("orders", "orders-9", &KeyPair::generate().unwrap())
        .token("inventory", &["inventory:reserve"])
        .unwrap();
    let routes = [
        ("POST", "/v1/reservations".to_owned(), Some(reservation("o-3", &[("A", 1)]))),
        ("GET", "/v1/reservations?order_id=o-2".to_owned(), None),
        ("GET", format!("/v1/reservations/{second}"), None),
        ("POST", format!("/v1/reservations/{second}/commit"), None),
        ("POST", format!("/v1/reservations/{second}/release"), None),
    ];
    for (method, uri, body) in &routes {
        for (token, expected) in [
            (&no_scope, StatusCode::FORBIDDEN),
            (&not_allowed, StatusCode::FORBIDDEN),
            (&for_catalog, StatusCode::UNAUTHORIZED),
            (&untrusted, StatusCode::UNAUTHORIZED),
        ] {
            let (status, headers, problem) = app.bearer(method, uri, token, body.clone()).await;
            assert_problem(status, &headers, &problem, expected);
        }
    }
    let (_, _, refused) =
        app.bearer("POST", "/v1/reservations", &for_catalog, Some(reservation("o-3", &[("A", 1)]))).await;
    assert_eq!(refused["detail"], "the service token is meant for another service");
    assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 8, "reserved": 1, "available": 7 }));
    // Stock administration stays admin-only, even with the scope.
    let (status, headers, problem) = app.bearer("GET", "/v1/stock/A/ledger", &token, None).await;
    assert_problem(status, &headers, &problem, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reservations_are_found_by_order_id() {
    let app = app().await;
    app.set_stock("A", 10).await;
    let (_, _, r) = app.admin("POST", "/v1/reservations", Some(reservation("order:42", &[("A", 2)]))).await;
    let (status, _, found) = app.admin("GET", "/v1/reservations?order_id=order:42", None).await;
    assert_eq!((status, &found), (StatusCode::OK, &json!({ "items": [r] })));
    let (status, _, none) = app.admin("GET", "/v1/reservations?order_id=order:43", None).await;
    assert_eq!((status, &none), (StatusCode::OK, &json!({ "items": [] })));
    for uri in ["/v1/reservations", "/v1/reservations?order_id=", "/v1/reservations?order_id=a%20b"] {
        let (status, headers, problem) = app.admin("GET", uri, None).await;
        assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST);
        assert_eq!(problem["errors"][0]["pointer"], "order_id", "{uri}: {problem}");
    }
}

#[tokio::test]
async fn replaying_an_expired_or_released_reservation_is_a_409() {
    // The sweep runs once an hour here: the replay itself must notice the deadline.
    let app = app_with(&[("reservation_ttl_secs", 1), ("expiry_interval_ms", 3_600_000)]).await;
    app.set_stock("A", 5).await;
    let req = reservation("o-late", &[("A", 2)]);
    let (_, _, r) = app.admin("POST", "/v1/reservations", Some(req.clone())).await;
    let expires_at = time::OffsetDateTime::parse(
        r["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = expires_at - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    assert_eq!(app.stock("A").await["reserved"], 2, "not swept yet");
    for _ in 0..2 {
        let (status, headers, body) = app.admin("POST", "/v1/reservations", Some(req.clone())).await;
        assert_problem(status, &headers, &body, StatusCode::CONFLICT);
        assert_eq!(body["type"], "https://palisade.dev/problems/reservation-expired", "{body}");
    }
    assert_eq!(app.stock("A").await, json!({ "sku": "A", "on_hand": 5, "reserved": 0, "available": 5 }));
    let (_, _, found) = app.admin("GET", "/v1/reservations?order_id=o-late", None).await;
    assert_eq!(found["items"][0]["status"], "expired");

    let req = reservation("o-released", &[("A", 1)]);
    let (_, _, r) = app.admin("POST", "/v1/reservations", Some(req.clone())).await;
    let id = r["id"].as_str().unwrap();
    app.admin("POST", &format!("/v1/reservations/{id}/release"), None).await;
    let (status, headers, body) = app.admin("POST", "/v1/reservations", Some(req)).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert_eq!(body["type"], "https://palisade.dev/problems/reservation-state", "{body}");
    assert_eq!(app.stock("A").await["reserved"], 0, "a refused replay reserves nothing");
}

/// A running server on a real port, and an HTTP client for it.
struct Running {
    base: String,
    token: String,
    trigger: kit::server::ShutdownTrigger,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, String>,
}

impl Running {
    async fn start(settings: &Settings) -> Self {
        let app = shop_inventory::SERVICE.app(settings).await.expect("app");
        let token = app.keys.issue("orders-service", "orders@example.com", Role::Admin).unwrap();
        let server = app.bind().await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let (trigger, shutdown) = kit::server::Shutdown::manual();
        let task = tokio::spawn(server.run(shutdown));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { base, token, trigger, task, client }
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.send_with(method, path, &[], body).await;
        (status, body)
    }

    async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(body.map(Value::to_string).unwrap_or_default()).unwrap();
        let res = self.client.request(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Creates the stock of `sku` (`If-None-Match: *`).
    async fn create_stock(&self, sku: &str, on_hand: i64) -> StatusCode {
        let body = json!({ "on_hand": on_hand });
        self.send_with("PUT", &format!("/v1/stock/{sku}"), &[("If-None-Match", "*")], Some(&body)).await.0
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// 50 concurrent reservations of one unit each, distinct orders, at 10 units: exactly 10 win.
async fn no_overselling(database_url: &str) {
    let server = std::sync::Arc::new(Running::start(&settings(database_url, &[])).await);
    assert_eq!(server.create_stock("HOT-1", 10).await, StatusCode::CREATED);
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .send(
                        "POST",
                        "/v1/reservations",
                        Some(&reservation(&format!("order-{i}"), &[("HOT-1", 1)])),
                    )
                    .await
            })
        })
        .collect();
    let (mut won, mut lost) = (0, 0);
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["type"], "https://palisade.dev/problems/insufficient-stock", "{body}");
                lost += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((won, lost), (10, 40));
    let (status, stock) = server.send("GET", "/v1/stock/HOT-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stock, json!({ "sku": "HOT-1", "on_hand": 10, "reserved": 10, "available": 0 }));
    std::sync::Arc::into_inner(server).expect("every request finished").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overselling_over_http_on_sqlite() {
    no_overselling(&kit::db::temp_sqlite_url("inventory-oversell")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overselling_over_http_on_postgres() {
    match kit::db::temp_postgres_url().await {
        Some(url) => no_overselling(&url.expect("create a test database")).await,
        None => {
            eprintln!("note: TEST_DATABASE_URL is not a postgres URL; PostgreSQL overselling test skipped");
        }
    }
}

/// A fresh PostgreSQL database whose default isolation is `REPEATABLE READ` (as some servers are
/// configured), or `None` when `TEST_DATABASE_URL` names no server.
async fn repeatable_read_database() -> Option<String> {
    let url = kit::db::temp_postgres_url().await?.expect("create a test database");
    let name = url.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    Some(url)
}

/// On a server defaulting to `REPEATABLE READ`, 40 concurrent buyers of one unit each (reserve, then
/// commit) at 20 units, with adjustments in between: every answer is a success or a clean 409, never
/// a 5xx, and exactly 20 units are sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_default_still_serves_concurrent_buyers() {
    let Some(url) = repeatable_read_database().await else {
        eprintln!("note: TEST_DATABASE_URL is not a postgres URL; repeatable-read test skipped");
        return;
    };
    let server = std::sync::Arc::new(Running::start(&settings(&url, &[])).await);
    assert_eq!(server.create_stock("HOT-1", 20).await, StatusCode::CREATED);
    let buyers: Vec<_> = (0..40)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                if i % 10 == 0 {
                    let (status, body) = server
                        .send("POST", "/v1/stock/HOT-1/adjustments", Some(&json!({ "delta": 1 })))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let (status, body) = server
                        .send("POST", "/v1/stock/HOT-1/adjustments", Some(&json!({ "delta": -1 })))
                        .await;
                    assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{status}: {body}");
                    return i64::from(status != StatusCode::OK); // a -1 refused: one unit more
                }
                let req = reservation(&format!("order-{i}"), &[("HOT-1", 1)]);
                let (status, body) = server.send("POST", "/v1/reservations", Some(&req)).await;
                match status {
                    StatusCode::CREATED => {
                        let id = body["id"].as_str().unwrap().to_owned();
                        let (status, body) =
                            server.send("POST", &format!("/v1/reservations/{id}/commit"), None).await;
                        assert_eq!(status, StatusCode::OK, "{body}");
                        -1
                    }
                    StatusCode::CONFLICT => {
                        assert_eq!(
                            body["type"], "https://palisade.dev/problems/insufficient-stock",
                            "{body}"
                        );
                        0
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            })
        })
        .collect();
    let mut change = 0;
    for buyer in buyers {
        change += buyer.await.unwrap();
    }
    let (status, stock) = server.send("GET", "/v1/stock/HOT-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stock["reserved"], 0, "{stock}");
    let on_hand = stock["on_hand"].as_i64().unwrap();
    assert_eq!(on_hand, 20 + change, "{stock}");
    assert!((0..=4).contains(&on_hand), "at most 20 sold, and sold out but for refused -1s: {stock}");
    std::sync::Arc::into_inner(server).expect("every request finished").stop().await;
}

/// A stock row locked from outside (`SELECT … FOR UPDATE` held open): writes to it answer 503 with
/// `Retry-After` within about the lock timeout, other requests keep working meanwhile, and once the
/// lock is gone the row works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_locked_from_outside_is_503_without_starving_the_pool() {
    let Some(url) = kit::db::temp_postgres_url().await else {
        eprintln!("note: TEST_DATABASE_URL is not a postgres URL; outside-lock test skipped");
        return;
    };
    let url = url.expect("create a test database");
    // A lock timeout well above what two requests take on a debug build sharing two cores with the
    // rest of the suite (a 500 ms one was exceeded there: 500.8 and 645 ms): a starved probe waits
    // the whole timeout, an unstarved one milliseconds.
    let lock_timeout = Duration::from_millis(2000);
    let extra = [("db_lock_timeout_ms", 2000), ("db_max_connections", 4)];
    let server = std::sync::Arc::new(Running::start(&settings(&url, &extra)).await);
    assert_eq!(server.create_stock("LOCKED-1", 10).await, StatusCode::CREATED);
    assert_eq!(server.create_stock("FREE-1", 10).await, StatusCode::CREATED);

    let outside = sqlx::PgPool::connect(&url).await.unwrap();
    let mut holder = outside.begin().await.unwrap();
    sqlx::query("SELECT on_hand FROM stock WHERE sku = 'LOCKED-1' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let writes: Vec<_> = [
        ("POST", "/v1/stock/LOCKED-1/adjustments", json!({ "delta": 1 }), None),
        ("PUT", "/v1/stock/LOCKED-1", json!({ "on_hand": 5 }), Some(("If-Match", "\"1\""))),
        ("POST", "/v1/reservations", reservation("o-locked", &[("LOCKED-1", 1)]), None),
    ]
    .into_iter()
    .map(|(method, path, body, header)| {
        let server = server.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let headers: Vec<(&str, &str)> = header.into_iter().collect();
            let (status, headers, body) = server.send_with(method, path, &headers, Some(&body)).await;
            (path, status, headers, body, started.elapsed())
        })
    })
    .collect();
    // Meanwhile, with three of four connections waiting on the lock: reads (of the locked row too:
    // MVCC) and writes elsewhere answer at once.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(server.send("GET", "/v1/stock/LOCKED-1", None).await.0, StatusCode::OK);
        let (status, body) =
            server.send("POST", "/v1/stock/FREE-1/adjustments", Some(&json!({ "delta": 1 }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(started.elapsed() < lock_timeout, "not starved: {:?}", started.elapsed());
    }
    for write in writes {
        let (path, status, headers, body, took) = write.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(headers[header::RETRY_AFTER], "1", "{path}");
        // Bounded by the retry budget (= the lock timeout) plus the last attempt's wait; the slack
        // is for a debug build sharing two cores with the rest of the suite (1.52 s seen at 3×).
        assert!(took >= lock_timeout && took < lock_timeout * 5, "{path} took {took:?}");
    }

    holder.rollback().await.unwrap();
    outside.close().await;
    let (status, stock) =
        server.send("POST", "/v1/stock/LOCKED-1/adjustments", Some(&json!({ "delta": 1 }))).await;
    assert_eq!((status, &stock["on_hand"]), (StatusCode::OK, &json!(11)), "{stock}");
    let (status, body) =
        server.send("POST", "/v1/reservations", Some(&reservation("o-locked", &[("LOCKED-1", 1)]))).await;
    assert_eq!(status, StatusCode::CREATED, "nothing of the refused attempt was kept: {body}");
    std::sync::Arc::into_inner(server).expect("every request finished").stop().await;
}

#[tokio::test]
async fn real_port_session_and_graceful_shutdown() {
    let server = Running::start(&settings(&kit::db::temp_sqlite_url("inventory-port"), &[])).await;
    assert_eq!(server.create_stock("LAMP-1", 3).await, StatusCode::CREATED);
    let (status, r) =
        server.send("POST", "/v1/reservations", Some(&reservation("o-1", &[("LAMP-1", 2)]))).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(server.send("POST", &format!("/v1/reservations/{id}/commit"), None).await.0, StatusCode::OK);
    let (_, stock) = server.send("GET", "/v1/stock/LAMP-1", None).await;
    assert_eq!(stock, json!({ "sku": "LAMP-1", "on_hand": 1, "reserved": 0, "available": 1 }));
    let url = format!("{}/v1/stock/LAMP-1", server.base);
    let client = server.client.clone();
    server.stop().await;
    assert!(client.request(Request::get(&url).body(String::new()).unwrap()).await.is_err());
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = kit::service::openapi_json(&shop_inventory::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/inventory.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/inventory.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}
