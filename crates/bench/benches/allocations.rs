//! Heap allocations per call, counted by an instrumented global allocator (`stats_alloc`: atomic
//! counters around `std::alloc::System`). A process of its own, so the counter does not slow the
//! criterion targets. Prints one line per row: allocations (including reallocations) per call, and
//! for the client-side rows the size of the service's response future.
//!
//! The server rows run under the same `fmt` subscriber and with one Prometheus recorder installed by
//! hand; the peer stack uses axum-prometheus's `BaseMetricLayer`, the same service as
//! `PrometheusMetricLayer` without the recorder that one installs.

#![allow(missing_docs)]

mod common;

use std::alloc::System;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum_prometheus::BaseMetricLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::metrics::ServerMetricsLayer;
use palisade::problem::ProblemLayer;
use palisade::retry::RetryLayer;
use palisade::timeout::{ServerDeadlineLayer, TimeoutLayer};
use palisade::trace::ServerTraceLayer;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreakerLayer;
use tracing::Level;

use common::{
    bare, bare_for, call_loop_with, get_empty, palisade_stack, peer_stack, post_empty, router, runtime,
    server_loop,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Calls per client-side row.
const N: u64 = 100_000;
/// Requests per server row.
const N_SERVER: u64 = 10_000;

fn print(name: &str, stats: stats_alloc::Stats, n: u64, future_size: Option<usize>) {
    let allocs = stats.allocations + stats.reallocations;
    let future = future_size.map(|size| format!(", response future {size} B")).unwrap_or_default();
    println!(
        "allocations/{name:<40} {:>7.2} allocations/call {:>8.1} bytes/call  ({allocs} in {n} calls{future})",
        allocs as f64 / n as f64,
        stats.bytes_allocated as f64 / n as f64,
    );
}

fn row<S>(rt: &tokio::runtime::Runtime, name: &str, svc: S)
where
    S: Service<http::Request<()>>,
    S::Error: std::fmt::Debug,
{
    row_with(rt, name, svc, || http::Request::new(()));
}

fn row_with<S, B>(rt: &tokio::runtime::Runtime, name: &str, mut svc: S, make: impl Fn() -> http::Request<B>)
where
    S: Service<http::Request<B>>,
    S::Error: std::fmt::Debug,
{
    // Warm up: lazily initialised state (thread locals, clocks, ...) is not a per-call cost.
    rt.block_on(call_loop_with(&mut svc, 1_000, &make));
    let region = Region::new(GLOBAL);
    rt.block_on(call_loop_with(&mut svc, N, &make));
    print(name, region.change(), N, Some(size_of::<S::Future>()));
}

fn server_row(rt: &tokio::runtime::Runtime, name: &str, app: &axum::Router) {
    rt.block_on(server_loop(app, 1_000));
    let region = Region::new(GLOBAL);
    rt.block_on(server_loop(app, N_SERVER));
    print(name, region.change(), N_SERVER, None);
}

/// Like [`clone_row`], but each call goes to a service freshly made by `layer` around the bare service
/// (`layer.layer(bare()).oneshot(req)`), the way axum's `Router::layer` applies a layer to a handler's
/// route for every request when the router was not given its state with `with_state`.
fn layer_row<L>(rt: &tokio::runtime::Runtime, name: &str, layer: &L)
where
    L: Layer<
        tower::util::ServiceFn<
            fn(http::Request<()>) -> std::future::Ready<Result<http::Response<()>, std::convert::Infallible>>,
        >,
    >,
    L::Service: Service<http::Request<()>>,
    <L::Service as Service<http::Request<()>>>::Error: std::fmt::Debug,
{
    fn answer(
        _req: http::Request<()>,
    ) -> std::future::Ready<Result<http::Response<()>, std::convert::Infallible>> {
        std::future::ready(Ok(http::Response::new(())))
    }
    let run = |n: u64| {
        rt.block_on(async {
            for _ in 0..n {
                let svc = layer.layer(tower::service_fn(answer as fn(_) -> _));
                std::hint::black_box(svc.oneshot(http::Request::new(())).await.expect("call"));
            }
        });
    };
    run(1_000);
    let region = Region::new(GLOBAL);
    run(N);
    print(name, region.change(), N, None);
}

/// Like [`row`], but each call goes to a fresh clone of `svc` (`svc.clone().oneshot(req)`), the way
/// axum's `Route` calls a layered service for every request.
fn clone_row<S>(rt: &tokio::runtime::Runtime, name: &str, svc: &S)
where
    S: Service<http::Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let run = |n: u64| {
        rt.block_on(async {
            for _ in 0..n {
                std::hint::black_box(svc.clone().oneshot(http::Request::new(())).await.expect("call"));
            }
        });
    };
    run(1_000);
    let region = Region::new(GLOBAL);
    run(N);
    print(name, region.change(), N, None);
}

fn main() {
    let rt = runtime();
    row(&rt, "bare", bare());
    row(&rt, "breaker/palisade", CircuitBreakerLayer::builder().build().expect("valid config").layer(bare()));
    row(
        &rt,
        "breaker/palisade_time_window",
        CircuitBreakerLayer::builder()
            .time_window(Duration::from_mins(1))
            .build()
            .expect("valid config")
            .layer(bare()),
    );
    row(
        &rt,
        "breaker/tower_resilience",
        TrBreakerLayer::builder().build().expect("valid config").layer(bare()),
    );
    clone_row(&rt, "bare/clone_per_call", &bare());
    clone_row(
        &rt,
        "breaker/palisade/clone_per_call",
        &CircuitBreakerLayer::builder().build().expect("valid config").layer(bare()),
    );
    clone_row(
        &rt,
        "breaker/tower_resilience/clone_per_call",
        &TrBreakerLayer::builder().build().expect("valid config").layer(bare()),
    );
    layer_row(
        &rt,
        "breaker/palisade/layer_per_call",
        &CircuitBreakerLayer::builder().build().expect("valid config"),
    );
    row_with(&rt, "bare/get_empty_body", bare_for(), get_empty);
    row_with(&rt, "retry/palisade_get", RetryLayer::new().layer(bare_for()), get_empty);
    row_with(&rt, "retry/palisade_post", RetryLayer::new().layer(bare_for()), post_empty);

    common::install_subscriber();
    let _prometheus = common::install_prometheus();
    server_row(&rt, "server/a_bare_router", &router());
    server_row(&rt, "server/a_identity_layer", &router().layer(tower::layer::util::Identity::new()));
    server_row(&rt, "server/b_peer_stack", &peer_stack!(BaseMetricLayer::new(), Level::DEBUG));
    server_row(&rt, "server/b_peer_stack_trace_info", &peer_stack!(BaseMetricLayer::new(), Level::INFO));
    server_row(&rt, "server/c_axum_prometheus", &router().layer(BaseMetricLayer::new()));
    server_row(&rt, "server/d_palisade_stack", &palisade_stack(Level::INFO));
    server_row(&rt, "server/d_palisade_stack_trace_debug", &palisade_stack(Level::DEBUG));
    server_row(&rt, "server/e_palisade_metrics", &router().layer(ServerMetricsLayer::new()));
    server_row(&rt, "server/f_palisade_trace", &router().layer(ServerTraceLayer::new()));
    server_row(
        &rt,
        "server/f_palisade_trace_debug",
        &router().layer(ServerTraceLayer::builder().level(Level::DEBUG).build().expect("valid")),
    );
    server_row(
        &rt,
        "server/g_palisade_breaker",
        &router().layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(CircuitBreakerLayer::builder().build().expect("valid config")),
        ),
    );
    server_row(&rt, "server/g0_palisade_problem_only", &router().layer(ProblemLayer::new()));
    server_row(
        &rt,
        "server/g_palisade_deadline_timeout",
        &router().layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(ServerDeadlineLayer::new())
                .layer(TimeoutLayer::new(Duration::from_secs(10)).expect("valid timeout")),
        ),
    );
    server_row(
        &rt,
        "server/h_tower_http_timeout",
        &router().layer(tower_http::timeout::TimeoutLayer::with_status_code(
            http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(10),
        )),
    );
    server_row(
        &rt,
        "server/h_tower_resilience_breaker",
        &router().layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(common::peer_breaker_error))
                .layer(TrBreakerLayer::builder().build().expect("valid config")),
        ),
    );
}
