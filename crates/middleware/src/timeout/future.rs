//! Response futures of the timeout and deadline services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::error::{DeadlineExceeded, Elapsed};
use super::layer::{Kind, TimeoutShared};
use crate::BoxError;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout): the inner future raced against a timer held
    /// inline (no boxing). The timer is only made when the inner future is not ready at its first
    /// poll: its deadline is fixed when the service is called, so an answer that is ready at once
    /// never pays for a timer.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

/// When the timer of a [`ResponseFuture`] fires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Until {
    /// At this instant.
    At(Instant),
    /// This long after the inner future first returns `Pending`.
    After(Duration),
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            fut: F,
            // `None` until the inner future first returns `Pending`.
            #[pin]
            sleep: Option<Sleep>,
            until: Until,
            kind: Kind,
            shared: Arc<TimeoutShared>,
        },
        // The request's deadline had passed before the inner service was called.
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn running(fut: F, until: Until, kind: Kind, shared: Arc<TimeoutShared>) -> Self {
        Self { state: State::Running { fut, sleep: None, until, kind, shared } }
    }

    pub(crate) fn expired() -> Self {
        Self { state: State::Expired }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
            StateProj::Running { fut, mut sleep, until, kind, shared } => {
                // The inner future first: an answer that is ready wins over a timer that fired at the
                // same instant.
                if let Poll::Ready(result) = fut.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                if sleep.is_none() {
                    let at = match *until {
                        Until::At(at) => Some(at),
                        // Counted from here: the one clock read of a call without a caller deadline,
                        // skipped entirely when the answer is ready at once. The timeout so starts after
                        // the inner future's first poll, which cannot be interrupted anyway.
                        Until::After(timeout) => Instant::now().checked_add(timeout),
                    };
                    sleep.set(Some(match at {
                        Some(at) => tokio::time::sleep_until(at),
                        // A timeout further than the clock can say: as long as tokio can wait.
                        None => tokio::time::sleep(Duration::MAX),
                    }));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                shared.record(*kind);
                Poll::Ready(Err(match kind {
                    Kind::Timeout => Elapsed::new().into(),
                    Kind::Deadline => DeadlineExceeded::new().into(),
                }))
            }
            StateProj::Expired => Poll::Ready(Err(DeadlineExceeded::new().into())),
        }
    }
}

pin_project! {
    /// Response future of [`ClientDeadline`](super::ClientDeadline): the inner future, or
    /// [`DeadlineExceeded`] when the deadline had passed before sending.
    pub struct ClientDeadlineFuture<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F> ClientDeadlineFuture<F> {
    pub(crate) fn called(fut: F) -> Self {
        Self { inner: Some(fut) }
    }

    pub(crate) fn expired() -> Self {
        Self { inner: None }
    }
}

impl<F> fmt::Debug for ClientDeadlineFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientDeadlineFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ClientDeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.as_pin_mut() {
            Some(fut) => fut.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err(DeadlineExceeded::new().into())),
        }
    }
}
