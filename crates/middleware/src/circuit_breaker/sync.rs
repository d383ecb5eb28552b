//! The atomics and the mutex of the breaker's window: std's, or loom's when built with
//! `--cfg palisade_loom` (see `crates/middleware/loom.sh`), so that loom explores every
//! interleaving of the window's concurrent paths. Not `--cfg loom`: that would switch tokio too.

#[cfg(not(palisade_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(palisade_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(palisade_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(palisade_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
