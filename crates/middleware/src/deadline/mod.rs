//! The instant by which a request must be answered, shared by the layers through request extensions,
//! and the layers that carry it across the wire (feature `timeout`): [`ServerDeadlineLayer`] and
//! [`ClientDeadlineLayer`].
//!
//! The server deadline layer reads the caller's remaining budget from a
//! header and stores a [`Deadline`] in the request's extensions; handlers read it with
//! [`Deadline::of`]; the retry layer never sleeps past it; the client side writes what remains of it on
//! outgoing calls.
//!
//! **Deadlines flow by themselves**, like the trace context: while the server deadline layer polls the
//! handler, the request's deadline is the thread's [current](Deadline::current) one, and the client
//! deadline layer gives an outgoing request without a deadline of its own the current one. So a handler
//! that calls another service passes nothing along. Work moved to another task carries it with
//! [`propagate`]: `tokio::spawn(palisade::deadline::propagate(async move { … }))`.
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade::Deadline;
//! use palisade::deadline::propagate;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let deadline = Deadline::after(Duration::from_secs(2));
//! let seen = Deadline::scope(Some(deadline), async {
//!     assert_eq!(Deadline::current(), Some(deadline));
//!     // A spawned task sees it only when it is carried over.
//!     tokio::spawn(propagate(async { Deadline::current() })).await.unwrap()
//! })
//! .await;
//! assert_eq!(seen, Some(deadline));
//! assert_eq!(Deadline::current(), None); // outside the scope again
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

#[cfg(feature = "timeout")]
mod budget;
#[cfg(feature = "timeout")]
mod client;
#[cfg(feature = "timeout")]
mod server;

#[cfg(feature = "timeout")]
pub use client::{ClientDeadline, ClientDeadlineBuilder, ClientDeadlineLayer};
#[cfg(feature = "timeout")]
pub use server::{ServerDeadline, ServerDeadlineBuilder, ServerDeadlineLayer};

/// The default header carrying the caller's remaining budget, in whole milliseconds.
#[cfg(feature = "timeout")]
pub const BUDGET_HEADER: &str = "x-request-timeout-ms";

/// The gRPC timeout header (`grpc-timeout`).
#[cfg(feature = "timeout")]
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Validates a configured header name.
#[cfg(feature = "timeout")]
fn header_name(name: &str) -> Result<http::HeaderName, crate::InvalidConfig> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| crate::InvalidConfig::new("header", format!("{name:?} is not a valid header name")))
}

thread_local! {
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// What `Deadline::after` gives for a budget too large for the clock: far enough to be no limit.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An absolute instant by which the work on a request must be done.
///
/// Uses [`tokio::time::Instant`], so tests can drive it with paused time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `budget` from now. A budget too large for the clock (`Duration::MAX`) saturates to
    /// a deadline a century away instead of panicking.
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Self(now.checked_add(budget).or_else(|| now.checked_add(FAR_FUTURE)).unwrap_or(now))
    }

    /// The thread's current deadline: the deadline of the request whose handler is being polled
    /// (set by the server deadline layer), or the one given to [`Deadline::scope`] or [`propagate`].
    pub fn current() -> Option<Self> {
        CURRENT.with(Cell::get)
    }

    /// Runs `fut` with `deadline` as the [current](Self::current) one while it is polled.
    pub fn scope<F: Future>(deadline: Option<Self>, fut: F) -> Scoped<F> {
        Scoped { inner: fut, deadline }
    }

    /// The instant of the deadline.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left until the deadline, zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of two deadlines.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if other.0 < self.0 { other } else { self }
    }

    /// The deadline stored in a request's extensions, if any.
    pub fn of<B>(req: &http::Request<B>) -> Option<Self> {
        req.extensions().get::<Self>().copied()
    }

    /// Stores this deadline in a request's extensions, keeping an earlier one already there.
    pub fn apply<B>(self, req: &mut http::Request<B>) -> Self {
        let effective = Self::of(req).map_or(self, |existing| existing.min(self));
        req.extensions_mut().insert(effective);
        effective
    }
}

/// Runs `fut` with the current deadline (captured now) as the current one while it is polled: for work
/// spawned onto another task, which a thread's current deadline does not follow.
pub fn propagate<F: Future>(fut: F) -> Scoped<F> {
    Deadline::scope(Deadline::current(), fut)
}

pin_project! {
    /// A future polled with a [current](Deadline::current) deadline; from [`Deadline::scope`] and
    /// [`propagate`], and the response future of the server deadline layer.
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        deadline: Option<Deadline>,
    }
}

/// Restores the previous current deadline, also when the inner poll panics.
struct Restore(Option<Deadline>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _restore = Restore(CURRENT.with(|current| current.replace(*this.deadline)));
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_never_panics_on_a_budget_too_large_for_the_clock() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() > Duration::from_secs(50 * 365 * 24 * 3600));
        assert!(!d.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_and_saturates() {
        let d = Deadline::after(Duration::from_millis(100));
        assert_eq!(d.remaining(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(d.remaining(), Duration::from_millis(40));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn apply_keeps_the_earlier_deadline() {
        let mut req = http::Request::new(());
        let early = Deadline::after(Duration::from_millis(10));
        let late = Deadline::after(Duration::from_millis(20));
        assert_eq!(late.apply(&mut req), late);
        assert_eq!(early.apply(&mut req), early);
        assert_eq!(late.apply(&mut req), early);
        assert_eq!(Deadline::of(&req), Some(early));
    }
}
