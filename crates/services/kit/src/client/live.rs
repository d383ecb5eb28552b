//! What a reload replaces in a [`Downstream`](super::Downstream): the stack built from its
//! settings; and [`Clients`], the registry that finds every reloadable client of one service.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use palisade::InvalidConfig;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::RetryLayer;

use super::{Body, Collect, Http};
use crate::config::DownstreamConfig;
use crate::ops::Breakers;

tokio::task_local! {
    static SCOPE: Clients;
}

/// The stack built from one [`DownstreamConfig`]: what one call uses from start to end.
#[derive(Debug)]
pub(super) struct Stack {
    config: DownstreamConfig,
    pub(super) base: String,
    pub(super) http: Http,
    retry: RetryLayer,
    pub(super) breaker: CircuitBreakerLayer,
}

impl Stack {
    fn build(
        peer: &str,
        client: &Client<HttpConnector, Body>,
        config: &DownstreamConfig,
        retry: RetryLayer,
        breaker: CircuitBreakerLayer,
    ) -> Result<Self, InvalidConfig> {
        let stack = config.client_stack_with(peer, retry.clone(), breaker.clone())?;
        let inner = Collect { client: client.clone(), limit: config.max_response_bytes };
        Ok(Self {
            config: config.clone(),
            base: config.url.trim_end_matches('/').to_owned(),
            http: tower::Layer::layer(&stack, inner),
            retry,
            breaker,
        })
    }
}

/// One client's name, the key of its settings, and its current stack; shared by the client's
/// clones and its service's [`Clients`].
#[derive(Debug)]
pub(super) struct Live {
    pub(super) peer: String,
    key: Option<String>,
    /// Kept across reloads: its connection pool serves every stack.
    client: Client<HttpConnector, Body>,
    pub(super) current: ArcSwap<Stack>,
}

impl Live {
    pub(super) fn new(
        peer: &str,
        key: Option<&str>,
        client: Client<HttpConnector, Body>,
        config: &DownstreamConfig,
    ) -> Result<Arc<Self>, InvalidConfig> {
        let stack =
            Stack::build(peer, &client, config, config.retry_layer(peer)?, config.breaker_layer(peer)?)?;
        Ok(Arc::new(Self {
            peer: peer.to_owned(),
            key: key.map(str::to_owned),
            client,
            current: ArcSwap::from_pointee(stack),
        }))
    }

    /// The stack for `config`, keeping the current retry layer (its budget) and breaker (its state)
    /// when their settings did not change; `None` when no setting changed.
    fn rebuild(&self, config: &DownstreamConfig) -> Result<Option<Stack>, InvalidConfig> {
        let current = self.current.load();
        if current.config == *config {
            return Ok(None);
        }
        let retry = if current.config.same_retry(config) {
            current.retry.clone()
        } else {
            config.retry_layer(&self.peer)?
        };
        let breaker = if current.config.same_breaker(config) {
            current.breaker.clone()
        } else {
            config.breaker_layer(&self.peer)?
        };
        Stack::build(&self.peer, &self.client, config, retry, breaker).map(Some)
    }
}

/// The reloadable [`Downstream`](super::Downstream)s of one service: every client built by
/// [`Downstream::new`](super::Downstream::new) or
/// [`from_setting`](super::Downstream::from_setting) while [`Clients::scope`] runs (as
/// [`Service::app`](crate::service::Service::app) builds a service). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clients(Arc<Mutex<Vec<Arc<Live>>>>);

impl Clients {
    /// Runs `work` with `self` as the registry new clients join.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        SCOPE.scope(self, work).await
    }

    /// The `downstreams.<key>` the clients read their settings from.
    pub fn keys(&self) -> BTreeSet<String> {
        self.list().iter().filter_map(|live| live.key.clone()).collect()
    }

    /// New stacks for the clients whose settings in `downstreams` differ from theirs, not yet in
    /// use; a client whose key `downstreams` lacks keeps its settings. Fails, naming the key, when a
    /// stack cannot be built.
    pub fn prepare(&self, downstreams: &BTreeMap<String, DownstreamConfig>) -> Result<Prepared, String> {
        let mut stacks = Vec::new();
        for live in self.list() {
            let Some(config) = live.key.as_ref().and_then(|key| downstreams.get(key)) else { continue };
            let rebuilt = live.rebuild(config).map_err(|e| format!("downstreams.{}: {e}", live.peer))?;
            if let Some(stack) = rebuilt {
                stacks.push((live, stack));
            }
        }
        Ok(Prepared(stacks))
    }

    fn list(&self) -> Vec<Arc<Live>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Stacks built by [`Clients::prepare`], put in use by [`Prepared::install`].
#[derive(Debug)]
pub struct Prepared(Vec<(Arc<Live>, Stack)>);

impl Prepared {
    /// Whether no client's settings changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Puts the stacks in use: calls from now on take them, calls in flight finish on the ones they
    /// started with. A new breaker (its settings changed; it starts closed) takes the old one's place
    /// in `breakers` (the `/ops` page). Returns the peers changed.
    pub fn install(self, breakers: &Breakers) -> Vec<String> {
        let mut peers = Vec::with_capacity(self.0.len());
        for (live, stack) in self.0 {
            let new_breaker = stack.breaker.handle();
            let old = live.current.swap(Arc::new(stack));
            if !old.config.same_breaker(&live.current.load().config) {
                breakers.replace(new_breaker);
            }
            peers.push(live.peer.clone());
        }
        peers
    }
}

/// Adds `live` to the [`Clients`] of the scope this runs in, if any.
pub(super) fn register(live: &Arc<Live>) {
    let _outside_any_scope = SCOPE.try_with(|clients| {
        clients.0.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(live));
    });
}
