//! Per-call timeouts and end-to-end deadline propagation.
//!
//! Three layers, each usable on its own:
//!
//! - [`TimeoutLayer`] fails a call that takes longer than its timeout with [`Elapsed`]. When the
//!   request carries a [`Deadline`] earlier than the timeout, the timeout is clamped to it and expiry
//!   fails with [`DeadlineExceeded`] instead; a request whose deadline has already passed is not sent
//!   to the inner service at all. Without a caller deadline, the timeout counts from the moment the
//!   inner future first waits (returns `Pending`), so an answer ready at once costs no clock read and
//!   no timer; a caller's deadline is an absolute instant either way. Both errors are returned boxed
//!   ([`BoxError`]): a client downcasts them, a server wraps the stack in [`ProblemLayer`](crate::problem::ProblemLayer),
//!   which answers both with `504 Gateway Timeout` (problem+json).
//! - [`ServerDeadlineLayer`] reads the caller's remaining budget from the request headers and stores a
//!   [`Deadline`] in the request's extensions ([`Deadline::apply`]): handlers read it with
//!   [`Deadline::of`] (or axum's `Option<Extension<Deadline>>`; a bare `Extension<Deadline>` rejects
//!   requests that came without a budget unless
//!   [`default_budget`](ServerDeadlineBuilder::default_budget) is set), and pass it on to the calls
//!   they make with `deadline.apply(&mut outgoing)`.
//! - [`ClientDeadlineLayer`] writes what remains of a request's [`Deadline`] on outgoing calls, and
//!   fails a call whose deadline has passed with [`DeadlineExceeded`] without sending it.
//!
//! # Budget headers
//!
//! | header | format | read | written |
//! |---|---|---|---|
//! | [`BUDGET_HEADER`] `x-request-timeout-ms` (configurable) | the remaining budget in whole milliseconds: 1 to 20 ASCII digits, nothing else (`1500`) | by default | by default |
//! | [`GRPC_TIMEOUT`] `grpc-timeout` | 1 to 8 ASCII digits and a unit: `H`, `M`, `S`, `m` (ms), `u` (µs), `n` (ns) (`1500m`) | by default | when enabled |
//!
//! A budget of `0` means the caller has already given up. When both headers are present, the smaller
//! budget wins. A malformed value (empty, a sign, a fraction, a unit where none belongs, an unknown gRPC
//! unit, 9 or more gRPC digits, a number too large for 64 bits) is ignored and logged with
//! `tracing::debug!`: it never fails the request. The client writes budgets rounded *down*, so the
//! callee never believes it has more time than its caller will wait.
//!
//! # Order
//!
//! On a server (outermost first):
//!
//! 1. [`ProblemLayer`](crate::problem::ProblemLayer): turns [`Elapsed`] and [`DeadlineExceeded`] into
//!    `504` responses, so the stack is `Infallible` for axum.
//! 2. [`ServerDeadlineLayer`]: the deadline must be in the extensions before the timeout looks for it.
//! 3. [`TimeoutLayer`]: the server's own limit, clamped to the caller's deadline; a request the caller
//!    has already given up on never reaches the handler.
//!
//! On a client (outermost first):
//!
//! 1. [`ClientDeadlineLayer`] (with [`default_budget`](ClientDeadlineBuilder::default_budget) for calls
//!    made outside any request): the *total* deadline, so retries share one budget and the retry layer
//!    never sleeps past it. It writes the budget header once; to send each attempt the exact remaining
//!    budget, add a second `ClientDeadlineLayer::new()` inside the retry layer (it overwrites the header
//!    and fails an attempt whose deadline passed during backoff), and build the outer one with
//!    [`write_headers(false)`](ClientDeadlineBuilder::write_headers) so the header is written once.
//! 2. retry, then circuit breaker.
//! 3. [`TimeoutLayer`]: the *per-attempt* timeout, clamped to what remains of the deadline.
//!
//! A call failed fast ([`DeadlineExceeded`] before calling the inner service) leaves the readiness
//! obtained by `poll_ready` unused, as tower's load-shedding does; the next `call` uses it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade::Deadline;
//! use palisade::timeout::error::Elapsed;
//! use palisade::timeout::{ServerDeadlineLayer, TimeoutLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let slow = service_fn(|_req: http::Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! });
//! let svc = ServiceBuilder::new().layer(TimeoutLayer::new(Duration::from_secs(1))?).service(slow);
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! assert!(err.is::<Elapsed>());
//!
//! // The handler sees the caller's budget as a deadline.
//! let handler = service_fn(|req: http::Request<()>| async move {
//!     let deadline = Deadline::of(&req).expect("the layer stored a deadline");
//!     Ok::<_, std::convert::Infallible>(deadline.remaining())
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(ServerDeadlineLayer::new())
//!     .layer(TimeoutLayer::new(Duration::from_secs(1))?)
//!     .service(handler);
//! let req = http::Request::builder().header("x-request-timeout-ms", "50").body(())?;
//! assert_eq!(svc.oneshot(req).await?, Duration::from_millis(50));
//! # Ok(())
//! # }
//! ```
//!
//! [`Elapsed`]: error::Elapsed
//! [`DeadlineExceeded`]: error::DeadlineExceeded

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tokio::time::Instant;
use tower::Service;

use crate::{BoxError, Deadline};

pub mod error;
pub mod future;
mod layer;

use future::{ResponseFuture, Until};
use layer::{Kind, TimeoutShared};
pub use layer::{TimeoutBuilder, TimeoutLayer};

// The deadline layers live beside `Deadline` in `crate::deadline`; these names stay importable from
// here for code written against 0.1.
pub use crate::deadline::{
    BUDGET_HEADER, ClientDeadline, ClientDeadlineBuilder, ClientDeadlineLayer, GRPC_TIMEOUT, ServerDeadline,
    ServerDeadlineBuilder, ServerDeadlineLayer,
};

/// The service made by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    shared: Arc<TimeoutShared>,
}

inner_accessors!(Timeout);

impl<S> Timeout<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<TimeoutShared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
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
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let timeout = self.shared.timeout;
        let Some(deadline) = Deadline::of(&req).map(Deadline::instant) else {
            // No caller deadline: the clock is read only if the inner future is not ready at once
            // (see `Until::After`).
            return ResponseFuture::running(
                self.inner.call(req),
                Until::After(timeout),
                Kind::Timeout,
                Arc::clone(&self.shared),
            );
        };
        let now = Instant::now();
        if deadline <= now {
            self.shared.record(Kind::Deadline);
            return ResponseFuture::expired();
        }
        let (until, kind) = match now.checked_add(timeout) {
            Some(until) if until <= deadline => (Until::At(until), Kind::Timeout),
            _ => (Until::At(deadline), Kind::Deadline),
        };
        // The future makes its timer only if the inner future is not ready at once. It shares the
        // metric handles: one reference-count increment, no allocation.
        ResponseFuture::running(self.inner.call(req), until, kind, Arc::clone(&self.shared))
    }
}
