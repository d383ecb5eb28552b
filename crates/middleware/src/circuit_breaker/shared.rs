//! The state shared by every clone of one breaker: the hot path (atomics only) and the cold path
//! (one mutex, taken for failures, slow calls, transitions and half-open probes).
//!
//! Why it is shaped like this (see also "Performance" in the module docs):
//! - The state and its generation live in one `AtomicU64`, so admitting a call is one acquire load.
//! - Every completed call adds 1 to a *per-thread shard* counter (`Shard`, padded to 128 bytes so two
//!   shards never share a cache line, nor an adjacent-line prefetch pair). A success in a warm window
//!   writes nothing else: its own shard's line stays in its core's cache, so cores do not ping-pong a
//!   shared line, and throughput scales with cores.
//! - The count window is exact without a shared ring: the sum of the shards is the position of the
//!   latest call, and the window keeps only the positions of its failures (and slow calls), in a queue
//!   under the mutex. A failure at position `p` sees the last `N` calls as positions `p-N+1 ..= p`;
//!   failures older than that are popped. Successes can only lower the failure rate, so the rate only
//!   needs evaluating when a failure or slow call arrives, plus, until the window first holds
//!   `minimum_calls` calls, on every call (`warm`). Per call this is O(1) whatever `N` is; per failure
//!   it is O(shards) plus the amortised pops.
//! - Consecutive failures come from the same positions: a failure directly after the previous one
//!   (position + 1) extends the run, so successes need not reset a shared counter.
//! - The time window is a ring of per-second buckets per shard, reset lazily when a call lands in a
//!   bucket of an older second; aggregation (O(shards × seconds)) happens only on failures, slow calls
//!   and snapshots.
//! - Under concurrency, "the last N calls" is ordered by when each call's result was summed; that is as
//!   exact as any order between racing calls can be. With one thread it is exact.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::time::Instant;

use super::config::{Config, Window};
use super::error::CircuitOpen;
use super::handle::{Snapshot, State};
use crate::metric_names;

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

const fn pack(state: State, generation: u64) -> u64 {
    (generation << STATE_BITS) | state.index() as u64
}

/// What the breaker decided for one call.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Call and record the outcome (Closed or MetricsOnly, in this generation).
    Record { generation: u64 },
    /// Call as a half-open probe, holding one permit of this generation.
    Probe { generation: u64 },
    /// Call without recording anything (Disabled).
    Pass,
    /// Fail fast.
    Reject(CircuitOpen),
}

/// One shard of the call counter, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    calls: AtomicU64,
}

/// The counts of one second in one shard of a time window.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    /// The second (since the breaker's origin, plus 1) the counts belong to; 0 = unused.
    second: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// Per-second buckets, `seconds` per shard, shard-major.
#[derive(Debug)]
struct TimeWindow {
    seconds: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    fn new(seconds: u64, shards: usize) -> Self {
        let len = (seconds as usize).saturating_mul(shards);
        Self { seconds, buckets: (0..len).map(|_| Bucket::default()).collect() }
    }

    /// O(1): one bucket of this thread's shard, reset first when it still holds an older second.
    fn record(&self, shard: usize, second: u64, failure: bool, slow: bool) {
        let index = shard * self.seconds as usize + (second % self.seconds) as usize;
        let bucket = &self.buckets[index];
        let seen = bucket.second.load(Ordering::Acquire);
        if seen < second
            && bucket.second.compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            // A call racing on the same shard between the swap and these stores may be lost: shards
            // are per thread, so that needs two threads on one shard at a second boundary.
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if failure {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls, failures and slow calls of the seconds `second - seconds + 1 ..= second`.
    fn counts(&self, second: u64) -> (u64, u64, u64) {
        let oldest = second.saturating_sub(self.seconds - 1).max(1);
        let mut counts = (0, 0, 0);
        for bucket in &self.buckets {
            let s = bucket.second.load(Ordering::Acquire);
            if (oldest..=second).contains(&s) {
                counts.0 += bucket.calls.load(Ordering::Relaxed);
                counts.1 += bucket.failures.load(Ordering::Relaxed);
                counts.2 += bucket.slow.load(Ordering::Relaxed);
            }
        }
        counts
    }

    fn clear(&self) {
        for bucket in &self.buckets {
            bucket.second.store(0, Ordering::Release);
        }
    }
}

/// Metric handles, resolved once.
#[derive(Debug)]
struct Metrics {
    state: [Gauge; 6],
    transitions: [Counter; 6],
    rejected: Counter,
}

impl Metrics {
    fn new(name: &str) -> Self {
        use metric_names::{
            CIRCUIT_BREAKER_REJECTED_CALLS, CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS, LABEL_NAME,
            LABEL_STATE,
        };
        let name = name.to_owned();
        let state = State::ALL.map(
            |s| metrics::gauge!(CIRCUIT_BREAKER_STATE, LABEL_NAME => name.clone(), LABEL_STATE => s.as_str()),
        );
        let transitions = State::ALL.map(|s| {
            metrics::counter!(CIRCUIT_BREAKER_TRANSITIONS, LABEL_NAME => name.clone(), LABEL_STATE => s.as_str())
        });
        let rejected = metrics::counter!(CIRCUIT_BREAKER_REJECTED_CALLS, LABEL_NAME => name);
        for (gauge, s) in state.iter().zip(State::ALL) {
            gauge.set(if s == State::Closed { 1.0 } else { 0.0 });
        }
        Self { state, transitions, rejected }
    }
}

/// Everything changed only under the mutex.
#[derive(Debug)]
struct Inner {
    state: State,
    generation: u64,
    /// Count window: position of the last call before the window was cleared.
    base: u64,
    /// Count window: position of the latest call recorded on the cold path.
    head: u64,
    /// Count window: positions of the failures among the last `N` calls, oldest first.
    failures: VecDeque<u64>,
    /// Count window: positions of the slow calls among the last `N` calls, oldest first.
    slow: VecDeque<u64>,
    /// Position of the latest failure.
    last_failure: u64,
    /// Failures in a row up to `last_failure`.
    consecutive: u32,
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
    /// `generation << 3 | state`.
    state: AtomicU64,
    /// End of the open interval, in nanoseconds since `origin`.
    open_until: AtomicU64,
    /// Count window: the window holds at least `minimum_calls`, so successes need no evaluation.
    warm: AtomicBool,
    shards: Box<[Shard]>,
    shard_mask: usize,
    /// Whether calls need a position (count window, consecutive failures): a time window alone
    /// counts in its buckets and skips the shard counter.
    counts_positions: bool,
    time_window: Option<TimeWindow>,
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
        let time_window = match config.window {
            Window::Time(seconds) => Some(TimeWindow::new(seconds, shards)),
            Window::Count(_) => None,
        };
        let capacity = match config.window {
            Window::Count(size) => size.min(1024) as usize,
            Window::Time(_) => 0,
        };
        let counts_positions =
            matches!(config.window, Window::Count(_)) || config.consecutive_failures.is_some();
        Self {
            metrics: Metrics::new(&config.name),
            // A time window cannot become "warm" for good (old seconds leave it), so it evaluates on
            // failures and slow calls only.
            warm: AtomicBool::new(time_window.is_some()),
            time_window,
            config,
            state: AtomicU64::new(pack(State::Closed, 0)),
            open_until: AtomicU64::new(0),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            shard_mask: shards - 1,
            counts_positions,
            origin: Instant::now(),
            inner: Padded(Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                base: 0,
                head: 0,
                failures: VecDeque::with_capacity(capacity),
                slow: VecDeque::new(),
                last_failure: 0,
                consecutive: 0,
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
        let generation = word >> STATE_BITS;
        match State::from_index(word & STATE_MASK) {
            State::Closed | State::MetricsOnly => Admission::Record { generation },
            State::Disabled => Admission::Pass,
            State::ForcedOpen => self.reject(Duration::ZERO),
            State::Open | State::HalfOpen => self.admit_cold(),
        }
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
        match inner.state {
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                if elapsed < until {
                    drop(inner);
                    return self.reject(Duration::from_nanos(until - elapsed));
                }
                self.transition(&mut inner, State::HalfOpen, now);
            }
            State::HalfOpen => {}
            // The state changed since the load above.
            State::Closed | State::MetricsOnly => return Admission::Record { generation: inner.generation },
            State::Disabled => return Admission::Pass,
            State::ForcedOpen => {
                drop(inner);
                return self.reject(Duration::ZERO);
            }
        }
        if inner.probes_in_flight < self.config.permitted_calls_in_half_open {
            inner.probes_in_flight += 1;
            Admission::Probe { generation: inner.generation }
        } else {
            drop(inner);
            self.reject(Duration::ZERO)
        }
    }

    fn reject(&self, retry_after: Duration) -> Admission {
        self.metrics.rejected.increment(1);
        Admission::Reject(CircuitOpen::new(retry_after))
    }

    /// Hot path when the call succeeded quickly in a warm window: one `fetch_add` on this thread's
    /// own shard, one load of a read-mostly flag.
    #[inline]
    pub(crate) fn on_result(&self, generation: u64, probe: bool, failure: bool, start: Option<Instant>) {
        let now = if start.is_some() || self.time_window.is_some() { Some(Instant::now()) } else { None };
        let slow = match (start, now, self.config.slow_call_duration) {
            (Some(start), Some(now), Some(limit)) => now.saturating_duration_since(start) > limit,
            _ => false,
        };
        if probe {
            self.complete_probe(generation, failure || slow);
            return;
        }
        let shard = thread_shard() & self.shard_mask;
        if self.counts_positions {
            self.shards[shard].calls.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(window), Some(now)) = (&self.time_window, now) {
            window.record(shard, self.second(now), failure, slow);
        }
        if failure || slow || !self.warm.load(Ordering::Relaxed) {
            self.record_cold(generation, failure, slow, now);
        }
    }

    #[cold]
    fn record_cold(&self, generation: u64, failure: bool, slow: bool, now: Option<Instant>) {
        let mut inner = self.lock();
        if inner.generation != generation || !matches!(inner.state, State::Closed | State::MetricsOnly) {
            return; // a call admitted before the last transition
        }
        let position = self.total_calls().max(inner.head + 1);
        inner.head = position;
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
        let (calls, failures, slow_calls) = self.window_counts(&mut inner, now);
        if matches!(self.config.window, Window::Count(_)) && calls >= self.minimum_calls() {
            self.warm.store(true, Ordering::Relaxed);
        }
        if !self.trips(&inner, calls, failures, slow_calls) {
            inner.would_open = false;
            return;
        }
        if inner.state == State::Closed {
            self.transition(&mut inner, State::Open, now.unwrap_or_else(Instant::now));
        } else if !inner.would_open {
            inner.would_open = true;
            self.metrics.transitions[State::Open.index()].increment(1);
            tracing::warn!(
                breaker = %self.config.name, calls, failures, slow_calls,
                "circuit breaker would open (metrics only: calls keep passing)"
            );
        }
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

    /// Calls, failures and slow calls in the window.
    fn window_counts(&self, inner: &mut Inner, now: Option<Instant>) -> (u64, u64, u64) {
        match (self.config.window, &self.time_window) {
            (_, Some(window)) => window.counts(self.second(now.unwrap_or_else(Instant::now))),
            (Window::Count(size) | Window::Time(size), None) => {
                let head = inner.head.max(self.total_calls());
                let outside = head.saturating_sub(size);
                while inner.failures.front().is_some_and(|&p| p <= outside) {
                    inner.failures.pop_front();
                }
                while inner.slow.front().is_some_and(|&p| p <= outside) {
                    inner.slow.pop_front();
                }
                ((head - inner.base).min(size), inner.failures.len() as u64, inner.slow.len() as u64)
            }
        }
    }

    #[cold]
    fn complete_probe(&self, generation: u64, failed: bool) {
        let mut inner = self.lock();
        if inner.generation != generation || inner.state != State::HalfOpen {
            return;
        }
        inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        if failed {
            inner.reopens = inner.reopens.saturating_add(1);
            self.transition(&mut inner, State::Open, Instant::now());
        } else {
            inner.probe_successes += 1;
            if inner.probe_successes >= self.config.success_threshold {
                self.transition(&mut inner, State::Closed, Instant::now());
            }
        }
    }

    /// A probe future was dropped before it completed: give its permit back.
    #[cold]
    pub(crate) fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.state == State::HalfOpen {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }

    /// Operator transition (also used by `reset`, which clears the window even when already closed).
    pub(crate) fn set_state(&self, to: State) {
        let mut inner = self.lock();
        self.transition(&mut inner, to, Instant::now());
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let (calls, failures, slow_calls) = self.window_counts(&mut inner, None);
        let rate = |n: u64| if calls == 0 { 0.0 } else { n as f64 / calls as f64 };
        Snapshot {
            state: inner.state,
            calls,
            failures,
            slow_calls,
            failure_rate: rate(failures),
            slow_call_rate: rate(slow_calls),
        }
    }

    fn transition(&self, inner: &mut Inner, to: State, now: Instant) {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        match to {
            State::Closed | State::MetricsOnly => {
                self.clear_window(inner);
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
        self.state.store(pack(to, inner.generation), Ordering::Release);
        if from != to {
            self.metrics.state[from.index()].set(0.0);
            self.metrics.state[to.index()].set(1.0);
            self.metrics.transitions[to.index()].increment(1);
            tracing::info!(breaker = %self.config.name, %from, %to, "circuit breaker state changed");
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

    fn clear_window(&self, inner: &mut Inner) {
        let head = inner.head.max(self.total_calls());
        inner.base = head;
        inner.head = head;
        inner.failures.clear();
        inner.slow.clear();
        inner.consecutive = 0;
        inner.would_open = false;
        match &self.time_window {
            Some(window) => window.clear(),
            None => self.warm.store(false, Ordering::Relaxed),
        }
    }

    fn total_calls(&self) -> u64 {
        self.shards.iter().map(|shard| shard.calls.load(Ordering::Relaxed)).sum()
    }

    fn nanos_since_origin(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The time-window second of `now` (0 is reserved for unused buckets).
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
            i = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            index.set(i);
        }
        i
    })
}
