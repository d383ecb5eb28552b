//! `TraceContext` as an axum extractor.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use super::TraceContext;
use super::error::MissingTraceContext;

/// The context of the request's server span: one in the request's extensions if something put it
/// there, else the [current](TraceContext::current) one, which the server trace layer sets while the
/// handler runs. Rejected with [`MissingTraceContext`] (500) when there is neither; extract
/// `Option<TraceContext>` to get `None` instead.
impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = MissingTraceContext;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .ok()
            .flatten()
            .ok_or(MissingTraceContext::new())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().or_else(Self::current))
    }
}
