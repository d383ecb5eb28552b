//! Response futures of the trace services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::context::{CurrentScope, TraceContext};
use super::header::TRACEPARENT;
use super::server::AccessLog;

pin_project! {
    /// Response future of [`ServerTrace`](super::ServerTrace): polls the handler inside the request's
    /// `tracing` span with its [`TraceContext`] as the thread's current one, then echoes `traceparent`.
    pub struct ServerResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        // Always `Some` between polls; moved into the thread-local while the inner future is polled.
        context: Option<TraceContext>,
        echo: bool,
        access: Option<AccessLog>,
    }
}

impl<F> ServerResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        span: tracing::Span,
        context: TraceContext,
        echo: bool,
        access: Option<AccessLog>,
    ) -> Self {
        Self { inner, span, context: Some(context), echo, access }
    }
}

impl<F> fmt::Debug for ServerResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerResponseFuture")
            .field("span", &self.span)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ServerResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            let _current = CurrentScope::enter(this.context);
            let result = ready!(this.inner.poll(cx));
            // Inside the request's context: the event carries its trace id.
            if let Some(access) = this.access.take() {
                access.write(result.as_ref().ok().map(Response::status));
            }
            result
        };
        Poll::Ready(result.map(|mut res| {
            if *this.echo
                && let Some(context) = this.context
            {
                res.headers_mut().insert(TRACEPARENT, context.traceparent().to_header_value());
            }
            res
        }))
    }
}

pin_project! {
    /// Response future of [`ClientTrace`](super::ClientTrace): polls the call inside its `tracing` span.
    pub struct ClientResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
    }
}

impl<F> ClientResponseFuture<F> {
    pub(super) fn new(inner: F, span: tracing::Span) -> Self {
        Self { inner, span }
    }
}

impl<F> fmt::Debug for ClientResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientResponseFuture").field("span", &self.span).finish_non_exhaustive()
    }
}

impl<F: Future> Future for ClientResponseFuture<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx)
    }
}
