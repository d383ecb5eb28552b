//! RED metrics (rate, errors, duration) for HTTP servers and clients, through the [`metrics` facade](::metrics).
//!
//! | side | metric | labels |
//! |---|---|---|
//! | [`ServerMetricsLayer`] | `http_server_request_duration_seconds` (histogram) | `http_request_method`, `http_route`, `http_response_status_code` |
//! | | `http_server_active_requests` (gauge) | `http_request_method`, `http_route` |
//! | [`ClientMetricsLayer`] | `http_client_request_duration_seconds` (histogram) | `http_request_method`, `server_address`, `http_response_status_code` |
//! | | `http_client_active_requests` (gauge) | `http_request_method`, `server_address` |
//!
//! The histogram's count is the request rate, its series with a 5xx (or `error`) status the error
//! rate. Names and labels are the constants of [`metric_names`](crate::metric_names).
//!
//! - `http_request_method`: the standard methods by name, any extension method as `_OTHER`.
//! - `http_response_status_code`: the numeric status, or `error` when the inner service returned an
//!   error (errors pass through unchanged: this layer has none of its own, so an axum stack stays
//!   `Infallible`).
//! - `http_route`: the route template, found by a [`Target`] strategy, [`DefaultRoute`] by default;
//!   never the raw path. No template → `unmatched`.
//! - `server_address`: the peer name given to [`ClientMetricsLayer::new`], or the URI host (or any
//!   [`Target`]) with [`ClientMetricsLayer::builder`] (one series set per host: mind the cardinality).
//!
//! Status and error labels are the plain facts of each call, not the shared
//! [classifier](crate::classify)'s verdict: dashboards compute error rates from the status (5xx,
//! `error`), and whether a 429 is the caller's fault or the dependency's is for the breaker and the
//! retry to decide.
//!
//! The gauge goes up when the call starts and down when the response future completes *or is dropped*
//! (a cancelled request). A dropped call records no duration.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use palisade::metrics::{ServerMetricsLayer, target_fn};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
//!
//! // Handles bind to the recorder current when they are first used: here a local one.
//! metrics::with_local_recorder(&recorder, || {
//!     runtime.block_on(async {
//!         let handler = service_fn(|_req: Request<String>| async {
//!             tokio::time::sleep(std::time::Duration::from_millis(30)).await;
//!             Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!         });
//!         // Without axum, say how to find the route template.
//!         let layer = ServerMetricsLayer::builder()
//!             .target(target_fn(|_req: &Request<String>| Some("/v1/products/{id}")))
//!             .build()
//!             .unwrap();
//!         let req = Request::get("/v1/products/42").body(String::new()).unwrap();
//!         let res = layer.layer(handler).oneshot(req).await.unwrap();
//!         assert_eq!(res.status(), 200);
//!     })
//! });
//!
//! let histogram = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     let key = key.key();
//!     let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
//!     (key.name() == "http_server_request_duration_seconds"
//!         && labels == [("http_request_method", "GET"), ("http_route", "/v1/products/{id}"), ("http_response_status_code", "200")])
//!         .then_some(value)
//! });
//! assert_eq!(histogram, Some(DebugValue::Histogram(vec![0.03.into()])));
//! ```
//!
//! # Route templates with axum
//!
//! With the `axum` feature, [`DefaultRoute`] reads the template from axum's `MatchedPath` request
//! extension, which axum sets when it routes a request. So the layer must run *after* routing:
//!
//! - `Router::layer(ServerMetricsLayer::new())` (recommended): wraps every route and the fallback. Matched
//!   requests get their template (`/v1/products/{id}` for `/v1/products/42`); requests that match no
//!   route reach the fallback without `MatchedPath` and are recorded as `unmatched`, so probing
//!   random paths adds no series.
//! - `Router::route_layer(..)`: wraps matched routes only; unmatched requests are not recorded at all.
//! - Wrapping the whole `Router` from outside (`ServiceBuilder::new().layer(..).service(router)`) runs
//!   *before* routing: every request is `unmatched`. Don't.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use palisade::metrics::ServerMetricsLayer;
//!
//! let app: Router = Router::new()
//!     .route("/v1/products/{id}", get(|| async { "product" }))
//!     .layer(ServerMetricsLayer::new());
//! ```
//!
//! # Histogram buckets and the Prometheus exporter
//!
//! The `metrics` facade records raw values; bucket boundaries belong to the recorder. palisade
//! recommends [`DURATION_BUCKETS`], the OpenTelemetry HTTP duration buckets (5 ms … 10 s). With
//! `metrics-exporter-prometheus`, set them for both duration histograms (otherwise that exporter renders
//! histograms as summaries):
//!
//! ```
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! use palisade::metrics::{ClientMetricsLayer, DURATION_BUCKETS};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! let recorder = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Suffix("_request_duration_seconds".into()), DURATION_BUCKETS)
//!     .unwrap()
//!     .build_recorder();
//! let handle = recorder.handle();
//! // In an application: `metrics::set_global_recorder(recorder)` (or `PrometheusBuilder::install_recorder`),
//! // before or after building the layers, and serve `handle.render()` on `/metrics`.
//! # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! metrics::with_local_recorder(&recorder, || runtime.block_on(async {
//!     let client = ClientMetricsLayer::new("payments").layer(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     }));
//!     client.oneshot(http::Request::post("http://payments/v1/payments").body(()).unwrap()).await.unwrap();
//! }));
//! let text = handle.render();
//! assert!(text.contains(r#"http_client_request_duration_seconds_bucket{http_request_method="POST",server_address="payments",http_response_status_code="200",le="0.005"} 1"#));
//! ```
//!
//! # When the recorder is installed
//!
//! Each handle is registered on the first request of its label combination that finds a recorder
//! current (the global one, or a thread-local one in tests), and then kept for the layer's lifetime.
//! So a layer may be built, and even serve, before `main` installs its recorder: calls made while
//! there is none are not recorded (as with the no-op recorder), the ones after are. The same holds for
//! the retry and timeout layers' counters.
//!
//! # Cost model
//!
//! Per request, after warm-up: two clock reads (`tokio::time::Instant`, a plain monotonic clock read
//! unless tokio's `test-util` is enabled), a method match, one hash of the target string and a
//! lock-free probe of an insert-only table (atomic loads and a string compare), one `Arc` clone/drop
//! of the series, the gauge increment and decrement, a status match, and one histogram record. No
//! allocation, no lock, no registry lookup. The first request of a new (target, method, status)
//! combination takes a mutex, allocates the label value and resolves the handle from the recorder.
//! Status labels come from a static table, so no status ever allocates; codes outside the 33 common
//! ones (200, 201, 204, 3xx redirects, the usual 4xx and 5xx) find their histogram under a mutex.
//!
//! Cardinality is bounded: 10 method values × observed status codes × targets, where targets are
//! capped by [`ServerMetricsLayerBuilder::max_targets`] (default [`DEFAULT_MAX_TARGETS`]); values past the cap are
//! recorded as `_OTHER`.

mod layer;
mod series;
mod target;

pub mod future;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::Service;

use self::{
    future::{InFlight, ResponseFuture},
    series::Shared,
};
pub use self::{
    layer::{
        ClientMetricsLayer, ClientMetricsLayerBuilder, DEFAULT_MAX_TARGETS, ServerMetricsLayer,
        ServerMetricsLayerBuilder,
    },
    target::{DefaultRoute, Target, UriHost, target_fn},
};

/// Recommended boundaries (seconds) for the request duration histograms: the OpenTelemetry HTTP
/// semantic conventions' `[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]`.
/// Give them to your recorder, see [the module docs](self#histogram-buckets-and-the-prometheus-exporter).
pub const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Records RED metrics for the calls to an inner service. Built by [`ServerMetricsLayer`] or
/// [`ClientMetricsLayer`]; clones share the layer's handle cache.
#[derive(Clone, Debug)]
pub struct Metrics<S, T = DefaultRoute> {
    inner: S,
    shared: Arc<Shared>,
    target: T,
}

inner_accessors!(Metrics, T);

impl<S, T> Metrics<S, T> {
    pub(crate) const fn new(inner: S, shared: Arc<Shared>, target: T) -> Self {
        Self { inner, shared, target }
    }
}

impl<S, T, B, ResBody> Service<Request<B>> for Metrics<S, T>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    T: Target<B>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let target = if self.shared.is_fixed() { None } else { self.target.target(&req) };
        let in_flight = InFlight::start(self.shared.series(req.method(), target));
        ResponseFuture::new(self.inner.call(req), in_flight)
    }
}
