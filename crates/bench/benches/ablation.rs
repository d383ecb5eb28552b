//! Where the server stack's overhead goes: each palisade server layer alone on the bench router,
//! measured round-robin and paired per round against the bare router (as `interleaved` does), next to
//! the whole stack. `cargo bench -p palisade-bench --bench ablation [-- FILTER]` (rows whose name
//! contains FILTER, and the bare row).
//!
//! The layers that can fail (`deadline`, `timeout`, `breaker`) sit behind a `ProblemLayer`, as they do
//! in the stack: alone they would not be `Infallible`. `identity` is a layer that does nothing: what
//! axum's `Router::layer` itself costs.

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::Measure;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::metrics::ServerMetricsLayer;
use palisade::problem::ProblemLayer;
use palisade::timeout::{ServerDeadlineLayer, TimeoutLayer};
use palisade::trace::ServerTraceLayer;
use tower::ServiceBuilder;
use tower::layer::util::Identity;
use tracing::Level;

const ROUNDS: usize = 31;
const REQUESTS: u64 = 2_000;

fn main() {
    common::install_subscriber();
    let _prometheus = common::install_prometheus();
    let rt = common::runtime();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let timeout = TimeoutLayer::builder(Duration::from_secs(10)).build().expect("valid timeout");
    let breaker = CircuitBreakerLayer::builder().build().expect("valid breaker");
    let rows: Vec<(&str, axum::Router)> = vec![
        ("bare", common::router()),
        ("stack_info", common::palisade_stack(Level::INFO)),
        ("stack_debug", common::palisade_stack(Level::DEBUG)),
        ("identity", common::router().layer(Identity::new())),
        ("trace_info", common::router().layer(ServerTraceLayer::new())),
        (
            "trace_info_no_echo",
            common::router()
                .layer(ServerTraceLayer::builder().echo_traceparent(false).build().expect("valid")),
        ),
        (
            "trace_debug",
            common::router().layer(ServerTraceLayer::builder().level(Level::DEBUG).build().expect("valid")),
        ),
        ("metrics", common::router().layer(ServerMetricsLayer::new())),
        ("problem", common::router().layer(ProblemLayer::new())),
        (
            "deadline",
            common::router()
                .layer(ServiceBuilder::new().layer(ProblemLayer::new()).layer(ServerDeadlineLayer::new())),
        ),
        ("timeout", common::router().layer(ServiceBuilder::new().layer(ProblemLayer::new()).layer(timeout))),
        ("breaker", common::router().layer(ServiceBuilder::new().layer(ProblemLayer::new()).layer(breaker))),
    ];
    let rows: Vec<(&str, axum::Router)> = rows
        .into_iter()
        .filter(|(name, _)| *name == "bare" || filter.as_deref().is_none_or(|f| name.contains(f)))
        .map(|(name, router)| (name, router.with_state::<()>(())))
        .collect();
    let measures = rows
        .iter()
        .map(|(name, app)| {
            let measure: Measure<'_> = Box::new(|| rt.block_on(common::server_loop(app, REQUESTS)));
            (*name, measure)
        })
        .collect();
    common::paired_table("ablation", ROUNDS, REQUESTS, measures);
}
