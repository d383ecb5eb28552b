//! Timeout and deadline propagation, under paused tokio time.
#![cfg(feature = "timeout")]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use metrics_util::debugging::DebuggingRecorder;
use palisade::metric_names::{LABEL_KIND, LABEL_NAME, TIMEOUTS};
use palisade::problem::ProblemLayer;
use palisade::timeout::error::{DeadlineExceeded, Elapsed};
use palisade::timeout::{ClientDeadlineLayer, ServerDeadlineLayer, TimeoutLayer};
use palisade::{BoxError, Deadline};
use support::{poll_once, take_counters};
use tokio::time::{Instant, advance};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

type Req = Request<()>;
type Res = Response<()>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request_with_deadline(budget: Duration) -> Req {
    let mut req = Request::new(());
    Deadline::after(budget).apply(&mut req);
    req
}

fn ready_err<T: std::fmt::Debug>(poll: Poll<Result<T, BoxError>>) -> BoxError {
    match poll {
        Poll::Ready(Err(err)) => err,
        other => panic!("expected an error, got {other:?}"),
    }
}

// ===== TimeoutLayer =====

#[tokio::test(start_paused = true)]
async fn slow_call_fails_with_elapsed_at_the_timeout() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::new(()));
    tokio::pin!(fut);
    let (_req, _respond) = handle.next_request().await.expect("the call reached the inner service");

    assert!(poll_once(fut.as_mut()).await.is_pending());
    advance(ms(99)).await;
    assert!(poll_once(fut.as_mut()).await.is_pending());
    advance(ms(1)).await;
    let err = ready_err(poll_once(fut.as_mut()).await);
    assert!(err.is::<Elapsed>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn fast_call_passes_through() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::new(()));
    tokio::pin!(fut);
    let (_req, respond) = handle.next_request().await.unwrap();
    advance(ms(99)).await;
    respond.send_response(Response::builder().status(201).body(()).unwrap());
    match poll_once(fut.as_mut()).await {
        Poll::Ready(Ok(res)) => assert_eq!(res.status(), StatusCode::CREATED),
        other => panic!("expected the response, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::new(()));
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_error("connection refused");
    let err = fut.await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_clamps_the_timeout_and_fails_with_deadline_exceeded() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(1000)).unwrap());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(request_with_deadline(ms(100)));
    tokio::pin!(fut);
    let (_req, _respond) = handle.next_request().await.unwrap();

    advance(ms(99)).await;
    assert!(poll_once(fut.as_mut()).await.is_pending());
    advance(ms(1)).await;
    let err = ready_err(poll_once(fut.as_mut()).await);
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_later_deadline_leaves_the_timeout_in_charge() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(request_with_deadline(ms(5000)));
    tokio::pin!(fut);
    let (_req, _respond) = handle.next_request().await.unwrap();

    advance(ms(100)).await;
    let err = ready_err(poll_once(fut.as_mut()).await);
    assert!(err.is::<Elapsed>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_is_never_sent() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(TimeoutLayer::new(ms(1000)).unwrap());
    let req = request_with_deadline(ms(10));
    advance(ms(10)).await;

    assert!(svc.poll_ready().is_ready());
    let err = svc.call(req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert!(handle.poll_request().is_pending(), "the inner service must not see the request");
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_counted_by_name_and_kind() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        TimeoutLayer::builder(ms(100)).name("payments").build().unwrap()
    });
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    let counts = || {
        take_counters(
            &snapshotter,
            TIMEOUTS,
            &[
                &[(LABEL_NAME, "payments"), (LABEL_KIND, "timeout")],
                &[(LABEL_NAME, "payments"), (LABEL_KIND, "deadline")],
            ],
        )
    };

    // One plain timeout.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::new(()));
    let (_req, _respond) = handle.next_request().await.unwrap();
    assert!(fut.await.unwrap_err().is::<Elapsed>());
    assert_eq!(counts(), [1, 0]);

    // One deadline hit while running, one deadline already passed on arrival.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(request_with_deadline(ms(50)));
    let (_req, _respond2) = handle.next_request().await.unwrap();
    assert!(fut.await.unwrap_err().is::<DeadlineExceeded>());
    let expired = request_with_deadline(ms(1));
    advance(ms(1)).await;
    assert!(svc.poll_ready().is_ready());
    assert!(svc.call(expired).await.unwrap_err().is::<DeadlineExceeded>());
    assert_eq!(counts(), [0, 2], "counts since the last snapshot");
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_configuration() {
    let layer = TimeoutLayer::new(ms(100)).unwrap();
    let svc = layer.layer(service_fn(|_req: Req| async {
        tokio::time::sleep(ms(200)).await;
        Ok::<_, Infallible>(Res::new(()))
    }));
    let clone = svc.clone();
    assert_eq!(layer.timeout(), ms(100));
    assert!(clone.oneshot(Request::new(())).await.unwrap_err().is::<Elapsed>());
    assert!(svc.into_inner().oneshot(Request::new(())).await.is_ok(), "into_inner drops the timeout");
}

// ===== Builders =====

#[test]
fn impossible_settings_are_rejected_at_build_time() {
    assert_eq!(TimeoutLayer::new(Duration::ZERO).unwrap_err().setting(), "timeout");
    assert_eq!(ServerDeadlineLayer::builder().header("bad header").build().unwrap_err().setting(), "header");
    assert_eq!(ServerDeadlineLayer::builder().header("").build().unwrap_err().setting(), "header");
    assert_eq!(ClientDeadlineLayer::builder().header("x:y").build().unwrap_err().setting(), "header");
    assert_eq!(
        ServerDeadlineLayer::builder().max_budget(Duration::ZERO).build().unwrap_err().setting(),
        "max_budget"
    );
    assert_eq!(
        ServerDeadlineLayer::builder().default_budget(Duration::ZERO).build().unwrap_err().setting(),
        "default_budget"
    );
    assert_eq!(
        ClientDeadlineLayer::builder().default_budget(Duration::ZERO).build().unwrap_err().setting(),
        "default_budget"
    );
    assert!(ServerDeadlineLayer::builder().header("X-Budget").build().is_ok());
}

// ===== ServerDeadlineLayer =====

/// A handler that answers with the deadline it saw, as the remaining budget.
fn echo_deadline()
-> impl tower::Service<Req, Response = Option<Duration>, Error = Infallible, Future: Send> + Clone {
    service_fn(|req: Req| async move { Ok(Deadline::of(&req).map(Deadline::remaining)) })
}

async fn seen_budget(layer: ServerDeadlineLayer, headers: &[(&str, &[u8])]) -> Option<Duration> {
    let mut req = Request::builder();
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    layer.layer(echo_deadline()).oneshot(req.body(()).unwrap()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn server_reads_the_budget_header_and_grpc_timeout() {
    let layer = ServerDeadlineLayer::new();
    assert_eq!(seen_budget(layer.clone(), &[("x-request-timeout-ms", b"50")]).await, Some(ms(50)));
    assert_eq!(seen_budget(layer.clone(), &[("x-request-timeout-ms", b"0")]).await, Some(ms(0)));
    assert_eq!(seen_budget(layer.clone(), &[("grpc-timeout", b"2S")]).await, Some(ms(2000)));
    assert_eq!(
        seen_budget(layer.clone(), &[("grpc-timeout", b"1500u")]).await,
        Some(Duration::from_micros(1500))
    );
    assert_eq!(seen_budget(layer.clone(), &[("grpc-timeout", b"1H")]).await, Some(Duration::from_secs(3600)));
    // Both present: the smaller wins, whichever header carries it.
    let both = [("x-request-timeout-ms", &b"300"[..]), ("grpc-timeout", b"200m")];
    assert_eq!(seen_budget(layer.clone(), &both).await, Some(ms(200)));
    let both = [("x-request-timeout-ms", &b"100"[..]), ("grpc-timeout", b"200m")];
    assert_eq!(seen_budget(layer.clone(), &both).await, Some(ms(100)));
    assert_eq!(seen_budget(layer, &[]).await, None);
}

#[tokio::test(start_paused = true)]
async fn server_settings_change_what_is_read() {
    let custom = ServerDeadlineLayer::builder().header("X-Budget").grpc_timeout(false).build().unwrap();
    assert_eq!(seen_budget(custom.clone(), &[("x-budget", b"70")]).await, Some(ms(70)));
    assert_eq!(seen_budget(custom.clone(), &[("x-request-timeout-ms", b"70")]).await, None);
    assert_eq!(seen_budget(custom, &[("grpc-timeout", b"70m")]).await, None);

    let clamped = ServerDeadlineLayer::builder().max_budget(ms(2000)).build().unwrap();
    assert_eq!(seen_budget(clamped.clone(), &[("x-request-timeout-ms", b"10000")]).await, Some(ms(2000)));
    assert_eq!(seen_budget(clamped.clone(), &[("x-request-timeout-ms", b"1000")]).await, Some(ms(1000)));
    assert_eq!(seen_budget(clamped, &[]).await, None);

    let defaulted = ServerDeadlineLayer::builder().default_budget(ms(800)).build().unwrap();
    assert_eq!(seen_budget(defaulted.clone(), &[]).await, Some(ms(800)));
    assert_eq!(seen_budget(defaulted, &[("x-request-timeout-ms", b"90")]).await, Some(ms(90)));
}

#[tokio::test(start_paused = true)]
async fn server_keeps_an_earlier_deadline_already_in_the_extensions() {
    let mut req = request_with_deadline(ms(20));
    req.headers_mut().insert("x-request-timeout-ms", http::HeaderValue::from_static("500"));
    let seen = ServerDeadlineLayer::new().layer(echo_deadline()).oneshot(req).await.unwrap();
    assert_eq!(seen, Some(ms(20)));
}

#[tokio::test(start_paused = true)]
async fn malformed_budgets_are_ignored_without_failing_the_request() {
    let millis: &[&[u8]] = &[
        b"",
        b" ",
        b"-5",
        b"+5",
        b"1.5",
        b"50ms",
        b"2s",
        b"abc",
        b"0x10",
        b"5 0",
        b"1e3",
        b"18446744073709551616", // one more than u64::MAX
        b"\xe2\x80\x8b50",       // a zero-width space, then digits
    ];
    let grpc: &[&[u8]] =
        &[b"", b"m", b"100", b"10x", b"10s", b"123456789m", b"-1S", b"+1S", b"1.5S", b"1 S", b"S1", b"1mm"];
    let stack = || {
        ServiceBuilder::new()
            .layer(ProblemLayer::new())
            .layer(ServerDeadlineLayer::new())
            .layer(TimeoutLayer::new(ms(1000)).unwrap())
            .service(service_fn(|req: Req| async move {
                let status = if Deadline::of(&req).is_some() { 299 } else { 200 };
                Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap())
            }))
    };
    for (header, values) in [("x-request-timeout-ms", millis), ("grpc-timeout", grpc)] {
        for value in values {
            let req = Request::builder()
                .header(header, http::HeaderValue::from_bytes(value).unwrap())
                .body(())
                .unwrap();
            let res = stack().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200, "{header}: {:?} must be ignored", String::from_utf8_lossy(value));
        }
    }
    // A malformed header does not hide a well-formed one.
    let both = [("x-request-timeout-ms", &b"soon"[..]), ("grpc-timeout", b"40m")];
    assert_eq!(seen_budget(ServerDeadlineLayer::new(), &both).await, Some(ms(40)));
}

// ===== Server composition =====

#[tokio::test(start_paused = true)]
async fn server_stack_answers_504_when_the_callers_budget_runs_out() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .layer(ProblemLayer::new())
        .layer(ServerDeadlineLayer::new())
        .layer(TimeoutLayer::new(ms(1000)).unwrap())
        .service(service_fn(move |_req: Req| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(ms(5000)).await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }));

    let start = Instant::now();
    let req = Request::builder().header("x-request-timeout-ms", "50").body(()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(start.elapsed(), ms(50), "the caller's budget, not the server's 1 s timeout");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A caller that has already given up: the handler is not called at all.
    let req = Request::builder().header("grpc-timeout", "0m").body(()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Without a budget, the server's own timeout applies.
    let start = Instant::now();
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), ms(1000));
}

#[tokio::test(start_paused = true)]
async fn axum_handlers_read_the_deadline_as_an_extension() {
    use axum::routing::get;
    use axum::{Extension, Router};
    use http_body_util::BodyExt;

    let app = Router::new()
        .route(
            "/",
            get(|Extension(deadline): Extension<Deadline>| async move {
                deadline.remaining().as_millis().to_string()
            }),
        )
        .layer(ServerDeadlineLayer::new());
    let req = Request::builder()
        .uri("/")
        .header("x-request-timeout-ms", "1500")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1500");
}

// ===== ClientDeadlineLayer =====

#[tokio::test(start_paused = true)]
async fn client_writes_the_remaining_budget_at_send_time() {
    let layer = ClientDeadlineLayer::builder().grpc_timeout(true).build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);

    let mut req = request_with_deadline(ms(300));
    req.headers_mut().insert("x-request-timeout-ms", http::HeaderValue::from_static("999999"));
    advance(ms(120)).await;
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(req);
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert_eq!(sent.headers()["x-request-timeout-ms"], "180");
    assert_eq!(sent.headers().get_all("x-request-timeout-ms").iter().count(), 1, "overwritten, not appended");
    assert_eq!(sent.headers()["grpc-timeout"], "180000u");

    // Rounded down: 179.5 ms left is sent as 179.
    let req = request_with_deadline(ms(300));
    advance(Duration::from_micros(120_500)).await;
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(req);
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert_eq!(sent.headers()["x-request-timeout-ms"], "179");
    assert_eq!(sent.headers()["grpc-timeout"], "179500u");
}

#[tokio::test(start_paused = true)]
async fn client_fails_an_expired_call_without_sending_it() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        ClientDeadlineLayer::builder().name("catalog").build().unwrap()
    });
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);

    let req = request_with_deadline(ms(30));
    advance(ms(30)).await;
    assert!(svc.poll_ready().is_ready());
    let err = svc.call(req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert!(handle.poll_request().is_pending(), "nothing may be sent");
    assert_eq!(
        take_counters(&snapshotter, TIMEOUTS, &[&[(LABEL_NAME, "catalog"), (LABEL_KIND, "deadline")]]),
        [1]
    );
}

#[tokio::test(start_paused = true)]
async fn client_without_a_deadline_leaves_the_request_alone_unless_given_a_default() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(ClientDeadlineLayer::new());
    let mut req = Request::new(());
    req.headers_mut().insert("x-request-timeout-ms", http::HeaderValue::from_static("777"));
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(req);
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert_eq!(sent.headers()["x-request-timeout-ms"], "777");
    assert!(sent.headers().get("grpc-timeout").is_none());
    assert_eq!(Deadline::of(&sent), None);

    let layer = ClientDeadlineLayer::builder().header("X-Budget").default_budget(ms(250)).build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(Request::new(()));
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert_eq!(sent.headers()["x-budget"], "250");
    assert_eq!(Deadline::of(&sent), Some(Deadline::at(Instant::now() + ms(250))), "inner layers see it");

    // An existing deadline wins over the default.
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(request_with_deadline(ms(40)));
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert_eq!(sent.headers()["x-budget"], "40");
}

#[tokio::test(start_paused = true)]
async fn client_without_header_writing_only_sets_and_enforces_the_deadline() {
    let layer = ClientDeadlineLayer::builder().default_budget(ms(250)).write_headers(false).build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let _fut = svc.call(Request::new(()));
    let (sent, _respond) = handle.next_request().await.unwrap();
    assert!(sent.headers().get("x-request-timeout-ms").is_none(), "no header written");
    assert_eq!(Deadline::of(&sent), Some(Deadline::at(Instant::now() + ms(250))));

    // An expired call still fails without being sent.
    let req = request_with_deadline(ms(10));
    advance(ms(10)).await;
    assert!(svc.poll_ready().is_ready());
    assert!(svc.call(req).await.unwrap_err().is::<DeadlineExceeded>());
    assert!(handle.poll_request().is_pending(), "nothing may be sent");
}

#[tokio::test(start_paused = true)]
async fn client_stack_per_attempt_timeout_is_clamped_by_the_total_deadline() {
    let layer = ServiceBuilder::new()
        .layer(ClientDeadlineLayer::builder().default_budget(ms(100)).build().unwrap())
        .layer(TimeoutLayer::new(ms(1000)).unwrap())
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::new(()));
    tokio::pin!(fut);
    let (_sent, _respond) = handle.next_request().await.unwrap();
    advance(ms(99)).await;
    assert!(poll_once(fut.as_mut()).await.is_pending());
    advance(ms(1)).await;
    let err = ready_err(poll_once(fut.as_mut()).await);
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn malformed_budgets_are_logged_at_debug() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let headers = [("x-request-timeout-ms", &b"12s"[..]), ("grpc-timeout", b"123456789m")];
    assert_eq!(seen_budget(ServerDeadlineLayer::new(), &headers).await, None);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("ignoring a malformed budget").count(), 2, "{logs}");
    assert!(
        logs.contains("DEBUG") && logs.contains("x-request-timeout-ms") && logs.contains("grpc-timeout"),
        "{logs}"
    );
}

/// A downstream that records the budget header of each call it gets.
fn recording_downstream(
    header: &'static str,
) -> (
    impl tower::Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let svc = service_fn(move |req: Req| {
        let value = req.headers().get(header).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        record.lock().unwrap().push(value);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    (svc, seen)
}

#[tokio::test(start_paused = true)]
async fn a_handler_call_carries_what_is_left_of_the_callers_deadline_with_no_code_in_the_handler() {
    let (downstream, seen) = recording_downstream("x-request-timeout-ms");
    let client = ClientDeadlineLayer::new().layer(downstream);
    let server = ServerDeadlineLayer::new().layer(service_fn(move |_req: Req| {
        let client = client.clone();
        async move {
            advance(ms(300)).await; // the handler works a while first
            // A fresh request, nothing copied from the incoming one.
            client.clone().oneshot(Request::new(())).await?;
            // Spawned work carries it with `propagate`.
            let spawned = client;
            tokio::spawn(palisade::deadline::propagate(
                async move { spawned.oneshot(Request::new(())).await },
            ))
            .await
            .unwrap()?;
            Ok::<_, BoxError>(Response::new(()))
        }
    }));
    let req = Request::builder().header("x-request-timeout-ms", "1000").body(()).unwrap();
    server.oneshot(req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["700", "700"]);
    assert_eq!(Deadline::current(), None, "the deadline is current only while the handler is polled");
}

#[tokio::test(start_paused = true)]
async fn under_a_millisecond_left_fails_locally_and_never_reaches_the_downstream() {
    let (downstream, seen) = recording_downstream("x-request-timeout-ms");
    let mut client = ClientDeadlineLayer::new().layer(downstream);
    let mut req = Request::new(());
    Deadline::after(Duration::from_micros(900)).apply(&mut req);
    let err = tower::Service::call(client.ready().await.unwrap(), req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "a call with no time left was sent");
}

#[tokio::test(start_paused = true)]
async fn the_client_presets_header_name_matches_a_custom_server_header() {
    use palisade::stack::ClientStack;
    let (downstream, seen) = recording_downstream("x-budget");
    let stack = ClientStack::builder("custom").deadline_header("x-budget").build().unwrap();
    let client = stack.layer(service_fn(
        move |req: Request<palisade::retry::RetryBody<http_body_util::Empty<bytes::Bytes>>>| {
            let (parts, _) = req.into_parts();
            downstream.clone().oneshot(Request::from_parts(parts, ()))
        },
    ));
    let server = ServerDeadlineLayer::builder().header("x-budget").build().unwrap().layer(service_fn(
        move |_req: Req| {
            let client = client.clone();
            async move {
                client.oneshot(Request::new(http_body_util::Empty::new())).await?;
                Ok::<_, BoxError>(Response::new(()))
            }
        },
    ));
    let req = Request::builder().header("x-budget", "250").body(()).unwrap();
    server.oneshot(req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["250"]);
    assert!(ClientStack::builder("bad").deadline_header("not a header").build().is_err());
}
