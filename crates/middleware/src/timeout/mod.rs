//! Timeout and deadline propagation (work in progress).

pub mod error;
