//! Per-call cost of the client-side layers around a bare `tower::service_fn`:
//! the breaker's closed path (palisade vs tower-resilience), its scaling over 2 threads sharing
//! one breaker, its cost across window sizes, and retry when no retry is needed.
//!
//! Every row runs the same loop (`common::call_loop`: `ready().await` + `call(req).await` on a
//! current-thread tokio runtime, timed with the thread's CPU time), so `row − bare` is the layer's
//! overhead per call.

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::RetryLayer;
use tower::Layer;
use tower_resilience::circuitbreaker::{CircuitBreakerLayer as TrBreakerLayer, SlidingWindowType};

use common::{
    ThreadClock, bare, bare_for, call_loop, call_loop_with, get_empty, post_empty, runtime, threaded_calls,
};

fn breaker(window: u64) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().count_window(window).build().expect("valid palisade config")
}

fn breaker_timed() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().time_window(Duration::from_mins(1)).build().expect("valid palisade config")
}

fn tr_breaker(window: usize) -> TrBreakerLayer {
    TrBreakerLayer::builder().sliding_window_size(window).build().expect("valid tower-resilience config")
}

fn tr_breaker_timed() -> TrBreakerLayer {
    TrBreakerLayer::builder()
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_duration(Duration::from_mins(1))
        .build()
        .expect("valid tower-resilience config")
}

/// Row 1: Breaker closed path, one thread.
fn breaker_closed(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("breaker_closed");
    g.throughput(Throughput::Elements(1));

    let mut svc = bare();
    g.bench_function("bare", |b| b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n))));

    let mut svc = breaker(100).layer(bare());
    g.bench_function("palisade", |b| b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n))));

    let mut svc = tr_breaker(100).layer(bare());
    g.bench_function("tower_resilience", |b| b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n))));
    g.finish();
}

/// Row 3: Two threads on one shared breaker (clones of the same service): wall-clock throughput,
/// and CPU time per call.
fn breaker_threads(c: &mut Criterion) {
    for (group, clock) in [("breaker_threads", ThreadClock::Wall), ("breaker_threads_cpu", ThreadClock::Cpu)]
    {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        for threads in [1_usize, 2] {
            let svc = bare();
            g.bench_with_input(BenchmarkId::new("bare", threads), &threads, |b, &t| {
                b.iter_custom(|n| threaded_calls(&svc, t, n, clock));
            });
            let svc = breaker(100).layer(bare());
            g.bench_with_input(BenchmarkId::new("palisade", threads), &threads, |b, &t| {
                b.iter_custom(|n| threaded_calls(&svc, t, n, clock));
            });
            let svc = tr_breaker(100).layer(bare());
            g.bench_with_input(BenchmarkId::new("tower_resilience", threads), &threads, |b, &t| {
                b.iter_custom(|n| threaded_calls(&svc, t, n, clock));
            });
            // The failure path: every 10th call of each thread is a 500, counted under the breaker's
            // mutex; a threshold of 1.0 keeps it closed.
            let svc = failing_one_in_10();
            g.bench_with_input(BenchmarkId::new("bare_failing_1_in_10", threads), &threads, |b, &t| {
                b.iter_custom(|n| threaded_calls(&svc, t, n, clock));
            });
            let layer =
                CircuitBreakerLayer::builder().failure_rate_threshold(1.0).build().expect("valid config");
            let svc = layer.layer(failing_one_in_10());
            g.bench_with_input(BenchmarkId::new("palisade_failing_1_in_10", threads), &threads, |b, &t| {
                b.iter_custom(|n| threaded_calls(&svc, t, n, clock));
            });
        }
        g.finish();
    }
}

/// [`bare`], but every 10th call of each thread answers `500`.
fn failing_one_in_10() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<http::Response<()>, std::convert::Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|_req: http::Request<()>| {
        thread_local! {
            static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = CALLS.with(|calls| {
            calls.set(calls.get().wrapping_add(1));
            calls.get()
        });
        let status = if n.is_multiple_of(10) { 500 } else { 200 };
        std::future::ready(Ok(http::Response::builder().status(status).body(()).expect("valid response")))
    })
}

/// Row 4: Breaker cost across window sizes.
fn breaker_windows(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("breaker_window");
    g.throughput(Throughput::Elements(1));
    for window in [100_u64, 10_000, 1_000_000] {
        let mut svc = breaker(window).layer(bare());
        g.bench_function(BenchmarkId::new("palisade/count", window), |b| {
            b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n)));
        });
    }
    let mut svc = breaker_timed().layer(bare());
    g.bench_function("palisade/time_60s", |b| b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n))));
    for window in [100_usize, 10_000, 1_000_000] {
        let mut svc = tr_breaker(window).layer(bare());
        g.bench_function(BenchmarkId::new("tower_resilience/count", window), |b| {
            b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n)));
        });
    }
    let mut svc = tr_breaker_timed().layer(bare());
    g.bench_function("tower_resilience/time_60s", |b| b.iter_custom(|n| rt.block_on(call_loop(&mut svc, n))));
    g.finish();
}

/// Row 5: Retry when no retry is needed: a bodiless `GET` (retryable, so the layer keeps what a retry would
/// need) and a bodiless `POST` (not retryable: passed through).
fn retry_not_needed(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry_ok");
    g.throughput(Throughput::Elements(1));

    let mut svc = bare_for();
    g.bench_function("bare/get", |b| b.iter_custom(|n| rt.block_on(call_loop_with(&mut svc, n, get_empty))));
    let mut svc = RetryLayer::new().layer(bare_for());
    g.bench_function("palisade/get", |b| {
        b.iter_custom(|n| rt.block_on(call_loop_with(&mut svc, n, get_empty)));
    });

    let mut svc = bare_for();
    g.bench_function("bare/post", |b| {
        b.iter_custom(|n| rt.block_on(call_loop_with(&mut svc, n, post_empty)));
    });
    let mut svc = RetryLayer::new().layer(bare_for());
    g.bench_function("palisade/post", |b| {
        b.iter_custom(|n| rt.block_on(call_loop_with(&mut svc, n, post_empty)));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = breaker_closed, breaker_threads, breaker_windows, retry_not_needed
}
criterion_main!(benches);
