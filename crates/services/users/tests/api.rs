//! The users service's HTTP API: in-process (`Router::oneshot`) with the full kit stack, over a real
//! port, and the committed OpenAPI file.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use figment::Figment;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kit::auth::{JwtKeys, Role};
use kit::config::Settings;
use kit::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use serde_json::{Value, json};
use shop_users::config::{DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

fn settings(database_url: &str, extra: &[(&str, Value)]) -> Settings {
    let mut figment = Figment::new()
        .merge(("users.port", 0))
        .merge(("users.database_url", database_url))
        .merge(("jwt_secret", "test-secret-test-secret-test-secret"));
    for (key, value) in extra {
        figment = figment.merge((*key, value.clone()));
    }
    Settings::from_figment(figment)
}

struct TestApp {
    router: Router,
    keys: JwtKeys,
}

async fn app_with(extra: &[(&str, Value)]) -> TestApp {
    let settings = settings(&kit::db::temp_sqlite_url("users-api"), extra);
    let app = shop_users::SERVICE.app(&settings).await.expect("app");
    TestApp { router: app.router, keys: app.keys }
}

async fn app() -> TestApp {
    app_with(&[]).await
}

use kit::testing::Answer;

impl TestApp {
    async fn send(&self, req: Request<Body>) -> Answer {
        kit::testing::send(&self.router, req).await
    }

    /// A JSON request, with a bearer token and a client address when given.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        from: Option<[u8; 4]>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        if let Some(ip) = from {
            req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        }
        self.send(req).await
    }

    async fn register(&self, email: &str, password: &str) -> Answer {
        self.call("POST", "/v1/users", None, Some(json!({ "email": email, "password": password })), None)
            .await
    }

    async fn login_from(&self, email: &str, password: &str, from: Option<[u8; 4]>) -> Answer {
        self.call("POST", "/v1/sessions", None, Some(json!({ "email": email, "password": password })), from)
            .await
    }

    async fn login(&self, email: &str, password: &str) -> Answer {
        self.login_from(email, password, None).await
    }

    async fn token(&self, email: &str, password: &str) -> String {
        let (status, _, body) = self.login(email, password).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn admin_token(&self) -> String {
        self.token(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD).await
    }
}

fn assert_problem(answer: &Answer, expected: StatusCode) {
    let (status, headers, body) = answer;
    kit::testing::assert_problem(*status, headers, body, expected);
}

fn pointers(body: &Value) -> Vec<String> {
    body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn register_login_me_and_update() {
    let app = app().await;
    let (status, headers, user) = app
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({ "email": "  Alice@Example.COM ", "password": PASSWORD, "display_name": " Alice " })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/v1/users/{id}").as_str());
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["display_name"], "Alice");
    assert_eq!(user["role"], "customer");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none(), "{user}");
    assert!(!user.to_string().contains("argon2"), "{user}");

    // Emails are case-insensitive at login too.
    let (status, headers, session) = app.login("ALICE@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 3600);
    let token = session["access_token"].as_str().unwrap();
    // The token is what the kit verifies everywhere, with the account's id and role.
    let claims = app.keys.verify(token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.role), (id.as_str(), Role::Customer));

    let (status, _, me) = app.call("GET", "/v1/users/me", Some(token), None, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me, user);
    let (status, _, me_by_id) = app.call("GET", &format!("/v1/users/{id}"), Some(token), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me_by_id, user);

    let (status, _, renamed) = app
        .call("PATCH", "/v1/users/me", Some(token), Some(json!({ "display_name": "Alice B." })), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["display_name"], "Alice B.");
    assert_eq!(renamed["created_at"], user["created_at"]);
    let (_, _, unchanged) = app.call("PATCH", "/v1/users/me", Some(token), Some(json!({})), None).await;
    assert_eq!(unchanged["display_name"], "Alice B.");
    let (_, _, cleared) =
        app.call("PATCH", "/v1/users/me", Some(token), Some(json!({ "display_name": null })), None).await;
    assert!(cleared.get("display_name").is_none(), "{cleared}");
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let app = app().await;
    app.register("bob@example.com", PASSWORD).await;
    let token = app.token("bob@example.com", PASSWORD).await;
    let new = "an entirely new passphrase";

    let answer =
        app.call("PATCH", "/v1/users/me", Some(&token), Some(json!({ "password": new })), None).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(pointers(&answer.2), ["#/current_password"]);
    let answer = app
        .call(
            "PATCH",
            "/v1/users/me",
            Some(&token),
            Some(json!({ "password": "short", "current_password": PASSWORD })),
            None,
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(pointers(&answer.2), ["#/password"]);
    let wrong = json!({ "password": new, "current_password": "not the current one" });
    let answer = app.call("PATCH", "/v1/users/me", Some(&token), Some(wrong), None).await;
    assert_problem(&answer, StatusCode::FORBIDDEN);

    let change = json!({ "password": new, "current_password": PASSWORD });
    let (status, _, body) = app.call("PATCH", "/v1/users/me", Some(&token), Some(change), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_problem(&app.login("bob@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED);
    app.token("bob@example.com", new).await;
}

#[tokio::test]
async fn registration_errors_are_problem_json() {
    let app = app().await;
    let bad = json!({ "email": "not-an-email", "password": "short", "display_name": "" });
    let answer = app.call("POST", "/v1/users", None, Some(bad), None).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(pointers(&answer.2), ["#/email", "#/password", "#/display_name"]);
    let answer = app.register("long@example.com", &"p".repeat(257)).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(pointers(&answer.2), ["#/password"]);
    let answer = app.call("POST", "/v1/users", None, Some(json!({ "email": "a@b.co" })), None).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = json!({ "email": "a@b.co", "password": PASSWORD, "role": "admin" });
    let answer = app.call("POST", "/v1/users", None, Some(unknown), None).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    let req =
        Request::post("/v1/users").header(header::CONTENT_TYPE, "application/json").body(Body::from("{nope"));
    assert_problem(&app.send(req.unwrap()).await, StatusCode::BAD_REQUEST);
    let req = Request::post("/v1/users")
        .body(Body::from(json!({ "email": "a@b.co", "password": PASSWORD }).to_string()));
    assert_problem(&app.send(req.unwrap()).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Duplicates, whatever the case.
    let (status, _, _) = app.register("carol@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    let answer = app.register("Carol@EXAMPLE.com", PASSWORD).await;
    assert_problem(&answer, StatusCode::CONFLICT);
    assert_eq!(answer.2["detail"], "an account with this email already exists");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = app().await;
    app.register("dave@example.com", PASSWORD).await;
    let wrong_password = app.login("dave@example.com", "not dave's password").await;
    let unknown_email = app.login("nobody@example.com", PASSWORD).await;
    for answer in [&wrong_password, &unknown_email] {
        assert_problem(answer, StatusCode::UNAUTHORIZED);
    }
    let strip = |(_, headers, body): &Answer| {
        let mut body = body.clone();
        body.as_object_mut().unwrap().remove("trace_id");
        (headers[header::WWW_AUTHENTICATE].clone(), headers[header::CONTENT_TYPE].clone(), body)
    };
    assert_eq!(strip(&wrong_password), strip(&unknown_email));
    // Malformed emails are just unknown ones.
    assert_eq!(strip(&app.login("no email at all", PASSWORD).await), strip(&unknown_email));
}

#[tokio::test]
async fn login_is_limited_per_account() {
    let app = app_with(&[("users.login_limits.per_account", json!(3))]).await;
    app.register("erin@example.com", PASSWORD).await;
    // A success clears the account's count.
    for _ in 0..2 {
        assert_problem(&app.login("erin@example.com", "wrong password!").await, StatusCode::UNAUTHORIZED);
    }
    app.token("erin@example.com", PASSWORD).await;
    for _ in 0..3 {
        assert_problem(&app.login("Erin@example.com", "wrong password!").await, StatusCode::UNAUTHORIZED);
    }
    let limited = app.login("erin@example.com", "wrong password!").await;
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.1[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Even the right password waits: the limit is checked before the password.
    assert_problem(&app.login("erin@example.com", PASSWORD).await, StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    app.register("frank@example.com", PASSWORD).await;
    app.token("frank@example.com", PASSWORD).await;
}

#[tokio::test]
async fn login_is_limited_per_address() {
    let app = app_with(&[("users.login_limits.per_address", json!(4))]).await;
    let attacker = Some([192, 0, 2, 7]);
    for i in 0..4 {
        let answer = app.login_from(&format!("victim{i}@example.com"), "guess guess guess", attacker).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED);
    }
    let limited = app.login_from("victim9@example.com", "guess guess guess", attacker).await;
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.1.contains_key(header::RETRY_AFTER));
    // Another address is not affected.
    let other = app.login_from("victim9@example.com", "guess guess guess", Some([192, 0, 2, 8])).await;
    assert_problem(&other, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_stranger_guessing_cannot_lock_the_owner_out() {
    let app = app_with(&[("users.login_limits.per_account", json!(8))]).await;
    app.register("grace@example.com", PASSWORD).await;
    let attacker = Some([203, 0, 113, 9]);
    for _ in 0..5 {
        let answer = app.login_from("grace@example.com", "a guess at it", attacker).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED);
    }
    // The attacker's address is locked out for this account...
    let limited = app.login_from("grace@example.com", PASSWORD, attacker).await;
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS);
    // ...and the owner, elsewhere, still logs in, even the admin.
    let (status, _, body) = app.login_from("grace@example.com", PASSWORD, Some([198, 51, 100, 1])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..5 {
        app.login_from(DEFAULT_ADMIN_EMAIL, "a guess at it", attacker).await;
    }
    let (status, _, body) =
        app.login_from(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD, Some([198, 51, 100, 1])).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A campaign spread over many addresses meets the looser per-account limit (8 here).
    for i in 0..8 {
        app.login_from("grace@example.com", "a guess at it", Some([203, 0, 113, 20 + i])).await;
    }
    let capped = app.login_from("grace@example.com", "a guess at it", Some([203, 0, 113, 99])).await;
    assert_problem(&capped, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn login_refuses_oversized_fields_before_hashing() {
    let app = app().await;
    let huge = "p".repeat(64 * 1024 - 100);
    let (status, _, body) = app.login("anyone@example.com", &huge).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(pointers(&body), ["#/password"]);
    let long_email = format!("{}@example.com", "a".repeat(300));
    let (status, _, body) = app.login(&long_email, PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(pointers(&body), ["#/email"]);
}

#[tokio::test]
async fn registration_is_limited_per_address() {
    let app = app_with(&[("users.login_limits.registrations_per_address", json!(3))]).await;
    let from = Some([192, 0, 2, 50]);
    for i in 0..3 {
        let body = json!({ "email": format!("new{i}@example.com"), "password": PASSWORD });
        let (status, _, body) = app.call("POST", "/v1/users", None, Some(body), from).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let body = json!({ "email": "new9@example.com", "password": PASSWORD });
    let limited = app.call("POST", "/v1/users", None, Some(body.clone()), from).await;
    assert_problem(&limited, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.1.contains_key(header::RETRY_AFTER));
    // Nothing was written for the refused one; another address registers it.
    let (status, _, body) = app.call("POST", "/v1/users", None, Some(body), Some([192, 0, 2, 51])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn admin_list_and_roles() {
    let app = app().await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for name in ["u1", "u2", "u3"] {
        let (_, _, user) = app.register(&format!("{name}@example.com"), PASSWORD).await;
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    let customer = app.token("u1@example.com", PASSWORD).await;

    let (status, _, page) = app.call("GET", "/v1/users", Some(&admin), None, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let emails: Vec<_> = page["items"].as_array().unwrap().iter().map(|u| u["email"].clone()).collect();
    assert_eq!(emails, [DEFAULT_ADMIN_EMAIL, "u1@example.com", "u2@example.com", "u3@example.com"]);
    assert_eq!(page["items"][0]["role"], "admin");
    assert_eq!(page["limit"], 20);
    assert!(page.get("next_offset").is_none());
    let (_, _, page) = app.call("GET", "/v1/users?limit=3", Some(&admin), None, None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_offset"], 3);
    let (_, _, page) = app.call("GET", "/v1/users?limit=3&offset=3", Some(&admin), None, None).await;
    assert_eq!(page["items"][0]["email"], "u3@example.com");
    assert!(page.get("next_offset").is_none());
    for query in ["limit=0", "limit=101", "limit=x", "offset=-1"] {
        let answer = app.call("GET", &format!("/v1/users?{query}"), Some(&admin), None, None).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
    }

    let answer = app.call("GET", "/v1/users", None, None, None).await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED);
    assert!(answer.1[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    assert_problem(
        &app.call("GET", "/v1/users", Some("not.a.token"), None, None).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_problem(&app.call("GET", "/v1/users", Some(&customer), None, None).await, StatusCode::FORBIDDEN);
    assert_problem(&app.call("GET", "/v1/users/me", None, None, None).await, StatusCode::UNAUTHORIZED);

    // One account by id: self or admin.
    let other = format!("/v1/users/{}", ids[1]);
    assert_problem(&app.call("GET", &other, Some(&customer), None, None).await, StatusCode::FORBIDDEN);
    let (status, _, user) = app.call("GET", &other, Some(&admin), None, None).await;
    assert_eq!((status, user["email"].as_str()), (StatusCode::OK, Some("u2@example.com")));
    let missing = format!("/v1/users/{}", uuid::Uuid::new_v4());
    assert_problem(&app.call("GET", &missing, Some(&admin), None, None).await, StatusCode::NOT_FOUND);
    assert_problem(
        &app.call("GET", "/v1/users/not-a-uuid", Some(&admin), None, None).await,
        StatusCode::BAD_REQUEST,
    );

    // A valid token whose account does not exist.
    let ghost =
        app.keys.issue(&uuid::Uuid::new_v4().to_string(), "ghost@example.com", Role::Customer).unwrap();
    assert_problem(
        &app.call("GET", "/v1/users/me", Some(&ghost), None, None).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_problem(
        &app.call("DELETE", "/v1/users/me", Some(&admin), None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

#[tokio::test]
async fn services_read_accounts_with_the_users_read_scope() {
    let (orders, catalog) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let trust = |issuer: &str, pair: &KeyPair, scopes: &[&str]| {
        serde_json::to_value(TrustedKey {
            issuer: issuer.to_owned(),
            public_key: pair.public_key(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
        .unwrap()
    };
    let app = app_with(&[
        ("users.trusted_keys.orders-1", trust("orders", &orders, &["users:read"])),
        ("users.trusted_keys.catalog-1", trust("catalog", &catalog, &[])),
    ])
    .await;
    let (_, _, user) = app.register("dana@example.com", PASSWORD).await;
    let uri = format!("/v1/users/{}", user["id"].as_str().unwrap());
    let orders = ServiceSigner::new("orders", "orders-1", &orders);
    let catalog = ServiceSigner::new("catalog", "catalog-1", &catalog);

    let token = orders.token("users", &["users:read"]).unwrap();
    let (status, _, got) = app.call("GET", &uri, Some(&token), None, None).await;
    assert_eq!((status, &got), (StatusCode::OK, &user));
    let missing = format!("/v1/users/{}", uuid::Uuid::new_v4());
    assert_problem(&app.call("GET", &missing, Some(&token), None, None).await, StatusCode::NOT_FOUND);
    // Without the scope, or with one this service does not allow the key: 403.
    for token in [orders.token("users", &[]).unwrap(), catalog.token("users", &["users:read"]).unwrap()] {
        assert_problem(&app.call("GET", &uri, Some(&token), None, None).await, StatusCode::FORBIDDEN);
    }
    // A token for another service, or from a key not trusted here: 401.
    let for_inventory = orders.token("inventory", &["users:read"]).unwrap();
    let untrusted = ServiceSigner::new("orders", "orders-9", &KeyPair::generate().unwrap())
        .token("users", &["users:read"])
        .unwrap();
    for token in [for_inventory, untrusted] {
        assert_problem(&app.call("GET", &uri, Some(&token), None, None).await, StatusCode::UNAUTHORIZED);
    }
    // A service token reads accounts by id only, never the list or `me`.
    for path in ["/v1/users", "/v1/users/me"] {
        let answer = app.call("GET", path, Some(&token), None, None).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED);
    }
    // Admins and the account's owner still read it.
    let admin = app.admin_token().await;
    assert_eq!(app.call("GET", &uri, Some(&admin), None, None).await.0, StatusCode::OK);
    let own = app.token("dana@example.com", PASSWORD).await;
    assert_eq!(app.call("GET", &uri, Some(&own), None, None).await.0, StatusCode::OK);
}

/// The `(type, subject, data)` of every event in the outbox of the SQLite database at `url`.
async fn events(url: &str) -> Vec<(String, String, Value)> {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT type, subject, data FROM kit_outbox ORDER BY created_at, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().map(|(t, s, d)| (t, s, serde_json::from_str(&d).unwrap())).collect()
}

#[tokio::test]
async fn registration_publishes_user_registered() {
    let url = kit::db::temp_sqlite_url("users-events");
    let app = shop_users::SERVICE.app(&settings(&url, &[])).await.expect("app");
    let app = TestApp { router: app.router, keys: app.keys };
    // The configured admin was created at start: its event is there already.
    let at_start = events(&url).await;
    assert_eq!(at_start.len(), 1, "{at_start:?}");
    assert_eq!(
        (at_start[0].0.as_str(), &at_start[0].2["email"]),
        ("user.registered", &json!(DEFAULT_ADMIN_EMAIL))
    );

    let body = json!({ "email": "Eve@Example.com", "password": PASSWORD, "display_name": "Eve" });
    let (status, _, user) = app.call("POST", "/v1/users", None, Some(body.clone()), None).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let data = json!({ "user_id": id, "email": "eve@example.com", "name": "Eve" });
    assert_eq!(events(&url).await[1..], [("user.registered".to_owned(), id, data)]);
    // A refused registration (the email is taken) publishes nothing.
    assert_problem(&app.call("POST", "/v1/users", None, Some(body), None).await, StatusCode::CONFLICT);
    let (status, _, _) = app.register("frank@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    let all = events(&url).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[2].2["name"], Value::Null, "no display name");
}

#[tokio::test]
async fn admin_bootstrap_is_idempotent_and_configurable() {
    let url = kit::db::temp_sqlite_url("users-bootstrap");
    let config = [
        ("users.admin_email", json!("Root@Shop.Example")),
        ("users.admin_password", json!("a configured admin password")),
    ];
    for _ in 0..2 {
        shop_users::SERVICE.app(&settings(&url, &config)).await.unwrap();
    }
    // A third start with a different admin email changes nothing: an admin exists.
    let app = shop_users::SERVICE.app(&settings(&url, &[])).await.unwrap();
    let app = TestApp { router: app.router, keys: app.keys };
    let admin = app.token("root@shop.example", "a configured admin password").await;
    assert_problem(&app.login(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED);
    let (_, _, page) = app.call("GET", "/v1/users", Some(&admin), None, None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    // Configuration errors stop the start with a clear message.
    let weak = [("users.admin_password", json!("short"))];
    let err =
        shop_users::SERVICE.app(&settings(&kit::db::temp_sqlite_url("users-weak"), &weak)).await.unwrap_err();
    assert!(err.to_string().contains("users.admin_password"), "{err}");
    assert!(!err.to_string().contains("short"), "the password must not be echoed: {err}");
}

#[tokio::test]
async fn the_default_admin_password_is_caught_after_first_start_too() {
    let url = kit::db::temp_sqlite_url("users-default-admin");
    // First start on loopback with the defaults: allowed (with a WARN); the admin gets the README's
    // password.
    shop_users::SERVICE.app(&settings(&url, &[])).await.unwrap();
    // Later the operator sets a password and listens on every address. The setting applies at first
    // start only, so the admin still has the README's password: refused, whatever is configured now.
    let public = [("users.host", json!("0.0.0.0")), ("users.admin_password", json!("a new admin password"))];
    let err = shop_users::SERVICE.app(&settings(&url, &public)).await.unwrap_err().to_string();
    assert!(err.contains("refusing to start") && err.contains(DEFAULT_ADMIN_EMAIL), "{err}");
    assert!(!err.contains("a new admin password"), "{err}");
    // An explicit development profile starts anyway.
    let mut development = public.to_vec();
    development.push(("profile", json!("development")));
    shop_users::SERVICE.app(&settings(&url, &development)).await.unwrap();

    // Once the admin changes the password, the public start goes ahead.
    let app = shop_users::SERVICE.app(&settings(&url, &[])).await.unwrap();
    let app = TestApp { router: app.router, keys: app.keys };
    let token = app.admin_token().await;
    let change =
        json!({ "password": "the admin's own passphrase", "current_password": DEFAULT_ADMIN_PASSWORD });
    let (status, _, body) = app.call("PATCH", "/v1/users/me", Some(&token), Some(change), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    shop_users::SERVICE.app(&settings(&url, &public)).await.unwrap();

    // A fresh database on a public address with the default password is refused at first start.
    let fresh = [("users.host", json!("0.0.0.0"))];
    let err = shop_users::SERVICE
        .app(&settings(&kit::db::temp_sqlite_url("users-default-fresh"), &fresh))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to start"), "{err}");
}

#[tokio::test]
async fn operational_routes() {
    let app = app().await;
    for path in ["/livez", "/readyz"] {
        let (status, headers, body) = app.call("GET", path, None, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
        assert_eq!(body["status"], "pass");
    }
    let (status, _, doc) = app.call("GET", "/openapi.json", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/v1/sessions"]["post"]["responses"]["429"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let res = app.router.clone().oneshot(Request::get("/docs/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// A users service on a real port, and a plain HTTP client for it.
struct RunningShop {
    base: String,
    health: kit::health::Health,
    trigger: kit::server::ShutdownTrigger,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, String>,
}

impl RunningShop {
    async fn start(extra: &[(&str, Value)]) -> Self {
        let settings = settings(&kit::db::temp_sqlite_url("users-port"), extra);
        let app = shop_users::SERVICE.app(&settings).await.unwrap();
        let health = app.health.clone();
        let server = app.bind().await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (trigger, shutdown) = kit::server::Shutdown::manual();
        let server = tokio::spawn(server.run(shutdown));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { base: format!("http://{addr}"), health, trigger, server, client }
    }

    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(body.map(|b| b.to_string()).unwrap_or_default()).unwrap();
        let res = self.client.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
    }

    /// A login with `X-Forwarded-For: forwarded_for`; the status only.
    async fn login_forwarded(&self, forwarded_for: &str) -> StatusCode {
        let req = Request::builder()
            .method("POST")
            .uri(format!("{}/v1/sessions", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", forwarded_for)
            .body(credentials("nobody@example.com", "a wrong password").to_string())
            .unwrap();
        self.client.request(req).await.unwrap().status()
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.server.await.unwrap().unwrap();
    }
}

fn credentials(email: &str, password: &str) -> Value {
    json!({ "email": email, "password": password })
}

#[tokio::test]
async fn real_port_session_per_address_limit_and_shutdown() {
    let shop = RunningShop::start(&[("users.login_limits.per_address", json!(3))]).await;

    let (status, _, user) =
        shop.send("POST", "/v1/users", None, Some(credentials("gina@example.com", PASSWORD))).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, _, session) =
        shop.send("POST", "/v1/sessions", None, Some(credentials("gina@example.com", PASSWORD))).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, _, me) = shop.send("GET", "/v1/users/me", session["access_token"].as_str(), None).await;
    assert_eq!((status, &me), (StatusCode::OK, &user));
    let (status, _, session) = shop
        .send("POST", "/v1/sessions", None, Some(credentials(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD)))
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, _, page) = shop.send("GET", "/v1/users", session["access_token"].as_str(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    // Two logins so far from 127.0.0.1 with a limit of 3 per minute: the fourth is refused.
    let (status, _, _) = shop
        .send("POST", "/v1/sessions", None, Some(credentials("gina@example.com", "wrong password")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, problem) =
        shop.send("POST", "/v1/sessions", None, Some(credentials("gina@example.com", PASSWORD))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert!(headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);

    shop.stop().await;
}

/// Behind a trusted proxy (here the test itself, on 127.0.0.1) each forwarded client has its own
/// per-address limit; from an untrusted peer the header is ignored, so forging it gains nothing.
#[tokio::test]
async fn forwarded_clients_are_limited_apart_only_behind_a_trusted_proxy() {
    let limits = ("users.login_limits.per_address", json!(2));
    let shop = RunningShop::start(&[limits.clone(), ("users.trusted_proxies", json!(["127.0.0.0/8"]))]).await;
    for _ in 0..2 {
        assert_eq!(shop.login_forwarded("198.51.100.1, 203.0.113.1").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(shop.login_forwarded("203.0.113.1").await, StatusCode::TOO_MANY_REQUESTS);
    // The forged left-most entry is not what counts: the proxy appended 203.0.113.1.
    assert_eq!(shop.login_forwarded("203.0.113.2, 203.0.113.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(shop.login_forwarded("203.0.113.2").await, StatusCode::UNAUTHORIZED);
    // An IPv6 client is one key per /64.
    for _ in 0..2 {
        assert_eq!(shop.login_forwarded("2001:db8:7:7::1").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(shop.login_forwarded("2001:db8:7:7::beef").await, StatusCode::TOO_MANY_REQUESTS);
    shop.stop().await;

    let untrusted = RunningShop::start(&[limits]).await;
    for _ in 0..2 {
        assert_eq!(untrusted.login_forwarded("203.0.113.1").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(untrusted.login_forwarded("203.0.113.99").await, StatusCode::TOO_MANY_REQUESTS);
    untrusted.stop().await;
}

/// The outage this reproduces: ~55 bad logins from one address used to open the server stack's
/// breaker (it counted the limiter's own 429s), and every route, probes included, answered 503.
#[tokio::test]
async fn a_flood_of_bad_logins_from_one_client_never_switches_the_service_off() {
    let shop = RunningShop::start(&[]).await;
    let (status, _, _) =
        shop.send("POST", "/v1/users", None, Some(credentials("hal@example.com", PASSWORD))).await;
    assert_eq!(status, StatusCode::CREATED);
    // An admin session from before the flood (logins from this address will be limited).
    let (status, _, session) = shop
        .send("POST", "/v1/sessions", None, Some(credentials(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD)))
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");

    let mut refused = 0;
    for _ in 0..120 {
        let (status, _, body) = shop
            .send("POST", "/v1/sessions", None, Some(credentials("hal@example.com", "wrong password")))
            .await;
        assert!(
            matches!(status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS),
            "{status} {body}"
        );
        refused += usize::from(status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 100, "the login limiter answered 429 only {refused} times");

    for path in ["/livez", "/readyz"] {
        let (status, headers, body) = shop.send("GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
    }
    let (status, _, _) = shop.send("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    // Another customer, from the same address, can still register and use the API.
    let (status, _, user) =
        shop.send("POST", "/v1/users", None, Some(credentials("ida@example.com", PASSWORD))).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, _, page) = shop.send("GET", "/v1/users", session["access_token"].as_str(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");

    // A draining service says so with its health document, not a rewritten problem.
    shop.health.start_draining();
    let (status, headers, body) = shop.send("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
    assert_eq!(body["status"], "fail", "{body}");
    assert!(body["checks"].is_object(), "{body}");
    let (status, _, _) = shop.send("GET", "/livez", None, None).await;
    assert_eq!(status, StatusCode::OK);

    shop.stop().await;
}

#[test]
fn committed_openapi_matches_the_code() {
    let generated = kit::service::openapi_json(&shop_users::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/users.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/users.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}
