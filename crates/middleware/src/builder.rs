//! `.problems()`-style chaining on [`tower::ServiceBuilder`], for the layers that are worth a name
//! there: each method builds its layer from the arguments it takes (like tower-http's
//! `ServiceBuilderExt`), so that a common stack reads as a list. A layer that needs configuring
//! goes in with [`ServiceBuilder::layer`], as any tower layer does: a method that took the built
//! layer would add nothing but a second way to write the same thing.
//!
//! ```
//! use std::time::Duration;
//!
//! use http_body_util::Empty;
//! use palisade::ServiceBuilderExt;
//! use palisade::retry::RetryBody;
//! use palisade::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let client = ServiceBuilder::new()
//!     .client_trace()
//!     .client_metrics("catalog")
//!     .retry_layer("catalog")
//!     .layer(TimeoutLayer::builder(Duration::from_secs(1)).name("catalog").build()?)
//!     .service(service_fn(|_req: http::Request<RetryBody<Empty<bytes::Bytes>>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
//!     }));
//! let res = client.oneshot(http::Request::get("http://catalog/v1/products").body(Empty::new())?).await?;
//! assert_eq!(res.status(), 200);
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

/// Adds palisade's layers to [`tower::ServiceBuilder`] by name, built from the arguments. Sealed:
/// implemented only for `ServiceBuilder`.
///
/// Names that tower's own `ServiceBuilder` methods take (`retry`, `timeout`, with tower's features
/// of those names) are not reused: an inherent method always wins over a trait's, so the call would
/// silently reach tower's.
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Maps every error below to an RFC 9457 problem response ([`ProblemLayer`]).
    fn problems(self) -> ServiceBuilder<Stack<ProblemLayer, L>>;

    /// Adds a [`RetryLayer`](crate::retry::RetryLayer) with every default, named `name` (the `name`
    /// label of its metrics). The inner service must take `http::Request<RetryBody<B>>`
    /// ([`RetryBody`](crate::retry::RetryBody)). Named so as not to clash with tower's
    /// `ServiceBuilder::retry`; configure one with `.layer(RetryLayer::builder()…build()?)`.
    #[cfg(feature = "retry")]
    fn retry_layer(self, name: impl Into<String>) -> ServiceBuilder<Stack<crate::retry::RetryLayer, L>>;

    /// Adds server RED metrics with the defaults ([`ServerMetricsLayer::new`](crate::metrics::ServerMetricsLayer::new)).
    #[cfg(feature = "metrics")]
    fn server_metrics(self) -> ServiceBuilder<Stack<crate::metrics::ServerMetricsLayer, L>>;

    /// Adds client RED metrics for calls to `server_address`
    /// ([`ClientMetricsLayer::new`](crate::metrics::ClientMetricsLayer::new)).
    #[cfg(feature = "metrics")]
    fn client_metrics(
        self,
        server_address: impl Into<std::borrow::Cow<'static, str>>,
    ) -> ServiceBuilder<Stack<crate::metrics::ClientMetricsLayer, L>>;

    /// Adds the server side of trace propagation with the defaults
    /// ([`ServerTraceLayer::new`](crate::trace::ServerTraceLayer::new)).
    #[cfg(feature = "trace")]
    fn server_trace(self) -> ServiceBuilder<Stack<crate::trace::ServerTraceLayer, L>>;

    /// Adds the client side of trace propagation with the defaults
    /// ([`ClientTraceLayer::new`](crate::trace::ClientTraceLayer::new)).
    #[cfg(feature = "trace")]
    fn client_trace(self) -> ServiceBuilder<Stack<crate::trace::ClientTraceLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn problems(self) -> ServiceBuilder<Stack<ProblemLayer, L>> {
        self.layer(ProblemLayer::new())
    }

    #[cfg(feature = "retry")]
    fn retry_layer(self, name: impl Into<String>) -> ServiceBuilder<Stack<crate::retry::RetryLayer, L>> {
        self.layer(crate::retry::RetryLayer::builder().name(name).build().expect("the defaults are valid"))
    }

    #[cfg(feature = "metrics")]
    fn server_metrics(self) -> ServiceBuilder<Stack<crate::metrics::ServerMetricsLayer, L>> {
        self.layer(crate::metrics::ServerMetricsLayer::new())
    }

    #[cfg(feature = "metrics")]
    fn client_metrics(
        self,
        server_address: impl Into<std::borrow::Cow<'static, str>>,
    ) -> ServiceBuilder<Stack<crate::metrics::ClientMetricsLayer, L>> {
        self.layer(crate::metrics::ClientMetricsLayer::new(server_address))
    }

    #[cfg(feature = "trace")]
    fn server_trace(self) -> ServiceBuilder<Stack<crate::trace::ServerTraceLayer, L>> {
        self.layer(crate::trace::ServerTraceLayer::new())
    }

    #[cfg(feature = "trace")]
    fn client_trace(self) -> ServiceBuilder<Stack<crate::trace::ClientTraceLayer, L>> {
        self.layer(crate::trace::ClientTraceLayer::new())
    }
}
