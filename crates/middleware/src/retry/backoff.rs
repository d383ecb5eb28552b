//! Exponential backoff with jitter.

use std::time::Duration;

use crate::InvalidConfig;

/// The largest cap [`Backoff`] accepts: a cap beyond a day is a unit mistake, and the bound keeps every
/// delay in `u64` nanoseconds.
const MAX_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// How a backoff delay is randomised, so that clients that failed together do not retry together.
///
/// `exp` below is the exponential delay of retry `n`: `min(cap, base × multiplierⁿ⁻¹)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: the delay is `exp`.
    None,
    /// Uniform in `0..=exp` (the AWS "full jitter"; the default).
    #[default]
    Full,
    /// `exp / 2` plus uniform in `0..=exp / 2`.
    Equal,
    /// Uniform in `base..=min(cap, 3 × previous delay)` (the AWS "decorrelated jitter"); the previous
    /// delay of the first retry is `base`. Ignores the multiplier.
    Decorrelated,
}

/// Exponential backoff: the delay before retry `n` (1 for the first retry) is
/// `min(cap, base × multiplierⁿ⁻¹)`, randomised by a [`Jitter`].
///
/// Defaults ([`Backoff::default`]): base 100 ms, multiplier 2, cap 5 s, [`Jitter::Full`].
/// [`Backoff::validate`] (called by the retry layer's `build()`) rejects a cap below the base or above a
/// day, and a multiplier below 1 or not finite.
///
/// ```
/// use std::time::Duration;
/// use palisade::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .multiplier(3.0)
///     .cap(Duration::from_secs(1))
///     .jitter(Jitter::None);
/// assert_eq!(backoff.delay(1, Duration::ZERO), Duration::from_millis(100));
/// assert_eq!(backoff.delay(2, Duration::ZERO), Duration::from_millis(300));
/// assert_eq!(backoff.delay(3, Duration::ZERO), Duration::from_millis(900));
/// assert_eq!(backoff.delay(4, Duration::ZERO), Duration::from_secs(1)); // capped
/// assert_eq!(backoff.delay(u32::MAX, Duration::ZERO), Duration::from_secs(1)); // no overflow
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Exponential backoff from `base`, with multiplier 2, cap 5 s (or `base` if larger) and
    /// [`Jitter::Full`].
    pub fn exponential(base: Duration) -> Self {
        let cap = Duration::from_secs(5);
        Self { base, multiplier: 2.0, cap: if base > cap { base } else { cap }, jitter: Jitter::Full }
    }

    /// The same delay before every retry, without jitter (`Duration::ZERO` retries at once).
    pub const fn constant(delay: Duration) -> Self {
        Self { base: delay, multiplier: 1.0, cap: delay, jitter: Jitter::None }
    }

    /// Sets the growth factor between retries (default 2; at least 1).
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the largest delay (default 5 s; at least the base, at most a day).
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets the jitter (default [`Jitter::Full`]).
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay.
    pub const fn base_delay(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub const fn max_delay(&self) -> Duration {
        self.cap
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(InvalidConfig::new(
                "backoff.multiplier",
                format!("must be a finite number of at least 1, got {}", self.multiplier),
            ));
        }
        if self.cap < self.base {
            return Err(InvalidConfig::new(
                "backoff.cap",
                format!("must be at least the base ({:?}), got {:?}", self.base, self.cap),
            ));
        }
        if self.cap > MAX_CAP {
            return Err(InvalidConfig::new(
                "backoff.cap",
                format!("must be at most a day, got {:?}", self.cap),
            ));
        }
        Ok(())
    }

    /// The exponential delay of retry `retry` (1 for the first retry, 0 counts as 1) before jitter:
    /// `min(cap, base × multiplier^(retry - 1))`, without overflow for any `retry`.
    pub fn exponential_delay(&self, retry: u32) -> Duration {
        Duration::from_nanos(self.exp_nanos(retry))
    }

    /// A random delay before retry `retry` (1 for the first retry), given the `previous` delay (used by
    /// [`Jitter::Decorrelated`]; pass `Duration::ZERO` for the first retry). Never above the cap.
    pub fn delay(&self, retry: u32, previous: Duration) -> Duration {
        self.delay_with(retry, previous, fastrand::u64(..))
    }

    /// [`delay`](Self::delay) with the random number given: `random` is spread uniformly over the
    /// jitter's range (0 → its low end, `u64::MAX` → its high end).
    pub(crate) fn delay_with(&self, retry: u32, previous: Duration, random: u64) -> Duration {
        let nanos = match self.jitter {
            Jitter::None => self.exp_nanos(retry),
            Jitter::Full => uniform(0, self.exp_nanos(retry), random),
            Jitter::Equal => {
                let exp = self.exp_nanos(retry);
                let half = exp / 2;
                uniform(half, exp, random)
            }
            Jitter::Decorrelated => {
                let base = nanos_of(self.base);
                let cap = nanos_of(self.cap);
                let high = nanos_of(previous).max(base).saturating_mul(3).min(cap);
                uniform(base.min(high), high, random)
            }
        };
        Duration::from_nanos(nanos)
    }

    fn exp_nanos(&self, retry: u32) -> u64 {
        let base = nanos_of(self.base);
        let cap = nanos_of(self.cap);
        if base == 0 {
            return 0;
        }
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let exp = base as f64 * self.multiplier.powi(exponent);
        // `!(exp < cap)` also catches NaN and infinity.
        if exp < cap as f64 { (exp as u64).min(cap) } else { cap }
    }
}

/// Nanoseconds of a duration, saturating (validated caps fit easily).
fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A value in `low..=high` chosen by `random` (uniform when `random` is).
fn uniform(low: u64, high: u64, random: u64) -> u64 {
    debug_assert!(low <= high);
    let span = u128::from(high - low) + 1;
    low + ((span * u128::from(random)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)]
    }

    /// Any valid backoff: base ≤ cap ≤ a day, multiplier in 1..=1000.
    fn valid_backoff() -> impl Strategy<Value = Backoff> {
        (0..=MAX_CAP.as_nanos() as u64, 0..=MAX_CAP.as_nanos() as u64, 1.0f64..=1000.0, jitter()).prop_map(
            |(a, b, multiplier, jitter)| Backoff {
                base: Duration::from_nanos(a.min(b)),
                cap: Duration::from_nanos(a.max(b)),
                multiplier,
                jitter,
            },
        )
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_jitter_bounds_and_never_above_the_cap(
            backoff in valid_backoff(),
            retry in any::<u32>(),
            previous in 0..=2 * MAX_CAP.as_nanos() as u64,
            random in any::<u64>(),
        ) {
            prop_assert!(backoff.validate().is_ok());
            let previous = Duration::from_nanos(previous);
            let exp = backoff.exponential_delay(retry);
            prop_assert!(exp <= backoff.cap);
            prop_assert!(exp >= backoff.base.min(backoff.cap));
            let d = backoff.delay_with(retry, previous, random);
            prop_assert!(d <= backoff.cap, "{d:?} above cap {:?}", backoff.cap);
            match backoff.jitter {
                Jitter::None => prop_assert_eq!(d, exp),
                Jitter::Full => prop_assert!(d <= exp),
                Jitter::Equal => prop_assert!(d >= exp / 2 && d <= exp),
                Jitter::Decorrelated => {
                    let high = previous.max(backoff.base).saturating_mul(3).min(backoff.cap);
                    prop_assert!(d >= backoff.base && d <= high, "{d:?} not in {:?}..={high:?}", backoff.base);
                }
            }
            // The public, randomly seeded path obeys the cap too.
            prop_assert!(backoff.delay(retry, previous) <= backoff.cap);
        }
    }

    #[test]
    fn extremes_of_the_random_number_reach_both_ends_of_the_range() {
        let b = Backoff::exponential(Duration::from_millis(100)).cap(Duration::from_secs(1));
        let full = b.jitter(Jitter::Full);
        assert_eq!(full.delay_with(2, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(full.delay_with(2, Duration::ZERO, u64::MAX), Duration::from_millis(200));
        let equal = b.jitter(Jitter::Equal);
        assert_eq!(equal.delay_with(2, Duration::ZERO, 0), Duration::from_millis(100));
        assert_eq!(equal.delay_with(2, Duration::ZERO, u64::MAX), Duration::from_millis(200));
        let decorrelated = b.jitter(Jitter::Decorrelated);
        assert_eq!(decorrelated.delay_with(1, Duration::ZERO, u64::MAX), Duration::from_millis(300));
        assert_eq!(
            decorrelated.delay_with(5, Duration::from_millis(300), u64::MAX),
            Duration::from_millis(900)
        );
        assert_eq!(decorrelated.delay_with(6, Duration::from_millis(900), u64::MAX), Duration::from_secs(1));
        assert_eq!(decorrelated.delay_with(6, Duration::from_millis(900), 0), Duration::from_millis(100));
    }

    #[test]
    fn validation_rejects_impossible_settings() {
        let ms = Duration::from_millis;
        let setting = |b: Backoff| b.validate().unwrap_err().setting();
        assert_eq!(setting(Backoff::exponential(ms(100)).cap(ms(99))), "backoff.cap");
        assert_eq!(setting(Backoff::default().cap(Duration::from_secs(86_401))), "backoff.cap");
        assert_eq!(setting(Backoff::default().multiplier(0.99)), "backoff.multiplier");
        assert_eq!(setting(Backoff::default().multiplier(f64::NAN)), "backoff.multiplier");
        assert_eq!(setting(Backoff::default().multiplier(f64::INFINITY)), "backoff.multiplier");
        assert!(Backoff::default().validate().is_ok());
        assert!(Backoff::constant(Duration::ZERO).validate().is_ok());
        assert!(Backoff::exponential(Duration::from_secs(10)).validate().is_ok(), "cap follows a large base");
    }
}
