//! The response future of [`Metrics`](super::Metrics).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::series::Series;

pin_project! {
    /// Response future of [`Metrics`](super::Metrics): records the call's duration when the inner
    /// future completes, and releases the in-flight gauge when it completes or is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, in_flight: InFlight) -> Self {
        Self { inner, in_flight: Some(in_flight) }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            in_flight.finish(result.as_ref().ok().map(|res| res.status().as_u16()));
        }
        Poll::Ready(result)
    }
}

/// One call in flight: counted in the gauge from [`InFlight::start`] until dropped (a drop guard, so a
/// cancelled call is released too).
#[derive(Debug)]
pub(crate) struct InFlight {
    series: Arc<Series>,
    start: Instant,
    /// Whether the gauge went up: not while no recorder is installed, and then it must not go down
    /// either (the recorder may arrive before the call ends).
    counted: bool,
}

impl InFlight {
    #[inline]
    pub(crate) fn start(series: Arc<Series>) -> Self {
        let counted = series.active.try_get().map(|gauge| gauge.increment(1.0)).is_some();
        Self { series, start: Instant::now(), counted }
    }

    /// Records the duration of a finished call (`status` is `None` for an error), then releases the
    /// gauge by dropping `self`.
    #[inline]
    fn finish(self, status: Option<u16>) {
        self.series.record(status, self.start.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        if self.counted {
            self.series.active.get().decrement(1.0);
        }
    }
}
