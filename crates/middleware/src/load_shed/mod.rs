//! Load shedding: a limit on requests in flight that refuses the next one at once instead of queueing it.
//!
//! This is what protects a *server* from overload (see `docs/decisions/008`): unlike an error-rate
//! breaker it never counts what clients send (a flood of bad logins answered `429` cannot trip it),
//! it recovers the moment load drops, and it is shared fairly by every route. A request over the
//! limit gets [`Overloaded`], which [`ProblemLayer`](crate::problem::ProblemLayer)
//! turns into `503 Service Unavailable` problem+json with a jittered `Retry-After`, so refused clients
//! do not all come back in the same second. The inner service is never called for it.
//!
//! A request holds its place until its response is ready (or its future is dropped, e.g. when the
//! client goes away). `poll_ready` is the inner service's.
//!
//! Keep operational routes (`/livez`, `/readyz`, `/metrics`) outside it: a probe must answer while the
//! API sheds.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade::load_shed::{LoadShedLayer, error::Overloaded};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let shed = LoadShedLayer::builder().max_in_flight(1).retry_after(Duration::from_secs(2)).build()?;
//! let (release, wait) = tokio::sync::oneshot::channel::<()>();
//! let wait = std::sync::Arc::new(tokio::sync::Mutex::new(Some(wait)));
//! let svc = ServiceBuilder::new().layer(shed.clone()).service(service_fn(move |_req: http::Request<()>| {
//!     let wait = wait.clone();
//!     async move {
//!         if let Some(wait) = wait.lock().await.take() {
//!             let _ = wait.await; // the first request stays in flight until released
//!         }
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     }
//! }));
//!
//! let first = tokio::spawn(svc.clone().oneshot(http::Request::new(())));
//! while shed.in_flight() == 0 {
//!     tokio::task::yield_now().await;
//! }
//! // The limit is reached: the next request is refused at once.
//! let err = svc.clone().oneshot(http::Request::new(())).await.unwrap_err();
//! let overloaded = err.downcast_ref::<Overloaded>().expect("shed");
//! assert!(overloaded.retry_after() >= Duration::from_secs(2));
//! assert!(overloaded.retry_after() <= Duration::from_secs(4));
//!
//! release.send(()).unwrap();
//! assert_eq!(first.await??.status(), 200);
//! assert_eq!(shed.in_flight(), 0);
//! assert_eq!(svc.oneshot(http::Request::new(())).await?.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Metrics
//!
//! `palisade_load_shed_rejected_total{name}`: requests refused (see [`metric_names`]).
//! The requests in flight are `http_server_active_requests` of the [metrics](crate::metrics) layer.

pub mod error;
pub mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::Label;
use tower::Service;

use self::error::Overloaded;
use self::future::{Permit, ResponseFuture};
pub use self::layer::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_RETRY_AFTER, LoadShedBuilder, LoadShedLayer};
use crate::metric_handles::LazyCounter;
use crate::{BoxError, metric_names};

/// A service that refuses requests over its limit of requests in flight; made by [`LoadShedLayer`].
///
/// Its error is [`BoxError`]: the inner service's error, or [`Overloaded`] for a refused request.
pub struct LoadShed<S> {
    inner: S,
    shared: Arc<Shared>,
}

inner_accessors!(LoadShed);

impl<S: Clone> Clone for LoadShed<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<S: fmt::Debug> fmt::Debug for LoadShed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed").field("inner", &self.inner).field("shared", &self.shared).finish()
    }
}

impl<S, Req> Service<Req> for LoadShed<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.shared.try_acquire() {
            ResponseFuture::called(self.inner.call(req), Permit(Arc::clone(&self.shared)))
        } else {
            ResponseFuture::shed(self.shared.refuse())
        }
    }
}

/// The limit and the count, shared by every clone.
pub(crate) struct Shared {
    in_flight: AtomicUsize,
    max: usize,
    retry_after: Duration,
    rejected: LazyCounter,
}

impl Shared {
    fn new(name: &str, max: usize, retry_after: Duration) -> Self {
        // Lazy: a layer built before `main` installs its recorder still records.
        let labels = vec![Label::new(metric_names::LABEL_NAME, name.to_owned())];
        let rejected = LazyCounter::new(metric_names::LOAD_SHED_REJECTED, labels);
        Self { in_flight: AtomicUsize::new(0), max, retry_after, rejected }
    }

    /// Takes a place if one is free. A compare-and-swap, not an add-then-undo: a burst over the limit
    /// never makes a request that fits look over it.
    #[inline]
    fn try_acquire(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    #[cold]
    fn refuse(&self) -> Overloaded {
        self.rejected.get().increment(1);
        // Uniform in [base, 2 × base): refused clients spread over the next interval.
        Overloaded::new(self.retry_after.mul_f64(1.0 + fastrand::f64()))
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("in_flight", &self.in_flight())
            .field("max", &self.max)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}
