//! Passwords and bearer tokens never reach the logs, at any level, through a whole session; the
//! default admin password is warned about without being printed. (Its own test binary: it installs
//! a log subscriber for its thread.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kit::config::Settings;
use serde_json::{Value, json};
use shop_users::config::{DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let settings = Settings::for_test("users", &kit::db::temp_sqlite_url("users-logs"));
    let app = shop_users::SERVICE.app(&settings).await.unwrap();
    let password = "a-very-secret-passphrase-42";
    let send = |method: &str, uri: &str, token: Option<&str>, body: Value| {
        let mut req =
            Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let router = app.router.clone();
        async move {
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
        }
    };

    let (status, _) =
        send("POST", "/v1/users", None, json!({ "email": "h@example.com", "password": password })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(
        "POST",
        "/v1/sessions",
        None,
        json!({ "email": "h@example.com", "password": "wrong-guess-guess" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, session) =
        send("POST", "/v1/sessions", None, json!({ "email": "h@example.com", "password": password })).await;
    assert_eq!(status, StatusCode::OK);
    let token = session["access_token"].as_str().unwrap().to_owned();
    let new = "the-next-secret-passphrase";
    let change = json!({ "password": new, "current_password": password });
    let (status, _) = send("PATCH", "/v1/users/me", Some(&token), change).await;
    assert_eq!(status, StatusCode::OK);
    // The password change revoked the token it was made with.
    let (status, _) = send("GET", "/v1/users", Some(&token), Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("user registered"), "the capture works: {logs}");
    // One access-log event per answer, by route template, the revoked token's 401 included.
    assert!(logs.contains(r#"request method="GET" route="/v1/users" status=401"#), "{logs}");
    assert!(logs.contains(r#"request method="POST" route="/v1/sessions" status=200"#), "{logs}");
    assert!(logs.contains("default password") && logs.contains(DEFAULT_ADMIN_EMAIL), "{logs}");
    for secret in [password, new, "wrong-guess-guess", DEFAULT_ADMIN_PASSWORD, token.as_str(), "$argon2id$"] {
        assert!(!logs.contains(secret), "`{secret}` was logged:\n{logs}");
    }
    assert!(!logs.to_lowercase().contains("authorization"), "{logs}");
}
