//! The client side: inject `traceparent`/`tracestate` for a new client span of the current trace.

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};
use tracing::Level;

use super::context::TraceContext;
use super::future::ClientResponseFuture;
use crate::InvalidConfig;

/// Applies [`ClientTrace`]: see the [module docs](super). [`ClientTraceLayer::new`] takes the
/// defaults; [`ClientTraceLayer::builder`] lists the settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientTraceLayer {
    level: Level,
}

impl ClientTraceLayer {
    /// A layer with the default span level, `INFO`.
    pub const fn new() -> Self {
        Self { level: Level::INFO }
    }

    /// A builder, starting from the defaults.
    pub const fn builder() -> ClientTraceLayerBuilder {
        ClientTraceLayerBuilder { layer: Self::new() }
    }
}

/// Configures a [`ClientTraceLayer`]. Defaults: [`level`](Self::level) `INFO`.
#[derive(Clone, Copy, Debug)]
pub struct ClientTraceLayerBuilder {
    layer: ClientTraceLayer,
}

impl ClientTraceLayerBuilder {
    /// The level of the `http_client_request` span (default `INFO`). Propagation does not depend on it.
    pub const fn level(mut self, level: Level) -> Self {
        self.layer.level = level;
        self
    }

    /// Builds the layer. No setting can be invalid today; the `Result` is the shape every palisade
    /// builder shares.
    pub const fn build(self) -> Result<ClientTraceLayer, InvalidConfig> {
        Ok(self.layer)
    }
}

impl Default for ClientTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner, level: self.level }
    }
}

/// The client trace service: each outgoing request gets a `traceparent` (and the `tracestate`) of a
/// new client span whose parent is the current context, and the call runs in an
/// `http_client_request` span.
///
/// The current context is the [`TraceContext`] in the request's extensions if there is one, else
/// [`TraceContext::current`] (the server span whose handler makes the call), else a new trace starts.
/// The client span's own context replaces it in the outgoing request's extensions.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
    level: Level,
}

inner_accessors!(ClientTrace);

impl<S, ReqB> Service<Request<ReqB>> for ClientTrace<S>
where
    S: Service<Request<ReqB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ClientResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let mut context = match req.extensions().get::<TraceContext>() {
            Some(parent) => parent.child(),
            None => TraceContext::current_child().unwrap_or_else(TraceContext::new_root),
        };
        let span = make_span(self.level, &req, &mut context);
        context.inject(req.headers_mut());
        // Layers further in (and the transport) see the client span's context.
        req.extensions_mut().insert(context);
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ClientResponseFuture::new(inner, span)
    }
}

macro_rules! client_span {
    ($level:expr, $req:expr, $trace_id:expr, $span_id:expr $(, $($extra:tt)+)?) => {
        super::span_at!(
            $level,
            "http_client_request",
            trace_id = $trace_id,
            span_id = $span_id,
            http.request.method = $req.method().as_str(),
            server.address = $req.uri().host(),
            $($($extra)+)?
        )
    };
}

#[cfg(not(feature = "opentelemetry"))]
fn make_span<B>(level: Level, req: &Request<B>, context: &mut TraceContext) -> tracing::Span {
    client_span!(
        level,
        req,
        tracing::field::display(context.trace_id()),
        tracing::field::display(context.span_id())
    )
}

#[cfg(feature = "opentelemetry")]
fn make_span<B>(level: Level, req: &Request<B>, context: &mut TraceContext) -> tracing::Span {
    let span = client_span!(level, req, tracing::field::Empty, tracing::field::Empty, otel.kind = "client");
    super::otel::bridge(&span, context);
    span.record("trace_id", tracing::field::display(context.trace_id()));
    span.record("span_id", tracing::field::display(context.span_id()));
    span
}
