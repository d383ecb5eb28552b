//! The state shared by every clone of one breaker: the hot path (atomics only) and the cold path
//! (one mutex, taken for failures, slow calls, transitions, half-open probes and, until the window
//! holds `minimum_calls`, successes).
//!
//! Why it is shaped like this (see also "Performance" in the module docs):
//! - The state, its generation and the window's epoch live in one `AtomicU64`, so admitting a call
//!   is one acquire load, and the call carries that word (its [`Ticket`]) to its completion.
//! - Count window: every completed call adds 1 to a *per-thread shard* counter (`window::Shard`,
//!   padded to 128 bytes), tagged with the window's epoch. A success in a warm window writes
//!   nothing else, so cores do not ping-pong a shared line. Failures (and slow calls) count
//!   themselves *under the mutex*, then read the sum of the shards: that sum is their position, so
//!   two failures get two positions, and a position never exceeds the calls really made (no
//!   phantom calls). The window keeps only the positions of its failures and slow calls; a failure
//!   at position `p` sees the last `N` calls as `p-N+1 ..= p`. Successes can only lower the rate, so
//!   it is evaluated on failures and slow calls, plus on every call until the window first holds
//!   `minimum_calls` (`warm`). Consecutive failures come from the same positions.
//! - Time window: fast successes count in a per-shard slot of their second (`window::Slots`);
//!   failures and slow calls in a per-second aggregate with running totals under the mutex
//!   (`window::Aggregate`), into which the readers fold each closed second once. A failure costs
//!   O(shards) plus the seconds elapsed since the last fold, whatever the window's length. The
//!   first success of each second is evaluated (`warm_second`): old seconds may have left the
//!   window, so the success may be the one that brings it back to `minimum_calls`.
//! - A call admitted before a transition never counts in the new window: its ticket's epoch (count
//!   and time window) or generation (cold path) no longer matches.
//! - No recorder or `tracing` call runs under the mutex: the cold path returns what to emit
//!   ([`Event`]) and emits it after unlocking.
//! - Under concurrency, "the last N calls" is ordered by when each call's result was summed; that
//!   is as exact as any order between racing calls can be. With one thread it is exact.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::sync::PoisonError;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use metrics::Label;
use tokio::time::Instant;

use super::config::{Config, Window};
use super::error::CircuitOpen;
use super::handle::{Snapshot, State};
use super::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};
use super::window::{Aggregate, EPOCH_MASK, Shard, Slots};
use crate::metric_handles::{LazyCounter, LazyGauge};
use crate::metric_names;

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const EPOCH_SHIFT: u32 = 48;
const GENERATION_MASK: u64 = (1 << (EPOCH_SHIFT - STATE_BITS)) - 1;

/// The state word: `epoch << 48 | generation << 3 | state`. The generation changes on every
/// transition, the epoch each time the window is cleared.
const fn pack(state: State, generation: u64, epoch: u64) -> u64 {
    ((epoch & EPOCH_MASK) << EPOCH_SHIFT)
        | ((generation & GENERATION_MASK) << STATE_BITS)
        | state.index() as u64
}

/// The state word a call was admitted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl Ticket {
    #[inline]
    fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT
    }
}

/// What the breaker decided for one call.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Call and record the outcome (Closed or MetricsOnly).
    Record(Ticket),
    /// Call as a half-open probe, holding one permit of this generation.
    Probe(Ticket),
    /// Call without recording anything (Disabled).
    Pass,
    /// Fail fast.
    Reject(CircuitOpen),
}

/// What a completed call was, for the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// Record nothing (`Outcome::Ignore`).
    Ignore,
}

/// Something to report once the mutex is released.
#[derive(Clone, Copy, Debug)]
#[must_use]
enum Event {
    Transition { from: State, to: State },
    WouldOpen { calls: u64, failures: u64, slow_calls: u64 },
}

/// Metric handles, resolved once.
#[derive(Debug)]
struct Metrics {
    state: [LazyGauge; 6],
    transitions: [LazyCounter; 6],
    rejected: LazyCounter,
    /// Serialises the gauge updates of racing transitions, so that the last one written is the
    /// current state. Never held with the breaker's mutex.
    gauges: Mutex<()>,
}

impl Metrics {
    fn new(name: &str) -> Self {
        use metric_names::{
            CIRCUIT_BREAKER_REJECTED_CALLS, CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS, LABEL_NAME,
            LABEL_STATE,
        };
        // Lazy: a breaker built before `main` installs its recorder still records its series.
        let labels =
            |s: State| vec![Label::new(LABEL_NAME, name.to_owned()), Label::new(LABEL_STATE, s.as_str())];
        let state = State::ALL.map(|s| LazyGauge::new(CIRCUIT_BREAKER_STATE, labels(s)));
        let transitions = State::ALL.map(|s| LazyCounter::new(CIRCUIT_BREAKER_TRANSITIONS, labels(s)));
        let rejected =
            LazyCounter::new(CIRCUIT_BREAKER_REJECTED_CALLS, vec![Label::new(LABEL_NAME, name.to_owned())]);
        for (gauge, s) in state.iter().zip(State::ALL) {
            gauge.get().set(if s == State::Closed { 1.0 } else { 0.0 });
        }
        Self { state, transitions, rejected, gauges: Mutex::new(()) }
    }
}

/// Everything changed only under the mutex.
#[derive(Debug)]
struct Inner {
    /// The state word, as published in `Shared::state`.
    word: u64,
    state: State,
    generation: u64,
    epoch: u64,
    /// Count window: positions of the failures among the last `N` calls, oldest first.
    failures: VecDeque<u64>,
    /// Count window: positions of the slow calls among the last `N` calls, oldest first.
    slow: VecDeque<u64>,
    /// Position of the latest failure (consecutive failures).
    last_failure: u64,
    /// Failures in a row up to `last_failure`.
    consecutive: u32,
    /// Time window: the per-second aggregate.
    aggregate: Option<Aggregate>,
    /// How many times the breaker reopened from half-open since it last closed.
    reopens: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    /// MetricsOnly: a trip condition holds and was already reported.
    would_open: bool,
}

/// One breaker's state, behind the one `Arc` shared by all its clones, handles and layers.
pub(crate) struct Shared {
    config: Config,
    /// See [`pack`].
    state: AtomicU64,
    /// End of the open interval, in nanoseconds since `origin`.
    open_until: AtomicU64,
    /// Count window: the window holds at least `minimum_calls`, so successes need no evaluation.
    warm: AtomicBool,
    /// Time window: the second in which the window was seen holding `minimum_calls` (its successes
    /// need no evaluation; the next second's first one does).
    warm_second: AtomicU64,
    shards: Box<[Shard]>,
    shard_mask: usize,
    /// Whether calls need a position (count window, consecutive failures): a time window alone
    /// counts in its slots and skips the shard counter.
    counts_positions: bool,
    slots: Option<Slots>,
    origin: Instant,
    /// Padded so that a failure locking it does not invalidate the line holding `state` and `warm`,
    /// which every call on every core reads.
    inner: Padded<Mutex<Inner>>,
    metrics: Metrics,
}

/// Keeps its content on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let shards = shard_count();
        let (slots, aggregate) = match config.window {
            Window::Time(seconds) => {
                (Some(Slots::new(seconds, shards)), Some(Aggregate::new(seconds, shards)))
            }
            Window::Count(_) => (None, None),
        };
        let capacity = match config.window {
            Window::Count(size) => size.min(1024) as usize,
            Window::Time(_) => 0,
        };
        let counts_positions =
            matches!(config.window, Window::Count(_)) || config.consecutive_failures.is_some();
        let word = pack(State::Closed, 0, 0);
        Self {
            metrics: Metrics::new(&config.name),
            warm: AtomicBool::new(false),
            warm_second: AtomicU64::new(0),
            slots,
            config,
            state: AtomicU64::new(word),
            open_until: AtomicU64::new(0),
            shards: (0..shards).map(|_| Shard::new()).collect(),
            shard_mask: shards - 1,
            counts_positions,
            origin: Instant::now(),
            inner: Padded(Mutex::new(Inner {
                word,
                state: State::Closed,
                generation: 0,
                epoch: 0,
                failures: VecDeque::with_capacity(capacity),
                slow: VecDeque::new(),
                last_failure: 0,
                consecutive: 0,
                aggregate,
                reopens: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                would_open: false,
            })),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn state(&self) -> State {
        State::from_index(self.state.load(Ordering::Acquire) & STATE_MASK)
    }

    /// Hot path: one acquire load when closed.
    #[inline]
    pub(crate) fn admit(&self) -> Admission {
        let word = self.state.load(Ordering::Acquire);
        match State::from_index(word & STATE_MASK) {
            State::Closed | State::MetricsOnly => Admission::Record(Ticket(word)),
            State::Disabled => Admission::Pass,
            State::ForcedOpen => self.reject(Duration::ZERO),
            State::Open | State::HalfOpen => self.admit_cold(),
        }
    }

    /// Whether a call made now would be rejected without reaching the inner service (Open within
    /// its interval, or ForcedOpen): lets `poll_ready` answer at once instead of waiting for an
    /// inner service that need not be called. Counts nothing.
    #[inline]
    pub(crate) fn rejects_now(&self) -> Option<CircuitOpen> {
        let word = self.state.load(Ordering::Acquire);
        match State::from_index(word & STATE_MASK) {
            State::ForcedOpen => Some(CircuitOpen::new(Duration::ZERO)),
            State::Open => {
                let elapsed = self.nanos_since_origin(Instant::now());
                let until = self.open_until.load(Ordering::Acquire);
                (elapsed < until).then(|| CircuitOpen::new(Duration::from_nanos(until - elapsed)))
            }
            _ => None,
        }
    }

    /// A rejection decided earlier (by `poll_ready`), counted now.
    pub(crate) fn reject_with(&self, open: CircuitOpen) -> CircuitOpen {
        self.metrics.rejected.get().increment(1);
        open
    }

    /// The start of a call, when its duration matters (slow-call trigger).
    #[inline]
    pub(crate) fn start_clock(&self) -> Option<Instant> {
        self.config.slow_call_duration.map(|_| Instant::now())
    }

    #[cold]
    fn admit_cold(&self) -> Admission {
        let now = Instant::now();
        let elapsed = self.nanos_since_origin(now);
        if self.state() == State::Open {
            let until = self.open_until.load(Ordering::Acquire);
            if elapsed < until {
                return self.reject(Duration::from_nanos(until - elapsed));
            }
        }
        let mut inner = self.lock();
        let mut event = None;
        match inner.state {
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                if elapsed < until {
                    drop(inner);
                    return self.reject(Duration::from_nanos(until - elapsed));
                }
                event = self.transition(&mut inner, State::HalfOpen, now);
            }
            State::HalfOpen => {}
            // The state changed since the load above.
            State::Closed | State::MetricsOnly => return Admission::Record(Ticket(inner.word)),
            State::Disabled => return Admission::Pass,
            State::ForcedOpen => {
                drop(inner);
                return self.reject(Duration::ZERO);
            }
        }
        let admission = if inner.probes_in_flight < self.config.permitted_calls_in_half_open {
            inner.probes_in_flight += 1;
            Admission::Probe(Ticket(inner.word))
        } else {
            Admission::Reject(CircuitOpen::new(Duration::ZERO))
        };
        drop(inner);
        self.emit(event);
        if matches!(admission, Admission::Reject(_)) {
            self.metrics.rejected.get().increment(1);
        }
        admission
    }

    fn reject(&self, retry_after: Duration) -> Admission {
        self.metrics.rejected.get().increment(1);
        Admission::Reject(CircuitOpen::new(retry_after))
    }

    /// Records a completed call. Hot path when the call succeeded quickly in a warm window: one
    /// compare-and-swap on this thread's own shard, one load of a read-mostly flag.
    #[inline]
    pub(crate) fn on_result(&self, ticket: Ticket, probe: bool, verdict: Verdict, start: Option<Instant>) {
        if verdict == Verdict::Ignore {
            if probe {
                self.release_probe(ticket);
            }
            return;
        }
        let failure = verdict == Verdict::Failure;
        let now = if start.is_some() || self.slots.is_some() { Some(Instant::now()) } else { None };
        let slow = match (start, now, self.config.slow_call_duration) {
            (Some(start), Some(now), Some(limit)) => now.saturating_duration_since(start) > limit,
            _ => false,
        };
        if probe {
            self.complete_probe(ticket, failure || slow);
            return;
        }
        if failure || slow {
            self.record_cold(ticket, failure, slow, now);
            return;
        }
        let shard = thread_shard() & self.shard_mask;
        if self.counts_positions && !self.shards[shard].count(ticket.epoch()) {
            return; // admitted before the window was cleared
        }
        let warm = match (&self.slots, now) {
            (Some(slots), Some(now)) => {
                let second = self.second(now);
                // A call admitted before the window was cleared is not counted.
                slots.count(shard, second, || self.current_epoch() == ticket.epoch());
                self.warm_second.load(Ordering::Relaxed) == second
            }
            _ => self.warm.load(Ordering::Relaxed),
        };
        if !warm {
            self.record_cold(ticket, false, false, now);
        }
    }

    #[inline]
    fn current_epoch(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> EPOCH_SHIFT
    }

    /// A failure, a slow call, or a success while the window may hold fewer than `minimum_calls`.
    #[cold]
    fn record_cold(&self, ticket: Ticket, failure: bool, slow: bool, now: Option<Instant>) {
        let mut inner = self.lock();
        if inner.word != ticket.0 {
            return; // a call admitted before the last transition
        }
        let counted = failure || slow; // a fast success counted itself on the hot path
        if self.counts_positions {
            let shard = thread_shard() & self.shard_mask;
            if counted {
                // Under the mutex: the sum below includes this call, and the next failure's sum
                // this one, so two failures never share (or skip) a position.
                self.shards[shard].count(ticket.epoch());
            }
            let position = self.total_calls(inner.epoch);
            if failure {
                let extends_run = inner.last_failure + 1 == position;
                inner.consecutive = if extends_run { inner.consecutive.saturating_add(1) } else { 1 };
                inner.last_failure = position;
            } else {
                inner.consecutive = 0;
            }
            if matches!(self.config.window, Window::Count(_)) {
                if failure {
                    inner.failures.push_back(position);
                }
                if slow {
                    inner.slow.push_back(position);
                }
            }
        }
        let second = now.map(|now| self.second(now));
        if counted
            && let (Some(aggregate), Some(slots), Some(second)) = (&mut inner.aggregate, &self.slots, second)
        {
            let second = aggregate.advance(slots, second);
            aggregate.record(second, failure, slow);
        }
        let (calls, failures, slow_calls) = self.window_counts(&mut inner, second);
        if calls >= self.minimum_calls() {
            match second {
                Some(second) if self.slots.is_some() => self.warm_second.store(second, Ordering::Relaxed),
                _ => self.warm.store(true, Ordering::Relaxed),
            }
        } else if self.slots.is_some() {
            self.warm_second.store(0, Ordering::Relaxed);
        }
        let event = if !self.trips(&inner, calls, failures, slow_calls) {
            inner.would_open = false;
            None
        } else if inner.state == State::Closed {
            self.transition(&mut inner, State::Open, now.unwrap_or_else(Instant::now))
        } else if inner.would_open {
            None
        } else {
            inner.would_open = true;
            Some(Event::WouldOpen { calls, failures, slow_calls })
        };
        drop(inner);
        self.emit(event);
    }

    fn minimum_calls(&self) -> u64 {
        match self.config.window {
            Window::Count(size) => self.config.minimum_calls.min(size),
            Window::Time(_) => self.config.minimum_calls,
        }
    }

    fn trips(&self, inner: &Inner, calls: u64, failures: u64, slow_calls: u64) -> bool {
        let config = &self.config;
        if config.consecutive_failures.is_some_and(|k| inner.consecutive >= k) {
            return true;
        }
        if calls == 0 || calls < self.minimum_calls() {
            return false;
        }
        let calls = calls as f64;
        (failures > 0 && failures as f64 / calls >= config.failure_rate_threshold)
            || (config.slow_call_duration.is_some()
                && slow_calls > 0
                && slow_calls as f64 / calls >= config.slow_call_rate_threshold)
    }

    /// Calls, failures and slow calls in the window, at `second` for a time window (now if `None`).
    fn window_counts(&self, inner: &mut Inner, second: Option<u64>) -> (u64, u64, u64) {
        if let (Some(aggregate), Some(slots)) = (&mut inner.aggregate, &self.slots) {
            let second = second.unwrap_or_else(|| self.second(Instant::now()));
            let second = aggregate.advance(slots, second);
            return aggregate.counts(slots, second);
        }
        let Window::Count(size) = self.config.window else { unreachable!("a time window has slots") };
        let head = self.total_calls(inner.epoch);
        let outside = head.saturating_sub(size);
        while inner.failures.front().is_some_and(|&p| p <= outside) {
            inner.failures.pop_front();
        }
        while inner.slow.front().is_some_and(|&p| p <= outside) {
            inner.slow.pop_front();
        }
        (head.min(size), inner.failures.len() as u64, inner.slow.len() as u64)
    }

    #[cold]
    fn complete_probe(&self, ticket: Ticket, failed: bool) {
        let mut inner = self.lock();
        if inner.word != ticket.0 {
            return;
        }
        inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        let event = if failed {
            inner.reopens = inner.reopens.saturating_add(1);
            self.transition(&mut inner, State::Open, Instant::now())
        } else {
            inner.probe_successes += 1;
            if inner.probe_successes >= self.config.success_threshold {
                self.transition(&mut inner, State::Closed, Instant::now())
            } else {
                None
            }
        };
        drop(inner);
        self.emit(event);
    }

    /// A probe future was dropped before it completed, or its outcome was ignored: give its permit
    /// back.
    #[cold]
    pub(crate) fn release_probe(&self, ticket: Ticket) {
        let mut inner = self.lock();
        if inner.word == ticket.0 {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }

    /// Operator transition (also used by `reset`, which clears the window even when already closed).
    pub(crate) fn set_state(&self, to: State) {
        let mut inner = self.lock();
        let event = self.transition(&mut inner, to, Instant::now());
        drop(inner);
        self.emit(event);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let (calls, failures, slow_calls) = self.window_counts(&mut inner, None);
        let state = inner.state;
        drop(inner);
        let rate = |n: u64| if calls == 0 { 0.0 } else { n as f64 / calls as f64 };
        Snapshot {
            state,
            calls,
            failures,
            slow_calls,
            failure_rate: rate(failures),
            slow_call_rate: rate(slow_calls),
        }
    }

    /// Changes the state under the mutex; what to report is returned, to be emitted after unlocking.
    fn transition(&self, inner: &mut Inner, to: State, now: Instant) -> Option<Event> {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        let clears = matches!(to, State::Closed | State::MetricsOnly);
        if clears {
            inner.epoch += 1;
        }
        match to {
            State::Closed | State::MetricsOnly => {
                if to == State::Closed {
                    inner.reopens = 0;
                }
            }
            State::Open => {
                let until = self.nanos_since_origin(now).saturating_add(self.open_interval(inner.reopens));
                self.open_until.store(until, Ordering::Release);
            }
            State::HalfOpen => {
                inner.probes_in_flight = 0;
                inner.probe_successes = 0;
            }
            State::ForcedOpen | State::Disabled => {}
        }
        if clears {
            // Before the new word is published, so that a call admitted in the new window reads
            // `warm` as false and is evaluated until the window holds `minimum_calls`.
            self.clear_window(inner);
        }
        inner.word = pack(to, inner.generation, inner.epoch);
        self.state.store(inner.word, Ordering::Release);
        if clears && let (Some(aggregate), Some(slots)) = (&mut inner.aggregate, &self.slots) {
            // After it: a time-window writer of the old window racing this sees its slot flipped,
            // rechecks the epoch and finds it changed.
            aggregate.clear(slots, self.second(now));
        }
        (from != to).then_some(Event::Transition { from, to })
    }

    /// Reports an event, outside the mutex.
    fn emit(&self, event: Option<Event>) {
        match event {
            None => {}
            Some(Event::Transition { from, to }) => {
                {
                    let _serialised = self.metrics.gauges.lock().unwrap_or_else(PoisonError::into_inner);
                    let current = self.state();
                    for (gauge, s) in self.metrics.state.iter().zip(State::ALL) {
                        gauge.get().set(if s == current { 1.0 } else { 0.0 });
                    }
                }
                self.metrics.transitions[to.index()].get().increment(1);
                tracing::info!(breaker = %self.config.name, %from, %to, "circuit breaker state changed");
            }
            Some(Event::WouldOpen { calls, failures, slow_calls }) => {
                self.metrics.transitions[State::Open.index()].get().increment(1);
                tracing::warn!(
                    breaker = %self.config.name, calls, failures, slow_calls,
                    "circuit breaker would open (metrics only: calls keep passing)"
                );
            }
        }
    }

    /// The open interval after `reopens` failed half-open rounds, in nanoseconds.
    fn open_interval(&self, reopens: u32) -> u64 {
        let config = &self.config;
        let cap = config.open_interval_cap();
        let mut interval = if reopens == 0 || config.open_interval_multiplier <= 1.0 {
            config.open_interval
        } else {
            let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
            let secs = config.open_interval.as_secs_f64() * config.open_interval_multiplier.powi(exponent);
            Duration::try_from_secs_f64(secs).unwrap_or(cap)
        };
        interval = interval.min(cap);
        if config.open_interval_jitter > 0.0 {
            interval = interval.mul_f64(1.0 - config.open_interval_jitter * fastrand::f64());
        }
        u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX)
    }

    /// A new window (the epoch was bumped): the count window's shards need nothing, their old tags
    /// no longer count; the time window's aggregate is cleared once the epoch is published.
    fn clear_window(&self, inner: &mut Inner) {
        inner.failures.clear();
        inner.slow.clear();
        inner.last_failure = 0;
        inner.consecutive = 0;
        inner.would_open = false;
        self.warm.store(false, Ordering::Relaxed);
        self.warm_second.store(0, Ordering::Relaxed);
    }

    /// The calls of window `epoch` summed over the shards.
    fn total_calls(&self, epoch: u64) -> u64 {
        let epoch = epoch & EPOCH_MASK;
        self.shards.iter().map(|shard| shard.calls(epoch)).sum()
    }

    fn nanos_since_origin(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The time-window second of `now` (0 is reserved for unused slots).
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() + 1
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent even if a panic interrupted a holder: every update is a few
        // plain assignments.
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Shards per breaker: twice the cores (so round-robin thread indices rarely collide), a power of two.
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(4, NonZeroUsize::get);
        cores.saturating_mul(2).next_power_of_two().min(64)
    })
}

/// This thread's shard index, handed out round-robin on first use (a thread-local read afterwards).
#[inline]
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
            index.set(i);
        }
        i
    })
}
