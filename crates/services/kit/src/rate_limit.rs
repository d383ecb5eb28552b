//! An in-memory keyed rate limiter (token bucket per key) with bounded memory.
//!
//! Users' login checks it per account and per client address ([`crate::extract::ClientIp`]):
//!
//! ```
//! use std::time::Duration;
//!
//! use kit::error::ApiError;
//! use kit::rate_limit::RateLimiter;
//!
//! let per_address = RateLimiter::new(5, Duration::from_secs(60), 10_000);
//! for _ in 0..5 {
//!     per_address.check("ip:192.0.2.7").unwrap();
//! }
//! // The sixth attempt within the minute: 429 problem+json with `Retry-After: 12`.
//! let err = per_address.check("ip:192.0.2.7").map_err(ApiError::too_many_requests).unwrap_err();
//! assert_eq!(err.status(), 429);
//! assert!(per_address.check("ip:192.0.2.8").is_ok()); // other addresses are not affected
//! ```
//!
//! Each key may make `burst` calls at once and then one every `period / burst`. A key whose bucket
//! has refilled is forgotten (swept when the map reaches `max_keys`); if every key is still active at
//! the bound, the least recently used key is evicted, so memory never exceeds `max_keys` entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A keyed token-bucket limiter; share it with an `Arc` (or in handler state).
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_token: Duration,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// At most `burst` calls per `period` per key (refilling evenly), tracking at most `max_keys` keys.
    pub fn new(burst: u32, period: Duration, max_keys: usize) -> Self {
        let burst = burst.max(1);
        Self {
            burst: f64::from(burst),
            per_token: period / burst,
            max_keys: max_keys.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `key`: `Ok` when allowed, else how long until a token is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        let refill = now.duration_since(bucket.updated).as_secs_f64() / self.per_token.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.per_token.mul_f64(1.0 - bucket.tokens))
        }
    }

    /// Forgets `key` (e.g. after a successful login).
    pub fn reset(&self, key: &str) {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let full_after = self.per_token.mul_f64(self.burst);
        buckets.retain(|_, b| now.duration_since(b.updated) < full_after);
        if buckets.len() >= self.max_keys {
            let oldest = buckets.iter().min_by_key(|(_, b)| b.updated).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                buckets.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RateLimiter;

    #[tokio::test(start_paused = true)]
    async fn limits_per_key_and_refills() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60), 100);
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let wait = limiter.check("a").unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        limiter.check("b").unwrap(); // other keys are independent
        tokio::time::advance(Duration::from_secs(20)).await;
        limiter.check("a").unwrap();
        assert!(limiter.check("a").is_err());
        limiter.reset("a");
        limiter.check("a").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let limiter = RateLimiter::new(2, Duration::from_secs(10), 10);
        for i in 0..1000 {
            let _ = limiter.check(&format!("key-{i}"));
            assert!(limiter.len() <= 10);
        }
        // Stale keys are swept first: after a full refill period only new keys remain.
        tokio::time::advance(Duration::from_secs(11)).await;
        limiter.check("fresh").unwrap();
        assert_eq!(limiter.len(), 1);
    }
}
