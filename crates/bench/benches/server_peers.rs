//! Cross-check of `server`'s peer rows with axum-prometheus used as its README says,
//! `PrometheusMetricLayer::pair()`, which installs axum-prometheus's own global recorder: hence a
//! process of its own. Rows: (a) the bare Router, (b) the peer stack, (c) axum-prometheus alone.

#![allow(missing_docs)]

mod common;

use axum_prometheus::PrometheusMetricLayer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracing::Level;

use common::{peer_stack, router, runtime, server_loop};

fn server_peers(c: &mut Criterion) {
    common::install_subscriber();
    let rt = runtime();
    // axum-prometheus builds its recorder and spawns its upkeep task: it needs the runtime.
    let (prometheus, _handle) = {
        let _enter = rt.enter();
        PrometheusMetricLayer::pair()
    };

    let mut g = c.benchmark_group("server_pair");
    g.throughput(Throughput::Elements(1));
    let mut row = |name: &str, app: axum::Router| {
        g.bench_function(name, |b| b.iter_custom(|n| rt.block_on(server_loop(&app, n))));
    };
    row("a_bare_router", router());
    row("b_peer_stack", peer_stack!(prometheus.clone(), Level::DEBUG));
    row("c_axum_prometheus", router().layer(prometheus));
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = server_peers
}
criterion_main!(benches);
