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
//! Each key may make `burst` calls at once and then one every `period / burst`. Keys live in a
//! least-recently-used map bounded at `max_keys` (the `lru` crate): a new key past the bound evicts
//! the key untouched the longest, in O(1), so an attacker choosing fresh keys costs a constant per
//! request and memory never exceeds `max_keys` entries.
//!
//! A [growing](RateLimiter::growing) limiter slows its refill each time a key is locked out again
//! (doubling, up to 2^[`MAX_STRIKES`]×), until a [`reset`](RateLimiter::reset) or a full refill: a
//! campaign that waits out each lockout gets fewer tries each time.
//!
//! Addresses are keyed with [`address_key`]: an IPv6 client is one key per /64 (one host owns a
//! whole /64), and a request with no known address shares one `unknown` key instead of skipping the
//! limit.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

/// A keyed token-bucket limiter; share it with an `Arc` (or in handler state).
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_token: Duration,
    growing: bool,
    buckets: Mutex<LruCache<String, Bucket>>,
}

/// The most lockouts a [growing](RateLimiter::growing) limiter counts: refill at most 1024× slower.
pub const MAX_STRIKES: u32 = 10;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// The last call was refused (so the next refusal is not the first of this lockout).
    refused: bool,
    /// Lockouts since the bucket was last full (growing limiters only).
    strikes: u32,
}

/// A refused call: when to try again, and whether it is the first refusal since the key was last
/// allowed (log lockouts on `first`, not on every refusal an attacker sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// How long until a token is available.
    pub retry_after: Duration,
    /// The first refusal of this run.
    pub first: bool,
}

impl RateLimiter {
    /// At most `burst` calls per `period` per key (refilling evenly), tracking at most `max_keys` keys.
    pub fn new(burst: u32, period: Duration, max_keys: usize) -> Self {
        let burst = burst.max(1);
        Self {
            burst: f64::from(burst),
            per_token: period / burst,
            growing: false,
            buckets: Mutex::new(LruCache::new(NonZeroUsize::new(max_keys).unwrap_or(NonZeroUsize::MIN))),
        }
    }

    /// Like [`new`](Self::new), but each new lockout of a key halves its refill rate (see the
    /// [module docs](self)).
    pub fn growing(burst: u32, period: Duration, max_keys: usize) -> Self {
        Self { growing: true, ..Self::new(burst, period, max_keys) }
    }

    /// Takes one token for `key`: `Ok` when allowed, else how long until a token is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.take(key).map_err(|limited| limited.retry_after)
    }

    /// [`check`](Self::check), telling also whether this is the first refusal in a row.
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains(key) {
            // `push` evicts the least recently used key when full.
            let fresh = Bucket { tokens: self.burst, updated: now, refused: false, strikes: 0 };
            buckets.push(key.to_owned(), fresh);
        }
        let Some(bucket) = buckets.get_mut(key) else { unreachable!("just inserted") };
        let per_token = self.per_token * (1 << bucket.strikes);
        let refill = now.duration_since(bucket.updated).as_secs_f64() / per_token.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= self.burst {
            bucket.strikes = 0;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refused = false;
            Ok(())
        } else {
            let first = !bucket.refused;
            bucket.refused = true;
            if first && self.growing {
                bucket.strikes = (bucket.strikes + 1).min(MAX_STRIKES);
            }
            let per_token = self.per_token * (1 << bucket.strikes);
            Err(Limited { retry_after: per_token.mul_f64(1.0 - bucket.tokens), first })
        }
    }

    /// Forgets `key` (e.g. after a successful login).
    pub fn reset(&self, key: &str) {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop(key);
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rate-limit key of a client address: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by its
/// /64 prefix, and `unknown` when no address is known, so such requests share one bucket rather than
/// escape the limit.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".to_owned(),
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
        assert!(!limiter.take("a").unwrap_err().first, "the second refusal in a row");
        limiter.check("b").unwrap(); // other keys are independent
        tokio::time::advance(Duration::from_secs(20)).await;
        limiter.check("a").unwrap();
        assert!(limiter.check("a").is_err());
        limiter.reset("a");
        limiter.check("a").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_and_the_least_recently_used_key_goes() {
        let limiter = RateLimiter::new(2, Duration::from_secs(10), 10);
        limiter.check("kept").unwrap();
        for i in 0..1000 {
            let _ = limiter.check(&format!("key-{i}"));
            limiter.check("kept").unwrap_or_default(); // touched on every round: never evicted
            assert!(limiter.len() <= 10);
        }
        assert!(limiter.buckets.lock().unwrap().contains("kept"));
        assert!(!limiter.buckets.lock().unwrap().contains("key-0"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_limiter_refills_slower_after_each_lockout() {
        let limiter = RateLimiter::growing(2, Duration::from_secs(2), 10);
        limiter.check("a").unwrap();
        limiter.check("a").unwrap();
        // First lockout: one token every 2 s (twice the base 1 s).
        assert_eq!(limiter.check("a").unwrap_err(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.check("a").unwrap();
        // Second lockout: every 4 s; the wait keeps doubling while the campaign goes on.
        assert_eq!(limiter.check("a").unwrap_err(), Duration::from_secs(4));
        tokio::time::advance(Duration::from_secs(4)).await;
        limiter.check("a").unwrap();
        assert_eq!(limiter.check("a").unwrap_err(), Duration::from_secs(8));
        // Quiet long enough to refill completely: back to the base rate.
        tokio::time::advance(Duration::from_secs(16)).await;
        limiter.check("a").unwrap();
        limiter.check("a").unwrap();
        assert_eq!(limiter.check("a").unwrap_err(), Duration::from_secs(2));
        // A reset (a successful login) forgets the strikes too.
        limiter.reset("a");
        limiter.check("a").unwrap();
        // A plain limiter never grows.
        let plain = RateLimiter::new(1, Duration::from_secs(1), 10);
        plain.check("a").unwrap();
        assert_eq!(plain.check("a").unwrap_err(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        plain.check("a").unwrap();
        assert_eq!(plain.check("a").unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn addresses_key_by_host_and_ipv6_by_its_64() {
        use std::net::IpAddr;

        use super::address_key;
        let key = |s: &str| address_key(Some(s.parse::<IpAddr>().unwrap()));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(address_key(None), "unknown");
    }
}
