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
///   Requests count in the bucket they were made in, whether or not a retry was asked for since.
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

/// One thread's deposit counters, one per bucket of the window, on their own cache line. Each slot
/// packs the bucket number it counts for (high 32 bits, wrapping) and its count (low 32 bits), so a
/// slot reused for a newer bucket restarts from zero in the same atomic step.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard([AtomicU64; BUCKETS]);

/// The live budget. A deposit (one per request, the hot path) reads the clock and adds one to its
/// thread's slot for the current bucket: lock-free, and counted in the bucket it happened in, so that a
/// long healthy period leaves the whole window's deposits in the budget. Withdrawals (one per retry)
/// take a mutex.
#[derive(Debug)]
pub(crate) struct BudgetState {
    deposit_units: i64,
    reserve: i64,
    bucket_nanos: u64,
    origin: Instant,
    deposits: [Shard; SHARDS],
    withdrawn: Mutex<Withdrawals>,
}

/// Retries made per bucket, indexed by bucket number modulo `BUCKETS`.
#[derive(Debug)]
struct Withdrawals {
    slots: [i64; BUCKETS],
    /// The newest bucket number in `slots`.
    current: u64,
}

impl BudgetState {
    fn new(limits: Limits) -> Self {
        Self {
            deposit_units: (limits.ratio * UNIT as f64).round() as i64,
            reserve: i64::from(limits.min_per_sec) * limits.window.as_millis() as i64,
            // At most 6 s (a 60 s window in 10 buckets): fits u64 nanoseconds.
            bucket_nanos: ((limits.window.as_nanos() / BUCKETS as u128) as u64).max(1),
            origin: Instant::now(),
            deposits: Default::default(),
            withdrawn: Mutex::new(Withdrawals { slots: [0; BUCKETS], current: 0 }),
        }
    }

    /// Records one request, in the bucket of now.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.deposit_units == 0 {
            return;
        }
        let bucket = self.bucket_of(Instant::now()) as u32; // wraps: only the last BUCKETS matter
        let slot = &self.deposits[shard()].0[bucket as usize % BUCKETS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = if (current >> 32) as u32 == bucket {
                // A count that reached u32::MAX in one bucket stays there rather than carry.
                current + u64::from(current as u32 != u32::MAX)
            } else {
                (u64::from(bucket) << 32) | 1
            };
            // Uncontended but for the rare thread sharing this shard: one compare-exchange.
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Takes one retry from the budget; `false` when it is exhausted.
    pub(crate) fn withdraw(&self) -> bool {
        let now = self.bucket_of(Instant::now());
        // A poisoned lock only means another thread panicked mid-update; the window is still usable.
        let mut w = self.withdrawn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.advance(now);
        let requests = self.requests_in_window(now);
        let deposited = i64::try_from(requests).unwrap_or(i64::MAX).saturating_mul(self.deposit_units);
        let spent = w.slots.iter().sum::<i64>().saturating_mul(UNIT);
        if self.reserve.saturating_add(deposited).saturating_sub(spent) >= UNIT {
            w.slots[now as usize % BUCKETS] += 1;
            true
        } else {
            false
        }
    }

    /// Requests deposited in the window that ends with bucket `now`.
    fn requests_in_window(&self, now: u64) -> u64 {
        let now = now as u32;
        let shards = self.deposits.iter().flat_map(|shard| shard.0.iter());
        shards
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|packed| now.wrapping_sub((packed >> 32) as u32) < BUCKETS as u32)
            .map(|packed| u64::from(packed as u32))
            .sum()
    }

    fn bucket_of(&self, now: Instant) -> u64 {
        // u64 nanoseconds (584 years): a u128 division would cost more than the clock read.
        now.saturating_duration_since(self.origin).as_nanos() as u64 / self.bucket_nanos
    }
}

impl Withdrawals {
    /// Slides the window to bucket `now`, clearing the buckets that fell out of it.
    fn advance(&mut self, now: u64) {
        let stale = now.saturating_sub(self.current).min(BUCKETS as u64);
        for b in (now + 1 - stale)..=now {
            self.slots[b as usize % BUCKETS] = 0;
        }
        self.current = self.current.max(now);
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
        assert!(b.withdraw()); // the deposits of t = 0
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
    async fn deposits_count_in_the_bucket_they_happen_in() {
        // 60 s of healthy traffic (10 requests a second, no retry asked for), then a burst of
        // failures: the 10 s window holds the last 10 s of requests, whole.
        let budget = Budget::new(0.2, 0);
        budget.validate().unwrap();
        let b = budget.start().unwrap();
        for _ in 0..600 {
            b.deposit();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // The window is the current 1 s bucket and the 9 before it: t ≥ 51 s, 90 requests.
        assert_eq!(withdraw_all(&b), 18, "0.2 × the 90 requests of the window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_reused_for_a_newer_bucket_starts_from_zero() {
        let b = state(1.0, 0);
        for _ in 0..5 {
            b.deposit();
        }
        // 1 s later (10 buckets of 100 ms): the same slot, a new bucket.
        tokio::time::advance(Duration::from_secs(1)).await;
        b.deposit();
        assert_eq!(withdraw_all(&b), 1);
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
