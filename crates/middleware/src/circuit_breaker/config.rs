//! The breaker's settings and their builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::future::Locals;
use super::layer::CircuitBreakerLayer;
use super::registry::CircuitBreakerRegistry;
use super::shared::Shared;
use crate::{DefaultClassifier, InvalidConfig};

/// The longest time window: its slots take `(seconds + 1) × shards × 8` bytes and its aggregate
/// `(seconds + 1) × 32` bytes (at most about 2 MiB).
const MAX_TIME_WINDOW_SECS: u64 = 3600;

/// Which sliding window the failure and slow-call rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// The last `n` calls.
    Count(u64),
    /// The calls of the last `n` whole seconds.
    Time(u64),
}

/// Validated settings, shared by every breaker built from one builder.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) window: Window,
    pub(crate) minimum_calls: u64,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_interval: Duration,
    pub(crate) open_interval_multiplier: f64,
    pub(crate) max_open_interval: Option<Duration>,
    pub(crate) open_interval_jitter: f64,
    pub(crate) permitted_calls_in_half_open: u32,
    pub(crate) success_threshold: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 0.5,
            slow_call_duration: None,
            window: Window::Count(100),
            minimum_calls: 20,
            consecutive_failures: None,
            open_interval: Duration::from_secs(30),
            open_interval_multiplier: 1.0,
            max_open_interval: None,
            open_interval_jitter: 0.0,
            permitted_calls_in_half_open: 3,
            success_threshold: 3,
        }
    }
}

impl Config {
    /// The cap on the open interval: the configured one, or 10 × the base interval.
    pub(crate) fn open_interval_cap(&self) -> Duration {
        self.max_open_interval.unwrap_or_else(|| self.open_interval.saturating_mul(10))
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        fn rate(setting: &'static str, value: f64) -> Result<(), InvalidConfig> {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(InvalidConfig::new(setting, format!("{value} is not a rate in 0..=1")))
            }
        }
        rate("failure_rate_threshold", self.failure_rate_threshold)?;
        rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        rate("open_interval_jitter", self.open_interval_jitter)?;
        match self.window {
            Window::Count(0) => {
                return Err(InvalidConfig::new("count_window", "the window must hold at least 1 call"));
            }
            Window::Time(0) => {
                return Err(InvalidConfig::new("time_window", "the window must span at least 1 second"));
            }
            Window::Time(secs) if secs > MAX_TIME_WINDOW_SECS => {
                return Err(InvalidConfig::new(
                    "time_window",
                    format!(
                        "{secs} s is longer than {MAX_TIME_WINDOW_SECS} s (one slot per second per shard)"
                    ),
                ));
            }
            Window::Count(_) | Window::Time(_) => {}
        }
        if self.minimum_calls == 0 {
            return Err(InvalidConfig::new("minimum_calls", "must be at least 1"));
        }
        if self.consecutive_failures == Some(0) {
            return Err(InvalidConfig::new("consecutive_failures", "must be at least 1"));
        }
        if self.permitted_calls_in_half_open == 0 {
            return Err(InvalidConfig::new("permitted_calls_in_half_open", "must be at least 1"));
        }
        if self.success_threshold == 0 {
            return Err(InvalidConfig::new("success_threshold", "must be at least 1"));
        }
        // `!(x >= 1.0)` also rejects NaN.
        if !(self.open_interval_multiplier >= 1.0 && self.open_interval_multiplier.is_finite()) {
            return Err(InvalidConfig::new(
                "open_interval_multiplier",
                format!("{} is below 1 (the interval would shrink)", self.open_interval_multiplier),
            ));
        }
        if let Some(cap) = self.max_open_interval
            && cap < self.open_interval
        {
            return Err(InvalidConfig::new(
                "max_open_interval",
                format!("{cap:?} is below the open interval {:?}", self.open_interval),
            ));
        }
        Ok(())
    }
}

/// Builds a [`CircuitBreakerLayer`] (or a [`CircuitBreakerRegistry`]); from
/// [`CircuitBreakerLayer::builder`]. Each setter says its default.
///
/// The breaker opens when, over its sliding window and once the window holds
/// [`minimum_calls`](Self::minimum_calls), the failure rate reaches
/// [`failure_rate_threshold`](Self::failure_rate_threshold) or the slow-call rate reaches
/// [`slow_call_rate_threshold`](Self::slow_call_rate_threshold); or, regardless of the window, after
/// [`consecutive_failures`](Self::consecutive_failures) failures in a row.
#[derive(Clone)]
pub struct CircuitBreakerBuilder<C = DefaultClassifier> {
    config: Config,
    classifier: C,
    registry: RegistryConfig,
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self { config: Config::default(), classifier: DefaultClassifier, registry: RegistryConfig::default() }
    }
}

/// The bounds of a [`CircuitBreakerRegistry`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegistryConfig {
    pub(crate) capacity: usize,
    pub(crate) idle_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { capacity: 1024, idle_timeout: Duration::from_secs(600) }
    }
}

/// `breaker-<n>`, distinct for each unnamed breaker of the process.
fn default_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("breaker-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl<C> CircuitBreakerBuilder<C> {
    /// The breaker's name, used as the `name` metric label and in logs. Default: a distinct name
    /// per unnamed breaker, `breaker-1`, `breaker-2`, … in the order they are built, so that two
    /// unnamed breakers never share one metrics series (name them for stable series).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Opens when `failures / calls` in the window is at least this rate (in `0..=1`; at least one
    /// failure is always needed). Default `0.5`.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }

    /// A count-based window over the last `calls` calls. This is the default, with 100 calls.
    ///
    /// The cost per call does not depend on the size; memory grows with the failures held in the
    /// window (8 bytes each).
    pub fn count_window(mut self, calls: u64) -> Self {
        self.config.window = Window::Count(calls);
        self
    }

    /// A time-based window over the calls of the last `span`, kept as one bucket per second (rounded
    /// up to whole seconds). Default: a count window of 100 calls.
    ///
    /// At most one hour: each second takes 8 bytes per shard (2 × the cores, up to 64 shards) plus
    /// 32 bytes. Reads the clock once per call. The rate is evaluated when a failure or a slow call
    /// is recorded (a success can only lower it), and on the first success of each second while
    /// the window may hold fewer than [`minimum_calls`](Self::minimum_calls) (old seconds leave it).
    pub fn time_window(mut self, span: Duration) -> Self {
        let secs = span.as_secs() + u64::from(span.subsec_nanos() > 0);
        self.config.window = Window::Time(secs);
        self
    }

    /// The rates are not evaluated until the window holds this many calls. Default `20`. A count
    /// window never holds more than its size, so a larger minimum acts as the window size.
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Calls that take longer than `duration` (success or failure) count as slow. Default: off, and
    /// the clock is not read on the closed-state path.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// Opens when `slow calls / calls` in the window is at least this rate (in `0..=1`). Only used
    /// with [`slow_call_duration`](Self::slow_call_duration). Default `0.5`.
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = rate;
        self
    }

    /// Opens after `failures` failures in a row, whatever the window says. Default: off.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// How long the breaker stays open before letting probes through. Default 30 s.
    pub fn open_interval(mut self, interval: Duration) -> Self {
        self.config.open_interval = interval;
        self
    }

    /// Each time a probe fails and the breaker reopens, the interval is multiplied by this (at least
    /// 1), up to [`max_open_interval`](Self::max_open_interval); closing resets it. Default `1.0`
    /// (a fixed interval).
    pub fn open_interval_multiplier(mut self, multiplier: f64) -> Self {
        self.config.open_interval_multiplier = multiplier;
        self
    }

    /// The cap of the growing open interval (not below [`open_interval`](Self::open_interval)).
    /// Default: 10 × the open interval.
    pub fn max_open_interval(mut self, cap: Duration) -> Self {
        self.config.max_open_interval = Some(cap);
        self
    }

    /// Shortens each open interval by a random fraction of up to `jitter` (in `0..=1`), so that many
    /// clients do not probe a recovering dependency at the same instant. Default `0.0`.
    pub fn open_interval_jitter(mut self, jitter: f64) -> Self {
        self.config.open_interval_jitter = jitter;
        self
    }

    /// How many probe calls may be in flight at once while half-open; others are rejected. Default `3`.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.config.permitted_calls_in_half_open = calls;
        self
    }

    /// How many probes must succeed to close the breaker. Default `3`.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = successes;
        self
    }

    /// Replaces the classifier deciding which calls failed, or were no fault of the dependency.
    /// Default [`DefaultClassifier`] (errors, 5xx and 429 are failures; the caller's own expired
    /// deadline is ignored). Any `Fn(Result<&Res, &BoxError>) -> Outcome` works, and so does any
    /// [`MakeClassify`](crate::MakeClassify) (to see the request, e.g.
    /// [`MakeClassifyFn`](crate::classify::MakeClassifyFn)); on the server side use
    /// [`ServerClassifier`](crate::ServerClassifier).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2> {
        CircuitBreakerBuilder { config: self.config, classifier, registry: self.registry }
    }

    /// Registry only ([`build_registry`](Self::build_registry)): how many breakers it keeps before it
    /// evicts idle ones. Default 1024. A breaker still in use (by a layer, a service, a call in
    /// flight or a handle) or not closed is never evicted, so this bound is soft: the registry grows
    /// past it rather than lose a breaker that matters.
    pub fn registry_capacity(mut self, breakers: usize) -> Self {
        self.registry.capacity = breakers;
        self
    }

    /// Registry only: a breaker that no call looked up for this long may be evicted (when it is
    /// closed and not in use). Default 10 minutes.
    pub fn registry_idle_timeout(mut self, idle: Duration) -> Self {
        self.registry.idle_timeout = idle;
        self
    }

    /// Builds the layer; every service it makes shares one breaker.
    pub fn build(mut self) -> Result<CircuitBreakerLayer<C>, InvalidConfig> {
        self.config.validate()?;
        if self.config.name.is_empty() {
            self.config.name = default_name();
        }
        let shared = Arc::new(Shared::new(self.config));
        Ok(CircuitBreakerLayer::from_parts(Arc::new(Locals::new(&shared, self.classifier))))
    }

    /// Builds a registry that creates one breaker per key with these settings (the name given here is
    /// ignored: each breaker is named after its key).
    pub fn build_registry(self) -> Result<CircuitBreakerRegistry<C>, InvalidConfig> {
        self.config.validate()?;
        if self.registry.capacity == 0 {
            return Err(InvalidConfig::new("registry_capacity", "must be at least 1"));
        }
        Ok(CircuitBreakerRegistry::from_parts(self.config, self.classifier, self.registry))
    }
}

impl<C> fmt::Debug for CircuitBreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}
