//! The least a retry layer can do for a request it may have to send again, written by hand for the
//! bench: a floor to read the retry rows against, not a layer anyone should use.
//!
//! `MinimalReplay` hands the inner service the request with a [`RetryBody`] (as `Retry` does) and,
//! for a `GET`, keeps in one allocation what a second attempt needs at the very least — a shared-state
//! `Arc`, the method and the URI — then drops it once the response is in. It never retries.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Method, Request, Response, Uri};
use palisade::BoxError;
use palisade::retry::RetryBody;
use tower::Service;

/// See the module docs.
#[derive(Clone)]
pub(crate) struct MinimalReplay<S> {
    inner: S,
    shared: Arc<u64>,
}

impl<S> MinimalReplay<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, shared: Arc::new(0) }
    }
}

/// What a second attempt would need.
struct Kept {
    shared: Arc<u64>,
    method: Method,
    uri: Uri,
}

/// The inner future, and the copy kept for a `GET`.
pub(crate) struct MinimalFuture<F> {
    fut: F,
    kept: Option<Box<Kept>>,
}

impl<S, B> Service<Request<B>> for MinimalReplay<S>
where
    S: Service<Request<RetryBody<B>>, Response = Response<()>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<()>;
    type Error = BoxError;
    type Future = MinimalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let kept = (req.method() == Method::GET).then(|| {
            Box::new(Kept {
                shared: Arc::clone(&self.shared),
                method: req.method().clone(),
                uri: req.uri().clone(),
            })
        });
        MinimalFuture { fut: self.inner.call(req.map(RetryBody::streaming)), kept }
    }
}

impl<F> Future for MinimalFuture<F>
where
    F: Future<Output = Result<Response<()>, Infallible>> + Unpin,
{
    type Output = Result<Response<()>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.fut).poll(cx));
        // Where a retry layer would ask its policy: look at the kept copy, so that it is not optimised away.
        if let Some(kept) = &self.kept {
            black_box((&kept.shared, &kept.method, &kept.uri));
        }
        Poll::Ready(result.map_err(Into::into))
    }
}
