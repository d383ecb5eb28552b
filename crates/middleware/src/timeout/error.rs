//! Errors returned by the timeout layer.

use std::fmt;

/// The per-call timeout elapsed before the inner service answered.
///
/// Maps to `504 Gateway Timeout` (see [`crate::problem`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elapsed(());

impl Elapsed {
    /// A new `Elapsed` error.
    pub const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request timed out")
    }
}

impl std::error::Error for Elapsed {}

/// The request's end-to-end [`Deadline`](crate::Deadline) passed (or had already passed when the
/// request arrived): the caller has given up on it.
///
/// Maps to `504 Gateway Timeout` (see [`crate::problem`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadlineExceeded(());

impl DeadlineExceeded {
    /// A new `DeadlineExceeded` error.
    pub const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}
