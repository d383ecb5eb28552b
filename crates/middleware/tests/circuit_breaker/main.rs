//! Circuit breaker: behaviour through the public API, under paused time.
#![cfg(feature = "circuit-breaker")]

mod exact;
mod keyed;
mod ready;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use http::Response;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade::circuit_breaker::error::CircuitOpen;
use palisade::circuit_breaker::{CircuitBreakerLayer, State};
use palisade::{BoxError, Outcome};
use tokio::time::advance;
use tower::{Layer, ServiceBuilder};
use tower_test::mock;

use support::{Backend, plan, rejection, send, send_n, slow_plan, take_request};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn count_window_opens_on_exactly_the_50th_failure_after_1000_successes() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .failure_rate_threshold(0.5)
        .minimum_calls(100)
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let mut svc = layer.layer(backend.service());

    send_n(&mut svc, 1000, 200).await;
    for failure in 1..=49 {
        send(&mut svc, plan(500)).await.unwrap();
        assert_eq!(handle.state(), State::Closed, "opened early, on failure {failure}");
    }
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (100, 49));
    assert!((snapshot.failure_rate - 0.49).abs() < 1e-9);

    send(&mut svc, plan(500)).await.unwrap();
    assert_eq!(handle.state(), State::Open, "the 50th failure makes 50 of the last 100 calls");
    assert!(rejection(send(&mut svc, plan(200)).await).is_some());
    assert_eq!(backend.calls(), 1050);
}

#[tokio::test(start_paused = true)]
async fn count_window_slides_old_failures_out() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    send_n(&mut svc, 4, 500).await;
    send_n(&mut svc, 10, 200).await;
    assert_eq!(handle.snapshot().failures, 0, "the 4 failures left the window");
    send_n(&mut svc, 4, 500).await;
    assert_eq!(handle.state(), State::Closed, "4 of the last 10");
    send_n(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open, "5 of the last 10");
}

#[test]
fn count_window_matches_a_naive_model() {
    use proptest::prelude::*;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let strategy =
        (1u64..40, 1u64..40, 1u32..=10, proptest::collection::vec(proptest::bool::weighted(0.3), 0..200));
    proptest!(ProptestConfig::with_cases(200), |((size, min, tenths, outcomes) in strategy)| {
        let threshold = f64::from(tenths) / 10.0;
        let layer = CircuitBreakerLayer::builder()
            .count_window(size)
            .minimum_calls(min)
            .failure_rate_threshold(threshold)
            .build()
            .unwrap();
        let handle = layer.handle();
        let mut svc = layer.layer(Backend::default().service());

        // The model: the last `size` outcomes, evaluated after every call.
        let mut window = std::collections::VecDeque::new();
        let expected = outcomes.iter().position(|&failed| {
            window.push_back(failed);
            if window.len() as u64 > size {
                window.pop_front();
            }
            let calls = window.len() as u64;
            let failures = window.iter().filter(|&&f| f).count() as u64;
            calls >= min.min(size) && failures > 0 && failures as f64 / calls as f64 >= threshold
        });
        let actual = runtime.block_on(async {
            for (i, &failed) in outcomes.iter().enumerate() {
                send(&mut svc, plan(if failed { 500 } else { 200 })).await.unwrap();
                if handle.state() == State::Open {
                    return Some(i);
                }
            }
            None
        });
        prop_assert_eq!(actual, expected);
    });
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_gate_the_rate() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    send_n(&mut svc, 9, 500).await;
    assert_eq!(handle.state(), State::Closed, "9 calls < minimum 10");
    send_n(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);

    // A success that completes the minimum is evaluated too: 9 failures of 10 calls.
    handle.reset();
    send_n(&mut svc, 9, 500).await;
    assert_eq!(handle.state(), State::Closed);
    send_n(&mut svc, 1, 200).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_regardless_of_the_window() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(1000)
        .minimum_calls(1000)
        .failure_rate_threshold(1.0)
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    send_n(&mut svc, 100, 200).await;
    send_n(&mut svc, 2, 500).await;
    send_n(&mut svc, 1, 200).await;
    send_n(&mut svc, 2, 0).await; // transport errors
    assert_eq!(handle.state(), State::Closed, "the success broke the run");
    send_n(&mut svc, 1, 503).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_on_the_slow_call_rate() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(4)
        .failure_rate_threshold(1.0)
        .slow_call_duration(SECOND)
        .slow_call_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    send_n(&mut svc, 2, 200).await;
    send(&mut svc, slow_plan(200, SECOND)).await.unwrap(); // not slower than the limit
    send(&mut svc, slow_plan(200, 2 * SECOND)).await.unwrap();
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures, snapshot.slow_calls), (4, 0, 1));
    assert_eq!(handle.state(), State::Closed);
    send(&mut svc, slow_plan(200, 2 * SECOND)).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "2 slow of 5 calls");
    send(&mut svc, slow_plan(200, 2 * SECOND)).await.unwrap();
    assert_eq!(handle.state(), State::Open, "3 slow of 6 calls");
}

#[tokio::test(start_paused = true)]
async fn time_window_counts_only_the_last_seconds() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(10))
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    send_n(&mut svc, 3, 500).await; // 3 calls < minimum 4
    advance(Duration::from_secs(11)).await;
    assert_eq!(handle.snapshot().calls, 0, "the old second left the window");
    send_n(&mut svc, 1, 200).await;
    send_n(&mut svc, 2, 500).await;
    assert_eq!(handle.state(), State::Closed, "3 calls in the window; the first 3 failures expired");

    advance(Duration::from_secs(5)).await; // still inside the window
    send_n(&mut svc, 1, 500).await;
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (4, 3));
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_calling_the_inner_service() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .open_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

    for _ in 0..2 {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call("hello");
        let (req, send_response) = take_request(&mut inner);
        assert_eq!(req, "hello");
        send_response.send_response(Response::builder().status(502).body(()).unwrap());
        assert_eq!(fut.await.unwrap().status(), 502);
    }
    assert_eq!(handle.state(), State::Open);

    advance(Duration::from_secs(10)).await;
    assert!(svc.poll_ready().is_ready());
    let err = svc.call("hello").await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.retry_after(), Duration::from_secs(20), "the time left in the open interval");
    assert!(inner.poll_request().is_pending(), "no request reached the inner service");
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_after_enough_successful_probes() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .success_threshold(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    send_n(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
    advance(Duration::from_secs(9)).await;
    assert!(rejection(send(&mut svc, plan(200)).await).is_some());

    advance(SECOND).await;
    send(&mut svc, plan(200)).await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen, "one success of two");
    send(&mut svc, plan(200)).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0, "closing starts a fresh window");
}

#[tokio::test(start_paused = true)]
async fn failed_probes_reopen_for_growing_intervals_reset_after_closing() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .open_interval_multiplier(2.0)
        .max_open_interval(Duration::from_secs(35))
        .success_threshold(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    let retry_after = |result| rejection(result).expect("rejected").retry_after();

    send_n(&mut svc, 1, 500).await;
    assert_eq!(retry_after(send(&mut svc, plan(200)).await), Duration::from_secs(10));
    for expected in [20, 35, 35] {
        advance(Duration::from_secs(35)).await;
        send(&mut svc, plan(500)).await.unwrap(); // the probe fails
        assert_eq!(handle.state(), State::Open);
        assert_eq!(retry_after(send(&mut svc, plan(200)).await), Duration::from_secs(expected));
    }
    advance(Duration::from_secs(35)).await;
    send(&mut svc, plan(200)).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    send_n(&mut svc, 1, 500).await;
    assert_eq!(retry_after(send(&mut svc, plan(200)).await), Duration::from_secs(10), "back to the base");
}

#[tokio::test(start_paused = true)]
async fn jitter_shortens_the_open_interval() {
    fastrand::seed(7);
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .open_interval_jitter(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    let mut shortened = 0;
    for _ in 0..20 {
        handle.reset();
        send_n(&mut svc, 1, 500).await;
        let after = rejection(send(&mut svc, plan(200)).await).unwrap().retry_after();
        assert!((Duration::from_secs(5)..=Duration::from_secs(10)).contains(&after), "{after:?}");
        shortened += usize::from(after < Duration::from_secs(10));
    }
    assert!(shortened > 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_bounds_concurrent_probes_and_dropped_probes_give_their_permit_back() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(10))
        .permitted_calls_in_half_open(2)
        .success_threshold(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

    assert!(svc.poll_ready().is_ready());
    let fut = svc.call("trip");
    take_request(&mut inner).1.send_response(Response::builder().status(500).body(()).unwrap());
    fut.await.unwrap();
    advance(Duration::from_secs(10)).await;

    assert!(svc.poll_ready().is_ready());
    let probe_a = svc.call("a");
    assert!(svc.poll_ready().is_ready());
    let probe_b = svc.call("b");
    assert_eq!(handle.state(), State::HalfOpen);
    assert!(svc.poll_ready().is_ready());
    let open = svc.call("c").await.unwrap_err();
    assert!(open.is::<CircuitOpen>(), "a third concurrent probe is rejected");

    drop(probe_a);
    assert!(svc.poll_ready().is_ready());
    let probe_d = svc.call("d");

    let (req, a) = take_request(&mut inner);
    assert_eq!(req, "a");
    drop(a);
    let (req, b) = take_request(&mut inner);
    assert_eq!(req, "b");
    b.send_response(Response::new(()));
    let (req, d) = take_request(&mut inner);
    assert_eq!(req, "d", "the dropped probe's permit was given back");
    assert!(inner.poll_request().is_pending(), "\"c\" never reached the inner service");
    d.send_response(Response::new(()));
    probe_b.await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen);
    probe_d.await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn default_classifier_fails_on_errors_5xx_and_429_only() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(1).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    for status in [200, 201, 301, 400, 401, 404, 409, 422] {
        send_n(&mut svc, 1, status).await;
        assert_eq!(handle.state(), State::Closed, "{status} is a success of the dependency");
    }
    for status in [0, 429, 500, 503] {
        handle.reset();
        let result = send(&mut svc, plan(status)).await;
        if status == 0 {
            assert_eq!(
                result.unwrap_err().to_string(),
                "connection refused",
                "the inner error passes through"
            );
        }
        assert_eq!(handle.state(), State::Open, "{status} is a failure");
    }
}

#[tokio::test(start_paused = true)]
async fn a_closure_can_classify() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .classifier(|result: Result<&Response<()>, &BoxError>| match result {
            Ok(res) if res.status() == 404 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    send_n(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Closed, "this classifier ignores 5xx");
    send_n(&mut svc, 1, 404).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let layer = CircuitBreakerLayer::builder().count_window(10).minimum_calls(4).build().unwrap();
    let backend = Backend::default();
    let mut first = ServiceBuilder::new().layer(layer.clone()).service(backend.service());
    let mut clone = first.clone();
    let mut other = layer.layer(backend.service());

    send_n(&mut first, 4, 500).await;
    assert_eq!(clone.handle().state(), State::Open);
    assert!(rejection(send(&mut clone, plan(200)).await).is_some());
    assert!(rejection(send(&mut other, plan(200)).await).is_some());
    assert_eq!(backend.calls(), 4);
}

#[test]
fn the_inner_service_is_reachable() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let mut svc = layer.layer(42_u8);
    assert_eq!(*svc.get_ref(), 42);
    *svc.get_mut() = 7;
    assert_eq!(svc.into_inner(), 7);
}

#[tokio::test(start_paused = true)]
async fn operator_states() {
    let layer = CircuitBreakerLayer::builder().count_window(10).minimum_calls(2).build().unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let mut svc = layer.layer(backend.service());

    handle.force_open();
    assert_eq!(handle.state(), State::ForcedOpen);
    let open = rejection(send(&mut svc, plan(200)).await).expect("forced open rejects");
    assert_eq!(open.retry_after(), Duration::ZERO);
    assert_eq!(backend.calls(), 0);

    handle.disable();
    send_n(&mut svc, 5, 500).await;
    assert_eq!(handle.state(), State::Disabled);
    assert_eq!(handle.snapshot().calls, 0, "disabled records nothing");
    assert_eq!(backend.calls(), 5);

    handle.metrics_only();
    send_n(&mut svc, 5, 500).await;
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, State::MetricsOnly);
    assert_eq!((snapshot.calls, snapshot.failures), (5, 5), "metrics-only records");
    assert_eq!(backend.calls(), 10, "and never rejects");

    handle.reset();
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.state, snapshot.calls), (State::Closed, 0));
    send_n(&mut svc, 2, 500).await;
    assert_eq!(handle.state(), State::Open);
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
    send(&mut svc, plan(200)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn registry_makes_one_shared_breaker_per_key() {
    let registry = CircuitBreakerLayer::builder().consecutive_failures(1).build_registry().unwrap();
    let backend = Backend::default();
    let mut payments = registry.layer("payments").layer(backend.service());
    let mut payments_again = registry.clone().layer("payments").layer(backend.service());
    let mut catalog = registry.layer("catalog").layer(backend.service());

    send_n(&mut payments, 1, 500).await;
    assert!(rejection(send(&mut payments_again, plan(200)).await).is_some());
    send(&mut catalog, plan(200)).await.unwrap();

    let handles = registry.handles();
    let listed: Vec<_> = handles.iter().map(|h| (h.name().to_owned(), h.state())).collect();
    assert_eq!(listed, [("catalog".to_owned(), State::Closed), ("payments".to_owned(), State::Open)]);
    registry.handle("payments").reset();
    assert_eq!(payments.handle().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
#[expect(clippy::float_cmp, reason = "gauges and counters hold exact small integers")]
async fn metrics_record_state_rejections_and_transitions() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder()
            .name("inventory")
            .consecutive_failures(1)
            .open_interval(Duration::from_secs(10))
            .success_threshold(1)
            .build()
            .unwrap()
    });
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    send_n(&mut svc, 1, 500).await;
    for _ in 0..2 {
        assert!(rejection(send(&mut svc, plan(200)).await).is_some());
    }
    // Snapshots drain the debugging recorder: each one shows what changed since the previous one.
    let values = metric_values(&snapshotter);
    assert_eq!(values[&("state", "open")], 1.0);
    assert_eq!(values[&("state", "closed")], 0.0);
    assert_eq!(values[&("transitions", "open")], 1.0);
    assert_eq!(values[&("transitions", "closed")], 0.0, "starting closed is not a transition");
    assert_eq!(values[&("rejected", "")], 2.0);

    advance(Duration::from_secs(10)).await;
    send_n(&mut svc, 1, 200).await; // the probe closes it
    handle.metrics_only();
    send_n(&mut svc, 3, 500).await; // would open: reported once, never rejected
    let values = metric_values(&snapshotter);
    for (state, gauge, transitions) in [
        ("closed", 0.0, 1.0),
        ("open", 0.0, 1.0), // the metrics-only "would open"
        ("half_open", 0.0, 1.0),
        ("forced_open", 0.0, 0.0),
        ("disabled", 0.0, 0.0),
        ("metrics_only", 1.0, 1.0),
    ] {
        assert_eq!(values[&("state", state)], gauge, "gauge {state}");
        assert_eq!(values[&("transitions", state)], transitions, "transitions into {state}");
    }
    assert_eq!(values[&("rejected", "")], 0.0, "metrics-only never rejects");
}

/// `(kind, state label)` → value, for the breaker named `inventory`.
fn metric_values(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> HashMap<(&'static str, &'static str), f64> {
    use palisade::metric_names::{
        CIRCUIT_BREAKER_REJECTED_CALLS, CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS, LABEL_NAME,
        LABEL_STATE,
    };
    let states = ["closed", "open", "half_open", "forced_open", "disabled", "metrics_only"];
    let mut values = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
        assert_eq!(label(LABEL_NAME).as_deref(), Some("inventory"));
        let state = label(LABEL_STATE).map_or("", |s| states.into_iter().find(|&x| x == s).unwrap());
        let kind = match key.name() {
            CIRCUIT_BREAKER_STATE => "state",
            CIRCUIT_BREAKER_TRANSITIONS => "transitions",
            CIRCUIT_BREAKER_REJECTED_CALLS => "rejected",
            other => panic!("unexpected metric {other}"),
        };
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.0,
            DebugValue::Histogram(_) => panic!("no histogram expected"),
        };
        values.insert((kind, state), value);
    }
    values
}

#[test]
fn builder_rejects_impossible_settings() {
    let b = CircuitBreakerLayer::builder;
    let cases = [
        (b().failure_rate_threshold(1.5).build(), "failure_rate_threshold"),
        (b().failure_rate_threshold(-0.1).build(), "failure_rate_threshold"),
        (b().failure_rate_threshold(f64::NAN).build(), "failure_rate_threshold"),
        (b().slow_call_rate_threshold(2.0).build(), "slow_call_rate_threshold"),
        (b().slow_call_rate_threshold(f64::NAN).build(), "slow_call_rate_threshold"),
        (b().count_window(0).build(), "count_window"),
        (b().time_window(Duration::ZERO).build(), "time_window"),
        (b().time_window(Duration::from_secs(3601)).build(), "time_window"),
        (b().minimum_calls(0).build(), "minimum_calls"),
        (b().permitted_calls_in_half_open(0).build(), "permitted_calls_in_half_open"),
        (b().success_threshold(0).build(), "success_threshold"),
        (b().consecutive_failures(0).build(), "consecutive_failures"),
        (
            b().open_interval(Duration::from_secs(10)).max_open_interval(Duration::from_secs(9)).build(),
            "max_open_interval",
        ),
        (b().open_interval_multiplier(0.9).build(), "open_interval_multiplier"),
        (b().open_interval_multiplier(f64::NAN).build(), "open_interval_multiplier"),
        (b().open_interval_jitter(1.1).build(), "open_interval_jitter"),
    ];
    for (result, setting) in cases {
        assert_eq!(result.unwrap_err().setting(), setting);
    }
    assert_eq!(b().count_window(0).build_registry().unwrap_err().setting(), "count_window");
    assert!(b().failure_rate_threshold(0.0).failure_rate_threshold(1.0).build().is_ok());
    assert!(b().time_window(Duration::from_secs(3600)).build().is_ok());
    assert!(b().open_interval_multiplier(1.0).max_open_interval(Duration::from_secs(30)).build().is_ok());
}

#[test]
fn calls_from_many_threads_are_all_counted_and_share_one_window() {
    let layer = CircuitBreakerLayer::builder().count_window(1_000_000).minimum_calls(100).build().unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let svc = layer.layer(backend.service());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let mut svc = svc.clone();
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                runtime.block_on(send_n(&mut svc, 10_000, 200));
            });
        }
    });
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (40_000, 0), "no call lost across the shards");
    assert_eq!(backend.calls(), 40_000);
}

#[test]
fn a_call_completed_on_another_thread_is_recorded_in_the_same_breaker() {
    use tower::{Service, ServiceExt};
    let layer = CircuitBreakerLayer::builder().count_window(10).minimum_calls(2).build().unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    // One call started and finished on this thread, one started here (through a clone) and finished on
    // another thread: both count in the one window, whatever stripe each call went through.
    let mut svc = layer.layer(backend.service());
    let mut clone = svc.clone();
    runtime().block_on(async { send(&mut svc, plan(500)).await.unwrap() });
    runtime().block_on(clone.ready()).unwrap();
    let future = clone.call(plan(500));
    let res = std::thread::spawn(move || runtime().block_on(future)).join().unwrap();
    assert_eq!(res.unwrap().status(), 500);
    assert_eq!(handle.state(), State::Open);
    assert!(rejection(runtime().block_on(send(&mut svc, plan(200)))).is_some());
    assert_eq!(backend.calls(), 2);
}
