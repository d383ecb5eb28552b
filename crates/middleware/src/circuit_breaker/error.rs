//! Errors returned by the circuit breaker.

use std::fmt;
use std::time::Duration;

/// The circuit is open (or forced open, or has no free half-open probe slot): the call was rejected
/// without reaching the inner service.
///
/// Maps to `503 Service Unavailable` with `Retry-After` (see [`crate::problem`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Duration,
}

impl CircuitOpen {
    /// A rejection that suggests retrying after `retry_after`.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until the breaker lets a probe through (zero when unknown or when forced open).
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit open")
    }
}

impl std::error::Error for CircuitOpen {}
