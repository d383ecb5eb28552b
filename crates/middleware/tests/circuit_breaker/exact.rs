//! Exact counts: under concurrency, across transitions, and in a time window.

use std::sync::Barrier;
use std::time::Duration;

use http::Response;
use palisade::circuit_breaker::{CircuitBreakerLayer, State};
use tokio::time::advance;
use tower::{Layer, Service};
use tower_test::mock;

use crate::support::{Backend, plan, send, send_n, take_request};

const SECOND: Duration = Duration::from_secs(1);

/// Runs `threads` threads at once, each driving its own clone of `svc` on its own runtime through
/// `calls` calls, call `i` answered with `status(thread, i)`.
fn hammer<S>(svc: &S, threads: usize, calls: usize, status: impl Fn(usize, usize) -> u16 + Sync)
where
    S: Service<http::Request<crate::support::Plan>, Response = Response<()>, Error = palisade::BoxError>
        + Clone
        + Send,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let mut svc = svc.clone();
            let (barrier, status) = (&barrier, &status);
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                barrier.wait();
                runtime.block_on(async {
                    for i in 0..calls {
                        let _ = send(&mut svc, plan(status(thread, i))).await;
                    }
                });
            });
        }
    });
}

#[test]
fn concurrent_failures_are_each_counted_once_and_minimum_calls_is_honoured() {
    // 4 threads × 49 failures = 196 calls: below `minimum_calls` (200), whatever the interleaving.
    // Phantom positions (two racing failures taking `head + 1`) would count more calls than were made
    // and open the breaker early.
    for round in 0..20 {
        let layer = CircuitBreakerLayer::builder().count_window(1000).minimum_calls(200).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Backend::default().service());
        hammer(&svc, 4, 49, |_, _| 500);
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.state, State::Closed, "round {round}: opened below minimum_calls");
        assert_eq!((snapshot.calls, snapshot.failures), (196, 196), "round {round}");
        // The 200th call (4 more failures) reaches the minimum.
        hammer(&svc, 4, 1, |_, _| 500);
        assert_eq!(handle.state(), State::Open, "round {round}");
    }
}

#[test]
fn stress_final_counts_match_the_calls_made() {
    // 4 threads × 2 000 calls, one in 5 failing; a threshold of 1.0 never trips on a mixed window.
    let failing = |thread: usize, i: usize| (thread + i).is_multiple_of(5);
    let expected_failures = (0..4).map(|t| (0..2000).filter(|&i| failing(t, i)).count() as u64).sum::<u64>();
    for builder in [
        CircuitBreakerLayer::builder().count_window(1_000_000),
        CircuitBreakerLayer::builder().time_window(Duration::from_secs(3600)),
        CircuitBreakerLayer::builder().count_window(1_000_000).consecutive_failures(1_000),
    ] {
        let layer = builder.minimum_calls(100).failure_rate_threshold(1.0).build().unwrap();
        let handle = layer.handle();
        let backend = Backend::default();
        let svc = layer.layer(backend.service());
        hammer(&svc, 4, 2000, |t, i| if failing(t, i) { 500 } else { 200 });
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.state, State::Closed);
        assert_eq!((snapshot.calls, snapshot.failures), (8000, expected_failures), "{layer:?}");
        assert_eq!(backend.calls(), 8000);
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_a_transition_never_counts_in_the_new_window() {
    for time_window in [false, true] {
        let builder = CircuitBreakerLayer::builder().minimum_calls(100);
        let builder = if time_window { builder.time_window(10 * SECOND) } else { builder.count_window(100) };
        let layer = builder.build().unwrap();
        let handle = layer.handle();
        let (mut svc, mut inner) = mock::spawn_layer::<&str, Response<()>, _>(layer);

        assert!(svc.poll_ready().is_ready());
        let success = svc.call("before");
        assert!(svc.poll_ready().is_ready());
        let failure = svc.call("before");
        handle.reset(); // a new, empty window
        take_request(&mut inner).1.send_response(Response::new(()));
        take_request(&mut inner).1.send_response(Response::builder().status(500).body(()).unwrap());
        success.await.unwrap();
        failure.await.unwrap();
        let snapshot = handle.snapshot();
        assert_eq!((snapshot.calls, snapshot.failures), (0, 0), "time window: {time_window}");

        assert!(svc.poll_ready().is_ready());
        let after = svc.call("after");
        take_request(&mut inner).1.send_response(Response::new(()));
        after.await.unwrap();
        assert_eq!(handle.snapshot().calls, 1, "time window: {time_window}");
    }
}

#[tokio::test(start_paused = true)]
async fn time_window_evaluates_the_success_that_reaches_minimum_calls() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(10 * SECOND)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    send_n(&mut svc, 2, 500).await;
    send_n(&mut svc, 1, 200).await;
    assert_eq!(handle.state(), State::Closed, "3 calls, below the minimum");
    send_n(&mut svc, 1, 200).await;
    assert_eq!(handle.state(), State::Open, "the 4th call, a success, makes 2 of 4");
}

#[tokio::test(start_paused = true)]
async fn time_window_re_evaluates_after_old_seconds_leave_it() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(10 * SECOND)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    send_n(&mut svc, 10, 200).await;
    advance(5 * SECOND).await;
    send_n(&mut svc, 3, 500).await;
    assert_eq!(handle.state(), State::Closed, "3 of 13");
    advance(6 * SECOND).await; // the 10 successes leave the window: 3 calls, below the minimum
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (3, 3));
    send_n(&mut svc, 1, 200).await;
    assert_eq!(handle.state(), State::Open, "3 failures of 4 calls, reached by a success");
}

#[tokio::test(start_paused = true)]
async fn time_window_slots_reused_for_a_new_second_start_empty() {
    let layer = CircuitBreakerLayer::builder().time_window(2 * SECOND).minimum_calls(1_000).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());

    for second in 0..20_u64 {
        send_n(&mut svc, 3, 200).await;
        send_n(&mut svc, 1, 500).await;
        let snapshot = handle.snapshot();
        let seconds = (second + 1).min(2);
        assert_eq!((snapshot.calls, snapshot.failures), (4 * seconds, seconds), "second {second}");
        advance(SECOND).await;
    }
    advance(10 * SECOND).await;
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (0, 0), "every second left the window");
}

#[tokio::test(start_paused = true)]
async fn time_window_counts_match_a_naive_model_across_seconds() {
    // A long window with calls spread over many seconds, gaps included: the aggregate's running
    // totals agree with recounting the calls of the last W seconds.
    let window = 7_u64;
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(window))
        .minimum_calls(1_000_000)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Backend::default().service());
    let mut history: Vec<(u64, u64, u64)> = Vec::new(); // (second, calls, failures)
    let mut rng = fastrand::Rng::with_seed(7);
    for second in 0..60_u64 {
        let (calls, failures) = if rng.u8(..4) == 0 { (0, 0) } else { (rng.u64(1..6), rng.u64(0..3)) };
        send_n(&mut svc, (calls - failures.min(calls)) as usize, 200).await;
        send_n(&mut svc, failures.min(calls) as usize, 500).await;
        history.push((second, calls, failures.min(calls)));
        let in_window = history.iter().filter(|(s, _, _)| s + window > second);
        let expected = in_window.fold((0, 0), |(c, f), (_, calls, failures)| (c + calls, f + failures));
        let snapshot = handle.snapshot();
        assert_eq!((snapshot.calls, snapshot.failures), expected, "second {second}");
        advance(SECOND).await;
    }
}
