//! The retry budget: retries allowed = `ratio` × recent requests + `min_per_sec` × window.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::InvalidConfig;

/// Fixed-point scale: one retry costs this many units; one request deposits `ratio × UNIT`.
const UNIT: i64 = 1000;
/// The window is divided into this many buckets, which expire one at a time.
const BUCKETS: usize = 10;
/// Deposits go to one of these counters, chosen per thread, so that cores do not fight over one line.
const SHARDS: usize = 8;

/// How many retries the layer may make, shared by every clone of the service: a retry storm cannot
/// multiply the load on a failing dependency by more than `1 + ratio`.
///
/// Over a sliding `window` (in 10 buckets), retries allowed = `ratio` × requests in the window
/// + `min_per_sec` × the window's seconds (a floor, so that a service with little traffic can still
///   retry). Every retry withdraws one; both deposits and withdrawals expire as the window slides.
///   When the budget is exhausted the layer returns the last failure as it was (no error of its own)
///   and counts it in [`RETRY_BUDGET_EXHAUSTED`](crate::metric_names::RETRY_BUDGET_EXHAUSTED).
///
/// Defaults ([`Budget::default`], like Finagle and tower's `TpsBudget`): ratio 0.2, 10 retries per
/// second, window 10 s. [`Budget::unlimited`] turns the budget off. The layer's `build()` rejects a
/// ratio outside `0..=1000` and a window outside 1 s..=60 s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    limits: Option<Limits>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Limits {
    ratio: f64,
    min_per_sec: u32,
    window: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(0.2, 10)
    }
}

impl Budget {
    /// `ratio` retries per recent request plus a floor of `min_per_sec`, over a 10 s window.
    pub const fn new(ratio: f64, min_per_sec: u32) -> Self {
        Self { limits: Some(Limits { ratio, min_per_sec, window: Duration::from_secs(10) }) }
    }

    /// No budget: only `max_attempts` limits retries.
    pub const fn unlimited() -> Self {
        Self { limits: None }
    }

    /// Sets how long requests and retries are remembered (default 10 s; 1 s..=60 s). No effect on
    /// [`Budget::unlimited`].
    pub const fn window(mut self, window: Duration) -> Self {
        if let Some(limits) = &mut self.limits {
            limits.window = window;
        }
        self
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        let Some(limits) = self.limits else { return Ok(()) };
        if !(0.0..=1000.0).contains(&limits.ratio) {
            return Err(InvalidConfig::new(
                "budget.ratio",
                format!("must be between 0 and 1000, got {}", limits.ratio),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&limits.window) {
            return Err(InvalidConfig::new(
                "budget.window",
                format!("must be between 1 s and 60 s, got {:?}", limits.window),
            ));
        }
        Ok(())
    }

    /// The shared state; `None` when unlimited. Call [`validate`](Self::validate) first.
    pub(crate) fn start(&self) -> Option<BudgetState> {
        self.limits.map(BudgetState::new)
    }
}

/// A deposit counter on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// The live budget. Deposits (one per request, the hot path) are a relaxed add on a per-thread shard
/// and read no clock. The window slides lazily, under a mutex, only when a retry asks to withdraw.
#[derive(Debug)]
pub(crate) struct BudgetState {
    deposit_units: i64,
    reserve: i64,
    bucket_nanos: u128,
    origin: Instant,
    pending: [Shard; SHARDS],
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Net units (deposits minus withdrawals) per bucket, indexed by bucket number modulo `BUCKETS`.
    slots: [i64; BUCKETS],
    /// The newest bucket number in `slots`.
    current: u64,
    /// The bucket number when `pending` was last drained.
    drained: u64,
}

impl BudgetState {
    fn new(limits: Limits) -> Self {
        Self {
            deposit_units: (limits.ratio * UNIT as f64).round() as i64,
            reserve: i64::from(limits.min_per_sec) * limits.window.as_millis() as i64,
            bucket_nanos: (limits.window.as_nanos() / BUCKETS as u128).max(1),
            origin: Instant::now(),
            pending: Default::default(),
            window: Mutex::new(Window { slots: [0; BUCKETS], current: 0, drained: 0 }),
        }
    }

    /// Records one request.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.deposit_units != 0 {
            self.pending[shard()].0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` when it is exhausted.
    pub(crate) fn withdraw(&self) -> bool {
        let now = self.bucket_of(Instant::now());
        // A poisoned lock only means another thread panicked mid-update; the window is still usable.
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.advance(now);
        let requests: u64 = self.pending.iter().map(|s| s.0.swap(0, Ordering::Relaxed)).sum();
        let units = i64::try_from(requests).unwrap_or(i64::MAX).saturating_mul(self.deposit_units);
        w.spread(units, now);
        let balance = w.slots.iter().fold(self.reserve, |sum, s| sum.saturating_add(*s));
        if balance >= UNIT {
            w.slots[now as usize % BUCKETS] -= UNIT;
            true
        } else {
            false
        }
    }

    fn bucket_of(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_nanos) as u64
    }
}

impl Window {
    /// Slides the window to bucket `now`, clearing the buckets that fell out of it.
    fn advance(&mut self, now: u64) {
        let stale = now.saturating_sub(self.current).min(BUCKETS as u64);
        for b in (now + 1 - stale)..=now {
            self.slots[b as usize % BUCKETS] = 0;
        }
        self.current = self.current.max(now);
    }

    /// Adds the `units` deposited since the last drain. Their times are unknown (deposits read no clock),
    /// so they are taken as spread evenly from the last drain to `now`: the share that falls before the
    /// window is dropped, the rest is spread over the buckets it covers. Under a retry storm withdrawals
    /// are frequent, so this is exact where it matters.
    fn spread(&mut self, units: i64, now: u64) {
        let spanned = now.saturating_sub(self.drained) + 1;
        self.drained = now;
        if units == 0 {
            return;
        }
        let in_window = spanned.min(BUCKETS as u64);
        let kept = (i128::from(units) * i128::from(in_window) / i128::from(spanned)) as i64;
        let buckets = i64::try_from(in_window).unwrap_or(i64::MAX); // at most BUCKETS
        let each = kept / buckets;
        for b in (now + 1 - in_window)..=now {
            self.slots[b as usize % BUCKETS] += each;
        }
        self.slots[now as usize % BUCKETS] += kept - each * buckets;
    }
}

/// This thread's deposit shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ratio: f64, min_per_sec: u32) -> BudgetState {
        let budget = Budget::new(ratio, min_per_sec).window(Duration::from_secs(1));
        budget.validate().unwrap();
        budget.start().unwrap()
    }

    fn withdraw_all(b: &BudgetState) -> usize {
        std::iter::from_fn(|| b.withdraw().then_some(())).take(1_000_000).count()
    }

    #[tokio::test(start_paused = true)]
    async fn empty_budget_refuses() {
        assert!(!state(1.0, 0).withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_of_requests_plus_floor() {
        let b = state(0.5, 3); // floor: 3/s over a 1 s window = 3 retries
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(withdraw_all(&b), 5 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_slide_out_of_the_window() {
        let b = state(1.0, 0);
        b.deposit();
        b.deposit();
        assert!(b.withdraw()); // drains the deposits into the bucket of t = 0
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(b.withdraw(), "a deposit 900 ms old is still in the 1 s window");
        assert!(!b.withdraw());

        let b = state(1.0, 0);
        for _ in 0..3 {
            b.deposit();
        }
        assert!(b.withdraw());
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(!b.withdraw(), "the two deposits left expired");
    }

    #[tokio::test(start_paused = true)]
    async fn withdrawals_slide_out_of_the_window() {
        let b = state(0.0, 1); // a floor of one retry per 1 s window
        assert!(b.withdraw());
        assert!(!b.withdraw());
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_not_drained_for_long_count_only_their_share_of_the_window() {
        let b = state(1.0, 0);
        assert!(!b.withdraw()); // drained in bucket 0
        for _ in 0..40 {
            b.deposit();
        }
        // Drained again in bucket 40 (4 s later): the 40 deposits are taken as spread over the 41
        // buckets 0..=40, of which the 10 in the window keep 40 × 10 / 41 = 9.75 retries.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(withdraw_all(&b), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_from_many_threads_all_count() {
        let b = state(0.5, 0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(withdraw_all(&b), 2000);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ratio_allows_only_the_floor() {
        let b = state(0.0, 2);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(withdraw_all(&b), 2);
    }

    #[test]
    fn validation() {
        let setting = |b: Budget| b.validate().unwrap_err().setting();
        assert_eq!(setting(Budget::new(-0.1, 1)), "budget.ratio");
        assert_eq!(setting(Budget::new(f64::NAN, 1)), "budget.ratio");
        assert_eq!(setting(Budget::new(1001.0, 1)), "budget.ratio");
        assert_eq!(setting(Budget::default().window(Duration::from_millis(999))), "budget.window");
        assert_eq!(setting(Budget::default().window(Duration::from_secs(61))), "budget.window");
        assert!(Budget::default().validate().is_ok());
        assert!(Budget::unlimited().validate().is_ok());
        assert!(Budget::unlimited().start().is_none());
    }
}
