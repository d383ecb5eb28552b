//! [`ResponseFuture`] of the load shedder.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Shared;
use super::error::Overloaded;
use crate::BoxError;

/// One request's place among those in flight; given back when the response future ends or is dropped.
pub(crate) struct Permit(pub(crate) Arc<Shared>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

pin_project! {
    /// Response future of [`LoadShed`](super::LoadShed).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] fut: F, permit: Option<Permit> },
        Shed { err: Option<Overloaded> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F, permit: Permit) -> Self {
        Self { state: State::Called { fut, permit: Some(permit) } }
    }

    pub(crate) fn shed(err: Overloaded) -> Self {
        Self { state: State::Shed { err: Some(err) } }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut, permit } => {
                let result = ready!(fut.poll(cx));
                // The place is free as soon as the response is ready, not when the future is dropped.
                permit.take();
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Shed { err } => Poll::Ready(Err(err.take().expect("polled after completion").into())),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
