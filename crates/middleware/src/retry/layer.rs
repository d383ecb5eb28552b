use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::Label;
use tower::Layer;

use super::budget::BudgetState;
use super::{Backoff, Budget, DefaultPolicy, Retry};
use crate::InvalidConfig;
use crate::metric_handles::LazyCounter;
use crate::metric_names::{LABEL_NAME, RETRY_BUDGET_EXHAUSTED, RETRY_RETRIES};

/// Applies [`Retry`] to services. Every service it makes — and every clone of them — shares one budget
/// and one set of metric handles (one `Arc`).
///
/// Build it with [`RetryLayer::builder`]; [`RetryLayer::new`] takes every default.
pub struct RetryLayer<P = DefaultPolicy> {
    shared: Arc<Shared<P>>,
}

/// What every clone of a [`Retry`] service shares.
pub(crate) struct Shared<P> {
    pub(crate) policy: P,
    pub(crate) backoff: Backoff,
    pub(crate) max_attempts: u32,
    pub(crate) max_retry_after: Duration,
    pub(crate) max_buffered_body: u64,
    pub(crate) budget: Option<BudgetState>,
    pub(crate) retries: LazyCounter,
    pub(crate) exhausted: LazyCounter,
    name: String,
}

impl<P> fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_buffered_body", &self.max_buffered_body)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<P> Clone for RetryLayer<P> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<P> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryLayer").field(&self.shared).finish()
    }
}

impl RetryLayer {
    /// A layer with every default (see [`RetryLayerBuilder`]).
    pub fn new() -> Self {
        Self::builder().build().expect("the defaults are valid")
    }

    /// A builder, starting from the defaults listed on [`RetryLayerBuilder`].
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder {
            name: "default".to_owned(),
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: Budget::default(),
            max_retry_after: Duration::from_secs(10),
            max_buffered_body: 64 * 1024,
            policy: DefaultPolicy::new(),
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, P> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// Configures a [`RetryLayer`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) | `"default"` (the `name` label of the metrics) |
/// | [`max_attempts`](Self::max_attempts) | 3 (the first attempt and up to 2 retries) |
/// | [`backoff`](Self::backoff) | [`Backoff::default`]: 100 ms × 2ⁿ⁻¹, capped at 5 s, full jitter |
/// | [`budget`](Self::budget) | [`Budget::default`]: 20 % of recent requests + 10 per second, over 10 s |
/// | [`max_retry_after`](Self::max_retry_after) | 10 s |
/// | [`max_buffered_body`](Self::max_buffered_body) | 64 KiB |
/// | [`policy`](Self::policy) | [`DefaultPolicy`] with the [`DefaultClassifier`](crate::DefaultClassifier) |
#[derive(Clone, Debug)]
pub struct RetryLayerBuilder<P = DefaultPolicy> {
    name: String,
    max_attempts: u32,
    backoff: Backoff,
    budget: Budget,
    max_retry_after: Duration,
    max_buffered_body: usize,
    policy: P,
}

impl<P> RetryLayerBuilder<P> {
    /// Names this layer instance: the `name` label of its metrics (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most attempts per request, the first included (default 3; at least 1, and 1 never retries).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The delay between attempts (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The retry budget shared by every clone of the service (default [`Budget::default`];
    /// [`Budget::unlimited`] turns it off).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The longest delay a server may ask for with `Retry-After` (or an open breaker with its
    /// `retry_after`), default 10 s. When it asks for longer, the failure is returned at once, so the
    /// caller sees the server's `Retry-After`.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The largest request body buffered to be replayed, in bytes (default 64 KiB). A body whose
    /// `size_hint` upper bound is unknown or larger, or that turns out larger while it is read, is sent
    /// once and never retried. Empty bodies are never buffered.
    pub fn max_buffered_body(mut self, bytes: usize) -> Self {
        self.max_buffered_body = bytes;
        self
    }

    /// Replaces the policy deciding what is retried (default [`DefaultPolicy`]): any
    /// [`Policy`](super::Policy), such as a closure returning a [`Decision`](super::Decision), or `()`
    /// to never retry.
    pub fn policy<P2>(self, policy: P2) -> RetryLayerBuilder<P2> {
        self.map_policy(|_| policy)
    }

    fn map_policy<P2>(self, f: impl FnOnce(P) -> P2) -> RetryLayerBuilder<P2> {
        RetryLayerBuilder {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            budget: self.budget,
            max_retry_after: self.max_retry_after,
            max_buffered_body: self.max_buffered_body,
            policy: f(self.policy),
        }
    }

    /// Checks the settings and builds the layer. Its metric handles bind to the recorder current now,
    /// or else to the first one installed before they are used.
    pub fn build(self) -> Result<RetryLayer<P>, InvalidConfig> {
        if self.max_attempts == 0 {
            return Err(InvalidConfig::new("max_attempts", "must be at least 1 (the first attempt)"));
        }
        self.backoff.validate()?;
        self.budget.validate()?;
        let labels = || vec![Label::new(LABEL_NAME, self.name.clone())];
        let retries = LazyCounter::new(RETRY_RETRIES, labels());
        let exhausted = LazyCounter::new(RETRY_BUDGET_EXHAUSTED, labels());
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                policy: self.policy,
                backoff: self.backoff,
                max_attempts: self.max_attempts,
                max_retry_after: self.max_retry_after,
                max_buffered_body: self.max_buffered_body as u64,
                budget: self.budget.start(),
                retries,
                exhausted,
                name: self.name,
            }),
        })
    }
}

impl<C> RetryLayerBuilder<DefaultPolicy<C>> {
    /// Keeps the [`DefaultPolicy`] but with another [classifier](crate::classify): results it calls a
    /// success are never retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayerBuilder<DefaultPolicy<C2>> {
        self.map_policy(|policy| policy.replace_classifier(classifier))
    }
}
