//! The retry layer, driven through `tower_test` mocks under paused time.
#![cfg(feature = "retry")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::SizeHint;
use http_body_util::{Empty, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade::retry::{Backoff, Budget, Decision, DefaultPolicy, Policy, RequestHead, RetryBody, RetryLayer};
use palisade::{BoxError, Deadline, Outcome, metric_names};
use support::{Chunks, Marker, MustNotBeRead, Reply, get, request, run, with_body};
use tower::{Layer, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// 3 attempts, a constant 100 ms backoff, no budget: only what a test sets changes the outcome.
fn layer() -> RetryLayer {
    RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(100 * MS))
        .budget(Budget::unlimited())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_a_503_after_the_backoff_then_returns_the_success() {
    let run = run(&layer(), get(), &[Reply::Status(503), Reply::Status(503), Reply::Status(200)]).await;
    assert_eq!(run.status(), 200);
    assert_eq!(run.times(), [Duration::ZERO, 100 * MS, 200 * MS]);
    assert_eq!(run.elapsed, 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn stops_after_max_attempts_and_returns_the_last_failure() {
    let script = [Reply::Status(503), Reply::Status(502), Reply::Status(504)];
    let run = run(&layer(), get(), &script).await;
    assert_eq!(run.attempts.len(), 3);
    assert_eq!(run.status(), 504);

    let once = RetryLayer::builder().max_attempts(1).build().unwrap();
    let run = support::run(&once, get(), &[Reply::Status(503)]).await;
    assert_eq!(run.attempts.len(), 1, "max_attempts 1 never retries");
}

#[tokio::test(start_paused = true)]
async fn retries_idempotent_methods_only() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE] {
        let run = run(&layer(), request(method.clone()), &[Reply::Status(503), Reply::Status(200)]).await;
        assert_eq!(run.attempts.len(), 2, "{method}");
        assert!(run.attempts.iter().all(|a| a.method == method));
        assert_eq!(run.status(), 200, "{method}");
    }
    for method in [Method::POST, Method::PATCH, Method::CONNECT] {
        let run = run(&layer(), request(method.clone()), &[Reply::Status(503)]).await;
        assert_eq!(run.attempts.len(), 1, "{method}");
        assert_eq!(run.status(), 503, "{method}: the failure is returned as it was");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_a_post_that_carries_an_idempotency_key() {
    let mut req = with_body(Method::POST, Full::new(Bytes::from_static(b"{\"amount\":100}")));
    req.headers_mut().insert("idempotency-key", "order-42".parse().unwrap());
    let run = run(&layer(), req, &[Reply::Error("connection reset"), Reply::Status(201)]).await;
    assert_eq!(run.status(), 201);
    assert_eq!(run.attempts.len(), 2);
    for attempt in &run.attempts {
        assert_eq!(attempt.headers["idempotency-key"], "order-42");
        assert_eq!(attempt.body, "{\"amount\":100}");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_429_502_503_504_and_no_other_status() {
    for code in [429, 502, 503, 504] {
        let run = run(&layer(), get(), &[Reply::Status(code), Reply::Status(200)]).await;
        assert_eq!(run.attempts.len(), 2, "{code}");
    }
    for code in [200, 204, 400, 401, 404, 409, 422, 500, 501, 505] {
        let run = run(&layer(), get(), &[Reply::Status(code)]).await;
        assert_eq!(run.attempts.len(), 1, "{code}");
        assert_eq!(run.status(), code);
    }
}

#[tokio::test(start_paused = true)]
async fn a_500_is_retried_only_when_added_to_the_policy() {
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .policy(DefaultPolicy::new().retry_status(StatusCode::INTERNAL_SERVER_ERROR))
        .build()
        .unwrap();
    let run = run(&layer, get(), &[Reply::Status(500), Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 2);
    let run = support::run(&layer, request(Method::POST), &[Reply::Status(500)]).await;
    assert_eq!(run.attempts.len(), 1, "never for a non-idempotent call");
}

#[tokio::test(start_paused = true)]
async fn retries_transport_errors_and_returns_the_last_one() {
    let run = run(&layer(), get(), &[Reply::Error("connection refused"), Reply::Status(200)]).await;
    assert_eq!(run.status(), 200);
    assert_eq!(run.attempts.len(), 2);

    let script = [Reply::Error("refused 1"), Reply::Error("refused 2"), Reply::Error("refused 3")];
    let run = support::run(&layer(), get(), &script).await;
    assert_eq!(run.result.unwrap_err().to_string(), "refused 3");
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn retries_a_per_attempt_timeout_but_not_an_exceeded_deadline() {
    use palisade::timeout::error::{DeadlineExceeded, Elapsed};
    let elapsed = Reply::ErrorWith(|| Box::new(Elapsed::new()));
    let run = run(&layer(), get(), &[elapsed, Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 2);
    let exceeded = Reply::ErrorWith(|| Box::new(DeadlineExceeded::new()));
    let run = support::run(&layer(), get(), &[exceeded]).await;
    assert_eq!(run.attempts.len(), 1);
    assert!(run.result.unwrap_err().is::<DeadlineExceeded>());
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_returned_at_once_whatever_its_retry_after() {
    use palisade::circuit_breaker::error::CircuitOpen;
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(100 * MS))
        .max_retry_after(Duration::from_secs(5))
        .budget(Budget::unlimited())
        .build()
        .unwrap();
    let forced: fn() -> BoxError = || Box::new(CircuitOpen::new(Duration::ZERO));
    let soon: fn() -> BoxError = || Box::new(CircuitOpen::new(Duration::from_secs(2)));
    let later: fn() -> BoxError = || Box::new(CircuitOpen::new(Duration::from_secs(30)));
    for open in [forced, soon, later] {
        let run = support::run(&layer, get(), &[Reply::ErrorWith(open), Reply::Status(200)]).await;
        assert_eq!(run.attempts.len(), 1, "retried an open circuit");
        assert!(run.result.unwrap_err().is::<CircuitOpen>());
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_sets_the_delay_on_429_and_503() {
    let run =
        run(&layer(), get(), &[Reply::RetryAfter(429, "3"), Reply::RetryAfter(503, "2"), Reply::Status(200)])
            .await;
    assert_eq!(run.status(), 200);
    // The server's delay, then the (here constant) backoff on top of it.
    let times = [Duration::ZERO, Duration::from_secs(3) + 100 * MS, Duration::from_secs(5) + 200 * MS];
    assert_eq!(run.times(), times);
    assert_eq!(run.elapsed, Duration::from_secs(5) + 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date() {
    // A date in the past: retry after the backoff alone.
    let past = Reply::RetryAfter(503, "Sun, 06 Nov 1994 08:49:37 GMT");
    let run = run(&layer(), get(), &[past, Reply::Status(200)]).await;
    assert_eq!(run.times(), [Duration::ZERO, 100 * MS]);

    // A date an hour from now is beyond the 10 s default cap: the response is returned as it was.
    let in_an_hour = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let in_an_hour: &'static str = Box::leak(in_an_hour.into_boxed_str());
    let run = support::run(&layer(), get(), &[Reply::RetryAfter(429, in_an_hour)]).await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.status(), 429);
    assert_eq!(run.result.unwrap().headers()["retry-after"], in_an_hour);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_returns_the_response() {
    let layer = RetryLayer::builder().max_retry_after(Duration::from_secs(10)).build().unwrap();
    let run = run(&layer, get(), &[Reply::RetryAfter(503, "11")]).await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.status(), 503);
    let run = support::run(&layer, get(), &[Reply::RetryAfter(503, "10"), Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 2, "the cap itself is allowed");
    let second = run.times()[1];
    // The default backoff's full jitter for a first retry: 0..=100 ms after the server's 10 s.
    assert!((Duration::from_secs(10)..=Duration::from_secs(10) + 100 * MS).contains(&second), "{second:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_or_a_past_date_still_gets_jitter() {
    // Callers all told "now" must not all come back at the same instant.
    let layer = RetryLayer::builder().budget(Budget::unlimited()).build().unwrap(); // full jitter, 100 ms
    let mut delays = Vec::new();
    for after in ["0", "Sun, 06 Nov 1994 08:49:37 GMT"] {
        for _ in 0..20 {
            let run = run(&layer, get(), &[Reply::RetryAfter(503, after), Reply::Status(200)]).await;
            assert_eq!(run.status(), 200);
            delays.push(run.times()[1]);
        }
    }
    assert!(delays.iter().all(|d| *d <= 100 * MS), "{delays:?}");
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 10, "spread, not one instant: {delays:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_ignored_on_other_statuses_and_when_malformed() {
    let run = run(
        &layer(),
        get(),
        &[Reply::RetryAfter(502, "5"), Reply::RetryAfter(503, "soon"), Reply::Status(200)],
    )
    .await;
    assert_eq!(run.times(), [Duration::ZERO, 100 * MS, 200 * MS], "the backoff applies");
}

#[tokio::test(start_paused = true)]
async fn never_sleeps_past_the_deadline() {
    let layer = RetryLayer::builder()
        .max_attempts(10)
        .backoff(Backoff::constant(100 * MS))
        .budget(Budget::unlimited())
        .build()
        .unwrap();
    let mut req = get();
    req.extensions_mut().insert(Deadline::after(250 * MS));
    let script = [Reply::Status(503); 10];
    let run = run(&layer, req, &script).await;
    // Attempts at 0, 100 and 200 ms; the next would start at 300 ms, after the deadline.
    assert_eq!(run.times(), [Duration::ZERO, 100 * MS, 200 * MS]);
    assert_eq!(run.elapsed, 200 * MS, "returned at once, without sleeping");
    assert_eq!(run.status(), 503);

    // A retry that would start exactly at the deadline is not made either.
    let mut req = get();
    req.extensions_mut().insert(Deadline::after(200 * MS));
    let run = support::run(&layer, req, &script).await;
    assert_eq!(run.times(), [Duration::ZERO, 100 * MS]);

    // Nor one after a Retry-After that ends past it.
    let mut req = get();
    req.extensions_mut().insert(Deadline::after(Duration::from_secs(1)));
    let run = support::run(&layer, req, &[Reply::RetryAfter(503, "2")]).await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.elapsed, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_retries_when_everything_fails() {
    // 20 % of requests + 1 per second over 10 s = 10 retries of floor.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        RetryLayer::builder()
            .name("storm")
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::ZERO))
            .budget(Budget::new(0.2, 1))
            .build()
            .unwrap()
    });
    let n = 100;
    let mut attempts = 0;
    for _ in 0..n {
        attempts += run(&layer, get(), &[Reply::Status(503); 3]).await.attempts.len();
    }
    // Exactly (1 + 0.2) × N + floor: every deposit and the whole floor were spent, one retry at a time.
    assert_eq!(attempts, 130);
    assert!(attempts >= n);
    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snapshot, metric_names::RETRY_RETRIES, "storm"), Some(30));
    // Each request wanted 2 retries; the 95 that did not get both were refused once each.
    assert_eq!(counter(&snapshot, metric_names::RETRY_BUDGET_EXHAUSTED, "storm"), Some(95));
}

#[tokio::test(start_paused = true)]
async fn after_a_long_healthy_period_the_budget_holds_the_ratio_of_recent_requests() {
    // 60 s of healthy traffic at 10 requests a second, no retry asked for, then a burst of failures.
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(Budget::new(0.2, 0)) // no floor: only the ratio part
        .build()
        .unwrap();
    for _ in 0..600 {
        assert_eq!(run(&layer, get(), &[Reply::Status(200)]).await.status(), 200);
        tokio::time::advance(100 * MS).await;
    }
    let mut retries = 0;
    for _ in 0..50 {
        retries += run(&layer, get(), &[Reply::Status(503); 2]).await.attempts.len() - 1;
    }
    // The window is the current 1 s bucket and the 9 before it (t ≥ 51 s): the last 90 healthy
    // requests and the 50 of the burst, 0.2 × 140. (Before deposits were timed, the 600 healthy ones
    // were taken as spread over the 60 s since the last withdrawal: 2 retries.)
    assert_eq!(retries, 28);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_every_clone() {
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(Budget::new(0.0, 1).window(Duration::from_secs(1))) // one retry per second
        .build()
        .unwrap();
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<RetryBody<http_body_util::Empty<Bytes>>>, support::Res>();
    let svc = layer.layer(mock);
    let first = tokio::spawn(svc.clone().oneshot(get()));
    let second = tokio::spawn(svc.oneshot(get()));
    let mut seen = 0;
    while let Some((_req, send)) = handle.next_request().await {
        seen += 1;
        send.send_response(support::status(503));
    }
    assert_eq!(first.await.unwrap().unwrap().status(), 503);
    assert_eq!(second.await.unwrap().unwrap().status(), 503);
    assert_eq!(seen, 3, "two first attempts and the one retry the shared budget allows");
}

#[tokio::test(start_paused = true)]
async fn a_buffered_body_is_replayed_byte_for_byte() {
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", "abc".parse().unwrap());
    let body = Chunks::exact(&["hello", ", ", "world"]).trailers(trailers);
    let script = [Reply::Status(503), Reply::Error("reset"), Reply::Status(200)];
    let run = run(&layer(), with_body(Method::PUT, body), &script).await;
    assert_eq!(run.status(), 200);
    assert_eq!(run.attempts.len(), 3);
    for attempt in &run.attempts {
        assert_eq!(attempt.body, "hello, world");
        assert_eq!(attempt.trailers.as_ref().unwrap()["checksum"], "abc");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_larger_than_the_cap_is_sent_once_intact() {
    let layer = RetryLayer::builder().max_buffered_body(8).build().unwrap();
    let run = run(
        &layer,
        with_body(Method::PUT, Full::new(Bytes::from_static(b"0123456789"))),
        &[Reply::Status(503)],
    )
    .await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.attempts[0].body, "0123456789");
    assert_eq!(run.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn a_body_of_unknown_length_is_sent_once_intact() {
    let run =
        run(&layer(), with_body(Method::PUT, Chunks::unknown(&["a", "b", "c"])), &[Reply::Status(503)]).await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.attempts[0].body, "abc");
}

#[tokio::test(start_paused = true)]
async fn a_body_longer_than_its_size_hint_is_sent_once_without_losing_bytes() {
    let layer = RetryLayer::builder().max_buffered_body(8).build().unwrap();
    let mut hint = SizeHint::new();
    hint.set_upper(4); // a lie: the body is 15 bytes
    let body = Chunks::with_hint(&["01234", "56789", "abcde"], hint);
    let run = run(&layer, with_body(Method::PUT, body), &[Reply::Status(503)]).await;
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.attempts[0].body, "0123456789abcde");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_while_buffered_returns_its_error_without_calling_the_service() {
    struct Broken;
    impl http_body::Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::other("client went away"))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(5)
        }
    }
    let run = run(&layer(), with_body(Method::PUT, Broken), &[]).await;
    assert!(run.attempts.is_empty());
    assert_eq!(run.result.unwrap_err().to_string(), "client went away");
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_is_never_read() {
    let run =
        run(&layer(), with_body(Method::GET, MustNotBeRead), &[Reply::Status(503), Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 2);
    assert!(run.attempts.iter().all(|a| a.body.is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_may_not_be_retried_is_streamed_through_untouched() {
    let run =
        run(&layer(), with_body(Method::POST, Chunks::unknown(&["x", "y"])), &[Reply::Status(200)]).await;
    assert_eq!(run.attempts[0].body, "xy");
}

#[tokio::test(start_paused = true)]
async fn retries_and_budget_exhaustion_are_counted_per_layer_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        RetryLayer::builder()
            .name("payments")
            .backoff(Backoff::constant(10 * MS))
            .budget(Budget::new(0.0, 2).window(Duration::from_secs(1))) // two retries
            .build()
            .unwrap()
    });
    let run1 = run(&layer, get(), &[Reply::Status(503); 3]).await;
    assert_eq!(run1.attempts.len(), 3);
    let run2 = run(&layer, get(), &[Reply::Status(503)]).await;
    assert_eq!(run2.attempts.len(), 1, "the budget is spent");
    assert_eq!(run2.status(), 503, "the last failure, as it was");
    let run3 = run(&layer, get(), &[Reply::Status(200)]).await;
    assert_eq!(run3.status(), 200);

    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snapshot, metric_names::RETRY_RETRIES, "payments"), Some(2));
    assert_eq!(counter(&snapshot, metric_names::RETRY_BUDGET_EXHAUSTED, "payments"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_closure_policy_decides_everything() {
    // Retry POSTs on 500, twice as fast as the backoff would.
    let policy = |req: &RequestHead<'_>, result: Result<&Response<&'static str>, &BoxError>| match result {
        Ok(res) if req.method() == Method::POST && res.status() == 500 => {
            Decision::RetryAfter(Duration::from_secs(1))
        }
        _ => Decision::Return,
    };
    let layer =
        RetryLayer::builder().policy(policy).backoff(Backoff::constant(Duration::ZERO)).build().unwrap();
    let run = run(&layer, request(Method::POST), &[Reply::Status(500), Reply::Status(200)]).await;
    assert_eq!(run.times(), [Duration::ZERO, Duration::from_secs(1)]);

    let never = RetryLayer::builder().policy(()).build().unwrap();
    let run = support::run(&never, get(), &[Reply::Status(503)]).await;
    assert_eq!(run.attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_whole_head_and_the_policy_sees_it() {
    // What the policy saw, per decision: method, URI, version, a header, the extension.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let policy = move |req: &RequestHead<'_>, result: Result<&Response<&'static str>, &BoxError>| {
        log.lock().unwrap().push((
            req.method().clone(),
            req.uri().clone(),
            req.version(),
            req.headers().get("x-tenant").cloned(),
            req.extensions().get::<Marker>().cloned(),
        ));
        match result {
            Ok(res) if res.status() == 503 => Decision::Retry,
            _ => Decision::Return,
        }
    };
    let layer = RetryLayer::builder()
        .policy(policy)
        .max_attempts(4) // so that the policy decides on each of the three results
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap();

    let mut req = Request::builder()
        .method(Method::DELETE)
        .uri("http://dep/v1/things/7?force=true")
        .version(http::Version::HTTP_2)
        .header("x-tenant", "acme")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut().insert(Marker("first"));
    let run = run(&layer, req, &[Reply::Status(503), Reply::Status(503), Reply::Status(204)]).await;
    assert_eq!(run.status(), 204);
    assert_eq!(run.attempts.len(), 3);
    for attempt in &run.attempts {
        assert_eq!(attempt.method, Method::DELETE);
        assert_eq!(attempt.uri, "http://dep/v1/things/7?force=true");
        assert_eq!(attempt.version, http::Version::HTTP_2);
        assert_eq!(attempt.headers["x-tenant"], "acme");
        assert_eq!(attempt.marker, Some(Marker("first")));
    }
    let decisions = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(decisions.len(), 3, "one decision per attempt");
    for (method, uri, version, tenant, marker) in &decisions {
        assert_eq!(
            (method, uri.to_string(), *version),
            (&Method::DELETE, "http://dep/v1/things/7?force=true".to_owned(), http::Version::HTTP_2)
        );
        assert_eq!(tenant.as_ref().unwrap(), "acme");
        assert_eq!(marker, &Some(Marker("first")));
    }

    // A request without headers: the policy still gets a (empty) map.
    let run = support::run(&layer, get(), &[Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 1);
    let last = seen.lock().unwrap().pop().unwrap();
    assert_eq!((last.3, last.4), (None, None));
}

#[tokio::test(start_paused = true)]
async fn the_shared_classifier_decides_what_counts_as_a_failure() {
    // A dependency whose 503s are an expected answer: never retried.
    let layer = RetryLayer::builder()
        .classifier(|result: Result<&Response<&'static str>, &BoxError>| match result {
            Ok(res) if res.status() == 503 => Outcome::Success,
            Ok(res) if res.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap();
    let run = run(&layer, get(), &[Reply::Status(503)]).await;
    assert_eq!(run.attempts.len(), 1);
    let run = support::run(&layer, get(), &[Reply::Status(502), Reply::Status(200)]).await;
    assert_eq!(run.attempts.len(), 2);
}

#[test]
fn impossible_settings_are_rejected_by_build() {
    let setting = |r: Result<RetryLayer, palisade::InvalidConfig>| r.unwrap_err().setting();
    assert_eq!(setting(RetryLayer::builder().max_attempts(0).build()), "max_attempts");
    let backoff = Backoff::exponential(Duration::from_secs(1)).cap(Duration::from_millis(10));
    assert_eq!(setting(RetryLayer::builder().backoff(backoff).build()), "backoff.cap");
    let backoff = Backoff::exponential(Duration::from_secs(1)).multiplier(0.5);
    assert_eq!(setting(RetryLayer::builder().backoff(backoff).build()), "backoff.multiplier");
    assert_eq!(setting(RetryLayer::builder().budget(Budget::new(-1.0, 1)).build()), "budget.ratio");
    let budget = Budget::default().window(Duration::ZERO);
    assert_eq!(setting(RetryLayer::builder().budget(budget).build()), "budget.window");
}

#[test]
fn the_default_policy_is_a_policy_for_any_body() {
    fn assert_policy<P: Policy<B>, B>(_: &P) {}
    assert_policy::<_, String>(&DefaultPolicy::new());
    assert_policy::<_, ()>(&());
}

type Snapshot =
    Vec<(metrics_util::CompositeKey, Option<metrics::Unit>, Option<metrics::SharedString>, DebugValue)>;

/// The value of counter `name` labelled `name=label` (a snapshot resets counters: take one per test).
fn counter(snapshot: &Snapshot, name: &str, label: &str) -> Option<u64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key = key.key();
        let labelled = key.labels().any(|l| l.key() == metric_names::LABEL_NAME && l.value() == label);
        match value {
            DebugValue::Counter(v) if key.name() == name && labelled => Some(*v),
            _ => None,
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_inner_service_to_be_ready() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<RetryBody<http_body_util::Empty<Bytes>>>, support::Res>();
    handle.allow(1);
    let task = tokio::spawn(layer().layer(mock).oneshot(get()));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(support::status(503));
    // The backoff (100 ms) passes, but the service has no capacity for the retry.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished());
    handle.allow(1);
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(support::status(200));
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
}

#[test]
fn the_service_gives_access_to_the_inner_one() {
    let mut svc = layer().layer(7_u8);
    assert_eq!(*svc.get_ref(), 7);
    *svc.get_mut() = 8;
    assert_eq!(svc.clone().into_inner(), 8);
}
