//! Read cache for `GET /v1/products/{id}`: the serialized body and `ETag` per id.
//!
//! Staleness bound: an entry is served for at most `ttl` (default 1 s, `catalog.cache.ttl_ms`)
//! after it was read from the database. Updates and archives (`DELETE`) through this process invalidate the
//! entry at once, so only writes made by *another* process (another replica sharing a PostgreSQL
//! database) can be seen late, by at most `ttl`. A read that raced an update (it read the old row,
//! the update's invalidation came before the read's `put`) is not cached: every read takes a
//! [`Ticket`] before going to the database, and `put` drops the entry when any invalidation happened
//! since. At `max_entries` (default 10,000) the cache is
//! cleared rather than tracking recency: simple, bounded, and refilled by the next reads.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Cache settings (`catalog.cache.*`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct CacheConfig {
    /// How long an entry may be served (0 disables the cache).
    pub ttl_ms: u64,
    /// Entries kept at most.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl_ms: 1_000, max_entries: 10_000 }
    }
}

/// A cached response.
#[derive(Clone, Debug)]
pub struct Cached {
    /// The `ETag` header value.
    pub etag: String,
    /// The JSON body.
    pub body: Bytes,
    stored: Instant,
}

/// The product cache.
#[derive(Debug)]
pub struct ProductCache {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<Uuid, Cached>>,
    invalidations: AtomicU64,
}

/// Taken before reading from the database; see [`ProductCache::put`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl ProductCache {
    /// A cache with `config`.
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.ttl_ms),
            max_entries: config.max_entries,
            entries: RwLock::default(),
            invalidations: AtomicU64::new(0),
        }
    }

    /// The fresh entry for `id`.
    pub fn get(&self, id: Uuid) -> Option<Cached> {
        if !self.is_enabled() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&id).filter(|c| c.stored.elapsed() < self.ttl).cloned()
    }

    /// Take one before reading the product from the database.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.invalidations.load(Ordering::Acquire))
    }

    /// Stores the response for `id`, read after `ticket` was taken, unless an invalidation happened
    /// since (the read may have seen a row that is already replaced).
    /// Copies `etag` and `body` only when it stores them.
    pub fn put(&self, ticket: Ticket, id: Uuid, etag: &str, body: &Bytes) {
        if !self.is_enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the write lock, which `invalidate` also holds while counting.
        if self.invalidations.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= self.max_entries && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, Cached { etag: etag.to_owned(), body: body.clone(), stored: Instant::now() });
    }

    /// Whether it caches at all (`ttl_ms` and `max_entries` both above zero).
    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries != 0
    }

    /// Drops `id` (after an update or delete).
    pub fn invalidate(&self, id: Uuid) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        entries.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ProductCache {
        ProductCache::new(&CacheConfig::default())
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let cache = cache();
        let id = Uuid::new_v4();
        let ticket = cache.ticket(); // the read starts, sees the old row …
        cache.invalidate(id); // … an update commits and invalidates …
        cache.put(ticket, id, "\"old\"", &Bytes::from_static(b"old")); // … the old row arrives
        assert!(cache.get(id).is_none(), "a stale row was cached after its invalidation");

        let ticket = cache.ticket();
        cache.put(ticket, id, "\"new\"", &Bytes::from_static(b"new"));
        assert_eq!(cache.get(id).map(|c| c.etag), Some("\"new\"".to_owned()));
    }

    #[test]
    fn invalidate_drops_the_entry() {
        let cache = cache();
        let id = Uuid::new_v4();
        cache.put(cache.ticket(), id, "\"v1\"", &Bytes::from_static(b"v1"));
        cache.invalidate(id);
        assert!(cache.get(id).is_none());
    }
}
