use std::{borrow::Cow, sync::Arc};

use ::metrics::SharedString;
use tower::Layer;

use super::{
    DefaultRoute, Metrics, UriHost,
    series::{CLIENT, SERVER, Shared},
};
use crate::InvalidConfig;

/// Default cap on distinct target label values (routes or peers) per layer, see
/// [`ServerMetricsLayerBuilder::max_targets`].
pub const DEFAULT_MAX_TARGETS: usize = 256;

/// Largest accepted `max_targets`.
const MAX_MAX_TARGETS: usize = 1 << 16;

/// Applies [`Metrics`] to a server: `http_server_*` series per route template.
///
/// [`ServerMetricsLayer::new`] takes the defaults; [`ServerMetricsLayer::builder`] lists the settings.
/// Every service the layer produces, and every clone of them, shares one handle cache.
#[derive(Clone, Debug)]
pub struct ServerMetricsLayer<T = DefaultRoute> {
    shared: Arc<Shared>,
    target: T,
}

/// Applies [`Metrics`] to a client: `http_client_*` series per downstream peer.
///
/// [`ClientMetricsLayer::new`] names the one downstream the client calls (the usual case: no lookup
/// per call); [`ClientMetricsLayer::builder`] labels each call by a [`Target`](super::Target) strategy
/// instead, the URI host by default. Every service the layer produces, and every clone of them, shares
/// one handle cache.
///
/// A layer with a fixed peer name has no target to replace, so asking for one does not compile
/// (before, the strategy was accepted and silently ignored):
///
/// ```compile_fail
/// use palisade::metrics::{ClientMetricsLayer, UriHost};
///
/// let layer = ClientMetricsLayer::new("payments").target(UriHost);
/// ```
#[derive(Clone, Debug)]
pub struct ClientMetricsLayer<T = ()> {
    shared: Arc<Shared>,
    target: T,
}

impl ServerMetricsLayer {
    /// Server metrics with the defaults listed on [`ServerMetricsLayerBuilder`].
    pub fn new() -> Self {
        Self::builder().build().expect("the defaults are valid")
    }

    /// A builder, starting from the defaults.
    pub const fn builder() -> ServerMetricsLayerBuilder {
        ServerMetricsLayerBuilder { target: DefaultRoute, max_targets: DEFAULT_MAX_TARGETS }
    }
}

impl Default for ServerMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientMetricsLayer<()> {
    /// Client metrics for calls to one downstream, labelled `server_address = server_address` (for
    /// example `"payments"`): exactly one peer series set, no lookup per call.
    pub fn new(server_address: impl Into<Cow<'static, str>>) -> Self {
        let name = SharedString::from(server_address.into());
        Self { shared: Arc::new(Shared::new(&CLIENT, Some(name), 0)), target: () }
    }
}

impl ClientMetricsLayer<UriHost> {
    /// A builder for client metrics labelled per call, with the defaults listed on
    /// [`ClientMetricsLayerBuilder`]: one series set per distinct peer, so prefer
    /// [`new`](ClientMetricsLayer::new) with a fixed name when the client calls one downstream.
    pub const fn builder() -> ClientMetricsLayerBuilder<UriHost> {
        ClientMetricsLayerBuilder { target: UriHost, max_targets: DEFAULT_MAX_TARGETS }
    }
}

/// Configures a [`ServerMetricsLayer`]. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`target`](Self::target) | [`DefaultRoute`]: axum's `MatchedPath` with the `axum` feature |
/// | [`max_targets`](Self::max_targets) | [`DEFAULT_MAX_TARGETS`] |
#[derive(Clone, Debug)]
pub struct ServerMetricsLayerBuilder<T = DefaultRoute> {
    target: T,
    max_targets: usize,
}

/// Configures a [`ClientMetricsLayer`] that labels each call by its target. Defaults:
///
/// | setting | default |
/// |---|---|
/// | [`target`](Self::target) | [`UriHost`]: the request URI's host |
/// | [`max_targets`](Self::max_targets) | [`DEFAULT_MAX_TARGETS`] |
#[derive(Clone, Debug)]
pub struct ClientMetricsLayerBuilder<T = UriHost> {
    target: T,
    max_targets: usize,
}

/// The settings both builders share, written once.
macro_rules! target_settings {
    ($builder:ident, $layer:ident, $side:expr, $what:literal) => {
        impl<T> $builder<T> {
            #[doc = concat!("Replaces the strategy that finds each request's ", $what, " label: any")]
            /// [`Target`](super::Target), including a closure `Fn(&Request<B>) -> Option<&str>` (see
            /// [`target_fn`](super::target_fn)).
            pub fn target<U>(self, target: U) -> $builder<U> {
                $builder { target, max_targets: self.max_targets }
            }

            /// Caps the number of distinct target label values this layer records (default
            /// [`DEFAULT_MAX_TARGETS`]); further values are recorded as
            /// [`OTHER`](crate::metric_names::OTHER), so a target strategy that leaks raw paths cannot
            /// grow the series (or this layer's memory) without bound. `build()` checks it is in
            /// `1..=65536`.
            pub fn max_targets(mut self, max: usize) -> Self {
                self.max_targets = max;
                self
            }

            /// Checks the settings and builds the layer.
            pub fn build(self) -> Result<$layer<T>, InvalidConfig> {
                let max = self.max_targets;
                if max == 0 || max > MAX_MAX_TARGETS {
                    let reason = format!("{max} is not in 1..={MAX_MAX_TARGETS}");
                    return Err(InvalidConfig::new("max_targets", reason));
                }
                Ok($layer { shared: Arc::new(Shared::new($side, None, max)), target: self.target })
            }
        }

        impl<S, T: Clone> Layer<S> for $layer<T> {
            type Service = Metrics<S, T>;

            fn layer(&self, inner: S) -> Self::Service {
                Metrics::new(inner, Arc::clone(&self.shared), self.target.clone())
            }
        }
    };
}

target_settings!(ServerMetricsLayerBuilder, ServerMetricsLayer, &SERVER, "route template");
target_settings!(ClientMetricsLayerBuilder, ClientMetricsLayer, &CLIENT, "peer");
