//! `/ops`: a live resilience page per service, the JSON behind it, and operator actions on breakers.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /ops` | anyone | one HTML page (HTML, CSS and JS in the binary; no CDN) polling `/ops/state` every second |
//! | `GET /ops/app.js`, `/ops/app.css` | anyone | its script and style, so the CSP can say `script-src 'self'` |
//! | `GET /ops/state` | anyone, like `/metrics` | breakers, per-route and per-downstream traffic, retries, outbox counts |
//! | `POST /ops/breakers/{name}/{action}` | admin token | `force-open`, `disable` or `reset` one breaker |
//!
//! The routes are operational: mounted beside `/metrics`, after the API's layers, so they are never
//! load-shed or timed out (an operator needs the page most when the API is drowning).
//!
//! **Which breakers.** Every [`Downstream`](crate::client::Downstream) built while
//! [`Service::app`](crate::service::Service::app) builds a service (its routes, its token check, its
//! outbox push) registers its breaker in that service's [`Breakers`], through a task-local scope
//! ([`Breakers::scope`]); with `shop all`, each service's page shows its own. A client built later,
//! on another task, is added with [`Breakers::add`]. Server-side per-route breakers, when the stack
//! has them, are listed too.
//!
//! **Numbers.** Traffic comes from the process's Prometheus recorder (the same series as `/metrics`,
//! cumulative); the page computes rates and percentiles from the snapshots of the last ten seconds.
//! In `shop all` the recorder is shared and server series carry no service label, so a route template
//! two services both serve (the kit's `/v1/admin/outbox/...`) shows their sum on both pages.
//!
//! **Lock-out guard.** The breaker of the revocation check (`users-tokens`) cannot be forced open
//! from here: every admin call, this one included, would then fail until a restart.

mod metrics;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{HeaderValue, header};
use metrics_exporter_prometheus::PrometheusHandle;
use palisade::ServerClassifier;
use palisade::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerRegistry};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

pub use self::metrics::{DownstreamTraffic, Recorded, RouteTraffic, ServerCounts, Traffic};
use crate::auth::{AdminUser, JwtKeys, TokenChecker};
use crate::error::{ApiError, ProblemContextLayer};
use crate::extract::Path;
use crate::outbox::Outbox;

/// The page's Content-Security-Policy: its own script, style and JSON only; no inline script, no
/// frame, no form posting anywhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The breaker that guards admin authentication itself (see the [module docs](self)).
pub(crate) const LOCKOUT_BREAKER: &str = "users-tokens";

const PAGE: &str = include_str!("ops/index.html");
const SCRIPT: &str = include_str!("ops/app.js");
const STYLE: &str = include_str!("ops/app.css");

tokio::task_local! {
    static SCOPE: Breakers;
}

/// The client-side breakers of one service, in the order they were added; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Breakers(Arc<Mutex<Vec<CircuitBreakerHandle>>>);

impl Breakers {
    /// Adds `handle`; a second breaker under a name already listed is ignored (clones of one
    /// client share theirs).
    pub fn add(&self, handle: CircuitBreakerHandle) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !list.iter().any(|known| known.name() == handle.name()) {
            list.push(handle);
        }
    }

    /// Puts `handle` in the place of the breaker of the same name (a reload replaced it), or adds
    /// it.
    pub fn replace(&self, handle: CircuitBreakerHandle) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match list.iter_mut().find(|known| known.name() == handle.name()) {
            Some(known) => *known = handle,
            None => list.push(handle),
        }
    }

    /// The handles, in the order added.
    pub fn handles(&self) -> Vec<CircuitBreakerHandle> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs `work` with `self` as the scope [`register`] adds to.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        SCOPE.scope(self, work).await
    }
}

/// Adds `handle` to the [`Breakers`] of the scope this runs in, if any (the kit's
/// [`Downstream::new`](crate::client::Downstream::new) calls it).
pub fn register(handle: &CircuitBreakerHandle) {
    let _outside_any_scope = SCOPE.try_with(|breakers| breakers.add(handle.clone()));
}

/// What one service's `/ops` shows.
#[derive(Clone, Debug)]
pub struct Ops {
    service: &'static str,
    breakers: Breakers,
    route_breakers: Option<CircuitBreakerRegistry<ServerClassifier>>,
    routes: BTreeSet<String>,
    outbox: Option<Outbox>,
}

impl Ops {
    /// The page of `service`, with no breaker, route or outbox yet.
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            breakers: Breakers::default(),
            route_breakers: None,
            routes: BTreeSet::new(),
            outbox: None,
        }
    }

    /// Shows `breakers` (the service's clients).
    #[must_use]
    pub fn with_breakers(mut self, breakers: Breakers) -> Self {
        self.breakers = breakers;
        self
    }

    /// Shows the outbox's backlog and dead events.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Shows only these route templates' traffic (the service's OpenAPI paths); none: every route.
    #[must_use]
    pub fn with_routes(mut self, routes: impl IntoIterator<Item = String>) -> Self {
        self.routes = routes.into_iter().collect();
        self
    }

    /// Shows the server stack's per-route breakers.
    #[must_use]
    pub(crate) fn with_route_breakers(
        mut self,
        registry: Option<CircuitBreakerRegistry<ServerClassifier>>,
    ) -> Self {
        self.route_breakers = registry;
        self
    }

    /// Every breaker: the clients', then the server's per-route ones.
    fn all_breakers(&self) -> Vec<(Side, CircuitBreakerHandle)> {
        let mut all: Vec<_> = self.breakers.handles().into_iter().map(|h| (Side::Client, h)).collect();
        if let Some(registry) = &self.route_breakers {
            all.extend(registry.handles().into_iter().map(|h| (Side::Server, h)));
        }
        all
    }

    fn find(&self, name: &str) -> Option<CircuitBreakerHandle> {
        self.all_breakers().into_iter().map(|(_, h)| h).find(|h| h.name() == name)
    }
}

/// Which side of the service a breaker guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Calls this service makes to a downstream.
    Client,
    /// Requests to one of this service's routes.
    Server,
}

/// One breaker as `/ops/state` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    /// Its name (the downstream, or the route template).
    pub name: String,
    /// Client or server side.
    pub side: Side,
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled` or `metrics_only`.
    pub state: &'static str,
    /// Calls in its window.
    pub calls: u64,
    /// Failed calls in its window.
    pub failures: u64,
    /// Slow calls in its window.
    pub slow_calls: u64,
    /// `failures / calls`.
    pub failure_rate: f64,
    /// `slow_calls / calls`.
    pub slow_call_rate: f64,
    /// Calls it failed fast so far.
    pub rejected_calls: u64,
    /// The actions `POST /ops/breakers/{name}/{action}` accepts for it.
    pub actions: Vec<&'static str>,
}

/// The outbox's counts, or why they are missing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutboxView {
    /// Events not delivered yet (not dead).
    pub backlog: Option<u64>,
    /// Events given up on.
    pub dead: Option<u64>,
    /// Why the counts could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `GET /ops/state`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpsState {
    /// The service.
    pub service: &'static str,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Every breaker.
    pub breakers: Vec<BreakerView>,
    /// Server side counts, per route and per downstream traffic.
    #[serde(flatten)]
    pub recorded: Recorded,
    /// The outbox, when the service has one.
    pub outbox: Option<OutboxView>,
}

fn actions(name: &str) -> Vec<&'static str> {
    if name == LOCKOUT_BREAKER {
        vec!["disable", "reset"]
    } else {
        Action::ALL.iter().map(|a| a.as_str()).collect()
    }
}

/// An operator action on a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    ForceOpen,
    Disable,
    Reset,
}

impl Action {
    const ALL: [Self; 3] = [Self::ForceOpen, Self::Disable, Self::Reset];

    const fn as_str(self) -> &'static str {
        match self {
            Self::ForceOpen => "force-open",
            Self::Disable => "disable",
            Self::Reset => "reset",
        }
    }

    fn apply(self, handle: &CircuitBreakerHandle) {
        match self {
            Self::ForceOpen => handle.force_open(),
            Self::Disable => handle.disable(),
            Self::Reset => handle.reset(),
        }
    }
}

#[derive(Clone)]
struct Shared {
    ops: Ops,
    prometheus: PrometheusHandle,
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let state = snapshot(&shared.ops, &shared.prometheus).await;
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(state)).into_response()
}

/// What `/ops/state` answers now.
async fn snapshot(ops: &Ops, prometheus: &PrometheusHandle) -> OpsState {
    let breakers = ops.all_breakers();
    let peers: BTreeSet<String> =
        breakers.iter().filter(|(side, _)| *side == Side::Client).map(|(_, h)| h.name().to_owned()).collect();
    let recorded = metrics::collect(&prometheus.render(), ops.service, &ops.routes, &peers);
    let breakers = breakers
        .into_iter()
        .map(|(side, handle)| {
            let snap = handle.snapshot();
            BreakerView {
                name: handle.name().to_owned(),
                side,
                state: snap.state.as_str(),
                calls: snap.calls,
                failures: snap.failures,
                slow_calls: snap.slow_calls,
                failure_rate: snap.failure_rate,
                slow_call_rate: snap.slow_call_rate,
                rejected_calls: recorded.rejected.get(handle.name()).copied().unwrap_or(0),
                actions: actions(handle.name()),
            }
        })
        .collect();
    let outbox = match &ops.outbox {
        None => None,
        Some(outbox) => Some(match outbox.counts().await {
            Ok((backlog, dead)) => OutboxView { backlog: Some(backlog), dead: Some(dead), error: None },
            Err(err) => OutboxView { backlog: None, dead: None, error: Some(err.to_string()) },
        }),
    };
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    OpsState { service: ops.service, time_ms, breakers, recorded, outbox }
}

async fn act(
    _admin: AdminUser,
    State(shared): State<Arc<Shared>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<BreakerView>, ApiError> {
    let action = Action::ALL.into_iter().find(|a| a.as_str() == action).ok_or_else(|| {
        ApiError::not_found(format!("no breaker action `{action}`: use force-open, disable or reset"))
    })?;
    let handle = shared
        .ops
        .find(&name)
        .ok_or_else(|| ApiError::not_found(format!("this service has no breaker `{name}`")))?;
    if action == Action::ForceOpen && name == LOCKOUT_BREAKER {
        return Err(ApiError::conflict(format!(
            "`{name}` checks admin tokens: forced open, it would refuse every admin call, this one included"
        )));
    }
    let before = handle.state();
    action.apply(&handle);
    tracing::warn!(breaker = %name, from = %before, to = %handle.state(), "breaker state set by an operator");
    let view = snapshot(&shared.ops, &shared.prometheus).await;
    view.breakers
        .into_iter()
        .find(|b| b.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("this service has no breaker `{name}`")))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The `/ops` routes of `ops` (see the [module docs](self)). `keys` and `token_checker` authenticate
/// the breaker actions, as on the API.
pub fn router(ops: Ops, keys: JwtKeys, token_checker: Option<TokenChecker>) -> Router {
    let shared = Arc::new(Shared { ops, prometheus: crate::telemetry::prometheus() });
    let actions = Router::new()
        .route("/ops/breakers/{name}/{action}", post(act))
        .layer(
            ServiceBuilder::new()
                .layer(Extension(keys))
                .option_layer(token_checker.map(Extension))
                .layer(ProblemContextLayer),
        )
        .with_state(Arc::clone(&shared));
    Router::new()
        .route("/ops", get(|| async { asset("text/html; charset=utf-8", PAGE) }))
        .route("/ops/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/ops/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/ops/state", get(state))
        .with_state(shared)
        .merge(actions)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

#[cfg(test)]
mod tests;
