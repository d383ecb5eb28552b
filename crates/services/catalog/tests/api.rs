//! The catalog's HTTP API: in-process (`Router::oneshot`) with the full kit stack, over a real
//! port, and the committed OpenAPI file.

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::testing::assert_problem;
use serde_json::{Value, json};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    keys: JwtKeys,
}

async fn app() -> TestApp {
    let settings = Settings::for_test("catalog", &kit::db::temp_sqlite_url("catalog-api"));
    let app = shop_catalog::SERVICE.app(&settings).await.expect("app");
    TestApp { router: app.router, keys: app.keys }
}

impl TestApp {
    fn token(&self, role: Role) -> String {
        kit::testing::token(&self.keys, role)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        kit::testing::send(&self.router, req).await
    }

    async fn write(
        &self,
        method: &str,
        uri: &str,
        role: Option<Role>,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut req =
            Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(role) = role {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token(role)));
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap()).await
    }

    /// An admin's write with these extra headers.
    async fn write_with(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token(Role::Admin)));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap()).await
    }

    /// An admin's write with `If-Match: <etag>`.
    async fn write_if(
        &self,
        method: &str,
        uri: &str,
        etag: &str,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        self.write_with(method, uri, &[("If-Match", etag)], body).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, http::HeaderMap, Value) {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }
}

fn product(sku: &str, name: &str, category: &str, amount: i64) -> String {
    json!({ "sku": sku, "name": name, "category": category, "price": { "amount": amount, "currency": "EUR" } })
        .to_string()
}

#[tokio::test]
async fn admin_crud_with_etags() {
    let app = app().await;
    let (status, headers, created) = app
        .write("POST", "/v1/products", Some(Role::Admin), &product("MUG-1", "Red Mug", "kitchen", 1299))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/v1/products/{id}").as_str());
    assert_eq!(created["price"], json!({ "amount": 1299, "currency": "EUR" }));
    assert_eq!(created["archived"], false);

    let (status, headers, got) = app.get(&format!("/v1/products/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);
    let etag = headers[header::ETAG].clone();

    let req =
        Request::get(format!("/v1/products/{id}")).header(header::IF_NONE_MATCH, &etag).body(Body::empty());
    let (status, headers, body) = app.send(req.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag);
    assert_eq!(body, Value::Null);

    let (status, headers, updated) = app
        .write_if(
            "PUT",
            &format!("/v1/products/{id}"),
            etag.to_str().unwrap(),
            &product("MUG-1", "Red Mug", "kitchen", 999),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_ne!(headers[header::ETAG], etag);
    let new_etag = headers[header::ETAG].to_str().unwrap().to_owned();
    // The update invalidated the cache: the old ETag no longer matches and the new price shows.
    let req =
        Request::get(format!("/v1/products/{id}")).header(header::IF_NONE_MATCH, &etag).body(Body::empty());
    let (status, _, got) = app.send(req.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["price"]["amount"], 999);

    // DELETE archives: the product stays readable.
    let (status, _, body) = app.write_if("DELETE", &format!("/v1/products/{id}"), &new_etag, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _, got) = app.get(&format!("/v1/products/{id}")).await;
    assert_eq!((status, &got["archived"], &got["version"]), (StatusCode::OK, &json!(true), &json!(3)));
    let unknown = "/v1/products/6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11";
    let (status, headers, body) = app.write_if("DELETE", unknown, "*", "").await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, headers, body) =
        app.write_if("PUT", unknown, "*", &product("MUG-1", "Red Mug", "kitchen", 999)).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
}

/// The id and current `ETag` of a new product.
async fn created(app: &TestApp, sku: &str, amount: i64) -> (String, String) {
    let (status, headers, body) =
        app.write("POST", "/v1/products", Some(Role::Admin), &product(sku, "Mug", "kitchen", amount)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), headers[header::ETAG].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn writes_need_if_match_with_the_current_etag() {
    let app = app().await;
    let (id, etag) = created(&app, "MUG-1", 100).await;
    let uri = format!("/v1/products/{id}");
    let body = product("MUG-1", "Mug", "kitchen", 200);

    // No If-Match (If-None-Match alone does not do): 428, nothing written.
    for method in ["PUT", "DELETE"] {
        let payload = if method == "PUT" { body.as_str() } else { "" };
        let (status, headers, problem) = app.write(method, &uri, Some(Role::Admin), payload).await;
        assert_problem(status, &headers, &problem, StatusCode::PRECONDITION_REQUIRED);
        assert_eq!(problem["type"], "https://palisade.dev/problems/precondition-required");
        let (status, headers, problem) =
            app.write_with(method, &uri, &[("If-None-Match", "\"nothing\"")], payload).await;
        assert_problem(status, &headers, &problem, StatusCode::PRECONDITION_REQUIRED);
    }
    // The current ETag: written; the old one is stale now (412 naming the current ETag).
    let (status, headers, _) = app.write_if("PUT", &uri, &etag, &body).await;
    assert_eq!(status, StatusCode::OK);
    let current = headers[header::ETAG].to_str().unwrap().to_owned();
    for method in ["PUT", "DELETE"] {
        let payload = if method == "PUT" { body.as_str() } else { "" };
        let (status, headers, problem) = app.write_if(method, &uri, &etag, payload).await;
        assert_problem(status, &headers, &problem, StatusCode::PRECONDITION_FAILED);
        assert_eq!(problem["type"], "https://palisade.dev/problems/precondition-failed");
        assert_eq!(headers[header::ETAG], current.as_str());
    }
    let (_, _, got) = app.get(&uri).await;
    assert_eq!(
        (&got["version"], &got["archived"]),
        (&json!(2), &json!(false)),
        "the stale writes wrote nothing"
    );
    // `*` names any version.
    let (status, _, _) = app.write_if("DELETE", &uri, "*", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_sku_is_immutable() {
    let app = app().await;
    let (id, etag) = created(&app, "MUG-1", 100).await;
    let uri = format!("/v1/products/{id}");
    let (status, headers, problem) =
        app.write_if("PUT", &uri, &etag, &product("MUG-2", "Mug", "kitchen", 100)).await;
    assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "https://palisade.dev/problems/sku-immutable");
    assert_eq!(problem["errors"][0]["pointer"], "#/sku");
    let (_, _, got) = app.get(&uri).await;
    assert_eq!((&got["sku"], &got["version"]), (&json!("MUG-1"), &json!(1)));
    let (status, _, updated) =
        app.write_if("PUT", &uri, &etag, &product("MUG-1", "Big mug", "kitchen", 100)).await;
    assert_eq!((status, &updated["name"]), (StatusCode::OK, &json!("Big mug")));
}

#[tokio::test]
async fn archiving_hides_from_lists_keeps_the_product_readable_and_is_idempotent() {
    let app = app().await;
    let (kept, _) = created(&app, "KEEP-1", 100).await;
    let (gone, etag) = created(&app, "GONE-1", 100).await;
    let uri = format!("/v1/products/{gone}");
    // Cached before the archive …
    let (status, headers, before) = app.get(&uri).await;
    assert_eq!((status, &before["archived"]), (StatusCode::OK, &json!(false)));
    let cached_etag = headers[header::ETAG].clone();
    let (status, _, _) = app.write_if("DELETE", &uri, &etag, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // … and not served after it: the archived product, with a new ETag.
    let req = Request::get(&uri).header(header::IF_NONE_MATCH, &cached_etag).body(Body::empty());
    let (status, headers, after) = app.send(req.unwrap()).await;
    assert_eq!((status, &after["archived"]), (StatusCode::OK, &json!(true)), "{after}");
    assert_ne!(headers[header::ETAG], cached_etag);
    let archived_etag = headers[header::ETAG].to_str().unwrap().to_owned();

    let ids = |page: &Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, _, page) = app.get("/v1/products").await;
    assert_eq!(ids(&page), [kept.as_str()]);
    let (_, _, page) = app.get("/v1/products?include_archived=false").await;
    assert_eq!(ids(&page), [kept.as_str()]);
    let (_, _, page) = app.get("/v1/products?include_archived=true").await;
    assert_eq!(ids(&page), [kept, gone.clone()]);
    let (status, headers, problem) = app.get("/v1/products?include_archived=maybe").await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST);

    // Again, even with the ETag it had before (a retry whose first answer was lost): 204, unchanged.
    let (status, _, _) = app.write_if("DELETE", &uri, &etag, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, headers, again) = app.get(&uri).await;
    assert_eq!((again, headers[header::ETAG].to_str().unwrap()), (after, archived_etag.as_str()));
    // The SKU stays the archived product's.
    let (status, headers, problem) =
        app.write("POST", "/v1/products", Some(Role::Admin), &product("GONE-1", "Mug", "kitchen", 1)).await;
    assert_problem(status, &headers, &problem, StatusCode::CONFLICT);
}

/// The `(type, subject, data)` of every event in the outbox of the SQLite database at `url`.
async fn events(url: &str) -> Vec<(String, String, Value)> {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT type, subject, data FROM kit_outbox ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().map(|(t, s, d)| (t, s, serde_json::from_str(&d).unwrap())).collect()
}

#[tokio::test]
async fn a_price_change_publishes_product_price_changed() {
    let url = kit::db::temp_sqlite_url("catalog-events");
    let settings = Settings::for_test("catalog", &url);
    let app = shop_catalog::SERVICE.app(&settings).await.expect("app");
    let app = TestApp { router: app.router, keys: app.keys };
    let (id, etag) = created(&app, "MUG-1", 1299).await;
    let uri = format!("/v1/products/{id}");
    // Another name, same price: no event.
    let (status, headers, _) =
        app.write_if("PUT", &uri, &etag, &product("MUG-1", "Red mug", "kitchen", 1299)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&url).await, []);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, _) = app.write_if("PUT", &uri, &etag, &product("MUG-1", "Red mug", "kitchen", 999)).await;
    assert_eq!(status, StatusCode::OK);
    let data = json!({
        "product_id": id,
        "sku": "MUG-1",
        "old_price": { "amount": 1299, "currency": "EUR" },
        "new_price": { "amount": 999, "currency": "EUR" },
    });
    assert_eq!(events(&url).await, [("product.price_changed".to_owned(), id.clone(), data)]);
    // A refused write publishes nothing.
    let (status, _, _) = app.write_if("PUT", &uri, &etag, &product("MUG-1", "Red mug", "kitchen", 5)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(events(&url).await.len(), 1);
}

#[tokio::test]
async fn public_list_filters_searches_and_pages() {
    let app = app().await;
    for (i, (name, category, amount)) in
        [("Red Mug", "kitchen", 500), ("Blue MUG", "kitchen", 1500), ("Desk Lamp", "office", 2500)]
            .into_iter()
            .enumerate()
    {
        let (status, _, body) = app
            .write(
                "POST",
                "/v1/products",
                Some(Role::Admin),
                &product(&format!("S-{i}"), name, category, amount),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let names = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect::<Vec<_>>()
    };

    let (status, _, page) = app.get("/v1/products").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["limit"], 20);
    assert_eq!(names(&page), ["Red Mug", "Blue MUG", "Desk Lamp"]);
    assert!(page.get("next_offset").is_none());

    let (_, _, page) = app.get("/v1/products?category=kitchen&q=mug&min_price=1000").await;
    assert_eq!(names(&page), ["Blue MUG"]);
    let (_, _, page) = app.get("/v1/products?max_price=600").await;
    assert_eq!(names(&page), ["Red Mug"]);

    let (_, _, page) = app.get("/v1/products?limit=2").await;
    assert_eq!(names(&page), ["Red Mug", "Blue MUG"]);
    assert_eq!(page["next_offset"], 2);
    let (_, _, page) = app.get("/v1/products?limit=2&offset=2").await;
    assert_eq!(names(&page), ["Desk Lamp"]);
    assert!(page.get("next_offset").is_none());
}

#[tokio::test]
async fn bad_input_is_problem_json() {
    let app = app().await;
    let admin = Some(Role::Admin);
    let valid = product("MUG-1", "Mug", "kitchen", 100);

    // Authentication and authorization.
    let (status, headers, body) = app.write("POST", "/v1/products", None, &valid).await;
    assert_problem(status, &headers, &body, StatusCode::UNAUTHORIZED);
    assert!(headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    let (status, headers, body) = app.write("POST", "/v1/products", Some(Role::Customer), &valid).await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN);
    let req = Request::post("/v1/products")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer not.a.token")
        .body(Body::from(valid.clone()));
    let (status, headers, body) = app.send(req.unwrap()).await;
    assert_problem(status, &headers, &body, StatusCode::UNAUTHORIZED);

    // Bodies.
    let (status, headers, body) = app.write("POST", "/v1/products", admin, "{not json").await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let req = Request::post("/v1/products")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token(Role::Admin)))
        .body(Body::from(valid.clone()));
    let (status, headers, body) = app.send(req.unwrap()).await;
    assert_problem(status, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, headers, body) = app.write("POST", "/v1/products", admin, r#"{"sku":"A","name":"B"}"#).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["pointer"], "#");
    let (status, headers, body) = app
        .write(
            "POST",
            "/v1/products",
            admin,
            r#"{"sku":"A","name":"B","category":"c","price":{"amount":"x","currency":"EUR"}}"#,
        )
        .await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["pointer"], "#/price/amount");
    let (status, headers, body) =
        app.write("POST", "/v1/products", admin, &product("MUG 1", "", "kitchen", -5)).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<_> = body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].clone()).collect();
    assert_eq!(pointers, ["#/sku", "#/name", "#/price/amount"]);
    let bad_currency =
        json!({ "sku": "A", "name": "B", "category": "c", "price": { "amount": 1, "currency": "eur" } });
    let (status, headers, body) = app.write("POST", "/v1/products", admin, &bad_currency.to_string()).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["pointer"], "#/price/currency");
    let huge = product("BIG", &"x".repeat(70 * 1024), "c", 1);
    let (status, headers, body) = app.write("POST", "/v1/products", admin, &huge).await;
    assert_problem(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);

    // Duplicates.
    let (status, _, _) = app.write("POST", "/v1/products", admin, &valid).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, headers, body) = app.write("POST", "/v1/products", admin, &valid).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);

    // Paths and queries.
    let (status, headers, body) = app.get("/v1/products/not-a-uuid").await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    let (status, headers, body) = app.get("/v1/products/6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11").await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    for query in ["limit=0", "limit=101", "limit=abc", "offset=-1", "min_price=-1", "min_price=9&max_price=1"]
    {
        let (status, headers, body) = app.get(&format!("/v1/products?{query}")).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]["pointer"].is_string(), "{query}: {body}");
    }

    // Unknown routes and methods.
    let (status, headers, body) = app.get("/v2/nothing").await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, headers, body) = app.write("PATCH", "/v1/products", admin, &valid).await;
    assert_problem(status, &headers, &body, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key(header::ALLOW));
}

#[tokio::test]
async fn operational_routes() {
    let app = app().await;
    for path in ["/livez", "/readyz"] {
        let (status, headers, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
        assert_eq!(body["status"], "pass");
    }
    let (status, _, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/v1/products/{id}"]["get"].is_object());
    let res = app.router.clone().oneshot(Request::get("/docs/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res =
        app.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn real_port_session_and_graceful_shutdown() {
    let settings = Settings::for_test("catalog", &kit::db::temp_sqlite_url("catalog-port"));
    let app = shop_catalog::SERVICE.app(&settings).await.unwrap();
    let token = app.keys.issue("admin-1", "admin@example.com", Role::Admin).unwrap();
    let health = app.health.clone();
    let server = app.bind().await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (trigger, shutdown) = kit::server::Shutdown::manual();
    let running = tokio::spawn(server.run(shutdown));

    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let send = |req: Request<String>| {
        let client = client.clone();
        async move {
            let res = client.request(req).await.unwrap();
            let status = res.status();
            let etag = res.headers().get(header::ETAG).cloned();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, etag, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
        }
    };
    let base = format!("http://{addr}");
    let create = Request::post(format!("{base}/v1/products"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(product("LAMP-1", "Desk Lamp", "office", 2500))
        .unwrap();
    let (status, _, created) = send(create).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _, page) =
        send(Request::get(format!("{base}/v1/products?q=lamp")).body(String::new()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["sku"], "LAMP-1");
    let url = format!("{base}/v1/products/{}", created["id"].as_str().unwrap());
    let (status, etag, _) = send(Request::get(&url).body(String::new()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        send(Request::get(&url).header(header::IF_NONE_MATCH, etag.unwrap()).body(String::new()).unwrap())
            .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    trigger.trigger();
    running.await.unwrap().unwrap();
    assert!(health.is_draining());
    assert!(client.request(Request::get(&url).body(String::new()).unwrap()).await.is_err());
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = kit::service::openapi_json(&shop_catalog::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/catalog.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/catalog.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}

fn priced(amount: i64, currency: &str) -> String {
    json!({ "sku": "P-1", "name": "Mug", "category": "kitchen", "price": { "amount": amount, "currency": currency } })
        .to_string()
}

async fn create_errors(app: &TestApp, body: &str) -> Vec<Value> {
    let (status, headers, body) = app.write("POST", "/v1/products", Some(Role::Admin), body).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].clone()).collect()
}

#[tokio::test]
async fn currencies_must_be_active_iso_4217_codes() {
    let app = app().await;
    // Well-formed but not ISO 4217; superseded (HRK, 2023); no minor unit (XAU gold, XTS testing).
    for code in ["XYZ", "HRK", "XAU", "XTS", "eur"] {
        assert_eq!(create_errors(&app, &priced(1, code)).await, ["#/price/currency"], "{code}");
    }
    let (status, _, body) = app.get("/v1/products").await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{body}");
    for (i, code) in ["EUR", "JPY", "CHF", "KWD"].into_iter().enumerate() {
        let body = priced(1, code).replace("P-1", &format!("P-{i}"));
        let (status, _, created) = app.write("POST", "/v1/products", Some(Role::Admin), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{code}: {created}");
        assert_eq!(created["price"]["currency"], code);
    }
}

#[tokio::test]
async fn money_rejects_unknown_fields() {
    let app = app().await;
    let body = json!({ "sku": "P-1", "name": "Mug", "category": "kitchen",
        "price": { "amount": 1, "currency": "EUR", "vat": 20 } });
    let pointers = create_errors(&app, &body.to_string()).await;
    assert!(pointers.len() == 1 && pointers[0].as_str().unwrap().starts_with("#/price"), "{pointers:?}");
}

#[tokio::test]
async fn prices_have_a_ceiling() {
    let app = app().await;
    let max = shop_catalog::model::MAX_PRICE_MINOR_UNITS;
    assert_eq!(max, 1_000_000_000);
    assert_eq!(create_errors(&app, &priced(max + 1, "EUR")).await, ["#/price/amount"]);
    assert_eq!(create_errors(&app, &priced(i64::MAX, "EUR")).await, ["#/price/amount"]);
    let (status, _, created) =
        app.write("POST", "/v1/products", Some(Role::Admin), &priced(max, "EUR")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, headers, body) =
        app.write_if("PUT", &format!("/v1/products/{id}"), "*", &priced(max + 1, "EUR")).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["pointer"], "#/price/amount");
}

#[tokio::test]
async fn text_fields_are_bounded_by_what_the_client_sent() {
    let app = app().await;
    let admin = Some(Role::Admin);
    // The spec says maxLength 200 / 100: one trailing space past it is one character too many.
    let long_name = format!("{} ", "x".repeat(200));
    let long_category = format!(" {}", "c".repeat(100));
    let body = json!({ "sku": "P-1", "name": long_name, "category": long_category,
        "description": format!("{}\t", "d".repeat(2000)), "price": { "amount": 1, "currency": "EUR" } });
    assert_eq!(create_errors(&app, &body.to_string()).await, ["#/name", "#/description", "#/category"]);
    // Blank is empty; exactly at the limit passes and is stored trimmed.
    assert_eq!(create_errors(&app, &product("P-1", "   ", "kitchen", 1)).await, ["#/name"]);
    let at_limit = format!(" {}", "x".repeat(199));
    let (status, _, created) =
        app.write("POST", "/v1/products", admin, &product("P-1", &at_limit, "kitchen ", 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["name"].as_str().unwrap().len(), &created["category"]), (199, &json!("kitchen")));
}

#[tokio::test]
async fn list_text_parameters_are_bounded() {
    let app = app().await;
    for (name, len) in [("q", 201), ("category", 101)] {
        let (status, headers, body) = app.get(&format!("/v1/products?{name}={}", "a".repeat(len))).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["pointer"], name, "{body}");
        // A trailing (encoded) space counts too: the limit is on what was sent.
        let (status, _, body) = app.get(&format!("/v1/products?{name}={}%20", "a".repeat(len - 1))).await;
        assert_eq!((status, &body["errors"][0]["pointer"]), (StatusCode::BAD_REQUEST, &json!(name)));
        let (status, _, body) = app.get(&format!("/v1/products?{name}={}", "é".repeat(len - 1))).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let (status, _, body) = app.get("/v1/products?min_price=9&max_price=1").await;
    assert_eq!((status, &body["errors"][0]["pointer"]), (StatusCode::BAD_REQUEST, &json!("min_price")));
}

#[test]
fn the_spec_documents_the_input_limits() {
    let doc = serde_json::to_value(shop_catalog::openapi()).unwrap();
    let list = &doc["paths"]["/v1/products"]["get"];
    let param = |name: &str| {
        list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone()
    };
    assert_eq!(param("q")["schema"]["maxLength"], 200);
    assert_eq!(param("category")["schema"]["maxLength"], 100);
    for name in ["min_price", "max_price"] {
        assert_eq!(param(name)["schema"]["maximum"], 1_000_000_000, "{name}");
        assert!(param(name)["description"].as_str().unwrap().contains("400"), "{name}");
    }
    let bad_request = list["responses"]["400"]["description"].as_str().unwrap();
    assert!(bad_request.contains("`min_price` above `max_price`"), "{bad_request}");
    let money = &doc["components"]["schemas"]["Money"];
    assert_eq!(money["properties"]["amount"]["maximum"], 1_000_000_000);
    assert_eq!(money["additionalProperties"], false);
    let input = &doc["components"]["schemas"]["ProductInput"]["properties"];
    assert_eq!((&input["name"]["maxLength"], &input["category"]["maxLength"]), (&json!(200), &json!(100)));
}

#[test]
fn every_operation_documents_the_stack_errors() {
    let doc = serde_json::to_value(shop_catalog::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["500", "503", "504"] {
                assert!(op["responses"][status]["$ref"].is_string(), "{method} {path} {status}");
            }
        }
    }
    let overloaded = &doc["components"]["responses"]["ServiceUnavailable"];
    assert!(overloaded["headers"]["Retry-After"].is_object(), "{overloaded}");
    assert!(overloaded["content"]["application/problem+json"]["schema"]["$ref"].is_string());
}
