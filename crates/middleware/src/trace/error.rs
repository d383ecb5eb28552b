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

/// The rejection of the `TraceContext` axum extractor when no server trace layer runs around the
/// handler: a `500` problem document, since that is a bug in how the app is assembled.
#[cfg(feature = "axum")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingTraceContext {
    _priv: (),
}

#[cfg(feature = "axum")]
impl MissingTraceContext {
    pub(super) const fn new() -> Self {
        Self { _priv: () }
    }
}

#[cfg(feature = "axum")]
impl fmt::Display for MissingTraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no trace context: the handler does not run inside palisade's server trace layer")
    }
}

#[cfg(feature = "axum")]
impl std::error::Error for MissingTraceContext {}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for MissingTraceContext {
    fn into_response(self) -> axum::response::Response {
        tracing::error!("{self}");
        crate::problem::Problem::new(http::StatusCode::INTERNAL_SERVER_ERROR).into_response()
    }
}
