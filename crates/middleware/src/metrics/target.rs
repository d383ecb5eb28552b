//! What a request is *for*: its route template on a server, its peer on a client.

use http::Request;

/// Picks the label that identifies a request's target: `http_route` on a server, `server_address` on a
/// client.
///
/// Return a value from a *bounded* set (a route template such as `/v1/products/{id}`, a host name),
/// never the raw path: each distinct value creates new series. `None` is recorded as
/// [`UNMATCHED_ROUTE`](crate::metric_names::UNMATCHED_ROUTE) on a server and
/// [`OTHER`](crate::metric_names::OTHER) on a client. Past the layer's
/// [`max_targets`](super::ServerMetricsLayerBuilder::max_targets) distinct values, new values are recorded as
/// [`OTHER`](crate::metric_names::OTHER).
///
/// Implemented by [`DefaultRoute`], [`UriHost`], `()` (always `None`), and every
/// `Fn(&Request<B>) -> Option<&str>` (a function, or a closure passed through [`target_fn`]):
///
/// ```
/// use http::Request;
/// use palisade::metrics::ServerMetricsLayer;
///
/// // A plain hyper service that knows its own routes.
/// fn route(req: &Request<String>) -> Option<&str> {
///     match req.uri().path() {
///         "/healthz" => Some("/healthz"),
///         p if p.starts_with("/v1/products/") => Some("/v1/products/{id}"),
///         _ => None,
///     }
/// }
/// let layer = ServerMetricsLayer::builder().target(route).build()?;
/// # let _ = layer;
/// # Ok::<(), palisade::InvalidConfig>(())
/// ```
pub trait Target<B> {
    /// The target label of `request`, or `None` if it has none.
    fn target<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str>;
}

/// Returns `f` unchanged, as a [`Target`]: lets the compiler see that a closure's returned `&str`
/// borrows from the request (a bare closure passed to
/// [`target`](super::ServerMetricsLayerBuilder::target)
/// gets an unrelated lifetime and does not implement [`Target`]). Like `tower::service_fn`.
///
/// ```
/// use http::Request;
/// use palisade::metrics::{ServerMetricsLayer, target_fn};
///
/// // Route templates stored by an upstream router in a request extension.
/// #[derive(Clone)]
/// struct RouteTemplate(std::sync::Arc<str>);
///
/// let layer = ServerMetricsLayer::builder()
///     .target(target_fn(|req: &Request<()>| req.extensions().get::<RouteTemplate>().map(|t| &*t.0)))
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), palisade::InvalidConfig>(())
/// ```
pub fn target_fn<B, F>(f: F) -> F
where
    F: Fn(&Request<B>) -> Option<&str>,
{
    f
}

impl<B> Target<B> for () {
    #[inline]
    fn target<'a>(&'a self, _request: &'a Request<B>) -> Option<&'a str> {
        None
    }
}

impl<B, F> Target<B> for F
where
    F: Fn(&Request<B>) -> Option<&str>,
{
    #[inline]
    fn target<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        self(request)
    }
}

/// The default server target: with the `axum` feature, the route template axum stored in the request's
/// `MatchedPath` extension; without it (or when the extension is absent), `None`, recorded as
/// [`UNMATCHED_ROUTE`](crate::metric_names::UNMATCHED_ROUTE). Without axum, set your own with
/// [`ServerMetricsLayerBuilder::target`](super::ServerMetricsLayerBuilder::target).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRoute;

impl<B> Target<B> for DefaultRoute {
    #[inline]
    fn target<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        #[cfg(feature = "axum")]
        {
            request.extensions().get::<axum::extract::MatchedPath>().map(axum::extract::MatchedPath::as_str)
        }
        #[cfg(not(feature = "axum"))]
        {
            let _ = request;
            None
        }
    }
}

/// Client target: the host of the request URI (without the port). Requests with a relative URI have
/// no host and are recorded as [`OTHER`](crate::metric_names::OTHER).
#[derive(Clone, Copy, Debug, Default)]
pub struct UriHost;

impl<B> Target<B> for UriHost {
    #[inline]
    fn target<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        request.uri().host()
    }
}
