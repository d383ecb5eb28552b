//! The presets over real ports: an axum server behind `ServerStack`, called through a hyper client
//! behind `ClientStack`.
#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "timeout",
    feature = "metrics",
    feature = "trace"
))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use palisade::circuit_breaker::error::CircuitOpen;
use palisade::circuit_breaker::{CircuitBreakerLayer, State as BreakerState};
use palisade::retry::{RetryBody, RetryLayer};
use palisade::stack::{ClientStack, ClientStackService, ServerStack};
use palisade::trace::TraceContext;
use palisade::{BoxError, Deadline};
use tower::{Service, ServiceExt};

type HttpClient = Client<HttpConnector, RetryBody<Full<Bytes>>>;

/// One Prometheus recorder for the whole test binary (metrics handles bind to the global recorder).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().expect("no other recorder"))
}

#[derive(Clone, Default)]
struct Hits {
    fail: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    slow_finished: Arc<AtomicUsize>,
}

/// Answers with what the handler saw: the trace id of its context and the remaining budget.
async fn echo(ctx: TraceContext, req: Request) -> String {
    let budget = Deadline::of(&req).map_or(-1, |d| i64::try_from(d.remaining().as_millis()).unwrap());
    let incoming =
        req.headers().get("traceparent").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    format!("{} {} {}", ctx.trace_id(), budget, incoming)
}

async fn fail(State(hits): State<Hits>) -> StatusCode {
    hits.fail.fetch_add(1, Ordering::SeqCst);
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn slow(State(hits): State<Hits>) -> &'static str {
    hits.slow_started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    hits.slow_finished.fetch_add(1, Ordering::SeqCst);
    "done"
}

async fn serve(stack: ServerStack) -> (SocketAddr, Hits) {
    prometheus();
    let hits = Hits::default();
    let app = Router::new()
        .route("/v1/echo/{id}", get(echo))
        .route("/v1/fail", get(fail))
        .route("/v1/slow", get(slow))
        .with_state(hits.clone())
        .layer(stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

fn client(stack: &ClientStack) -> ClientStackService<HttpClient> {
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    tower::Layer::layer(stack, http)
}

fn get_req(addr: SocketAddr, path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}{path}")).body(Full::default()).unwrap()
}

async fn call(
    svc: &mut ClientStackService<HttpClient>,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::response::Parts, String), BoxError> {
    let res = svc.ready().await?.call(req).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts, String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test]
async fn trace_and_deadline_cross_the_wire_and_metrics_use_the_route_template() {
    let (addr, _) = serve(ServerStack::builder().name("e2e-echo").build().unwrap()).await;
    let stack = ClientStack::builder("echo-peer").total_budget(Duration::from_secs(5)).build().unwrap();
    let mut svc = client(&stack);

    for id in [1, 2, 3] {
        let (parts, body) = call(&mut svc, get_req(addr, &format!("/v1/echo/{id}"))).await.unwrap();
        assert_eq!(parts.status, 200);
        let mut words = body.split(' ');
        let (trace_id, budget, incoming) =
            (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
        // The server continued the client's trace, and echoed its own span.
        assert_eq!(&incoming[3..35], trace_id, "server trace id is the client's");
        let echoed = parts.headers["traceparent"].to_str().unwrap();
        assert_eq!(&echoed[3..35], trace_id);
        assert_ne!(&echoed[36..52], &incoming[36..52], "the server span is a child of the client span");
        // The server saw the client's remaining budget as its deadline.
        let budget: i64 = budget.parse().unwrap();
        assert!((1..=5000).contains(&budget), "budget {budget}");
    }

    let text = prometheus().render();
    let series = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/echo/{id}",http_response_status_code="200"} 3"#;
    assert!(text.contains(series), "missing {series} in\n{text}");
    assert!(!text.contains("/v1/echo/1"), "a raw path became a label");
    let client_series = r#"http_client_request_duration_seconds_count{http_request_method="GET",server_address="echo-peer",http_response_status_code="200"} 3"#;
    assert!(text.contains(client_series), "missing {client_series} in\n{text}");
}

#[tokio::test]
async fn the_server_stops_working_when_the_callers_deadline_passes() {
    let (addr, hits) = serve(ServerStack::builder().name("e2e-slow").build().unwrap()).await;
    let stack = ClientStack::builder("slow-peer")
        .total_budget(Duration::from_millis(100))
        .retry(RetryLayer::builder().name("slow-peer").max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let mut svc = client(&stack);

    // Both sides enforce the same budget, so either may give up first: the client with its typed error,
    // or the server (told the budget, rounded down) with a 504 problem that reaches the client first.
    match call(&mut svc, get_req(addr, "/v1/slow")).await {
        Err(err) => assert!(
            err.is::<palisade::timeout::error::DeadlineExceeded>(),
            "client side: typed deadline error, got {err}"
        ),
        Ok((parts, body)) => {
            assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT, "{body}");
            assert!(body.contains("deadline-exceeded"), "{body}");
        }
    }
    // The server got the same 100 ms budget, so it dropped the handler instead of finishing it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hits.slow_started.load(Ordering::SeqCst), 1);
    assert_eq!(hits.slow_finished.load(Ordering::SeqCst), 0, "the handler ran past the deadline");

    // Called directly with an expired budget, the server answers 504 problem+json at once.
    let mut req = get_req(addr, "/v1/slow");
    req.headers_mut().insert("x-request-timeout-ms", http::HeaderValue::from_static("0"));
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(hits.slow_started.load(Ordering::SeqCst), 1, "an expired request reached the handler");
}

#[tokio::test]
async fn a_failing_downstream_opens_the_client_breaker_and_calls_stop_reaching_it() {
    let (addr, hits) = serve(ServerStack::builder().name("e2e-fail").build().unwrap()).await;
    let breaker = CircuitBreakerLayer::builder()
        .name("fail-peer")
        .count_window(10)
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .open_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let stack = ClientStack::builder("fail-peer").breaker(breaker).build().unwrap();
    let handle = stack.breaker();
    let mut svc = client(&stack);

    for _ in 0..5 {
        let (parts, _) = call(&mut svc, get_req(addr, "/v1/fail")).await.unwrap();
        assert_eq!(parts.status, 500, "500 is returned as it is (not retried by default)");
    }
    assert_eq!(handle.state(), BreakerState::Open);
    for _ in 0..5 {
        let err = call(&mut svc, get_req(addr, "/v1/fail")).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "got {err}");
    }
    assert_eq!(hits.fail.load(Ordering::SeqCst), 5, "an open breaker let calls through");
}

#[tokio::test]
async fn a_server_at_its_in_flight_limit_answers_503_problem_with_a_retry_after_and_the_trace_id() {
    let stack = ServerStack::builder().name("e2e-shed").max_in_flight(1).build().unwrap();
    let shed = stack.load_shed().clone();
    let (addr, hits) = serve(stack).await;
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let slow = tokio::spawn(http.request(get_req(addr, "/v1/slow")));
    while hits.slow_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(shed.in_flight(), 1);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = get_req(addr, "/v1/echo/1");
    req.headers_mut().insert(
        "traceparent",
        http::HeaderValue::from_str(&format!("00-{trace_id}-00f067aa0ba902b7-01")).unwrap(),
    );
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}: base 1 s, jittered below 2 s");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&body).unwrap();
    assert!(body.contains(&format!(r#""trace_id":"{trace_id}""#)), "{body}");
    assert!(body.contains(r#""status":503"#), "{body}");
    assert!(body.contains("overloaded"), "{body}");

    // The slow request was not disturbed, and once it is done the place is free again.
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(shed.in_flight(), 0);
    let res = http.request(get_req(addr, "/v1/echo/1")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_server_answering_its_own_errors_keeps_serving_everyone() {
    let (addr, hits) = serve(ServerStack::builder().name("e2e-own-errors").build().unwrap()).await;
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // 200 failures in a row (any error-rate breaker with the old defaults would have opened after 20).
    for _ in 0..200 {
        assert_eq!(http.request(get_req(addr, "/v1/fail")).await.unwrap().status(), 500);
    }
    assert_eq!(hits.fail.load(Ordering::SeqCst), 200, "every request reached the handler");
    let res = http.request(get_req(addr, "/v1/echo/1")).await.unwrap();
    assert_eq!(res.status(), 200, "a healthy route must keep working");
}

/// The optional per-route breaker sits outside the timeout, so a handler that hangs is counted; it
/// is keyed by route template, so other routes keep working; and a 429 never counts.
#[tokio::test(start_paused = true)]
async fn the_optional_route_breaker_counts_a_hanging_handler_and_only_its_route() {
    use axum::body::Body;
    use tower::ServiceExt as _;
    let breaker = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(5)
        .failure_rate_threshold(0.5)
        .open_interval(Duration::from_secs(60));
    let stack = ServerStack::builder()
        .name("e2e-route-breaker")
        .timeout(Duration::from_secs(1))
        .route_breaker(breaker)
        .build()
        .unwrap();
    let breakers = stack.route_breakers().unwrap().clone();
    let app = Router::new()
        .route("/v1/hang", get(|| async { std::future::pending::<&'static str>().await }))
        .route("/v1/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .route("/v1/ok", get(|| async { "ok" }))
        .layer(stack);
    let status = |path: &'static str| {
        let app = app.clone();
        async move { app.oneshot(http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap().status() }
    };
    for _ in 0..5 {
        assert_eq!(status("/v1/hang").await, StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(breakers.handle("/v1/hang").state(), BreakerState::Open, "timeouts were not counted");
    assert_eq!(status("/v1/hang").await, StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..50 {
        assert_eq!(status("/v1/limited").await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(breakers.handle("/v1/limited").state(), BreakerState::Closed, "429s were counted");
    assert_eq!(status("/v1/ok").await, StatusCode::OK);
}

/// The client preset takes a breaker with any classifier (here: a downstream's 404 means it lost data).
#[tokio::test(start_paused = true)]
async fn the_client_preset_takes_a_custom_classifier() {
    use palisade::Outcome;
    use tower::ServiceExt as _;
    let strict = |result: Result<&http::Response<()>, &BoxError>| match result {
        Ok(res) if res.status() == StatusCode::NOT_FOUND || res.status().is_server_error() => {
            Outcome::Failure
        }
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let breaker = CircuitBreakerLayer::builder()
        .name("strict")
        .minimum_calls(5)
        .count_window(10)
        .classifier(strict)
        .build()
        .unwrap();
    let stack = ClientStack::builder("strict").breaker(breaker).build().unwrap();
    let handle = stack.breaker();
    let svc = tower::Layer::layer(
        &stack,
        tower::service_fn(|_req: http::Request<RetryBody<Full<Bytes>>>| async {
            Ok::<_, BoxError>(http::Response::builder().status(404).body(()).unwrap())
        }),
    );
    for _ in 0..5 {
        let res = svc.clone().oneshot(http::Request::new(Full::default())).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(handle.state(), BreakerState::Open);
}
