//! W3C trace context (work in progress).

mod context;

pub use context::{SpanId, TraceContext, TraceId};
