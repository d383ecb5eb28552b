//! Errors of the trace module.

use std::fmt;

/// A `traceparent` value that is not valid Trace Context Level 1 (see
/// [`TraceParent::parse`](super::TraceParent::parse)). The layers never fail on it: they start a new
/// trace instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTraceParent {
    _priv: (),
}

impl InvalidTraceParent {
    pub(super) const fn new() -> Self {
        Self { _priv: () }
    }
}

impl fmt::Display for InvalidTraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid traceparent")
    }
}

impl std::error::Error for InvalidTraceParent {}
