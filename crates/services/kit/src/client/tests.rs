//! [`Downstream`] against real servers on loopback ports: retries, the breaker, deadlines, slow and
//! oversized bodies, problem documents, and the mapping to this service's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use palisade::Deadline;
use palisade::deadline::BUDGET_HEADER;

use super::{ClientError, Downstream};
use crate::config::DownstreamConfig;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn config(url: String) -> DownstreamConfig {
    DownstreamConfig { url, retry_base_delay_ms: 1, retry_max_delay_ms: 2, ..DownstreamConfig::default() }
}

#[tokio::test]
async fn calls_a_local_server_through_the_stack() {
    let app = Router::new()
        .route("/v1/ping", get(|| async { axum::Json(serde_json::json!({ "pong": true })) }))
        .route("/v1/missing", get(|| async { StatusCode::NOT_FOUND }));
    let client = Downstream::new("ping", &config(serve(app).await)).unwrap();
    let body: serde_json::Value = client.get_json("/v1/ping").await.unwrap();
    assert_eq!(body["pong"], true);
    match client.get_json::<serde_json::Value>("/v1/missing").await {
        Err(err @ ClientError::Status(..)) => {
            assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
            assert_eq!(client.api_error(&err).status(), StatusCode::BAD_GATEWAY);
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_downstream_is_retried_until_it_answers() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/v1/flaky",
        get(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 { StatusCode::SERVICE_UNAVAILABLE.into_response() } else { "\"ok\"".into_response() }
            }
        }),
    );
    let client = Downstream::new("flaky", &config(serve(app).await)).unwrap();
    let answer: String = client.get_json("/v1/flaky").await.unwrap();
    assert_eq!(answer, "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures retried, the third answered");
}

#[tokio::test]
async fn an_open_breaker_fails_fast_and_becomes_503_with_retry_after() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/v1/broken",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::INTERNAL_SERVER_ERROR }
        }),
    );
    let config = DownstreamConfig {
        retry_max_attempts: 1,
        breaker_window_calls: 4,
        breaker_minimum_calls: 4,
        breaker_open_ms: 30_000,
        ..config(serve(app).await)
    };
    let client = Downstream::new("broken", &config).unwrap();
    for _ in 0..4 {
        let err = client.get_json::<()>("/v1/broken").await.unwrap_err();
        assert_eq!(client.api_error(&err).status(), StatusCode::BAD_GATEWAY, "{err}");
    }
    let err = client.get_json::<()>("/v1/broken").await.unwrap_err();
    assert!(err.circuit_open().is_some(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "the open breaker did not call");
    let answer = client.api_error(&err);
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.problem().type_uri.ends_with("/downstream-unavailable"));
    let response = axum::response::IntoResponse::into_response(answer);
    let retry_after: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn a_body_that_trickles_past_the_attempt_timeout_is_a_timeout() {
    let app = Router::new().route(
        "/v1/slow-body",
        get(|| async {
            let chunks = futures_util::stream::unfold(0, |n| async move {
                if n == 0 {
                    Some((Ok::<_, std::io::Error>(Bytes::from_static(b"[")), 1))
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (n < 2).then(|| (Ok(Bytes::from_static(b"]")), n + 1))
                }
            });
            ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(chunks))
        }),
    );
    let config =
        DownstreamConfig { retry_max_attempts: 1, attempt_timeout_ms: 200, ..config(serve(app).await) };
    let client = Downstream::new("slow-body", &config).unwrap();
    let started = std::time::Instant::now();
    let err = client.get_json::<Vec<u8>>("/v1/slow-body").await.unwrap_err();
    assert!(err.timed_out(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4), "cut off by the attempt timeout, not the body's end");
    assert_eq!(client.api_error(&err).status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_call_and_travels_with_it() {
    let app = Router::new()
        .route(
            "/v1/budget",
            get(|headers: HeaderMap| async move {
                headers.get(BUDGET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
            }),
        )
        .route(
            "/v1/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let client = Downstream::new("deadline", &config(serve(app).await)).unwrap();
    let reply = Deadline::scope(
        Some(Deadline::after(Duration::from_millis(800))),
        client.call(Method::GET, "/v1/budget", None, &[], None),
    )
    .await
    .unwrap();
    let sent: u64 = std::str::from_utf8(&reply.body).unwrap().parse().unwrap();
    assert!(sent <= 800 && sent > 0, "the downstream got the remaining budget, {sent} ms");
    let err = Deadline::scope(
        Some(Deadline::after(Duration::from_millis(300))),
        client.get_json::<String>("/v1/hang"),
    )
    .await
    .unwrap_err();
    assert!(err.timed_out(), "{err}");
    assert_eq!(client.api_error(&err).status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn a_body_over_the_limit_fails_the_call() {
    let app = Router::new().route("/v1/big", get(|| async { vec![b'x'; 64 * 1024] }));
    let config =
        DownstreamConfig { max_response_bytes: 1024, retry_max_attempts: 1, ..config(serve(app).await) };
    let client = Downstream::new("big", &config).unwrap();
    let err = client.call(Method::GET, "/v1/big", None, &[], None).await.unwrap_err();
    assert!(matches!(err.last(), ClientError::Call(_)), "{err}");
    assert!(err.after_unanswered(), "its answer was never read whole: {err}");
    assert_eq!(client.api_error(&err).status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn problem_documents_are_decoded() {
    let app = Router::new().route(
        "/v1/reserve",
        get(|| async {
            (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "application/problem+json")],
                r##"{"type":"https://palisade.dev/problems/insufficient-stock","title":"Insufficient stock",
                    "status":409,"errors":[{"pointer":"#/lines/0","detail":"only 2 left"}]}"##,
            )
        }),
    );
    let client = Downstream::new("inventory", &config(serve(app).await)).unwrap();
    let err = client.get_json::<()>("/v1/reserve").await.unwrap_err();
    let problem = err.problem().expect("a problem document");
    assert!(problem.is("insufficient-stock"));
    assert!(!problem.is("stock"));
    assert_eq!(problem.errors[0].pointer, "#/lines/0");
    assert_eq!(problem.errors[0].detail, "only 2 left");
}

/// The first attempt is sent and times out (the downstream may act on it); the retry gets a 503.
/// The caller must not read the 503 as "nothing happened": the error says an attempt went
/// unanswered. A 503 with no such attempt before it says nothing of the kind.
#[tokio::test]
async fn a_failure_after_an_unanswered_attempt_says_so() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/v1/charge",
        get(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let url = serve(app).await;
    let config = DownstreamConfig { attempt_timeout_ms: 200, retry_max_attempts: 2, ..config(url) };
    let client = Downstream::new("charge", &config).unwrap();
    let err = client.get_json::<serde_json::Value>("/v1/charge").await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "timed out, then retried");
    assert!(err.after_unanswered(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "the last attempt's answer: {err}");
    assert_eq!(client.api_error(&err).status(), StatusCode::BAD_GATEWAY);

    let err = client.get_json::<serde_json::Value>("/v1/charge").await.unwrap_err();
    assert!(!err.after_unanswered(), "every attempt answered 503: {err}");
}

/// A refused connection was never sent: retries of it leave no unanswered attempt behind.
#[tokio::test]
async fn a_refused_connection_is_not_an_unanswered_attempt() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Downstream::new("gone", &config(format!("http://127.0.0.1:{port}"))).unwrap();
    let err = client.get_json::<serde_json::Value>("/v1/anything").await.unwrap_err();
    assert!(!err.after_unanswered(), "{err}");
}
