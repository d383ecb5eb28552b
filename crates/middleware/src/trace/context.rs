//! Trace context types (placeholder, replaced by the trace layer work).

use std::fmt;

/// A 16-byte W3C trace id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// The raw bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// An 8-byte W3C span (parent) id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// The trace context of the current request, stored in its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
}

impl TraceContext {
    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }
}
