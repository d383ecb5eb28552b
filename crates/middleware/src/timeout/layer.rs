use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::Label;
use tower::Layer;

use super::Timeout;
use crate::InvalidConfig;
use crate::metric_handles::LazyCounter;
use crate::metric_names::{LABEL_KIND, LABEL_NAME, TIMEOUTS};

/// Which limit ended a call: the layer's own timeout or the request's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Timeout,
    Deadline,
}

/// State shared by every clone of a [`Timeout`] service: the settings and the metric handles.
pub(crate) struct TimeoutShared {
    pub(crate) timeout: Duration,
    name: Cow<'static, str>,
    timeouts: LazyCounter,
    deadlines: LazyCounter,
}

impl TimeoutShared {
    pub(crate) fn new(timeout: Duration, name: Cow<'static, str>) -> Self {
        let labels = |kind| vec![Label::new(LABEL_NAME, name.clone()), Label::new(LABEL_KIND, kind)];
        let timeouts = LazyCounter::new(TIMEOUTS, labels("timeout"));
        let deadlines = LazyCounter::new(TIMEOUTS, labels("deadline"));
        Self { timeout, name, timeouts, deadlines }
    }

    pub(crate) fn record(&self, kind: Kind) {
        match kind {
            Kind::Timeout => {
                self.timeouts.get().increment(1);
                tracing::debug!(name = %self.name, timeout = ?self.timeout, "call timed out");
            }
            Kind::Deadline => {
                self.deadlines.get().increment(1);
                tracing::debug!(name = %self.name, "call hit its deadline");
            }
        }
    }
}

impl fmt::Debug for TimeoutShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutShared")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Applies a per-call timeout, clamped to the request's [`Deadline`](crate::Deadline).
///
/// See the [module docs](super) for the behaviour and the recommended order.
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    shared: Arc<TimeoutShared>,
}

impl TimeoutLayer {
    /// A timeout layer named `"default"`; `Err` if `timeout` is zero.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when `timeout` is zero.
    pub fn new(timeout: Duration) -> Result<Self, InvalidConfig> {
        Self::builder(timeout).build()
    }

    /// A builder for a layer with the given per-call `timeout`.
    pub fn builder(timeout: Duration) -> TimeoutBuilder {
        TimeoutBuilder { timeout, name: Cow::Borrowed("default") }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`TimeoutLayer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct TimeoutBuilder {
    timeout: Duration,
    name: Cow<'static, str>,
}

impl TimeoutBuilder {
    /// The `name` label of this layer's metrics (default `"default"`), e.g. the downstream's name.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the layer, resolving its metric handles once.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when the timeout is zero (every call would fail).
    pub fn build(self) -> Result<TimeoutLayer, InvalidConfig> {
        if self.timeout.is_zero() {
            return Err(InvalidConfig::new("timeout", "must be greater than zero"));
        }
        Ok(TimeoutLayer { shared: Arc::new(TimeoutShared::new(self.timeout, self.name)) })
    }
}
