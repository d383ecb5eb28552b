//! The harness shared by every bench target: the bare services, the call loops, the runtimes.
//!
//! Every row of a table is measured with the same loop, so that `row − bare` is the cost of the layer.
//!
//! Single-thread loops are timed with the CPU time of the benchmarking thread
//! (`CLOCK_THREAD_CPUTIME_ID`, through `cpu_time::ThreadTime`), not wall time: the machine is shared,
//! and time spent preempted by other processes is not the layer's cost. Everything a row does runs on
//! that thread (current-thread runtime, nothing spawned). The two-thread rows measure both wall time
//! (throughput) and the threads' CPU time ([`ThreadClock`]).

#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)] // each bench target uses a subset

pub mod floor;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use criterion::Criterion;
use http::{Request, Response};
use tower::{Service, ServiceExt};

/// Criterion settings that keep the whole `make bench` within a few minutes on 2 cores.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500))
        .without_plots()
}

/// A current-thread tokio runtime with timers (the breaker and timeout layers read tokio's clock).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// The bare service: returns a ready `200` for any bodiless request, and never fails.
pub fn bare() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    bare_for::<()>()
}

/// [`bare`] for requests with a body of type `B` (which it ignores).
pub fn bare_for<B: 'static>() -> impl Service<
    Request<B>,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|_req: Request<B>| ready(Ok::<_, Infallible>(Response::new(()))))
}

/// One call: `ready().await` then `call(req).await`, the way tower drives a service.
pub async fn call_once<S, B>(svc: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let req = black_box(req);
    svc.ready().await.expect("ready").call(req).await.expect("call")
}

/// `iters` calls of `GET /` with no body, in a row on the current task; returns the thread's CPU time.
pub async fn call_loop<S>(svc: &mut S, iters: u64) -> Duration
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    call_loop_with(svc, iters, || Request::new(())).await
}

/// `iters` calls of the requests `make` makes, in a row on the current task; returns the CPU time
/// the thread spent (including `make`'s, which the bare row pays as well).
pub async fn call_loop_with<S, B>(svc: &mut S, iters: u64, make: impl Fn() -> Request<B>) -> Duration
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let start = ThreadTime::now();
    for _ in 0..iters {
        black_box(call_once(svc, make()).await);
    }
    start.elapsed()
}

/// A bodiless `POST /`: a request the retry policy will not retry (no `Idempotency-Key`).
pub fn post_empty() -> Request<http_body_util::Empty<bytes::Bytes>> {
    let mut req = Request::new(http_body_util::Empty::new());
    *req.method_mut() = http::Method::POST;
    req
}

/// A bodiless `GET /`: a request the retry policy may retry.
pub fn get_empty() -> Request<http_body_util::Empty<bytes::Bytes>> {
    Request::new(http_body_util::Empty::new())
}

/// What [`threaded_calls`] returns.
#[derive(Clone, Copy, Debug)]
pub enum ThreadClock {
    /// Wall time from the moment every thread is ready until the last one finishes: throughput.
    Wall,
    /// The CPU time all threads spent, added up: the cost of a call, contention included (cache
    /// lines moving between cores, futex wake-ups), but not time spent parked waiting for a lock.
    Cpu,
}

/// `iters` calls in total, split over `threads` OS threads that each drive their own clone of
/// `svc` (so they share its state) on a current-thread runtime, starting together at a barrier;
/// returns the time `clock` says.
pub fn threaded_calls<S>(svc: &S, threads: usize, iters: u64, clock: ThreadClock) -> Duration
where
    S: Service<Request<()>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let per_thread = iters.div_ceil(threads as u64);
    let barrier = Barrier::new(threads);
    let (wall, cpu) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    let rt = runtime();
                    barrier.wait();
                    let start = Instant::now();
                    let cpu = rt.block_on(call_loop(&mut svc, per_thread));
                    (start, Instant::now(), cpu)
                })
            })
            .collect();
        let spans: Vec<(Instant, Instant, Duration)> =
            handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect();
        let first = spans.iter().map(|s| s.0).min().expect("one thread");
        let last = spans.iter().map(|s| s.1).max().expect("one thread");
        (last - first, spans.iter().map(|s| s.2).sum::<Duration>())
    });
    let took = match clock {
        ThreadClock::Wall => wall,
        ThreadClock::Cpu => cpu,
    };
    // The threads made `per_thread * threads` calls; scale to `iters`.
    took.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
}

/// The app every server row serves: one `GET /v1/items/{id}` route returning a small JSON body.
pub fn router() -> axum::Router {
    axum::Router::new().route("/v1/items/{id}", axum::routing::get(item))
}

async fn item(axum::extract::Path(id): axum::extract::Path<u64>) -> String {
    format!("{{\"id\":{id},\"name\":\"widget\"}}")
}

/// `iters` requests through `oneshot` on a clone of `app`, each response body read to the end
/// (as a server would write it out); returns the thread's CPU time.
pub async fn server_loop<S, B>(app: &S, iters: u64) -> Duration
where
    S: Service<Request<axum::body::Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt as _;
    let start = ThreadTime::now();
    for _ in 0..iters {
        let req = Request::get("/v1/items/42").body(axum::body::Body::empty()).expect("request");
        let res = app.clone().oneshot(black_box(req)).await.expect("infallible");
        assert!(res.status().is_success(), "status {}", res.status());
        black_box(res.into_body().collect().await.expect("body"));
    }
    start.elapsed()
}

/// Installs, once for the process, the `tracing` subscriber every server row runs under: `fmt` at
/// INFO, writing to `std::io::sink`.
pub fn install_subscriber() {
    // With palisade's field formatter, as the shop installs it: `trace_id` on lines logged in a request.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .fmt_fields(palisade::trace::fmt::TraceIdFields::new())
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
}

/// The peers' server stack, (b): tower-http `TraceLayer` (span and response event at `$trace_level`)
/// → the axum-prometheus layer `$metrics` → tower-http `TimeoutLayer` (10 s) → axum
/// `HandleErrorLayer` (to get back to `Infallible`) → tower-resilience's breaker, on every route.
/// (tower-http's timeout needs a `Default` body, so it sits inside the metrics layer.)
macro_rules! peer_stack {
    ($metrics:expr, $trace_level:expr) => {
        common::router().layer(
            tower::ServiceBuilder::new()
                .layer(
                    tower_http::trace::TraceLayer::new_for_http()
                        .make_span_with(tower_http::trace::DefaultMakeSpan::new().level($trace_level))
                        .on_response(tower_http::trace::DefaultOnResponse::new().level($trace_level)),
                )
                .layer($metrics)
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    http::StatusCode::GATEWAY_TIMEOUT,
                    std::time::Duration::from_secs(10),
                ))
                .layer(axum::error_handling::HandleErrorLayer::new(common::peer_breaker_error))
                .layer(
                    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                        .build()
                        .expect("valid tower-resilience config"),
                ),
        )
    };
}
pub(crate) use peer_stack;

/// How the peer stack answers tower-resilience's errors (`HandleErrorLayer` wants an async fn).
#[allow(clippy::unused_async)]
pub async fn peer_breaker_error(
    _: tower_resilience::circuitbreaker::CircuitBreakerError<Infallible>,
) -> http::StatusCode {
    http::StatusCode::SERVICE_UNAVAILABLE
}

/// palisade's server preset exactly as `ServerStack::builder().build()` makes it: no span per request
/// (`trace_id` reaches log lines through `palisade::trace::fmt`, installed by [`install_subscriber`]).
pub fn palisade_preset() -> axum::Router {
    router().layer(palisade::stack::ServerStack::builder().build().expect("valid palisade server stack"))
}

/// palisade's server stack, (d): the `palisade::stack::ServerStack` preset (trace context → metrics →
/// `ProblemLayer` → load shedding → server deadline → timeout 10 s) *with* an `http_request` span at
/// `trace_level`, on every route (`Router::layer` runs after routing, so metrics and the span see the
/// route template). The like-for-like row against the peers' `TraceLayer` span.
pub fn palisade_stack(trace_level: tracing::Level) -> axum::Router {
    let stack = palisade::stack::ServerStack::builder()
        .trace(palisade::trace::ServerTraceLayer::builder().level(trace_level).build().expect("valid"))
        .build()
        .expect("valid palisade server stack");
    router().layer(stack)
}

/// The Prometheus recorder palisade's docs recommend (OpenTelemetry duration buckets), installed as
/// the global recorder. Its suffix also covers axum-prometheus's `axum_http_requests_duration_seconds`.
pub fn install_prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_duration_seconds".into()),
            palisade::metrics::DURATION_BUCKETS,
        )
        .expect("valid buckets")
        .install_recorder()
        .expect("no other global metrics recorder")
}

/// One row of a [`paired_table`]: measures a fixed number of calls, returns the time they took.
pub type Measure<'a> = Box<dyn FnMut() -> Duration + 'a>;

/// Runs `rows` round-robin, `rounds` times after one warm-up round; the first row is the baseline.
/// Prints, per row, the median time per call and the median of the paired per-round overheads
/// (`row − baseline` within the same round) with their quartiles, each line prefixed by `prefix`.
///
/// Interference from other processes that comes in bursts hits every row of a round alike, and the
/// pairing cancels it.
pub fn paired_table(prefix: &str, rounds: usize, calls: u64, mut rows: Vec<(&str, Measure<'_>)>) {
    for (_, measure) in &mut rows {
        measure();
    }
    let mut per_call: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); rows.len()];
    for _ in 0..rounds {
        for (i, (_, measure)) in rows.iter_mut().enumerate() {
            per_call[i].push(measure().as_nanos() as f64 / calls as f64);
        }
    }
    for (i, (row, _)) in rows.iter().enumerate() {
        let mut times = per_call[i].clone();
        let median = quantile(&mut times, 0.5);
        let mut diffs: Vec<f64> = per_call[i].iter().zip(&per_call[0]).map(|(r, b)| r - b).collect();
        let (q1, q2, q3) =
            (quantile(&mut diffs, 0.25), quantile(&mut diffs, 0.5), quantile(&mut diffs, 0.75));
        println!(
            "{prefix}/{row:<28} {median:>10.1} ns/call  overhead {q2:>10.1} ns  [quartiles {q1:.1} {q3:.1}]  ({rounds} rounds x {calls} calls)"
        );
    }
}

/// The `q` quantile (0.0–1.0) of `values`, nearest rank; sorts `values`.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}
