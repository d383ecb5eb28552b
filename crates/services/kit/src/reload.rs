//! Settings reloaded without a restart: on SIGHUP, or when the file at `CONFIG_PATH` changes.
//!
//! One [`Reloader`] per process ([`service::run`](crate::service::run), for `shop all` and
//! `shop <service>` alike) loads the settings again with the same checks as at start (unknown keys,
//! ranges, every downstream's client stack). When any check fails, it logs **one ERROR line** naming
//! the problem and changes nothing. Otherwise it applies, to new requests:
//!
//! | what | how |
//! |---|---|
//! | `log_level` | the log filter is replaced ([`crate::telemetry::set_log_filter`]) |
//! | the server's layers ([`LIVE_SERVICE_KEYS`]: `request_timeout_ms`, `max_in_flight`, `access_log`, `compress_min_bytes`, `cors_allowed_origins`, `trusted_proxies`) | the service's router is built again around the same routes and state, and [`Swap`]ped in |
//! | `downstreams.<peer>.*` of a peer the service calls (timeouts, retry, breaker, URL) | that client's stack is built again and swapped in ([`crate::client`]) |
//!
//! Each request takes the router current when it arrives, each downstream call the stack current
//! when it starts; what is in flight finishes on what it started with, so nothing is dropped. Only
//! what changed is rebuilt: a breaker whose own settings did not change keeps its state (and the
//! retry layer its budget); a new breaker starts closed. A rebuilt router has a new limit of
//! requests in flight, so for as long as requests that started before the reload run, the two
//! limits together may admit up to twice `max_in_flight`.
//!
//! Any other key that changed (`catalog.port`, `catalog.database_url`, `jwt_secret`, pool sizes,
//! signing and trusted keys, a service's own sections, a downstream the service does not call) is
//! named in a WARN (`catalog.port changed; restart to apply`) and keeps its running value.
//!
//! **The file.** It is read every [`POLL_INTERVAL`]; a change applies once two reads in a row agree,
//! so a file written in several steps is not read half-written. Polling the contents (not waiting
//! for file events) also sees an editor's rename-over and a Kubernetes ConfigMap's symlink swap.
//! SIGHUP reloads at once, whether or not the file changed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use figment::value::Value;
use tower::ServiceExt as _;
use tower::util::Oneshot;

use crate::BoxError;
use crate::config::{self, GlobalConfig, LIVE_GLOBAL_KEYS, LIVE_SERVICE_KEYS, ServiceConfig, Settings};
use crate::server::Shutdown;
use crate::service::{Layers, Service};

/// How often the file at `CONFIG_PATH` is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A service that can be replaced while it serves: each call goes to a clone of the current one
/// ([`Swap::store`] replaces it; calls already made keep theirs). Cheap to clone; clones share it.
pub struct Swap<S>(Arc<ArcSwap<S>>);

impl<S> Swap<S> {
    /// Serves `service` until another is stored.
    pub fn new(service: S) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(service)))
    }

    /// Replaces the service for every call from now on.
    pub fn store(&self, service: S) {
        self.0.store(Arc::new(service));
    }

    /// A clone of the current service.
    pub fn current(&self) -> S
    where
        S: Clone,
    {
        S::clone(&self.0.load())
    }
}

impl<S> Clone for Swap<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S: fmt::Debug> fmt::Debug for Swap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Swap").field(&self.0.load()).finish()
    }
}

impl<S, R> tower::Service<R> for Swap<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Oneshot<S, R>;

    /// Always ready: each call readies its own clone of the current service.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.current().oneshot(req)
    }
}

/// One served service as a reload sees it: its settings in force, what builds its router, and the
/// router its server serves ([`App::serve_reloadable`](crate::service::App::serve_reloadable)).
#[derive(Debug)]
pub struct Running {
    name: &'static str,
    default_port: u16,
    config: ServiceConfig,
    layers: Layers,
    router: Swap<Router>,
}

impl Running {
    /// `service` running with `config`, serving `router`, which `layers` built.
    pub const fn new(service: &Service, config: ServiceConfig, layers: Layers, router: Swap<Router>) -> Self {
        Self { name: service.name, default_port: service.default_port, config, layers, router }
    }

    /// Whether a change of `key` (dotted from the root) applies to this service live (`Some(true)`),
    /// needs a restart (`Some(false)`), or is not this service's.
    fn classify(&self, key: &str) -> Option<bool> {
        let rest = key.strip_prefix(self.name)?.strip_prefix('.')?;
        if LIVE_SERVICE_KEYS.contains(&rest) {
            return Some(true);
        }
        let peer = rest.strip_prefix("downstreams.").and_then(|r| r.split_once('.')).map(|(peer, _)| peer);
        Some(peer.is_some_and(|peer| self.layers.clients().keys().contains(peer)))
    }
}

/// What one reload did, by dotted key (values are never shown: some are secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Changed keys now in force.
    pub applied: Vec<String>,
    /// Changed keys that wait for a restart.
    pub restart: Vec<String>,
}

type Load = dyn Fn() -> Result<Settings, BoxError> + Send + Sync;
type Wire = dyn Fn(&Settings) -> Settings + Send + Sync;

/// Loads the settings again and applies them to the running services (see the
/// [module docs](self)). Cheap to clone; reloads run one at a time.
#[derive(Clone)]
pub struct Reloader {
    load: Arc<Load>,
    wire: Arc<Wire>,
    state: Arc<Mutex<State>>,
}

struct State {
    /// The values of the settings last applied, as their sources set them.
    values: BTreeMap<String, Value>,
    services: Vec<Running>,
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let services: Vec<_> = state.services.iter().map(|s| s.name).collect();
        f.debug_struct("Reloader").field("services", &services).finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for services started with `settings`, which loads new ones with `load` (the
    /// same function, and so the same checks, as at start).
    pub fn new(
        settings: &Settings,
        load: impl Fn() -> Result<Settings, BoxError> + Send + Sync + 'static,
    ) -> Result<Self, BoxError> {
        let state = State { values: settings.values()?, services: Vec::new() };
        Ok(Self { load: Arc::new(load), wire: Arc::new(Settings::clone), state: Arc::new(Mutex::new(state)) })
    }

    /// Passes what `load` returns through `wire` before the services read it (`shop all` adds
    /// the addresses of the services of the process as defaults).
    #[must_use]
    pub fn with_wiring(mut self, wire: impl Fn(&Settings) -> Settings + Send + Sync + 'static) -> Self {
        self.wire = Arc::new(wire);
        self
    }

    /// Applies reloads to `running` too.
    pub fn add(&self, running: Running) {
        self.lock().services.push(running);
    }

    /// Reloads now, and logs the outcome: one ERROR line when the new settings are refused, one
    /// WARN per changed key that needs a restart, one INFO line naming what was applied. `trigger`
    /// says why (`SIGHUP`, `file change`).
    pub fn reload_now(&self, trigger: &str) -> Result<Outcome, BoxError> {
        match self.try_reload() {
            Ok(outcome) => {
                for key in &outcome.restart {
                    tracing::warn!(trigger, key = %key, "{key} changed; restart to apply");
                }
                if outcome.applied.is_empty() {
                    tracing::info!(trigger, "settings reloaded: nothing to apply");
                } else {
                    tracing::info!(trigger, applied = ?outcome.applied, "settings reloaded and applied");
                }
                Ok(outcome)
            }
            Err(err) => {
                tracing::error!(trigger, "settings reload refused, the running settings stay: {err}");
                Err(err)
            }
        }
    }

    /// Everything is checked and built first; only then is anything put in use.
    fn try_reload(&self) -> Result<Outcome, BoxError> {
        let loaded = (self.load)()?;
        let values = loaded.values()?;
        let settings = (self.wire)(&loaded);
        let global = settings.global()?;
        let mut state = self.lock();
        let mut plans = Vec::with_capacity(state.services.len());
        for running in &state.services {
            let new = settings.service(running.name, running.default_port)?;
            let config = running.config.with_live(&new);
            let router = if config.layers_differ(&running.config) {
                Some(running.layers.router(&config).map_err(|e| format!("{}: {e}", running.name))?)
            } else {
                None
            };
            plans.push((config, router));
        }
        let mut clients = Vec::with_capacity(plans.len());
        for (running, (config, _)) in state.services.iter().zip(&plans) {
            clients.push(
                running
                    .layers
                    .clients()
                    .prepare(&config.downstreams)
                    .map_err(|e| format!("{}.{e}", running.name))?,
            );
        }

        let outcome = classify(&state.values, &values, &state.services);
        if values.get("log_level") != state.values.get("log_level")
            && let Err(problem) = crate::telemetry::set_log_filter(&global.log_level)
        {
            tracing::debug!(%problem, "log_level not applied");
        }
        for ((running, (config, router)), clients) in state.services.iter_mut().zip(plans).zip(clients) {
            if let Some(router) = router {
                running.router.store(router);
            }
            clients.install(running.layers.breakers());
            running.config = config;
        }
        state.values = values;
        Ok(outcome)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads on each of `triggers` until `shutdown`.
    pub fn spawn(self, triggers: Triggers, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.watch(triggers, shutdown))
    }

    async fn watch(self, triggers: Triggers, shutdown: Shutdown) {
        let Triggers { path, mut seen, mut hangup } = triggers;
        // A changed content read once: applied when the next read agrees.
        let mut pending: Option<Option<Vec<u8>>> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = next_hangup(&mut hangup) => {
                    seen = read(path.as_deref()).await;
                    pending = None;
                    let _logged = self.reload_now("SIGHUP");
                }
                _ = tick.tick(), if path.is_some() => {
                    let now = read(path.as_deref()).await;
                    if now == seen {
                        pending = None;
                    } else if pending.as_ref() == Some(&now) {
                        seen = now;
                        pending = None;
                        let _logged = self.reload_now("file change");
                    } else {
                        pending = Some(now);
                    }
                }
            }
        }
    }
}

/// The file's bytes; `None` when there is no file or it cannot be read (a reload then says why).
async fn read(path: Option<&std::path::Path>) -> Option<Vec<u8>> {
    tokio::fs::read(path?).await.ok()
}

/// The changed keys between `old` and `new` that concern this process, split into live and
/// restart-only ones.
fn classify(old: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>, services: &[Running]) -> Outcome {
    let globals = config::keys_of("", &GlobalConfig::default());
    let mut outcome = Outcome::default();
    let changed = old.keys().chain(new.keys()).filter(|key| old.get(*key) != new.get(*key));
    let mut changed: Vec<&String> = changed.collect();
    changed.sort();
    changed.dedup();
    for key in changed {
        let live = if globals.contains(key) {
            Some(LIVE_GLOBAL_KEYS.contains(&key.as_str()))
        } else {
            // A key under a service of this process: live there, or not (another process's: none).
            services.iter().find_map(|running| running.classify(key))
        };
        match live {
            Some(true) => outcome.applied.push(key.clone()),
            Some(false) => outcome.restart.push(key.clone()),
            None => {}
        }
    }
    outcome
}

/// What makes a [`Reloader`] reload: SIGHUP, and a change of the file at `path` from what it held
/// when these triggers were made (make them before the settings are loaded, so no change is missed).
#[derive(Debug)]
pub struct Triggers {
    path: Option<PathBuf>,
    seen: Option<Vec<u8>>,
    hangup: Option<Hangup>,
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = std::convert::Infallible;

impl Triggers {
    /// SIGHUP (from now on it no longer ends the process) and changes of the file at `path`.
    pub fn new(path: Option<PathBuf>) -> Self {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; settings reload on file changes only");
                None
            }
        };
        #[cfg(not(unix))]
        let hangup = None;
        Self { seen: path.as_ref().and_then(|path| std::fs::read(path).ok()), path, hangup }
    }

    /// Changes of the file at `path` only (tests: a signal reaches the whole process).
    pub fn file(path: PathBuf) -> Self {
        Self { seen: std::fs::read(&path).ok(), path: Some(path), hangup: None }
    }
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(hangup: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(signal) = hangup
        && signal.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests;
