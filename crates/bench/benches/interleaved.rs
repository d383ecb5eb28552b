//! A cross-check of the key overheads that is robust to a shared, busy machine: the rows of a table
//! are measured in turn, round after round (round-robin), each for a fixed number of calls timed with
//! the thread's CPU time, and a row's overhead is the median over rounds of `row − bare` *within the
//! same round*. Interference from other processes that comes in bursts hits every row of a round
//! alike, and the pairing cancels it. A plain `main`; prints one line per row. `TABLES=retry_ok,server`
//! (comma-separated table names) runs only those tables.

#![allow(missing_docs)]

mod common;

use axum_prometheus::BaseMetricLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::RetryLayer;
use tower::Layer;
use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreakerLayer;
use tracing::Level;

use common::floor;
use common::{
    Measure, bare, bare_for, call_loop, call_loop_with, get_empty, palisade_stack, peer_stack, router,
    runtime,
};

/// Rounds per table.
const ROUNDS: usize = 41;
/// Calls per row and round, client-side tables.
const CALLS: u64 = 50_000;
/// Requests per row and round, server table.
const REQUESTS: u64 = 2_000;

/// Runs the table `name` (see [`common::paired_table`]) unless `TABLES` leaves it out.
fn table(name: &str, calls: u64, rows: Vec<(&str, Measure<'_>)>) {
    if selected(name) {
        common::paired_table(&format!("interleaved/{name}"), ROUNDS, calls, rows);
    }
}

/// Whether the table `name` runs: all of them, unless `TABLES` (comma-separated names) lists some.
fn selected(name: &str) -> bool {
    std::env::var("TABLES").map_or(true, |tables| tables.split(',').any(|t| t.trim() == name))
}

fn main() {
    common::install_subscriber();
    let _prometheus = common::install_prometheus();
    let rt = runtime();

    let mut bare_svc = bare();
    let mut palisade_svc =
        CircuitBreakerLayer::builder().count_window(100).build().expect("valid").layer(bare());
    let mut tr_svc = TrBreakerLayer::builder().sliding_window_size(100).build().expect("valid").layer(bare());
    table(
        "breaker_closed",
        CALLS,
        vec![
            ("bare", Box::new(|| rt.block_on(call_loop(&mut bare_svc, CALLS)))),
            ("palisade", Box::new(|| rt.block_on(call_loop(&mut palisade_svc, CALLS)))),
            ("tower_resilience", Box::new(|| rt.block_on(call_loop(&mut tr_svc, CALLS)))),
        ],
    );

    let mut bare_get = bare_for();
    let mut retry_get = RetryLayer::new().layer(bare_for());
    // The least a replayable request must keep: a copy of its URI (a floor, not a layer).
    let mut copying_uri = tower::service_fn(|req: http::Request<http_body_util::Empty<bytes::Bytes>>| {
        std::hint::black_box(req.uri().clone());
        std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
    });
    let mut minimal_replay = floor::MinimalReplay::new(bare_for());
    let mut minimal_post = floor::MinimalReplay::new(bare_for());
    let mut bare_post = bare_for();
    let mut retry_post = RetryLayer::new().layer(bare_for());
    table(
        "retry_ok",
        CALLS,
        vec![
            ("bare_get", Box::new(|| rt.block_on(call_loop_with(&mut bare_get, CALLS, get_empty)))),
            ("palisade_get", Box::new(|| rt.block_on(call_loop_with(&mut retry_get, CALLS, get_empty)))),
            (
                "floor_minimal_replay_get",
                Box::new(|| rt.block_on(call_loop_with(&mut minimal_replay, CALLS, get_empty))),
            ),
            (
                "bare_get_copying_its_uri",
                Box::new(|| rt.block_on(call_loop_with(&mut copying_uri, CALLS, get_empty))),
            ),
            (
                "bare_post",
                Box::new(|| rt.block_on(call_loop_with(&mut bare_post, CALLS, common::post_empty))),
            ),
            (
                "floor_post",
                Box::new(|| rt.block_on(call_loop_with(&mut minimal_post, CALLS, common::post_empty))),
            ),
            (
                "palisade_post",
                Box::new(|| rt.block_on(call_loop_with(&mut retry_post, CALLS, common::post_empty))),
            ),
        ],
    );

    let apps = [
        ("a_bare_router", router()),
        ("b_peer_stack", peer_stack!(BaseMetricLayer::new(), Level::DEBUG)),
        ("b_peer_stack_trace_info", peer_stack!(BaseMetricLayer::new(), Level::INFO)),
        ("c_axum_prometheus", router().layer(BaseMetricLayer::new())),
        ("d_palisade_stack", palisade_stack(Level::INFO)),
        ("d_palisade_stack_trace_debug", palisade_stack(Level::DEBUG)),
    ];
    table(
        "server",
        REQUESTS,
        apps.iter()
            .map(|(name, app)| {
                let measure: Measure<'_> = Box::new(|| rt.block_on(common::server_loop(app, REQUESTS)));
                (*name, measure)
            })
            .collect(),
    );

    // The same routers finalized with `with_state(())`, as `axum::serve` does (`into_make_service`):
    // layers are applied once, not per request.
    let served: Vec<_> = apps.iter().map(|(name, app)| (*name, app.clone().with_state::<()>(()))).collect();
    table(
        "server_served",
        REQUESTS,
        served
            .iter()
            .map(|(name, app)| {
                let measure: Measure<'_> = Box::new(|| rt.block_on(common::server_loop(app, REQUESTS)));
                (*name, measure)
            })
            .collect(),
    );
}
