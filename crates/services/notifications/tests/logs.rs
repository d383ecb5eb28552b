//! Each received event is logged once at INFO with the event's own `trace_id` (from its
//! `traceparent`), so an end-to-end test can follow a producer's request into this service. (Its
//! own test binary: it installs a log subscriber for its thread.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use figment::Figment;
use http::{Request, StatusCode, header};
use kit::config::Settings;
use kit::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use serde_json::json;

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
async fn each_delivery_logs_one_info_line_with_the_events_trace_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pair = KeyPair::generate().unwrap();
    let trusted = TrustedKey {
        issuer: "payments".to_owned(),
        public_key: pair.public_key(),
        scopes: vec!["events:deliver".to_owned()],
    };
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("notifications.port", 0))
            .merge(("notifications.database_url", kit::db::temp_sqlite_url("notifications-logs")))
            .merge(("jwt_secret", "test-secret-test-secret-test-secret"))
            .merge(("notifications.trusted_keys.payments-1", trusted)),
    );
    let app = shop_notifications::SERVICE.app(&settings).await.unwrap();
    let token = ServiceSigner::new("payments", "payments-1", &pair)
        .token("notifications", &["events:deliver"])
        .unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let event = json!({
        "specversion": "1.0",
        "id": "e-traced",
        "source": "/shop/payments",
        "type": "payment.captured",
        "data": { "user_id": "u-1", "order_id": "o-1", "amount": { "amount": 100, "currency": "EUR" } },
        "traceparent": format!("00-{trace_id}-b7ad6b7169203331-01"),
    });
    for _ in 0..2 {
        // No `traceparent` header: the request's own trace is a new one, the event's is logged.
        let req = Request::post("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/cloudevents+json")
            .body(Body::from(event.to_string()))
            .unwrap();
        let (status, _, _) = kit::testing::send(&app.router, req).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let received: Vec<&str> = logs.lines().filter(|line| line.contains("event received")).collect();
    assert_eq!(received.len(), 2, "one line per delivery:\n{logs}");
    for line in &received {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("trace_id={trace_id}")), "{line}");
        assert!(line.contains("event_id=e-traced") && line.contains("source=/shop/payments"), "{line}");
    }
    assert!(received[0].contains("first=true") && received[1].contains("first=false"), "{received:?}");
}
