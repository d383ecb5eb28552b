//! Errors returned by the load shedder.

use std::fmt;
use std::time::Duration;

/// The service already had as many requests in flight as it accepts; this one was refused without
/// being started.
///
/// Maps to `503 Service Unavailable` with `Retry-After` (see [`crate::problem`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overloaded {
    retry_after: Duration,
}

impl Overloaded {
    /// A new `Overloaded` error telling the caller to come back after `retry_after`.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// When the caller may try again: the layer's base delay with jitter (so shed clients do not all
    /// come back in the same second).
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("service overloaded")
    }
}

impl std::error::Error for Overloaded {}
