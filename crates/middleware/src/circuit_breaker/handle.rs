//! The operator's view of a breaker: read its state and window, force it into a state.

use std::fmt;
use std::sync::Arc;

use super::shared::Shared;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass and are recorded; the breaker opens when a trip condition holds.
    Closed,
    /// Calls fail at once with [`CircuitOpen`](super::error::CircuitOpen) until the open interval ends.
    Open,
    /// A bounded number of probe calls pass; enough successes close the breaker, one failure reopens it.
    HalfOpen,
    /// Set by an operator: every call is rejected until [`CircuitBreakerHandle::reset`].
    ForcedOpen,
    /// Set by an operator: every call passes and nothing is recorded.
    Disabled,
    /// Set by an operator: calls are recorded and trip conditions reported (metrics, logs), but no call
    /// is ever rejected.
    MetricsOnly,
}

impl State {
    pub(crate) const ALL: [State; 6] =
        [State::Closed, State::Open, State::HalfOpen, State::ForcedOpen, State::Disabled, State::MetricsOnly];

    /// The label value used in metrics and logs: `closed`, `open`, `half_open`, `forced_open`,
    /// `disabled` or `metrics_only`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) const fn from_index(index: u64) -> Self {
        match index {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            _ => State::MetricsOnly,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker's state and the contents of its sliding window at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state.
    pub state: State,
    /// Calls recorded in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (zero unless a slow-call duration is configured).
    pub slow_calls: u64,
    /// `failures / calls`, zero when the window is empty.
    pub failure_rate: f64,
    /// `slow_calls / calls`, zero when the window is empty.
    pub slow_call_rate: f64,
}

/// A cheap, cloneable handle to one breaker, for operators and admin endpoints.
///
/// Get it from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle),
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle) or the
/// [`CircuitBreakerRegistry`](super::CircuitBreakerRegistry). Every method acts on the state shared by
/// all clones of the breaker.
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    shared: Arc<Shared>,
}

impl CircuitBreakerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The breaker's name (the `name` metric label).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The current state: one atomic load.
    ///
    /// An [`Open`](State::Open) breaker whose interval has ended stays `Open` until the next call
    /// moves it to [`HalfOpen`](State::HalfOpen).
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The state and the window's counts. Takes the breaker's lock briefly (not for the hot path).
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Rejects every call (with a zero `retry_after`) until [`reset`](Self::reset) or another
    /// operator state.
    pub fn force_open(&self) {
        self.shared.set_state(State::ForcedOpen);
    }

    /// Lets every call through and records nothing, until [`reset`](Self::reset) or another
    /// operator state.
    pub fn disable(&self) {
        self.shared.set_state(State::Disabled);
    }

    /// Records calls and reports trip conditions (a `transitions{state="open"}` count and a warning
    /// log) but never rejects, until [`reset`](Self::reset) or another operator state. Starts with an
    /// empty window.
    pub fn metrics_only(&self) {
        self.shared.set_state(State::MetricsOnly);
    }

    /// Back to [`Closed`](State::Closed) with an empty window and the base open interval.
    pub fn reset(&self) {
        self.shared.set_state(State::Closed);
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
