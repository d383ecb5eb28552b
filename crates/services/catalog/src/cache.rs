//! Read cache for `GET /v1/products/{id}`: the serialized body and `ETag` per id.
//!
//! Staleness bound: an entry is served for at most `ttl` (default 1 s, `catalog.cache.ttl_ms`)
//! after it was read from the database. Updates and deletes through this process invalidate the
//! entry at once, so only writes made by *another* process (another replica sharing a PostgreSQL
//! database) can be seen late, by at most `ttl`. At `max_entries` (default 10,000) the cache is
//! cleared rather than tracking recency: simple, bounded, and refilled by the next reads.

use std::collections::HashMap;
use std::sync::RwLock;
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
}

impl ProductCache {
    /// A cache with `config`.
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.ttl_ms),
            max_entries: config.max_entries,
            entries: RwLock::default(),
        }
    }

    /// The fresh entry for `id`.
    pub fn get(&self, id: Uuid) -> Option<Cached> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&id).filter(|c| c.stored.elapsed() < self.ttl).cloned()
    }

    /// Stores the response for `id`.
    pub fn put(&self, id: Uuid, etag: String, body: Bytes) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.max_entries && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, Cached { etag, body, stored: Instant::now() });
    }

    /// Drops `id` (after an update or delete).
    pub fn invalidate(&self, id: Uuid) {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }
}
