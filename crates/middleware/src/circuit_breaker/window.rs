//! The lock-free halves of the two windows: the per-shard call counters of the count window and
//! the per-shard per-second slots of the time window. What is kept under the breaker's mutex (the
//! failure positions, the per-second aggregate) is in `shared.rs`.
//!
//! Every word here packs its tag with its count, so that a reader can never see a count with the
//! wrong tag (a slot reused for a new second, a counter reused for a new window), and a writer
//! claims a slot and counts in it in one compare-and-swap.

use std::cmp::Ordering::{Equal, Greater, Less};

use super::sync::{AtomicU64, Ordering};

/// Count window: `epoch << 48 | calls`, the calls of one shard in the window of that epoch.
///
/// The epoch changes each time the window is cleared (a transition into `Closed` or
/// `MetricsOnly`); a reader sums only the shards tagged with the current epoch, so a call admitted
/// before the clear (tagged with the old epoch) never counts in the new window, and clearing
/// touches no shard. 48 bits of calls per shard and per window: years at millions of calls per
/// second.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Shard {
    word: AtomicU64,
}

const EPOCH_SHIFT: u32 = 48;
pub(crate) const EPOCH_MASK: u64 = (1 << (64 - EPOCH_SHIFT)) - 1;
const CALLS_MASK: u64 = (1 << EPOCH_SHIFT) - 1;

/// Whether epoch tag `a` is newer than `b` (16-bit tags, wrapping).
#[inline]
fn newer(a: u64, b: u64) -> bool {
    ((a.wrapping_sub(b) & EPOCH_MASK) as u16).cast_signed() > 0
}

impl Shard {
    pub(crate) fn new() -> Self {
        Self { word: AtomicU64::new(0) }
    }

    /// Counts one call of window `epoch`; `false` (and nothing counted) when the shard already
    /// counts for a newer window: the call was admitted before the window was cleared.
    #[inline]
    pub(crate) fn count(&self, epoch: u64) -> bool {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let tag = word >> EPOCH_SHIFT;
            let next = if tag == epoch {
                word + 1
            } else if newer(tag, epoch) {
                return false;
            } else {
                // The first call of a new window on this shard.
                (epoch << EPOCH_SHIFT) | 1
            };
            match self.word.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }

    /// The calls counted for window `epoch`.
    #[inline]
    pub(crate) fn calls(&self, epoch: u64) -> u64 {
        let word = self.word.load(Ordering::Relaxed);
        if word >> EPOCH_SHIFT == epoch { word & CALLS_MASK } else { 0 }
    }
}

/// Time window slot: `second << 32 | SEALED | FLIP | calls`, the fast successes of one shard in
/// one second (failures and slow calls are counted under the mutex, in the aggregate).
///
/// `SEALED`: the reader folded the second into its aggregate; a late writer counts in the next
/// second instead. `FLIP`: toggled when the window is cleared during that second, so that a writer
/// admitted before the clear, racing it, fails its compare-and-swap and rechecks its epoch.
const KEY_SHIFT: u32 = 32;
const SEALED: u64 = 1 << 31;
const FLIP: u64 = 1 << 30;
const SLOT_CALLS: u64 = FLIP - 1;

/// The per-second slots of a time window, `len` per shard (one more than the window's seconds, so
/// that the slot a writer claims for a new second never holds a second still in the window).
#[derive(Debug)]
pub(crate) struct Slots {
    len: u64,
    slots: Box<[AtomicU64]>,
}

impl Slots {
    pub(crate) fn new(seconds: u64, shards: usize) -> Self {
        let len = seconds + 1;
        let total = (len as usize).saturating_mul(shards);
        Self { len, slots: (0..total).map(|_| AtomicU64::new(0)).collect() }
    }

    #[inline]
    fn slot(&self, shard: usize, second: u64) -> &AtomicU64 {
        &self.slots[shard * self.len as usize + (second % self.len) as usize]
    }

    /// Counts one fast success in `second` (from 1), lock-free. `current` tells whether the call
    /// still belongs to the current window; it is asked after loading the slot, again whenever the
    /// slot changed under the writer (a clear may have flipped it), and before moving to the next
    /// second.
    #[inline]
    pub(crate) fn count(&self, shard: usize, mut second: u64, current: impl Fn() -> bool) {
        'seconds: loop {
            let slot = self.slot(shard, second);
            let mut word = slot.load(Ordering::Acquire);
            // After the load: a clear publishes its epoch before it flips the slot, so a writer that
            // loaded the flipped slot sees the new epoch here, and one that loaded it earlier fails
            // its swap below.
            if !current() {
                return;
            }
            loop {
                let key = word >> KEY_SHIFT;
                let next = match key.cmp(&second) {
                    Equal if word & SEALED != 0 => {
                        // Folded already: this call counts in the next second.
                        if !current() {
                            return;
                        }
                        second += 1;
                        continue 'seconds;
                    }
                    Equal => word + 1,
                    Less => (second << KEY_SHIFT) | 1,
                    Greater => return, // a second `len` later owns the slot: this one left every window
                };
                match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(seen) => {
                        if !current() {
                            return;
                        }
                        word = seen;
                    }
                }
            }
        }
    }

    /// The calls of `second` in `shard` so far (the second is still open).
    pub(crate) fn peek(&self, shard: usize, second: u64) -> u64 {
        let word = self.slot(shard, second).load(Ordering::Acquire);
        if word >> KEY_SHIFT == second { word & SLOT_CALLS } else { 0 }
    }

    /// Seals `second` in `shard` and returns its calls; a writer arriving later counts in the next
    /// second. Under the mutex only.
    pub(crate) fn seal(&self, shard: usize, second: u64) -> u64 {
        let slot = self.slot(shard, second);
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let key = word >> KEY_SHIFT;
            let (next, calls) = match key.cmp(&second) {
                Equal if word & SEALED != 0 => return 0,
                Equal => (word | SEALED, word & SLOT_CALLS),
                Less => ((second << KEY_SHIFT) | SEALED, 0),
                Greater => return 0,
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return calls,
                Err(seen) => word = seen,
            }
        }
    }

    /// Marks `second` in `shard` as cleared (the window restarts during it) and returns the calls it
    /// held, which the new window must not count. Under the mutex, after the new epoch is published.
    pub(crate) fn flip(&self, shard: usize, second: u64) -> u64 {
        let slot = self.slot(shard, second);
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let key = word >> KEY_SHIFT;
            let (next, calls) = match key.cmp(&second) {
                Equal => (word ^ FLIP, word & SLOT_CALLS),
                Less => ((second << KEY_SHIFT) | FLIP, 0),
                Greater => return 0,
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return calls,
                Err(seen) => word = seen,
            }
        }
    }
}

/// The counts of one second of the time window's aggregate (under the mutex).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    second: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

/// The time window's per-second aggregate with running totals, under the mutex: each failure,
/// slow call and evaluation costs O(shards) plus the seconds that passed since the last one (each
/// second is folded and expired once), whatever the window's length.
#[derive(Debug)]
pub(crate) struct Aggregate {
    seconds: u64,
    ring: Box<[Tally]>,
    calls: u64,
    failures: u64,
    slow: u64,
    /// The first second of this window (the window was cleared during it).
    start: u64,
    /// Calls each shard held in `start` when the window was cleared (not this window's).
    start_calls: Box<[u64]>,
    /// Every second up to this one is sealed and folded (or outside the window).
    folded: u64,
    /// Every second up to this one has left the totals.
    expired: u64,
    /// The latest second seen (the reader's clock never goes back).
    latest: u64,
}

impl Aggregate {
    pub(crate) fn new(seconds: u64, shards: usize) -> Self {
        Self {
            seconds,
            ring: vec![Tally::default(); seconds as usize + 1].into_boxed_slice(),
            calls: 0,
            failures: 0,
            slow: 0,
            start: 0,
            start_calls: vec![0; shards].into_boxed_slice(),
            folded: 0,
            expired: 0,
            latest: 0,
        }
    }

    fn entry(&mut self, second: u64) -> &mut Tally {
        let len = self.ring.len() as u64;
        let entry = &mut self.ring[(second % len) as usize];
        if entry.second != second {
            // The second it held has expired already (`advance` expires before it folds).
            *entry = Tally { second, ..Tally::default() };
        }
        entry
    }

    /// Brings the window to `second`: expires the seconds that left it, folds the closed ones.
    /// Returns the second the window now ends at.
    pub(crate) fn advance(&mut self, slots: &Slots, second: u64) -> u64 {
        let now = second.max(self.latest);
        self.latest = now;
        let oldest = now.saturating_sub(self.seconds - 1).max(self.start);
        if oldest > self.expired + 1 {
            if oldest - (self.expired + 1) >= self.ring.len() as u64 {
                (self.calls, self.failures, self.slow) = (0, 0, 0);
            } else {
                for s in self.expired + 1..oldest {
                    let len = self.ring.len() as u64;
                    let entry = &mut self.ring[(s % len) as usize];
                    if entry.second == s {
                        self.calls -= entry.calls;
                        self.failures -= entry.failures;
                        self.slow -= entry.slow;
                        *entry = Tally::default();
                    }
                }
            }
            self.expired = oldest - 1;
        }
        for s in (self.folded + 1).max(oldest)..now {
            let mut calls = 0;
            for shard in 0..self.start_calls.len() {
                let sealed = slots.seal(shard, s);
                calls +=
                    if s == self.start { sealed.saturating_sub(self.start_calls[shard]) } else { sealed };
            }
            self.entry(s).calls += calls;
            self.calls += calls;
        }
        self.folded = self.folded.max(now.saturating_sub(1));
        now
    }

    /// Records a call counted under the mutex (a failure, a slow call or a slow success) in `second`
    /// (the value `advance` returned).
    pub(crate) fn record(&mut self, second: u64, failure: bool, slow: bool) {
        let entry = self.entry(second);
        entry.calls += 1;
        entry.failures += u64::from(failure);
        entry.slow += u64::from(slow);
        self.calls += 1;
        self.failures += u64::from(failure);
        self.slow += u64::from(slow);
    }

    /// Calls, failures and slow calls in the window ending at `second` (the value `advance`
    /// returned).
    pub(crate) fn counts(&self, slots: &Slots, second: u64) -> (u64, u64, u64) {
        let mut open = 0;
        for shard in 0..self.start_calls.len() {
            let calls = slots.peek(shard, second);
            open += if second == self.start { calls.saturating_sub(self.start_calls[shard]) } else { calls };
        }
        (self.calls + open, self.failures, self.slow)
    }

    /// Empties the window, which restarts during `second`. The new epoch must already be published,
    /// so that a writer of the old window racing this fails its swap and sees it.
    pub(crate) fn clear(&mut self, slots: &Slots, second: u64) {
        let second = second.max(self.latest);
        for (shard, start) in self.start_calls.iter_mut().enumerate() {
            *start = slots.flip(shard, second);
        }
        (self.calls, self.failures, self.slow) = (0, 0, 0);
        let len = self.ring.len() as u64;
        // The only second the old window and this one share.
        self.ring[(second % len) as usize] = Tally::default();
        self.start = second;
        self.latest = second;
        self.folded = second - 1;
        self.expired = second - 1;
    }
}

/// The sealing and clearing protocol of the time window's slots, model-checked with explicit seconds
/// (the breaker's own loom tests, in `tests/loom_breaker.rs`, have no clock to move).
#[cfg(all(test, palisade_loom))]
mod loom_tests {
    use std::sync::Arc;

    use loom::thread;

    use super::{Aggregate, Slots};
    use crate::circuit_breaker::sync::{AtomicU64, Ordering};

    /// A reader folds second 5 while a writer counts two calls in it: each call is counted once,
    /// in 5 or (sealed) in 6.
    #[test]
    fn loom_sealing_a_second_loses_and_doubles_no_call() {
        loom::model(|| {
            let slots = Arc::new(Slots::new(2, 1));
            let writer = {
                let slots = Arc::clone(&slots);
                thread::spawn(move || {
                    slots.count(0, 5, || true);
                    slots.count(0, 5, || true);
                })
            };
            let mut aggregate = Aggregate::new(2, 1);
            let now = aggregate.advance(&slots, 6);
            assert!(aggregate.counts(&slots, now).0 <= 2);
            writer.join().unwrap();
            let now = aggregate.advance(&slots, 6);
            assert_eq!(aggregate.counts(&slots, now).0, 2);
        });
    }

    /// A writer of the old window races a clear during its second: it never counts in the new one.
    #[test]
    fn loom_a_writer_racing_a_clear_never_counts_in_the_new_window() {
        loom::model(|| {
            let slots = Arc::new(Slots::new(2, 1));
            let epoch = Arc::new(AtomicU64::new(0));
            let writer = {
                let (slots, epoch) = (Arc::clone(&slots), Arc::clone(&epoch));
                thread::spawn(move || slots.count(0, 5, || epoch.load(Ordering::Acquire) == 0))
            };
            let mut aggregate = Aggregate::new(2, 1);
            // As the breaker does: publish the new epoch, then clear.
            epoch.store(1, Ordering::Release);
            aggregate.clear(&slots, 5);
            writer.join().unwrap();
            let now = aggregate.advance(&slots, 5);
            assert_eq!(aggregate.counts(&slots, now).0, 0);
            let now = aggregate.advance(&slots, 6);
            assert_eq!(aggregate.counts(&slots, now).0, 0);
        });
    }
}
