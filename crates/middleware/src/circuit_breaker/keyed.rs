//! [`KeyedCircuitBreaker`]: the breaker of each request picked from a registry by a key.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::call_guarded;
use super::future::ResponseFuture;
use super::registry::CircuitBreakerRegistry;
use crate::{BoxError, DefaultClassifier, MakeClassify};

/// The key of a request's breaker: `None` lets the request pass unguarded.
///
/// Implemented by every `Fn(&Req) -> Option<&str>` (a `fn` item; a closure needs its lifetimes
/// spelled out, which a `fn` does for free) and, with the `axum` feature, by [`MatchedPathKey`]
/// (the route template).
pub trait KeyFn<Req> {
    /// The key of `req`'s breaker.
    fn key<'a>(&self, req: &'a Req) -> Option<&'a str>;
}

impl<F, Req> KeyFn<Req> for F
where
    F: for<'a> Fn(&'a Req) -> Option<&'a str>,
{
    #[inline]
    fn key<'a>(&self, req: &'a Req) -> Option<&'a str> {
        self(req)
    }
}

/// Keys a request by its axum route template (`MatchedPath`, e.g. `/v1/items/{id}`, never the raw
/// path): one breaker per route. Requests that matched no route pass unguarded. The layer must run
/// after routing (`Router::layer`, or `route_layer`).
#[cfg(feature = "axum")]
#[derive(Clone, Copy, Debug, Default)]
pub struct MatchedPathKey;

#[cfg(feature = "axum")]
impl<B> KeyFn<http::Request<B>> for MatchedPathKey {
    #[inline]
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<&'a str> {
        req.extensions().get::<axum::extract::MatchedPath>().map(axum::extract::MatchedPath::as_str)
    }
}

/// Wraps services in a [`KeyedCircuitBreaker`]; from
/// [`CircuitBreakerRegistry::keyed_layer`].
pub struct KeyedCircuitBreakerLayer<K, M = DefaultClassifier> {
    registry: CircuitBreakerRegistry<M>,
    key: K,
}

impl<K, M> KeyedCircuitBreakerLayer<K, M> {
    pub(crate) fn new(registry: CircuitBreakerRegistry<M>, key: K) -> Self {
        Self { registry, key }
    }

    /// The registry the breakers come from (for their handles).
    pub fn registry(&self) -> &CircuitBreakerRegistry<M> {
        &self.registry
    }
}

impl<K: Clone, M> Clone for KeyedCircuitBreakerLayer<K, M> {
    fn clone(&self) -> Self {
        Self { registry: self.registry.clone(), key: self.key.clone() }
    }
}

impl<S, K: Clone, M> Layer<S> for KeyedCircuitBreakerLayer<K, M> {
    type Service = KeyedCircuitBreaker<S, K, M>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker { inner, registry: self.registry.clone(), key: self.key.clone() }
    }
}

impl<K, M> fmt::Debug for KeyedCircuitBreakerLayer<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer").field("registry", &self.registry).finish_non_exhaustive()
    }
}

/// A service guarded by one breaker per key: each request's breaker is looked up in a
/// [`CircuitBreakerRegistry`] by the key its [`KeyFn`] gives (created on first use, evicted when
/// idle), so one failing route or host opens its own breaker only. A request without a key passes
/// unguarded. The lookup allocates nothing once the key's breaker exists.
///
/// Unlike [`CircuitBreaker`](super::CircuitBreaker), `poll_ready` is always the inner service's:
/// the breaker is only known once the request is.
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerLayer, State, error::CircuitOpen};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// /// One breaker per downstream host; a request without a host passes unguarded.
/// fn host(req: &http::Request<()>) -> Option<&str> {
///     req.uri().host()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade::BoxError> {
/// let registry = CircuitBreakerLayer::builder().consecutive_failures(1).build_registry()?;
/// let mut svc = registry.keyed_layer(host).layer(service_fn(|req: http::Request<()>| async move {
///     let status = if req.uri().host() == Some("down.example") { 503 } else { 200 };
///     Ok::<_, std::convert::Infallible>(http::Response::builder().status(status).body(()).unwrap())
/// }));
/// let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
///
/// svc.ready().await?.call(get("http://down.example/a")).await?; // a 503: its breaker opens
/// let err = svc.ready().await?.call(get("http://down.example/b")).await.unwrap_err();
/// assert!(err.is::<CircuitOpen>());
/// assert_eq!(svc.ready().await?.call(get("http://up.example/")).await?.status(), 200);
/// assert_eq!(registry.handle("down.example").state(), State::Open);
/// # Ok(())
/// # }
/// ```
pub struct KeyedCircuitBreaker<S, K, M = DefaultClassifier> {
    inner: S,
    registry: CircuitBreakerRegistry<M>,
    key: K,
}

inner_accessors!(KeyedCircuitBreaker, K, M);

impl<S: Clone, K: Clone, M> Clone for KeyedCircuitBreaker<S, K, M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), registry: self.registry.clone(), key: self.key.clone() }
    }
}

impl<S, K, M, Req> Service<Req> for KeyedCircuitBreaker<S, K, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: KeyFn<Req>,
    M: MakeClassify<Req, S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, M::Classify>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(key) = self.key.key(&req) else {
            return ResponseFuture::called(self.inner.call(req), None);
        };
        let locals = self.registry.locals(key);
        let local = Arc::clone(locals.this_thread());
        call_guarded(&mut self.inner, &local, &locals.make_classify, req)
    }
}

impl<S: fmt::Debug, K, M> fmt::Debug for KeyedCircuitBreaker<S, K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}
