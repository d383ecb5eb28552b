//! Model-checked: every interleaving of a few threads on one breaker window (loom).
//!
//! Run with `crates/middleware/loom.sh` (it builds with `--cfg palisade_loom`, which switches the
//! window's atomics and mutex to loom's, in a target dir of its own). A plain `cargo test` skips it.
#![cfg(palisade_loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Response;
use loom::thread;
use palisade::BoxError;
use palisade::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, State};
use tower::{Layer, Service, service_fn};

/// A dependency that answers at once with the status it is given.
fn backend() -> impl Service<u16, Response = Response<()>, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|status: u16| std::future::ready(Ok(Response::builder().status(status).body(()).unwrap())))
}

/// Polls a future that is ready at once (every future here is).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the backend answers at once"),
    }
}

fn call<S: Service<u16, Response = Response<()>, Error = BoxError>>(svc: &mut S, status: u16) {
    assert!(now(std::future::poll_fn(|cx| svc.poll_ready(cx))).is_ok());
    let _ = now(svc.call(status));
}

fn windows() -> [CircuitBreakerBuilder; 2] {
    [
        CircuitBreakerLayer::builder().count_window(10),
        CircuitBreakerLayer::builder().time_window(Duration::from_secs(60)),
    ]
}

/// Two failures racing a success: each counted once, and the window trips when (and only when) it
/// holds `minimum_calls`.
#[test]
fn racing_failures_are_counted_once_and_trip_at_minimum_calls() {
    for window in 0..2 {
        loom::model(move || {
            let layer =
                windows()[window].clone().minimum_calls(3).failure_rate_threshold(0.5).build().unwrap();
            let handle = layer.handle();
            let svc = layer.layer(backend());
            let threads: Vec<_> = [500, 500]
                .into_iter()
                .map(|status| {
                    let mut svc = svc.clone();
                    thread::spawn(move || call(&mut svc, status))
                })
                .collect();
            let mut svc = svc;
            call(&mut svc, 200);
            for t in threads {
                t.join().unwrap();
            }
            let snapshot = handle.snapshot();
            assert_eq!(snapshot.state, State::Open, "2 failures of 3 calls");
            assert_eq!((snapshot.calls, snapshot.failures), (3, 2));
        });
    }
}

/// Two racing failures below `minimum_calls`: no phantom call makes up the minimum.
#[test]
fn racing_failures_never_make_up_minimum_calls() {
    for window in 0..2 {
        loom::model(move || {
            let layer =
                windows()[window].clone().minimum_calls(3).failure_rate_threshold(0.5).build().unwrap();
            let handle = layer.handle();
            let svc = layer.layer(backend());
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let mut svc = svc.clone();
                    thread::spawn(move || call(&mut svc, 500))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let snapshot = handle.snapshot();
            assert_eq!((snapshot.state, snapshot.calls, snapshot.failures), (State::Closed, 2, 2));
        });
    }
}

/// A call admitted before a reset completes while the reset runs: it never counts in the new
/// window, whichever finishes first.
#[test]
fn a_call_admitted_before_a_reset_never_counts_after_it() {
    for (window, status) in [(0, 200), (0, 500), (1, 200), (1, 500)] {
        loom::model(move || {
            let layer = windows()[window].clone().minimum_calls(100).build().unwrap();
            let handle = layer.handle();
            let mut svc = layer.layer(backend());
            assert!(now(std::future::poll_fn(|cx| svc.poll_ready(cx))).is_ok());
            let admitted = svc.call(status);
            let completes = thread::spawn(move || {
                let _ = now(admitted);
            });
            let resets = {
                let handle = handle.clone();
                thread::spawn(move || handle.reset())
            };
            completes.join().unwrap();
            resets.join().unwrap();
            let snapshot = handle.snapshot();
            assert_eq!((snapshot.calls, snapshot.failures), (0, 0), "window {window}, status {status}");
        });
    }
}
