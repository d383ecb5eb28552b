//! [`CircuitBreakerRegistry`]: one breaker per key, from one configuration, bounded.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::time::Instant;

use super::config::{Config, RegistryConfig};
use super::future::Locals;
use super::handle::{CircuitBreakerHandle, State};
use super::keyed::KeyedCircuitBreakerLayer;
use super::layer::CircuitBreakerLayer;
use super::shared::Shared;

/// Keyed breakers (one per downstream host, or per route), created lazily from one configuration and
/// shared by every clone of the registry. From
/// [`CircuitBreakerBuilder::build_registry`](super::CircuitBreakerBuilder::build_registry).
///
/// Each breaker is named after its key (the `name` metric label). A lookup by `&str` takes a read
/// lock on a `HashMap` and hashes the key; when the key exists it allocates nothing, so looking a
/// breaker up per request is fine (that is what [`keyed_layer`](Self::keyed_layer) does). Creating
/// a breaker takes the write lock once.
///
/// **Bounded**: past [`registry_capacity`](super::CircuitBreakerBuilder::registry_capacity)
/// breakers (default 1024), creating one first evicts those idle for
/// [`registry_idle_timeout`](super::CircuitBreakerBuilder::registry_idle_timeout) (default 10
/// minutes), then, if still full, the least recently used one. Only a breaker that is closed and
/// not in use (no layer, service, call in flight or handle holds it) is evicted: an open breaker
/// keeps its state, and a layer keeps working with its breaker whatever the registry does (after
/// an eviction, the key gets a fresh breaker on its next lookup).
pub struct CircuitBreakerRegistry<M = crate::DefaultClassifier> {
    inner: Arc<RegistryInner<M>>,
}

struct RegistryInner<M> {
    config: Config,
    make_classify: M,
    bounds: RegistryConfig,
    origin: Instant,
    breakers: RwLock<HashMap<Box<str>, Entry<M>>>,
}

struct Entry<M> {
    locals: Arc<Locals<M>>,
    /// Whole seconds since the registry's origin, of the latest lookup.
    last_used: AtomicU64,
}

impl<M> Entry<M> {
    #[inline]
    fn touch(&self, now: u64) {
        // A read, and a write once per second: lookups from many cores do not fight over the line.
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    fn evictable(&self) -> bool {
        !self.locals.in_use() && self.locals.shared().state() == State::Closed
    }
}

impl<M> CircuitBreakerRegistry<M> {
    pub(crate) fn from_parts(config: Config, make_classify: M, bounds: RegistryConfig) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                config,
                make_classify,
                bounds,
                origin: Instant::now(),
                breakers: RwLock::default(),
            }),
        }
    }

    fn now(&self) -> u64 {
        Instant::now().saturating_duration_since(self.inner.origin).as_secs()
    }

    /// The breaker of `key` if it exists, without allocating.
    #[inline]
    fn get(&self, key: &str, now: u64) -> Option<Arc<Locals<M>>> {
        let map = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|entry| {
            entry.touch(now);
            Arc::clone(&entry.locals)
        })
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handles of every breaker the registry holds, sorted by name.
    pub fn handles(&self) -> Vec<CircuitBreakerHandle> {
        let map = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let mut handles: Vec<_> =
            map.values().map(|entry| CircuitBreakerHandle::new(Arc::clone(entry.locals.shared()))).collect();
        drop(map);
        handles.sort_by(|a, b| a.name().cmp(b.name()));
        handles
    }
}

impl<M: Clone> CircuitBreakerRegistry<M> {
    /// The breaker of `key`, created (and the registry bounded) if needed.
    #[inline]
    pub(crate) fn locals(&self, key: &str) -> Arc<Locals<M>> {
        let now = self.now();
        match self.get(key, now) {
            Some(locals) => locals,
            None => self.create(key, now),
        }
    }

    #[cold]
    fn create(&self, key: &str, now: u64) -> Arc<Locals<M>> {
        let mut map = self.inner.breakers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get(key) {
            entry.touch(now);
            return Arc::clone(&entry.locals);
        }
        if map.len() >= self.inner.bounds.capacity {
            let idle = self.inner.bounds.idle_timeout.as_secs();
            map.retain(|_, entry| {
                !entry.evictable() || now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) < idle
            });
            if map.len() >= self.inner.bounds.capacity {
                let lru = map
                    .iter()
                    .filter(|(_, entry)| entry.evictable())
                    .min_by_key(|(_, entry)| entry.last_used.load(Ordering::Relaxed))
                    .map(|(key, _)| key.clone());
                if let Some(lru) = lru {
                    map.remove(&lru);
                }
            }
        }
        let config = Config { name: key.to_owned(), ..self.inner.config.clone() };
        let shared = Arc::new(Shared::new(config));
        let locals = Arc::new(Locals::new(&shared, self.inner.make_classify.clone()));
        map.insert(key.into(), Entry { locals: Arc::clone(&locals), last_used: AtomicU64::new(now) });
        locals
    }

    /// The handle of the breaker for `key`, creating it if needed.
    pub fn handle(&self, key: &str) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(self.locals(key).shared()))
    }

    /// The layer of the breaker for `key`, creating the breaker on first use. Allocates nothing
    /// when the breaker exists (every layer of one key shares its per-thread stripes).
    pub fn layer(&self, key: &str) -> CircuitBreakerLayer<M> {
        CircuitBreakerLayer::from_parts(self.locals(key))
    }

    /// A layer that picks the breaker of each request from `key` (a
    /// [`KeyFn`](super::KeyFn), such as `fn(&Request<B>) -> Option<&str>`): one breaker per route
    /// template, per downstream host, …; a request without a key passes unguarded. See
    /// [`KeyedCircuitBreaker`](super::KeyedCircuitBreaker).
    pub fn keyed_layer<K>(&self, key: K) -> KeyedCircuitBreakerLayer<K, M> {
        KeyedCircuitBreakerLayer::new(self.clone(), key)
    }
}

impl<M> Clone for CircuitBreakerRegistry<M> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<M> fmt::Debug for CircuitBreakerRegistry<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CircuitBreakerRegistry")
            .field("breakers", &map.keys().collect::<Vec<_>>())
            .field("bounds", &self.inner.bounds)
            .finish()
    }
}
