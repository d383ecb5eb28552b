use std::{borrow::Cow, sync::Arc};

use ::metrics::SharedString;
use tower::Layer;

use super::{
    DefaultRoute, Metrics, UriHost,
    series::{CLIENT, SERVER, Shared, Side},
};
use crate::InvalidConfig;

/// Default cap on distinct target label values (routes or peers) per layer, see
/// [`MetricsLayer::max_targets`].
pub const DEFAULT_MAX_TARGETS: usize = 256;

/// Largest accepted [`MetricsLayer::max_targets`].
const MAX_MAX_TARGETS: usize = 1 << 16;

/// Applies [`Metrics`] to services: RED metrics for a server (per route template) or a client (per peer).
///
/// Every service the layer produces, and every clone of them, shares one handle cache.
#[derive(Clone, Debug)]
pub struct MetricsLayer<T = DefaultRoute> {
    shared: Arc<Shared>,
    side: &'static Side,
    fixed: Option<SharedString>,
    max_targets: usize,
    target: T,
}

impl MetricsLayer<DefaultRoute> {
    /// Server metrics (`http_server_*`), labelled with the route template found by [`DefaultRoute`]
    /// (axum's `MatchedPath` with the `axum` feature). Replace it with [`target`](Self::target).
    pub fn server() -> Self {
        Self::build(&SERVER, None, DEFAULT_MAX_TARGETS, DefaultRoute)
    }
}

impl MetricsLayer<()> {
    /// Client metrics (`http_client_*`) for calls to one downstream, labelled
    /// `server_address = server_address` (for example `"payments"`): exactly one peer series set, no
    /// lookup per call.
    pub fn client(server_address: impl Into<Cow<'static, str>>) -> Self {
        let name = SharedString::from(server_address.into());
        Self::build(&CLIENT, Some(name), DEFAULT_MAX_TARGETS, ())
    }
}

impl MetricsLayer<UriHost> {
    /// Client metrics (`http_client_*`) labelled with each request's URI host. One series set per
    /// distinct host, up to [`max_targets`](Self::max_targets): prefer [`client`](MetricsLayer::client)
    /// with a fixed name when the layer serves one downstream.
    pub fn client_by_host() -> Self {
        Self::build(&CLIENT, None, DEFAULT_MAX_TARGETS, UriHost)
    }
}

impl<T> MetricsLayer<T> {
    fn build(side: &'static Side, fixed: Option<SharedString>, max_targets: usize, target: T) -> Self {
        let shared = Arc::new(Shared::new(side, fixed.clone(), max_targets));
        Self { shared, side, fixed, max_targets, target }
    }

    /// Replaces the strategy that finds each request's target label (the route template on a server,
    /// the peer on a client): any [`Target`](super::Target), including a closure
    /// `Fn(&Request<B>) -> Option<&str>`. Ignored by a [`client`](MetricsLayer::client) layer with a
    /// fixed peer name. Default: [`DefaultRoute`] on a server, [`UriHost`] for
    /// [`client_by_host`](MetricsLayer::client_by_host).
    pub fn target<U>(self, target: U) -> MetricsLayer<U> {
        MetricsLayer::build(self.side, self.fixed, self.max_targets, target)
    }

    /// Caps the number of distinct target label values this layer records (default
    /// [`DEFAULT_MAX_TARGETS`]); further values are recorded as
    /// [`OTHER`](crate::metric_names::OTHER), so a target strategy that leaks raw paths cannot grow
    /// the series (or this layer's memory) without bound. Must be in `1..=65536`.
    pub fn max_targets(self, max: usize) -> Result<Self, InvalidConfig> {
        if max == 0 || max > MAX_MAX_TARGETS {
            return Err(InvalidConfig::new("max_targets", format!("{max} is not in 1..={MAX_MAX_TARGETS}")));
        }
        Ok(Self::build(self.side, self.fixed, max, self.target))
    }
}

impl<S, T: Clone> Layer<S> for MetricsLayer<T> {
    type Service = Metrics<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics { inner, shared: Arc::clone(&self.shared), target: self.target.clone() }
    }
}
