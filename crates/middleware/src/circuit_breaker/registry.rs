//! [`CircuitBreakerRegistry`]: one breaker per key, from one configuration.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use super::config::Config;
use super::future::Locals;
use super::handle::CircuitBreakerHandle;
use super::layer::CircuitBreakerLayer;
use super::shared::Shared;

/// Keyed breakers (one per downstream host, or per route), created lazily from one configuration and
/// shared by every clone of the registry. From
/// [`CircuitBreakerBuilder::build_registry`](super::CircuitBreakerBuilder::build_registry).
///
/// Each breaker is named after its key (the `name` metric label). A lookup takes a read lock on a
/// `HashMap` and hashes the key (tens of nanoseconds, uncontended); creating a breaker takes the write
/// lock once. Look the layer up when building a client or a route, not on every request; the breaker
/// itself never touches the registry.
pub struct CircuitBreakerRegistry<C = crate::DefaultClassifier> {
    inner: Arc<RegistryInner<C>>,
}

struct RegistryInner<C> {
    config: Config,
    classifier: C,
    breakers: RwLock<HashMap<String, Arc<Shared>>>,
}

impl<C> CircuitBreakerRegistry<C> {
    pub(crate) fn from_parts(config: Config, classifier: C) -> Self {
        Self { inner: Arc::new(RegistryInner { config, classifier, breakers: RwLock::default() }) }
    }

    fn shared(&self, key: &str) -> Arc<Shared> {
        let breakers = &self.inner.breakers;
        if let Some(shared) = breakers.read().unwrap_or_else(PoisonError::into_inner).get(key) {
            return Arc::clone(shared);
        }
        let mut map = breakers.write().unwrap_or_else(PoisonError::into_inner);
        let shared = map.entry(key.to_owned()).or_insert_with(|| {
            let config = Config { name: key.to_owned(), ..self.inner.config.clone() };
            Arc::new(Shared::new(config))
        });
        Arc::clone(shared)
    }

    /// The handle of the breaker for `key`, creating it if needed.
    pub fn handle(&self, key: &str) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared(key))
    }

    /// The handles of every breaker created so far, sorted by name.
    pub fn handles(&self) -> Vec<CircuitBreakerHandle> {
        let map = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let mut handles: Vec<_> =
            map.values().map(|shared| CircuitBreakerHandle::new(Arc::clone(shared))).collect();
        drop(map);
        handles.sort_by(|a, b| a.name().cmp(b.name()));
        handles
    }
}

impl<C: Clone> CircuitBreakerRegistry<C> {
    /// The layer of the breaker for `key`, creating the breaker on first use. It allocates the
    /// breaker's small per-thread stripes, once per layer: keep the layer rather than looking it up
    /// per request.
    pub fn layer(&self, key: &str) -> CircuitBreakerLayer<C> {
        let shared = self.shared(key);
        CircuitBreakerLayer::from_parts(Arc::new(Locals::new(&shared, &self.inner.classifier)))
    }
}

impl<C> Clone for CircuitBreakerRegistry<C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<C> fmt::Debug for CircuitBreakerRegistry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CircuitBreakerRegistry").field("breakers", &map.keys().collect::<Vec<_>>()).finish()
    }
}
