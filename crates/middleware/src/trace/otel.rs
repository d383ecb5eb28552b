//! The OpenTelemetry bridge (`feature = "opentelemetry"`): the `tracing` span of a request or call gets
//! the caller's span as its OpenTelemetry parent, so `tracing-opentelemetry` exports it in the right
//! trace; when an exporting tracer assigned the span its own ids, the [`TraceContext`] adopts them, so
//! the `traceparent` sent downstream and echoed upstream names a span that is really exported.

use opentelemetry::trace::{self as otel, TraceContextExt as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::context::{SpanId, TraceContext, TraceFlags, TraceId};

/// Sets `span`'s OpenTelemetry parent from `ctx` and makes `ctx` follow the ids of the exported span.
/// Without an OpenTelemetry layer, or with a non-recording tracer, `ctx` is left as it is.
pub(super) fn bridge(span: &tracing::Span, ctx: &mut TraceContext) {
    if span.is_disabled() {
        return;
    }
    if let Some(parent) = ctx.parent_span_id() {
        let trace_state = ctx
            .trace_state()
            .and_then(|state| state.to_str().ok())
            .and_then(|state| state.parse().ok())
            .unwrap_or_default();
        let remote = otel::SpanContext::new(
            otel::TraceId::from_bytes(ctx.trace_id().to_bytes()),
            otel::SpanId::from_bytes(parent.to_bytes()),
            otel::TraceFlags::new(ctx.flags().bits()),
            true,
            trace_state,
        );
        // Errors mean no OpenTelemetry layer is installed (or the span was already started): nothing
        // to bridge then.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let otel_cx = span.context();
    let exported = otel_cx.span().span_context().clone();
    if !exported.is_valid() || exported.is_remote() {
        return; // a no-op tracer: it exports nothing, so keep palisade's ids
    }
    if let (Some(trace_id), Some(span_id)) = (
        TraceId::from_bytes(exported.trace_id().to_bytes()),
        SpanId::from_bytes(exported.span_id().to_bytes()),
    ) {
        ctx.adopt(trace_id, span_id, TraceFlags::from_bits(exported.trace_flags().to_u8()));
    }
}
