//! The server side: extract the caller's context, run the handler in a span of the same trace.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Level;

use super::context::{CurrentScope, TraceContext};
use super::future::ServerResponseFuture;

/// Applies [`ServerTrace`]: see the [module docs](super). Also built by
/// [`TraceContextLayer::server`](super::TraceContextLayer::server).
#[derive(Clone, Copy, Debug)]
pub struct ServerTraceLayer {
    level: Level,
    echo: bool,
    details: bool,
}

impl ServerTraceLayer {
    /// A layer with the defaults: span level `INFO` with only the `trace_id` field, `traceparent`
    /// echoed on responses.
    pub const fn new() -> Self {
        Self { level: Level::INFO, echo: true, details: false }
    }

    /// Whether the `http_request` span also carries `span_id`, `http.request.method`, `url.path` and
    /// `http.route` (default `false`: only `trace_id`). A fmt subscriber formats every span field when
    /// the span opens, per request: the four extra fields cost about 0.3 µs a request, and method and
    /// route are already in the metrics.
    pub const fn span_details(mut self, details: bool) -> Self {
        self.details = details;
        self
    }

    /// The level of the `http_request` span (default `INFO`). A span filtered out by the subscriber
    /// costs next to nothing, but then log lines no longer carry `trace_id`; propagation still works.
    pub const fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Whether responses carry a `traceparent` naming the server span (default `true`).
    pub const fn echo_traceparent(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }
}

impl Default for ServerTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner, level: self.level, echo: self.echo, details: self.details }
    }
}

/// The server trace service: for each request, a [`TraceContext`] (a child of the caller's
/// `traceparent`, or a new trace) made the thread's [current](TraceContext::current) one while the
/// inner service runs, an `http_request` span around it, and `traceparent` echoed on the response.
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    level: Level,
    echo: bool,
    details: bool,
}

inner_accessors!(ServerTrace);

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerTrace<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let mut context = TraceContext::from_headers(req.headers());
        let span = make_span(self.level, self.details, &req, &mut context);
        // Handlers get the context from the thread's current one (`TraceContext::current`, or the
        // axum extractor), not from a request extension: inserting one grows the extension map, which
        // cost ~100 ns per request (docs/decisions/005).
        let mut slot = Some(context);
        let inner = {
            let _entered = span.enter();
            let _current = CurrentScope::enter(&mut slot);
            self.inner.call(req)
        };
        ServerResponseFuture::new(inner, span, slot.expect("restored by the scope"), self.echo)
    }
}

#[cfg(feature = "axum")]
fn route<B>(req: &Request<B>) -> Option<&str> {
    req.extensions().get::<axum::extract::MatchedPath>().map(axum::extract::MatchedPath::as_str)
}

#[cfg(not(feature = "axum"))]
fn route<B>(_req: &Request<B>) -> Option<&str> {
    None
}

macro_rules! server_span {
    ($level:expr, $details:expr, $req:expr, $trace_id:expr, $span_id:expr) => {
        if $details {
            super::span_at!(
                $level,
                "http_request",
                trace_id = $trace_id,
                span_id = $span_id,
                http.request.method = $req.method().as_str(),
                url.path = $req.uri().path(),
                http.route = route($req),
            )
        } else {
            super::span_at!($level, "http_request", trace_id = $trace_id, span_id = tracing::field::Empty)
        }
    };
}

#[cfg(not(feature = "opentelemetry"))]
fn make_span<B>(level: Level, details: bool, req: &Request<B>, context: &mut TraceContext) -> tracing::Span {
    // The ids are recorded with `display`: hex is written straight into the subscriber's buffer.
    server_span!(
        level,
        details,
        req,
        tracing::field::display(context.trace_id()),
        tracing::field::display(context.span_id())
    )
}

#[cfg(feature = "opentelemetry")]
fn make_span<B>(level: Level, details: bool, req: &Request<B>, context: &mut TraceContext) -> tracing::Span {
    // The exporter may assign the span its own ids, so they are recorded once known.
    let span = server_span!(level, details, req, tracing::field::Empty, tracing::field::Empty);
    super::otel::bridge(&span, context);
    span.record("trace_id", tracing::field::display(context.trace_id()));
    span.record("span_id", tracing::field::display(context.span_id()));
    span
}
