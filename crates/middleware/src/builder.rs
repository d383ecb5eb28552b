//! `.circuit_breaker(..)`-style chaining on [`tower::ServiceBuilder`].
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade::ServiceBuilderExt;
//! use palisade::circuit_breaker::CircuitBreakerLayer;
//! use palisade::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .problems()
//!     .timeout_layer(TimeoutLayer::new(Duration::from_secs(1))?)
//!     .circuit_breaker(CircuitBreakerLayer::builder().build()?)
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
//!     }));
//! assert_eq!(svc.oneshot(http::Request::new(())).await?.status(), 200);
//! # Ok(())
//! # }
//! ```

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::problem::ProblemLayer;

mod sealed {
    pub trait Sealed {}
}

impl<L> sealed::Sealed for ServiceBuilder<L> {}

/// Adds palisade's layers to [`tower::ServiceBuilder`] by name. Sealed: implemented only for
/// `ServiceBuilder`.
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Maps every error below to an RFC 9457 problem response ([`ProblemLayer`]).
    fn problems(self) -> ServiceBuilder<Stack<ProblemLayer, L>>;

    /// Adds a [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer).
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<C>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<C>, L>>;

    /// Adds a [`RetryLayer`](crate::retry::RetryLayer).
    #[cfg(feature = "retry")]
    fn retry<P>(
        self,
        layer: crate::retry::RetryLayer<P>,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer<P>, L>>;

    /// Adds a [`TimeoutLayer`](crate::timeout::TimeoutLayer) (named so as not to clash with
    /// `ServiceBuilder::timeout`, tower's own).
    #[cfg(feature = "timeout")]
    fn timeout_layer(
        self,
        layer: crate::timeout::TimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer, L>>;

    /// Adds a [`ServerDeadlineLayer`](crate::timeout::ServerDeadlineLayer).
    #[cfg(feature = "timeout")]
    fn server_deadline(
        self,
        layer: crate::timeout::ServerDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ServerDeadlineLayer, L>>;

    /// Adds a [`ClientDeadlineLayer`](crate::timeout::ClientDeadlineLayer).
    #[cfg(feature = "timeout")]
    fn client_deadline(
        self,
        layer: crate::timeout::ClientDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ClientDeadlineLayer, L>>;

    /// Adds a [`MetricsLayer`](crate::metrics::MetricsLayer).
    #[cfg(feature = "metrics")]
    fn metrics<T>(
        self,
        layer: crate::metrics::MetricsLayer<T>,
    ) -> ServiceBuilder<Stack<crate::metrics::MetricsLayer<T>, L>>;

    /// Adds the server side of trace propagation ([`ServerTraceLayer`](crate::trace::ServerTraceLayer)).
    #[cfg(feature = "trace")]
    fn server_trace(
        self,
        layer: crate::trace::ServerTraceLayer,
    ) -> ServiceBuilder<Stack<crate::trace::ServerTraceLayer, L>>;

    /// Adds the client side of trace propagation ([`ClientTraceLayer`](crate::trace::ClientTraceLayer)).
    #[cfg(feature = "trace")]
    fn client_trace(
        self,
        layer: crate::trace::ClientTraceLayer,
    ) -> ServiceBuilder<Stack<crate::trace::ClientTraceLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn problems(self) -> ServiceBuilder<Stack<ProblemLayer, L>> {
        self.layer(ProblemLayer::new())
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<C>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retry<P>(
        self,
        layer: crate::retry::RetryLayer<P>,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn timeout_layer(
        self,
        layer: crate::timeout::TimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn server_deadline(
        self,
        layer: crate::timeout::ServerDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ServerDeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn client_deadline(
        self,
        layer: crate::timeout::ClientDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ClientDeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "metrics")]
    fn metrics<T>(
        self,
        layer: crate::metrics::MetricsLayer<T>,
    ) -> ServiceBuilder<Stack<crate::metrics::MetricsLayer<T>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "trace")]
    fn server_trace(
        self,
        layer: crate::trace::ServerTraceLayer,
    ) -> ServiceBuilder<Stack<crate::trace::ServerTraceLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "trace")]
    fn client_trace(
        self,
        layer: crate::trace::ClientTraceLayer,
    ) -> ServiceBuilder<Stack<crate::trace::ClientTraceLayer, L>> {
        self.layer(layer)
    }
}
