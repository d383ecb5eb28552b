//! Failing fast while open, whatever the inner service's readiness; ignored outcomes; what the
//! breaker reports (outside its lock) and under which name.

use std::time::Duration;

use http::Response;
use palisade::circuit_breaker::error::CircuitOpen;
use palisade::circuit_breaker::{CircuitBreakerLayer, State};
use palisade::{BoxError, Outcome};
use tokio::time::advance;
use tower::Layer;
use tower_test::mock;

use crate::support::{Backend, send_n, take_request};

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast_when_the_inner_service_is_never_ready() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

    inner.allow(1);
    assert!(svc.poll_ready().is_ready());
    let trip = svc.call("trip");
    take_request(&mut inner).1.send_response(Response::builder().status(500).body(()).unwrap());
    trip.await.unwrap();
    assert_eq!(handle.state(), State::Open);

    // From now on the inner service is never ready (an exhausted pool, a full concurrency limit).
    inner.allow(0);
    for _ in 0..3 {
        assert!(svc.poll_ready().is_ready(), "open: ready at once, without the inner service");
        let err = svc.call("rejected").await.unwrap_err();
        let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
        assert!(open.retry_after() > Duration::ZERO);
    }
    assert!(inner.poll_request().is_pending(), "nothing reached the inner service");

    // Once the interval is over the next call would be a probe: readiness is the inner service's again.
    advance(Duration::from_secs(10)).await;
    assert!(svc.poll_ready().is_pending());

    handle.force_open();
    assert!(svc.poll_ready().is_ready(), "forced open: ready at once too");
    let err = svc.call("forced").await.unwrap_err();
    assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().retry_after(), Duration::ZERO);
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn the_callers_own_deadline_and_a_marked_504_are_ignored() {
    use palisade::classify::DEADLINE_EXCEEDED_HEADER;
    use palisade::timeout::error::DeadlineExceeded;

    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(2)
        .consecutive_failures(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

    assert!(svc.poll_ready().is_ready());
    let expired = svc.call("deadline");
    take_request(&mut inner).1.send_error(DeadlineExceeded::new());
    assert!(expired.await.unwrap_err().is::<DeadlineExceeded>());

    assert!(svc.poll_ready().is_ready());
    let downstream = svc.call("504");
    let marked = Response::builder().status(504).header(DEADLINE_EXCEEDED_HEADER, "1").body(()).unwrap();
    take_request(&mut inner).1.send_response(marked);
    assert_eq!(downstream.await.unwrap().status(), 504);

    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.state, snapshot.calls, snapshot.failures),
        (State::Closed, 0, 0),
        "nothing recorded"
    );

    assert!(svc.poll_ready().is_ready());
    let timeout = svc.call("504 of its own");
    take_request(&mut inner).1.send_response(Response::builder().status(504).body(()).unwrap());
    timeout.await.unwrap();
    assert_eq!(handle.state(), State::Open, "an unmarked 504 is the dependency's failure");
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_gives_its_permit_back_without_deciding() {
    let ignore_418 = |result: Result<&Response<()>, &BoxError>| match result {
        Ok(res) if res.status() == 418 => Outcome::Ignore,
        Ok(res) if res.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .classifier(ignore_418)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

    assert!(svc.poll_ready().is_ready());
    let trip = svc.call("trip");
    take_request(&mut inner).1.send_response(Response::builder().status(500).body(()).unwrap());
    trip.await.unwrap();
    advance(Duration::from_secs(10)).await;

    assert!(svc.poll_ready().is_ready());
    let probe = svc.call("ignored probe");
    take_request(&mut inner).1.send_response(Response::builder().status(418).body(()).unwrap());
    probe.await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen, "an ignored probe decides nothing");

    assert!(svc.poll_ready().is_ready());
    let probe = svc.call("next probe");
    let (req, send) = take_request(&mut inner);
    assert_eq!(req, "next probe", "the permit was given back");
    send.send_response(Response::new(()));
    probe.await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[test]
fn unnamed_breakers_get_distinct_names() {
    let a = CircuitBreakerLayer::builder().build().unwrap().handle();
    let b = CircuitBreakerLayer::builder().build().unwrap().handle();
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("breaker-") && b.name().starts_with("breaker-"), "{a:?} {b:?}");
    let named = CircuitBreakerLayer::builder().name("payments").build().unwrap().handle();
    assert_eq!(named.name(), "payments");
}

/// A subscriber that reads the breaker (taking its lock) from inside every event: if an event were
/// emitted under the lock, this would deadlock.
#[test]
fn no_event_is_emitted_under_the_breakers_lock() {
    use std::sync::{Arc, OnceLock};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    struct ReadsTheBreaker(Arc<OnceLock<palisade::circuit_breaker::CircuitBreakerHandle>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ReadsTheBreaker {
        fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            if let Some(handle) = self.0.get() {
                let _ = handle.snapshot();
            }
        }
    }

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let slot = Arc::new(OnceLock::new());
        let subscriber = tracing_subscriber::registry().with(ReadsTheBreaker(Arc::clone(&slot)));
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let layer = CircuitBreakerLayer::builder()
                    .consecutive_failures(1)
                    .open_interval(Duration::from_secs(1))
                    .success_threshold(1)
                    .build()
                    .unwrap();
                slot.set(layer.handle()).unwrap();
                let handle = layer.handle();
                let mut svc = layer.layer(Backend::default().service());
                send_n(&mut svc, 1, 500).await; // closed → open
                advance(Duration::from_secs(1)).await;
                send_n(&mut svc, 1, 200).await; // → half-open → closed
                handle.metrics_only();
                send_n(&mut svc, 1, 500).await; // "would open" warning
                assert_eq!(handle.state(), State::MetricsOnly);
            });
        });
        done.send(()).unwrap();
    });
    finished.recv_timeout(Duration::from_secs(60)).expect("an event was emitted under the breaker's lock");
}

#[tokio::test(start_paused = true)]
async fn the_classifier_can_see_the_request() {
    use palisade::classify::MakeClassifyFn;
    // A 404 answering a `DELETE` means "already gone": fine. Anywhere else it is a failure.
    let by_method = MakeClassifyFn::new(|req: &http::Request<crate::support::Plan>| {
        let delete = req.method() == http::Method::DELETE;
        move |result: Result<&Response<()>, &BoxError>| match result {
            Ok(res) if res.status() == 404 && !delete => Outcome::Failure,
            Ok(res) if res.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    });
    let layer = CircuitBreakerLayer::builder().consecutive_failures(1).classifier(by_method).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    let mut delete = crate::support::plan(404);
    *delete.method_mut() = http::Method::DELETE;
    crate::support::send(&mut svc, delete).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "a 404 on DELETE is a success");
    send_n(&mut svc, 1, 404).await;
    assert_eq!(handle.state(), State::Open, "a 404 on GET is a failure");
}

#[tokio::test(start_paused = true)]
async fn the_server_classifier_counts_no_4xx() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .classifier(palisade::ServerClassifier)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    for status in [400, 401, 404, 422, 429] {
        send_n(&mut svc, 3, status).await;
        assert_eq!(handle.state(), State::Closed, "{status} is the client's business");
    }
    send_n(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
}
