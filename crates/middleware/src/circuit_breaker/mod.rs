//! Circuit breaker: stop calling a dependency that is failing, and probe it until it recovers.
//!
//! The breaker watches the outcome of every call, as decided by a [`Classify`](crate::Classify)
//! (by default [`DefaultClassifier`]: errors, 5xx and 429 are failures, other 4xx are successes,
//! and the caller's own expired deadline is [ignored](crate::Outcome::Ignore): recorded as nothing).
//! It **opens** when, over a sliding window that holds at least
//! [`minimum_calls`](CircuitBreakerBuilder::minimum_calls):
//! - the failure rate reaches [`failure_rate_threshold`](CircuitBreakerBuilder::failure_rate_threshold), or
//! - the rate of calls slower than [`slow_call_duration`](CircuitBreakerBuilder::slow_call_duration)
//!   reaches [`slow_call_rate_threshold`](CircuitBreakerBuilder::slow_call_rate_threshold);
//!
//! or, whatever the window, after [`consecutive_failures`](CircuitBreakerBuilder::consecutive_failures)
//! failures in a row. The window is either the last N calls ([`count_window`], the default, truly
//! sliding: each call pushes the oldest out) or the calls of the last W seconds ([`time_window`],
//! per-second buckets). Counts are exact under concurrent calls, and a call admitted before a
//! transition never counts in the window that follows it.
//!
//! While [`Open`](State::Open), calls fail at once with [`CircuitOpen`] (its `retry_after` is the time
//! left in the open interval) and the inner service is not called, nor even polled: `poll_ready`
//! answers ready at once and the call is rejected (tower's `LoadShed` semantics), so a full pool
//! behind an open breaker does not make callers wait. After the interval the breaker is
//! [`HalfOpen`](State::HalfOpen): at most [`permitted_calls_in_half_open`] probes run at once (others
//! are rejected; a dropped or ignored probe gives its permit back); [`success_threshold`] successful
//! probes close it, one failed (or slow) probe reopens it, for an interval that can grow exponentially
//! ([`open_interval_multiplier`], [`max_open_interval`], [`open_interval_jitter`]) and returns to the
//! base once closed. Operators can also force [`ForcedOpen`](State::ForcedOpen),
//! [`Disabled`](State::Disabled) or [`MetricsOnly`](State::MetricsOnly) through a
//! [`CircuitBreakerHandle`].
//!
//! The state lives behind one `Arc` shared by every clone of the service (axum clones services per
//! connection) and by every service made from one [`CircuitBreakerLayer`]. For one breaker per
//! downstream host or route, use a [`CircuitBreakerRegistry`] (bounded: idle breakers are evicted),
//! and, to pick the breaker of each request by a key (a route template with [`MatchedPathKey`]
//! under the `axum` feature, a host, a tenant), its [`keyed_layer`](CircuitBreakerRegistry::keyed_layer).
//!
//! Error-rate breakers belong to clients, one per downstream. On the server side, if at all, use one
//! per route template ([`keyed_layer`](CircuitBreakerRegistry::keyed_layer)), outside the handler's
//! timeout so that it sees timeouts, with [`ServerClassifier`](crate::ServerClassifier) so that no
//! 4xx (429 included) counts, and never in front of operational routes (see
//! `docs/decisions/009-breaker-counting-and-classification.md`).
//!
//! In front of an axum handler, wrap the stack in [`ProblemLayer`](crate::problem::ProblemLayer):
//! [`CircuitOpen`] becomes `503 Service Unavailable` with `Retry-After`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade::circuit_breaker::{CircuitBreakerLayer, State, error::CircuitOpen};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("payments")
//!     .failure_rate_threshold(0.5)
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .open_interval(Duration::from_secs(30))
//!     .build()?;
//! let handle = breaker.handle();
//!
//! // A dependency that answers every call with 503.
//! let mut svc = ServiceBuilder::new().layer(breaker).service(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::builder().status(503).body(()).unwrap())
//! }));
//!
//! for _ in 0..4 {
//!     let res = svc.ready().await?.call(http::Request::new(())).await?;
//!     assert_eq!(res.status(), 503);
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // Now calls fail fast, without reaching the dependency.
//! let err = svc.ready().await?.call(http::Request::new(())).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
//! assert!(open.retry_after() <= Duration::from_secs(30));
//! # Ok(())
//! # }
//! ```
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, labelled with the breaker's `name` (an
//! unnamed breaker gets a distinct `breaker-<n>`), with handles resolved once when the breaker is
//! built (see [`metric_names`](crate::metric_names)):
//! `palisade_circuit_breaker_state{state}` (1 for the current state, 0 for the five others),
//! `palisade_circuit_breaker_rejected_calls_total`, and
//! `palisade_circuit_breaker_transitions_total{state}` (the state entered; in
//! [`MetricsOnly`](State::MetricsOnly), a trip condition counts as one transition to `open` while no
//! call is rejected). Each transition is also logged through `tracing`. No recorder or `tracing`
//! call is made while the breaker's lock is held.
//!
//! # Performance
//!
//! The closed-state path is lock-free and allocation-free: admitting a call is one acquire load of
//! the state word, and a successful call adds 1 (one compare-and-swap) to a call counter *striped
//! per thread* across cache-line-padded shards, then reads one read-mostly flag. No line is written
//! by every core, so throughput scales with cores instead of ping-ponging one hot atomic. Each
//! counter is tagged with the window it counts for, so a new window starts without touching them
//! and a late call of the old window cannot count in it.
//!
//! The count window stays exact without a shared ring: a failure (or slow call) counts itself under
//! a mutex and takes the sum of the shards as its position, so racing failures get distinct
//! positions and never exceed the calls made; only the positions of failures and slow calls are
//! kept. Since a success can only lower the failure rate, the rate is evaluated when a failure
//! arrives (and on every call until the window first holds `minimum_calls`). The cost per call does
//! not depend on the window size. The price is on failures: each takes the mutex and sums the
//! shards (O(cores)), so a dependency failing often (but below the threshold) serialises its
//! failures on that lock.
//!
//! The time window counts fast successes in a per-shard slot of their second (the second and the
//! count in one word, so a slot reused for a new second never shows old counts), and failures and
//! slow calls in a per-second aggregate with running totals under the mutex, into which each closed
//! second is folded once: a failure costs O(cores) plus the seconds since the last fold, whatever the
//! window's length. The first success of each second takes the mutex once, to fold the second that
//! just closed and re-evaluate (old seconds may have left the window), so while calls flow a failure
//! folds at most a second or two; the first call after an idle period folds the idle seconds once
//! (at most the window's seconds × shards slots). The clock is read only when a slow-call duration or
//! a time window is configured.
//!
//! Cloning the service allocates nothing (axum clones it for every request), and a call's future
//! shares a small `Arc` with the other calls of its thread only (one per shard), so even the reference
//! count a future needs is not written by every core.
//!
//! The window's concurrent paths are model-checked with loom (`crates/middleware/loom.sh`) and
//! stress-tested across threads.
//!
//! [`count_window`]: CircuitBreakerBuilder::count_window
//! [`time_window`]: CircuitBreakerBuilder::time_window
//! [`permitted_calls_in_half_open`]: CircuitBreakerBuilder::permitted_calls_in_half_open
//! [`success_threshold`]: CircuitBreakerBuilder::success_threshold
//! [`open_interval_multiplier`]: CircuitBreakerBuilder::open_interval_multiplier
//! [`max_open_interval`]: CircuitBreakerBuilder::max_open_interval
//! [`open_interval_jitter`]: CircuitBreakerBuilder::open_interval_jitter
//! [`CircuitOpen`]: error::CircuitOpen

mod config;
pub mod error;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod registry;
mod shared;
mod sync;
mod window;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

pub use self::config::CircuitBreakerBuilder;
use self::error::CircuitOpen;
use self::future::{Locals, Permit, ResponseFuture};
pub use self::handle::{CircuitBreakerHandle, Snapshot, State};
#[cfg(feature = "axum")]
pub use self::keyed::MatchedPathKey;
pub use self::keyed::{KeyFn, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
pub use self::layer::CircuitBreakerLayer;
pub use self::registry::CircuitBreakerRegistry;
use self::shared::Admission;
use crate::{BoxError, DefaultClassifier, MakeClassify};

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`].
///
/// Its error is [`BoxError`]: the inner service's error, or [`CircuitOpen`] when
/// the call was rejected. While the breaker is [`Open`](State::Open) (within its interval) or
/// [`ForcedOpen`](State::ForcedOpen), `poll_ready` answers ready *without* polling the inner
/// service and the next `call` fails fast (tower's `LoadShed` semantics): an exhausted pool or a
/// full concurrency limit behind an open breaker does not make callers wait. Otherwise `poll_ready`
/// is the inner service's.
pub struct CircuitBreaker<S, M = DefaultClassifier> {
    inner: S,
    locals: Arc<Locals<M>>,
    /// Decided by `poll_ready`: the next call is rejected (the inner service was not polled).
    rejected: Option<CircuitOpen>,
}

inner_accessors!(CircuitBreaker, M);

impl<S, M> CircuitBreaker<S, M> {
    pub(crate) fn from_parts(inner: S, locals: Arc<Locals<M>>) -> Self {
        Self { inner, locals, rejected: None }
    }

    /// A handle to the breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(self.locals.shared()))
    }
}

impl<S: Clone, M> Clone for CircuitBreaker<S, M> {
    fn clone(&self) -> Self {
        // No allocation: the clones share the per-thread stripes (see `future::Locals`). A clone has
        // not been polled ready.
        Self { inner: self.inner.clone(), locals: Arc::clone(&self.locals), rejected: None }
    }
}

impl<S, M, Req> Service<Req> for CircuitBreaker<S, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    M: MakeClassify<Req, S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, M::Classify>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.rejected.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Some(open) = self.locals.shared().rejects_now() {
            self.rejected = Some(open);
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let local = self.locals.this_thread();
        let shared = &local.shared;
        if let Some(open) = self.rejected.take() {
            return ResponseFuture::rejected(shared.reject_with(open));
        }
        call_guarded(&mut self.inner, local, &self.locals.make_classify, req)
    }
}

/// Admits `req` through the breaker of `local` and calls `inner` if allowed (shared with the keyed
/// breaker).
#[inline]
pub(crate) fn call_guarded<S, M, Req>(
    inner: &mut S,
    local: &Arc<future::Local>,
    make_classify: &M,
    req: Req,
) -> ResponseFuture<S::Future, M::Classify>
where
    S: Service<Req>,
    M: MakeClassify<Req, S::Response, BoxError>,
{
    let shared = &local.shared;
    let (ticket, probe) = match shared.admit() {
        Admission::Record(ticket) => (ticket, false),
        Admission::Probe(ticket) => (ticket, true),
        Admission::Pass => return ResponseFuture::called(inner.call(req), None),
        Admission::Reject(open) => return ResponseFuture::rejected(open),
    };
    let classify = make_classify.make_classify(&req);
    let start = shared.start_clock();
    // Created before the call so that a panicking inner `call` still gives a probe permit back.
    let permit = Permit::new(Arc::clone(local), classify, ticket, probe, start);
    ResponseFuture::called(inner.call(req), Some(permit))
}

impl<S: fmt::Debug, M> fmt::Debug for CircuitBreaker<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", self.locals.shared())
            .finish_non_exhaustive()
    }
}
