//! Circuit breaker (work in progress).

pub mod error;
