//! Retries failed HTTP calls: exponential backoff with jitter, HTTP-aware by default, bounded by a retry
//! budget and by the request's [`Deadline`](crate::Deadline).
//!
//! [`RetryLayer::builder`] configures it; every setting and its default is listed on
//! [`RetryLayerBuilder`]. An attempt's result goes to the [`Policy`] ([`DefaultPolicy`] unless replaced):
//! it decides whether the request may be retried at all (idempotent methods, or an `Idempotency-Key`),
//! and whether this result should be (errors, `429`, `502`, `503`, `504`, as the shared
//! [classifier](crate::classify) sees them), possibly no sooner than a server-given `Retry-After` (the
//! backoff, jittered, is added to it so that callers told the same time do not return together). A
//! retry then also needs:
//!
//! - an attempt left (`max_attempts` counts the first one);
//! - a `Retry-After` within `max_retry_after` (else the response is returned as it is);
//! - time: a retry whose backoff would end at or after the request's [`Deadline`](crate::Deadline) (from its
//!   extensions) is not made;
//! - the [`Budget`], shared by every clone of the service: when it is exhausted, the last failure is
//!   returned as it was and `palisade_retry_budget_exhausted_total` counts it.
//!
//! When a retry is not made, the caller gets the last attempt's result unchanged: the response, or the
//! inner service's error (boxed). The layer has no error of its own: an error the inner service returns
//! from `poll_ready` before a retry, or the caller's body returns while it is buffered, is returned as
//! it is.
//!
//! **Bodies.** To send a request again its body must be kept. The inner service receives a
//! [`RetryBody<B>`]: bodies that are already finished (`is_end_stream`) cost nothing; other bodies of a
//! retryable request whose `size_hint` upper bound is at most `max_buffered_body` (64 KiB by default)
//! are read into one [`Bytes`](bytes::Bytes) first and replayed from it; a body with no upper bound or a
//! larger one, or one that turns out larger while read, is streamed through once and never retried —
//! no byte is lost either way. Requests the policy will not retry are passed through untouched.
//!
//! **Cost.** Every request costs a budget deposit: a clock read and one uncontended atomic
//! compare-exchange on a per-thread shard (none with [`Budget::unlimited`] or a zero ratio). The clock
//! read is what lets a request count in the second it was made, however long the budget goes without a
//! retry. A request that may be retried also keeps what a retry
//! needs, in one allocation: a clone of the inner service, of the shared `Arc`, and of the request head
//! (method and URI are reference-counted; headers and extensions, when there are any, are copied — the
//! price of being able to send the request again). Requests that may not be retried skip all of that and
//! allocate nothing. The [`Policy`] sees the kept head as a [`RequestHead`].
//!
//! **Metrics** ([`metric_names`](crate::metric_names)), labelled with the layer's `name`:
//! `palisade_retry_retries_total` (each attempt after the first) and
//! `palisade_retry_budget_exhausted_total`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use palisade::retry::{Backoff, RetryBody, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let attempts = Arc::new(AtomicUsize::new(0));
//! let seen = attempts.clone();
//! let flaky = service_fn(move |_req: Request<RetryBody<Empty<bytes::Bytes>>>| {
//!     let attempt = seen.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move {
//!         let status = if attempt == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
//!     }
//! });
//!
//! let retry = RetryLayer::builder()
//!     .name("catalog")
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(10)).cap(Duration::from_millis(100)))
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(retry).service(flaky);
//!
//! let res = svc.oneshot(Request::get("http://catalog/v1/products").body(Empty::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(attempts.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

mod backoff;
mod body;
mod budget;
pub mod future;
mod layer;
mod policy;

pub use backoff::{Backoff, Jitter};
pub use body::RetryBody;
pub use budget::Budget;
pub use layer::{RetryLayer, RetryLayerBuilder};
pub use policy::{Decision, DefaultPolicy, IDEMPOTENCY_KEY, Policy, RequestHead, retry_after};

use self::future::{Replay, ResponseFuture};
use self::layer::Shared;
use crate::BoxError;

/// Retries failed calls to the inner service `S` as the policy `P` allows. Made by [`RetryLayer`]; see
/// the [module docs](self).
///
/// Its clones share one budget and one set of metric handles.
pub struct Retry<S, P = DefaultPolicy> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S, P> Retry<S, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<P>>) -> Self {
        Self { inner, shared }
    }
}

inner_accessors!(Retry, P);

impl<S: Clone, P> Retry<S, P> {
    /// A future that reads the body of `req` before the first attempt: it takes the service that was
    /// polled ready and leaves a clone in its place (tower's usual swap).
    fn buffering<B>(&mut self, req: Request<B>) -> ResponseFuture<S, P, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::buffering(body, Replay::from_parts(ready, Arc::clone(&self.shared), parts))
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<S: std::fmt::Debug, P> std::fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner).field("config", &self.shared).finish()
    }
}

impl<S, P, B, ResB> Service<Request<B>> for Retry<S, P>
where
    S: Service<Request<RetryBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<ResB>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        // A request that may be retried keeps a copy of its head (and its body, read first if there
        // is one); any other is passed through untouched. Both call the inner service from one place.
        let replay = if shared.max_attempts <= 1 || !shared.policy.is_retryable(&req) {
            None
        } else if req.body().is_end_stream() {
            Some(Replay::copy_of(self.inner.clone(), Arc::clone(&self.shared), &req))
        } else if req.body().size_hint().upper().is_some_and(|upper| upper <= shared.max_buffered_body) {
            return self.buffering(req);
        } else {
            None
        };
        ResponseFuture::new(self.inner.call(req.map(RetryBody::streaming)), replay)
    }
}
