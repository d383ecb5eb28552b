//! Instruction counts per request, for `valgrind --tool=callgrind` (which counts instructions, not
//! time: the same figure whatever else the machine is doing). Not a timing bench.
//!
//! ```sh
//! cargo bench -p palisade-bench --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind BIN palisade 2000; valgrind --tool=callgrind BIN palisade 12000
//! # instructions per request = (second total − first total) / 10000; likewise `bare`, `peer`, …
//! ```
//!
//! Each run serves `N` requests (after 1,000 warm-up requests) of `APP`, one of the rows below, on
//! the router finalized as `axum::serve` finalizes it; or, for the client-side rows (`bare_get`,
//! `retry_get`, `bare_post`, `retry_post`), makes `N` calls of the bare service, with or without the
//! retry layer.

#![allow(missing_docs)]

mod common;

use axum_prometheus::BaseMetricLayer;
use palisade::problem::ProblemLayer;
use palisade::retry::RetryLayer;
use palisade::trace::ServerTraceLayer;
use tower::Layer;
use tracing::Level;

fn main() {
    // `cargo bench` runs every target with `--bench`: without an app there is nothing to count.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(app) = args.first() else {
        eprintln!("instructions: a driver for callgrind, nothing to do without an APP (see its module docs)");
        return;
    };
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    common::install_subscriber();
    let _prometheus = common::install_prometheus();
    let rt = common::runtime();
    if let Some(calls) = client_rows(app, n, &rt) {
        eprintln!("instructions: {calls} calls of {app}");
        return;
    }
    let router = match app.as_str() {
        "bare" => common::router(),
        "palisade" => common::palisade_stack(Level::INFO),
        "preset" => common::palisade_preset(),
        "palisade_debug" => common::palisade_stack(Level::DEBUG),
        "peer" => common::peer_stack!(BaseMetricLayer::new(), Level::DEBUG),
        "peer_trace_info" => common::peer_stack!(BaseMetricLayer::new(), Level::INFO),
        "trace" => common::router().layer(ServerTraceLayer::new()),
        "trace_debug" => {
            common::router().layer(ServerTraceLayer::builder().level(Level::DEBUG).build().expect("valid"))
        }
        "problem" => common::router().layer(ProblemLayer::new()),
        other => {
            eprintln!(
                "usage: instructions APP [N], APP one of bare preset palisade palisade_debug peer peer_trace_info trace trace_debug problem bare_get retry_get bare_post retry_post (got {other:?})"
            );
            std::process::exit(2);
        }
    };
    let app = router.with_state::<()>(());
    rt.block_on(common::server_loop(&app, 1_000));
    rt.block_on(common::server_loop(&app, n));
}

/// The client-side rows (a bodiless `GET` or `POST` through the retry layer, or the bare service):
/// `N` calls after 1,000 warm-up calls. `None` for a server row.
fn client_rows(app: &str, n: u64, rt: &tokio::runtime::Runtime) -> Option<u64> {
    let make = match app {
        "bare_get" | "retry_get" => common::get_empty,
        "bare_post" | "retry_post" => common::post_empty,
        _ => return None,
    };
    if app.starts_with("bare") {
        warm_then_call(rt, &mut common::bare_for(), n, make);
    } else {
        warm_then_call(rt, &mut RetryLayer::new().layer(common::bare_for()), n, make);
    }
    Some(n)
}

/// 1,000 warm-up calls of `svc`, then `n` calls.
fn warm_then_call<S, B>(rt: &tokio::runtime::Runtime, svc: &mut S, n: u64, make: fn() -> http::Request<B>)
where
    S: tower::Service<http::Request<B>>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(common::call_loop_with(svc, 1_000, make));
    rt.block_on(common::call_loop_with(svc, n, make));
}
