//! Server stacks on an axum `Router` (one `GET /v1/items/{id}` route), driven in-process with
//! `oneshot` on a clone of the router, one current-thread runtime, every row in this one process:
//!
//! - (a) the bare Router (measured first and again last, to show drift);
//! - (b) the peers: tower-http `TraceLayer` + axum-prometheus + tower-http `TimeoutLayer` +
//!   tower-resilience's breaker (with `TraceLayer`'s default DEBUG level, and with INFO);
//! - (c) axum-prometheus alone;
//! - (d) palisade's `ServerStack` preset: trace context, metrics, `ProblemLayer`, server deadline,
//!   timeout and breaker (its span at the default INFO, and at DEBUG);
//! - parts of (d) alone, tower-resilience's breaker and tower-http's timeout alone, and
//!   `Router::layer` with a no-op layer.
//!
//! One global `fmt` subscriber (INFO, to `std::io::sink`) and one global Prometheus recorder serve
//! every row. axum-prometheus's `PrometheusMetricLayer::pair()` would install a recorder of its own,
//! so its `BaseMetricLayer` is used: the same service type (`LifeCycle<_, _, Traffic, _>`), recording
//! into the recorder installed here. `server_peers` repeats (a)–(c) with `PrometheusMetricLayer::pair()`
//! in a process of its own, as a cross-check.

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum_prometheus::BaseMetricLayer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::metrics::ServerMetricsLayer;
use palisade::problem::ProblemLayer;
use palisade::timeout::{ServerDeadlineLayer, TimeoutLayer};
use palisade::trace::ServerTraceLayer;
use tower::ServiceBuilder;
use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreakerLayer;
use tracing::Level;

use common::{palisade_stack, peer_stack, router, runtime, server_loop};

fn server(c: &mut Criterion) {
    common::install_subscriber();
    let rt = runtime();
    let _prometheus = common::install_prometheus();

    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1));
    let mut row = |name: &str, app: axum::Router| {
        g.bench_function(name, |b| b.iter_custom(|n| rt.block_on(server_loop(&app, n))));
    };

    row("a_bare_router", router());
    // TraceLayer's defaults: span and response event at DEBUG, filtered out by the INFO subscriber.
    row("b_peer_stack", peer_stack!(BaseMetricLayer::new(), Level::DEBUG));
    // Span and response event at INFO, so that they are recorded (palisade's span is INFO by default).
    row("b_peer_stack_trace_info", peer_stack!(BaseMetricLayer::new(), Level::INFO));
    row("c_axum_prometheus", router().layer(BaseMetricLayer::new()));
    row("d_palisade_stack", palisade_stack(Level::INFO));
    // The span at DEBUG, filtered out by the INFO subscriber like `TraceLayer`'s default span in (b).
    row("d_palisade_stack_trace_debug", palisade_stack(Level::DEBUG));
    row("e_palisade_metrics", router().layer(ServerMetricsLayer::new()));
    row("f_palisade_trace", router().layer(ServerTraceLayer::new()));
    row(
        "f_palisade_trace_debug",
        router().layer(ServerTraceLayer::builder().level(Level::DEBUG).build().expect("valid")),
    );
    row(
        "g_palisade_breaker",
        router().layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(CircuitBreakerLayer::builder().build().expect("valid breaker")),
        ),
    );
    row(
        "g_palisade_deadline_timeout",
        router().layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(ServerDeadlineLayer::new())
                .layer(TimeoutLayer::new(Duration::from_secs(10)).expect("valid timeout")),
        ),
    );
    row(
        "h_tower_http_timeout",
        router().layer(tower_http::timeout::TimeoutLayer::with_status_code(
            http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(10),
        )),
    );
    row(
        "h_tower_resilience_breaker",
        router().layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(common::peer_breaker_error))
                .layer(TrBreakerLayer::builder().build().expect("valid tower-resilience config")),
        ),
    );
    // What `Router::layer` itself costs (axum boxes the layered route), with a layer that does nothing.
    row("i_identity_layer", router().layer(tower::layer::util::Identity::new()));
    row("z_bare_router_again", router());
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = server
}
criterion_main!(benches);
