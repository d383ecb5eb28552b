#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

mod builder;
pub mod classify;
mod config_error;
pub mod deadline;
// Each feature uses a part of it; with only some features on, the rest is unused.
#[cfg_attr(not(feature = "full"), allow(dead_code))]
mod metric_handles;
pub mod metric_names;
pub mod problem;

#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(feature = "load-shed")]
pub mod load_shed;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "timeout")]
pub mod timeout;
#[cfg(feature = "trace")]
pub mod trace;

#[cfg(all(
    feature = "circuit-breaker",
    feature = "load-shed",
    feature = "retry",
    feature = "timeout",
    feature = "metrics",
    feature = "trace"
))]
pub mod stack;

pub use builder::ServiceBuilderExt;
pub use classify::{Classify, DefaultClassifier, MakeClassify, Outcome, ServerClassifier};
pub use config_error::InvalidConfig;
pub use deadline::Deadline;

/// The error type every palisade service returns: the inner service's error or a layer's own error
/// (such as [`circuit_breaker::error::CircuitOpen`]), boxed so that layers compose. Downcast it to tell
/// them apart, or let [`problem`] turn it into a response.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
