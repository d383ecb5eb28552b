//! The instant by which a request must be answered, shared by the layers through request extensions.
//!
//! The server side of the [`timeout`](crate::timeout) layer reads the caller's remaining budget from a
//! header and stores a [`Deadline`] in the request's extensions; handlers read it with
//! [`Deadline::of`]; the retry layer never sleeps past it; the client side writes what remains of it on
//! outgoing calls.

use std::time::Duration;

use tokio::time::Instant;

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

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
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

#[cfg(test)]
mod tests {
    use super::*;

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
