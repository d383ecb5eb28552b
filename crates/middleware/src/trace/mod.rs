//! W3C Trace Context propagation (`traceparent`/`tracestate`, Trace Context Level 1), with no
//! OpenTelemetry dependency.
//!
//! **Server** ([`ServerTraceLayer`]): reads the caller's `traceparent` (a missing or invalid one starts
//! a new trace with random ids; `tracestate` is passed through when well formed, truncated to 32
//! members and 512 characters as the specification says, dropped when malformed), gives the request a
//! new span id, makes that
//! [`TraceContext`] the [current](TraceContext::current) one while the handler runs (axum: take it as
//! an extractor, `async fn handler(trace: TraceContext)`), polls the handler inside an `http_request`
//! [`tracing`] span with the field `trace_id` — so every log line of the handler carries it — and
//! echoes a `traceparent` naming the server span on the response.
//! [`ServerTraceLayerBuilder::span_details`] adds `span_id`, `http.request.method`, `url.path` and,
//! with the `axum` feature, `http.route` to the span.
//!
//! **Trust and sampling.** By default the server trusts its caller ([`Incoming::Trust`]): the trace
//! continues with the caller's `sampled` flag and `tracestate`, as OpenTelemetry's parent-based
//! samplers do. A service that faces the public should not let any client decide what it records:
//! [`Incoming::Edge`] keeps the caller's trace id for correlation but makes the sampling decision
//! itself and drops `tracestate`, and [`Incoming::Restart`] ignores the caller's context. New traces
//! are `sampled` at [`ServerTraceLayerBuilder::sample_ratio`] (default 1: all), decided from the trace
//! id like OpenTelemetry's `TraceIdRatioBased` (at the edge, by a random draw: the caller chose that
//! id).
//!
//! ```
//! use palisade::trace::{Incoming, ServerTraceLayer};
//!
//! // An internet-facing gateway: correlate with what clients send, sample 10 % of traces ourselves.
//! let edge = ServerTraceLayer::builder().incoming(Incoming::Edge).sample_ratio(0.1).build()?;
//! # let _ = edge;
//! assert!(ServerTraceLayer::builder().sample_ratio(1.5).build().is_err());
//! # Ok::<(), palisade::InvalidConfig>(())
//! ```
//!
//! **Client** ([`ClientTraceLayer`]): writes `traceparent` and `tracestate` on each outgoing
//! request for a new client span whose parent is the current context, and runs the call in an
//! `http_client_request` span. The current context is, in order: a [`TraceContext`] in the outgoing
//! request's extensions, else [`TraceContext::current`], else a new trace.
//!
//! [`TraceContext::current`] is a thread-local that the server's response future sets while it polls
//! the handler (and restores after, like entering a `tracing` span). So a handler can call a client
//! wrapped in [`ClientTraceLayer`] without passing anything along, as long as the client's `call`
//! happens in the handler's future: put the client trace layer outside any `Buffer` and copy the
//! context into the request's extensions for work spawned onto other tasks. (A tokio task-local would
//! need the `rt` feature; `tracing` span extensions would need a specific subscriber.)
//!
//! Neither service has errors of its own: both return the inner service's error unchanged, so the
//! server layer can wrap an axum handler directly.
//!
//! With `feature = "opentelemetry"`, the `tracing` spans get the caller's span as their OpenTelemetry
//! parent (through `tracing-opentelemetry`), so they export over OTLP in the caller's trace; when an
//! exporting tracer gives a span its own ids, the [`TraceContext`] adopts them, so the ids sent
//! downstream name spans that really are exported.
//!
//! # Cost
//!
//! Parsing decodes hex into arrays, and `traceparent` is formatted into a 55-byte stack buffer; the
//! ids are recorded in spans with `display`, so the hex goes straight into the subscriber's buffer.
//! Per request, the one allocation is the echoed header value (plus what the subscriber does with the
//! span). The context is not put in the request's extensions: growing that map cost more than the
//! rest of the layer without a span (docs/decisions/005). The span level is configurable
//! ([`ServerTraceLayerBuilder::level`]).
//!
//! # Example
//!
//! ```
//! use palisade::trace::{ServerTraceLayer, TraceContext};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new().layer(ServerTraceLayer::new()).service(service_fn(
//!     |req: http::Request<()>| async move {
//!         let context = TraceContext::current().unwrap(); // axum: a `TraceContext` extractor
//!         tracing::info!("handling"); // logged with `trace_id=4bf92f35…` under a fmt subscriber
//!         assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     },
//! ));
//!
//! let req = http::Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//!
//! // Same trace, the server's own span id, same flags.
//! let echoed = res.headers()["traceparent"].to_str().unwrap();
//! assert!(echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert_ne!(&echoed[36..52], "00f067aa0ba902b7");
//! assert!(echoed.ends_with("-01"));
//! # }
//! ```

mod client;
mod context;
pub mod error;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "fmt")]
pub mod fmt;
pub mod future;
mod header;
#[cfg(feature = "opentelemetry")]
mod otel;
mod server;

pub use client::{ClientTrace, ClientTraceLayer, ClientTraceLayerBuilder};
pub use context::{Scoped, SpanId, TraceContext, TraceFlags, TraceId, propagate};
pub use header::{TRACEPARENT, TRACESTATE, TraceParent};
pub use server::{Incoming, ServerTrace, ServerTraceLayer, ServerTraceLayerBuilder};

/// A span at a level chosen at run time (`tracing`'s macros need a constant level).
macro_rules! span_at {
    ($level:expr, $name:literal, $($fields:tt)*) => {
        match $level {
            tracing::Level::ERROR => tracing::error_span!($name, $($fields)*),
            tracing::Level::WARN => tracing::warn_span!($name, $($fields)*),
            tracing::Level::INFO => tracing::info_span!($name, $($fields)*),
            tracing::Level::DEBUG => tracing::debug_span!($name, $($fields)*),
            tracing::Level::TRACE => tracing::trace_span!($name, $($fields)*),
        }
    };
}
use span_at;
