//! The server side: extract the caller's context, run the handler in a span of the same trace.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Level;

use super::context::{CurrentScope, TraceContext, TraceFlags, TraceId};
use super::future::ServerResponseFuture;
use super::header::{TRACESTATE, TraceParent, parse_tracestate};
use crate::InvalidConfig;

/// Applies [`ServerTrace`]: see the [module docs](super). [`ServerTraceLayer::new`] takes every
/// default; [`ServerTraceLayer::builder`] lists the settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerTraceLayer {
    level: Level,
    span: bool,
    echo: bool,
    details: bool,
    incoming: Incoming,
    sampler: Sampler,
    access_log: Option<Level>,
}

/// How far the server trusts the caller's `traceparent` and `tracestate`.
///
/// The W3C Trace Context specification leaves it to each service; its security considerations warn
/// that a caller who sets the `sampled` flag on every request can make a service record (and export)
/// every trace, and that `tracestate` is the caller's data. Inside a platform, continue what the
/// caller started ([`Trust`](Self::Trust), OpenTelemetry's "parent-based" sampling). At the edge, where
/// callers are the public, [`Edge`](Self::Edge) keeps the caller's trace id so that its logs and
/// yours still correlate, but decides sampling itself and drops `tracestate`; [`Restart`](Self::Restart)
/// ignores the caller's context altogether.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Incoming {
    /// Continue the caller's trace as sent: trace id, parent span, `sampled` flag and `tracestate`
    /// (the default, and the behaviour before this setting existed).
    #[default]
    Trust,
    /// Keep the caller's trace id and parent span id (correlation), but decide `sampled` with the
    /// layer's [`sample_ratio`](ServerTraceLayerBuilder::sample_ratio) and drop `tracestate`. The
    /// decision is a random draw, not a function of the caller's trace id (which the caller could
    /// choose to be always sampled); services behind trust the flag this one sends.
    Edge,
    /// Start a new trace for every request, as if no `traceparent` had been sent.
    Restart,
}

/// The sampling decision for traces this layer starts: a pure function of the (random) trace id, as
/// OpenTelemetry's `TraceIdRatioBased` (and its Rust SDK) computes it, so every service with the same
/// ratio decides the same for the same trace. At the [edge](Incoming::Edge), for a trace id the caller
/// chose, the same threshold applies to a random draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sampler {
    /// Sampled when the trace id's low 64 bits, shifted right once, are below this (ratio × 2⁶³).
    threshold: u64,
}

impl Sampler {
    const ALWAYS: Self = Self { threshold: 1 << 63 };

    fn ratio(ratio: f64) -> Self {
        Self { threshold: (ratio * (1u64 << 63) as f64) as u64 }
    }

    /// The decision for a trace id this service chose (random).
    pub(super) fn flags(self, trace_id: TraceId) -> TraceFlags {
        self.decide(u128::from_be_bytes(trace_id.to_bytes()) as u64)
    }

    /// The decision for a trace id a caller chose: from a random draw instead, or a client could pick
    /// ids that are always sampled.
    fn flags_for_untrusted(self) -> TraceFlags {
        self.decide(fastrand::u64(..))
    }

    fn decide(self, random: u64) -> TraceFlags {
        if (random >> 1) < self.threshold { TraceFlags::SAMPLED } else { TraceFlags::NOT_SAMPLED }
    }
}

impl ServerTraceLayer {
    /// A layer with the defaults listed on [`ServerTraceLayerBuilder`].
    pub const fn new() -> Self {
        Self {
            level: Level::INFO,
            span: true,
            echo: true,
            details: false,
            incoming: Incoming::Trust,
            sampler: Sampler::ALWAYS,
            access_log: None,
        }
    }

    /// This layer with the `http_request` span on or off (see [`ServerTraceLayerBuilder::span`]).
    pub(crate) const fn with_span(mut self, span: bool) -> Self {
        self.span = span;
        self
    }

    /// A builder, starting from the defaults.
    pub const fn builder() -> ServerTraceLayerBuilder {
        ServerTraceLayerBuilder { layer: Self::new(), ratio: 1.0 }
    }

    /// The context of a request with these headers, as this layer's trust policy and sampler make it.
    fn context(&self, headers: &http::HeaderMap) -> TraceContext {
        let parent = match self.incoming {
            Incoming::Restart => None,
            Incoming::Trust | Incoming::Edge => TraceParent::from_headers(headers),
        };
        match (parent, self.incoming) {
            (Some(parent), Incoming::Edge) => {
                let flags = self.sampler.flags_for_untrusted();
                let parent = TraceParent::new(parent.trace_id(), parent.parent_id(), flags);
                TraceContext::child_of(&parent, None)
            }
            (Some(parent), _) => {
                TraceContext::child_of(&parent, parse_tracestate(&headers.get_all(TRACESTATE)))
            }
            (None, _) => TraceContext::new_root_sampled_by(self.sampler),
        }
    }
}

/// Configures a [`ServerTraceLayer`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`span`](Self::span) | `true`: an `http_request` span around the handler |
/// | [`level`](Self::level) | `INFO` |
/// | [`span_details`](Self::span_details) | `false` (the span carries `trace_id` only) |
/// | [`echo_traceparent`](Self::echo_traceparent) | `true` |
/// | [`incoming`](Self::incoming) | [`Incoming::Trust`]: the caller's `sampled` flag and `tracestate` are kept |
/// | [`sample_ratio`](Self::sample_ratio) | `1.0`: every new trace is sampled |
/// | [`access_log`](Self::access_log) | none |
#[derive(Clone, Copy, Debug)]
pub struct ServerTraceLayerBuilder {
    layer: ServerTraceLayer,
    ratio: f64,
}

impl ServerTraceLayerBuilder {
    /// Whether the `http_request` span also carries `span_id`, `http.request.method`, `url.path` and
    /// `http.route` (default `false`: only `trace_id`). A fmt subscriber formats every span field when
    /// the span opens, per request: the four extra fields cost about 0.3 µs a request, and method and
    /// route are already in the metrics.
    pub const fn span_details(mut self, details: bool) -> Self {
        self.layer.details = details;
        self
    }

    /// Whether the handler runs in an `http_request` span (default `true`). Without it, log lines
    /// still carry `trace_id` when the subscriber formats them with
    /// [`trace::fmt`](super::fmt) (feature `fmt`), which reads the current context: a span per request
    /// costs a fmt subscriber about 4,400 instructions, more than every other server layer together.
    /// The `opentelemetry` bridge exports spans, so it needs this on.
    pub const fn span(mut self, span: bool) -> Self {
        self.layer.span = span;
        self
    }

    /// The level of the `http_request` span (default `INFO`). A span filtered out by the subscriber
    /// costs next to nothing, but then log lines no longer carry `trace_id`; propagation still works.
    pub const fn level(mut self, level: Level) -> Self {
        self.layer.level = level;
        self
    }

    /// One event per request at `level` when it is answered (default: none): `method`, `route` (the
    /// matched route template with the `axum` feature), `status` and `duration_ms`, emitted in the
    /// request's trace context, so [`trace::fmt`](super::fmt) adds its `trace_id`. It sees every
    /// answer of the layers inside (load shedding's 503, a timeout's 504). A request whose client
    /// went away before the answer logs nothing.
    pub const fn access_log(mut self, level: Level) -> Self {
        self.layer.access_log = Some(level);
        self
    }

    /// Whether responses carry a `traceparent` naming the server span (default `true`).
    pub const fn echo_traceparent(mut self, echo: bool) -> Self {
        self.layer.echo = echo;
        self
    }

    /// How far the caller's `traceparent` and `tracestate` are trusted (default [`Incoming::Trust`]).
    pub const fn incoming(mut self, incoming: Incoming) -> Self {
        self.layer.incoming = incoming;
        self
    }

    /// The share of new traces marked `sampled`, in `0.0..=1.0` (default `1.0`), decided from the
    /// trace id. Applies to the traces this layer starts (no valid `traceparent`, or
    /// [`Incoming::Restart`]) and, with [`Incoming::Edge`], to the caller's. A trusted caller's
    /// decision is kept.
    pub const fn sample_ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ServerTraceLayer, InvalidConfig> {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(InvalidConfig::new("sample_ratio", format!("must be in 0..=1, got {}", self.ratio)));
        }
        Ok(ServerTraceLayer { sampler: Sampler::ratio(self.ratio), ..self.layer })
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
        ServerTrace { inner, layer: *self }
    }
}

/// The server trace service: for each request, a [`TraceContext`] (a child of the caller's
/// `traceparent`, or a new trace) made the thread's [current](TraceContext::current) one while the
/// inner service runs, an `http_request` span around it, and `traceparent` echoed on the response.
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    layer: ServerTraceLayer,
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
        let req_head = self.layer.access_log.map(|_| RequestHead::of(&req));
        let mut context = self.layer.context(req.headers());
        let span = if self.layer.span {
            make_span(self.layer.level, self.layer.details, &req, &mut context)
        } else {
            tracing::Span::none()
        };
        // Handlers get the context from the thread's current one (`TraceContext::current`, or the
        // axum extractor), not from a request extension: inserting one grows the extension map, which
        // cost ~100 ns per request (docs/decisions/005).
        let mut slot = Some(context);
        let inner = {
            let _entered = span.enter();
            let _current = CurrentScope::enter(&mut slot);
            self.inner.call(req)
        };
        let access = self.layer.access_log.zip(req_head).map(|(level, head)| AccessLog::new(level, head));
        ServerResponseFuture::new(inner, span, slot.expect("restored by the scope"), self.layer.echo, access)
    }
}

/// What the access log needs of a request, taken before the request moves on.
#[derive(Debug)]
pub(super) struct RequestHead {
    method: http::Method,
    #[cfg(feature = "axum")]
    route: Option<axum::extract::MatchedPath>,
}

impl RequestHead {
    fn of<B>(req: &Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            #[cfg(feature = "axum")]
            route: req.extensions().get::<axum::extract::MatchedPath>().cloned(),
        }
    }

    fn route(&self) -> &str {
        #[cfg(feature = "axum")]
        if let Some(route) = &self.route {
            return route.as_str();
        }
        "-"
    }
}

/// A request's access-log event, written when its answer is ready.
#[derive(Debug)]
pub(super) struct AccessLog {
    level: Level,
    head: RequestHead,
    start: std::time::Instant,
}

impl AccessLog {
    fn new(level: Level, head: RequestHead) -> Self {
        Self { level, head, start: std::time::Instant::now() }
    }

    /// Writes the event for `status` (`None`: the inner service failed without an answer).
    pub(super) fn write(&self, status: Option<http::StatusCode>) {
        let duration_ms = self.start.elapsed().as_secs_f64() * 1_000.0;
        let (method, route) = (self.head.method.as_str(), self.head.route());
        let status = status.map_or(0, |s| s.as_u16());
        macro_rules! event {
            ($level:expr) => {
                tracing::event!($level, method, route, status, duration_ms, "request")
            };
        }
        match self.level {
            Level::ERROR => event!(Level::ERROR),
            Level::WARN => event!(Level::WARN),
            Level::INFO => event!(Level::INFO),
            Level::DEBUG => event!(Level::DEBUG),
            _ => event!(Level::TRACE),
        }
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
    ($level:expr, $details:expr, $req:expr, $trace_id:expr, $span_id:expr $(, $($extra:tt)+)?) => {
        if $details {
            super::span_at!(
                $level,
                "http_request",
                trace_id = $trace_id,
                span_id = $span_id,
                http.request.method = $req.method().as_str(),
                url.path = $req.uri().path(),
                http.route = route($req),
                $($($extra)+)?
            )
        } else {
            super::span_at!(
                $level,
                "http_request",
                trace_id = $trace_id,
                span_id = tracing::field::Empty,
                $($($extra)+)?
            )
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
    // The exporter may assign the span its own ids, so they are recorded once known. `otel.kind`:
    // exported as a server span, which trace back ends need to draw calls between services.
    let span =
        server_span!(level, details, req, tracing::field::Empty, tracing::field::Empty, otel.kind = "server");
    super::otel::bridge(&span, context);
    span.record("trace_id", tracing::field::display(context.trace_id()));
    span.record("span_id", tracing::field::display(context.span_id()));
    span
}
