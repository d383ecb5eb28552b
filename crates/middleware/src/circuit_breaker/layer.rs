//! [`CircuitBreakerLayer`].

use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::CircuitBreaker;
use super::config::CircuitBreakerBuilder;
use super::future::Locals;
use super::handle::CircuitBreakerHandle;

/// Wraps services in a [`CircuitBreaker`]. Every service made by one layer (and every clone of
/// those) shares one breaker: build one layer per dependency, or use a
/// [`CircuitBreakerRegistry`](super::CircuitBreakerRegistry).
pub struct CircuitBreakerLayer<M = crate::DefaultClassifier> {
    /// Made once per breaker, so that neither `layer` nor cloning a service allocates (axum calls
    /// `layer` per request on a `Router` without `with_state`, and clones the service per request).
    locals: Arc<Locals<M>>,
}

impl CircuitBreakerLayer {
    /// A builder with the defaults (count window of 100 calls, failure rate 0.5, 20 minimum calls,
    /// 30 s open interval, 3 half-open permits, 3 successes to close).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }
}

impl<M> CircuitBreakerLayer<M> {
    pub(crate) fn from_parts(locals: Arc<Locals<M>>) -> Self {
        Self { locals }
    }

    /// A handle to this layer's breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(self.locals.shared()))
    }
}

impl<S, M> Layer<S> for CircuitBreakerLayer<M> {
    type Service = CircuitBreaker<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(inner, Arc::clone(&self.locals))
    }
}

impl<M> Clone for CircuitBreakerLayer<M> {
    fn clone(&self) -> Self {
        Self { locals: Arc::clone(&self.locals) }
    }
}

impl<M> fmt::Debug for CircuitBreakerLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer").field("breaker", self.locals.shared()).finish_non_exhaustive()
    }
}
