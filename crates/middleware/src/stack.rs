//! Presets: every layer, composed in the recommended order, for a server and for a client.
//!
//! Each layer is also usable on its own with [`tower::ServiceBuilder`]; the presets only fix the order,
//! which matters:
//!
//! **Server** ([`ServerStack`], outermost first):
//!
//! | layer | why here |
//! |---|---|
//! | [trace](crate::trace) | first, so every log line below (and the problem documents) carry the `trace_id` |
//! | [metrics](crate::metrics) | outside the error mapping, so it records the status the client really got (503, 504) |
//! | [problem](crate::problem) | turns every layer error below into problem+json: the stack is `Infallible` for axum |
//! | [load shedding](crate::load_shed) | refuses what is over the limit of requests in flight before any work is done |
//! | [server deadline](crate::timeout::ServerDeadlineLayer) | stores the caller's budget before the timeout reads it, and makes it current for the handler's outgoing calls |
//! | per-route breaker (optional, off by default) | one breaker per route template, outside the timeout so a hanging handler counts; [`ServerClassifier`]: no 4xx and no caller deadline is a failure |
//! | [timeout](crate::timeout::TimeoutLayer) | innermost: the server's own limit, clamped to the caller's deadline |
//!
//! The server preset has **no error-rate circuit breaker** by default (see `docs/decisions/008`): what protects
//! a server is the limit on requests in flight, which nothing a client sends can trip. A `429` from
//! the service's own rate limiter, a `4xx` or a caller's expired deadline never makes the service
//! refuse other clients. Error-rate breakers belong to the *client* side, one per downstream.
//!
//! Keep operational routes (`/livez`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`) outside the
//! stack: add them to the `Router` *after* `.layer(stack)`, so axum does not wrap them, and a probe
//! answers while the API sheds load.
//!
//! **Client** ([`ClientStack`], outermost first):
//!
//! | layer | why here |
//! |---|---|
//! | [total deadline](crate::timeout::ClientDeadlineLayer) | one budget for the call and all its retries (a default one when the caller set none); writes no header |
//! | [retry](crate::retry) | outside the breaker, so an open circuit is answered at once instead of being retried into |
//! | [circuit breaker](crate::circuit_breaker) | sees every attempt, so a failing downstream trips it quickly |
//! | [trace](crate::trace) | inside retry: each attempt is its own client span, child of the current server span |
//! | [metrics](crate::metrics) | one `http_client_request_duration_seconds` sample per attempt actually sent |
//! | [attempt deadline](crate::timeout::ClientDeadlineLayer) | writes the *remaining* budget on each attempt |
//! | [per-attempt timeout](crate::timeout::TimeoutLayer) | innermost: bounds one attempt, clamped to the deadline |
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use palisade::stack::ServerStack;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let stack = ServerStack::builder().name("catalog").timeout(Duration::from_secs(5)).build()?;
//! let app = Router::new()
//!     .route("/v1/items/{id}", get(|| async { "item" }))
//!     .route("/v1/login", get(|| async { (http::StatusCode::TOO_MANY_REQUESTS, "slow down") }))
//!     .layer(stack)
//!     .route("/livez", get(|| async { "pass" })); // after the layer: never shed
//!
//! let get = |uri| http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
//! let res = app.clone().oneshot(get("/v1/items/1")).await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers().contains_key("traceparent"));
//!
//! // However many 429s the service answers, nothing trips: other routes and probes keep working.
//! for _ in 0..200 {
//!     assert_eq!(app.clone().oneshot(get("/v1/login")).await?.status(), 429);
//! }
//! assert_eq!(app.clone().oneshot(get("/v1/items/1")).await?.status(), 200);
//! assert_eq!(app.oneshot(get("/livez")).await?.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::time::Duration;

use tower::Layer;
use tower::util::Either;

use crate::DefaultClassifier;
use crate::InvalidConfig;
use crate::circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, CircuitBreakerRegistry, KeyFn,
    KeyedCircuitBreaker, KeyedCircuitBreakerLayer,
};
use crate::classify::ServerClassifier;
use crate::load_shed::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_RETRY_AFTER, LoadShed, LoadShedLayer};
use crate::metrics::{ClientMetricsLayer, DefaultRoute, Metrics, ServerMetricsLayer};
use crate::problem::{ProblemLayer, Problems};
use crate::retry::{DefaultPolicy, Retry, RetryLayer};
use crate::timeout::{
    ClientDeadline, ClientDeadlineLayer, ServerDeadline, ServerDeadlineLayer, Timeout, TimeoutLayer,
};
use crate::trace::{ClientTrace, ClientTraceLayer, ServerTrace, ServerTraceLayer};

/// Default server timeout.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total budget of a client call (including retries) made without a deadline.
pub const DEFAULT_CLIENT_BUDGET: Duration = Duration::from_secs(10);
/// Default timeout of one client attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// The server preset: trace → metrics → problem → load shedding → deadline → timeout (see the
/// [module docs](self)). Apply it with `Router::layer` so metrics and spans see the route template.
///
/// One limit of requests in flight is shared by every route and clone the stack wraps.
#[derive(Clone, Debug)]
pub struct ServerStack {
    trace: ServerTraceLayer,
    metrics: ServerMetricsLayer,
    load_shed: LoadShedLayer,
    deadline: ServerDeadlineLayer,
    route_breaker: Option<KeyedCircuitBreakerLayer<RouteTemplate, ServerClassifier>>,
    timeout: TimeoutLayer,
}

/// The key of the optional per-route breaker: the axum route template (`MatchedPath`); no key, and
/// so no breaker, without the `axum` feature or for an unmatched request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteTemplate;

impl<B> KeyFn<http::Request<B>> for RouteTemplate {
    #[inline]
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<&'a str> {
        #[cfg(feature = "axum")]
        return req.extensions().get::<axum::extract::MatchedPath>().map(axum::extract::MatchedPath::as_str);
        #[cfg(not(feature = "axum"))]
        {
            let _ = req;
            None
        }
    }
}

impl ServerStack {
    /// A builder with every default.
    pub fn builder() -> ServerStackBuilder {
        ServerStackBuilder {
            name: Cow::Borrowed("server"),
            timeout: DEFAULT_SERVER_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry_after: DEFAULT_RETRY_AFTER,
            // No span per request: log lines get `trace_id` from `trace::fmt` (docs/decisions/008).
            trace: ServerTraceLayer::new().with_span(false),
            metrics: ServerMetricsLayer::new(),
            deadline: ServerDeadlineLayer::new(),
            route_breaker: None,
        }
    }

    /// The stack's load shedder (requests in flight, limit).
    pub fn load_shed(&self) -> &LoadShedLayer {
        &self.load_shed
    }

    /// The per-route breakers' registry (handles by route template), when they are on.
    pub fn route_breakers(&self) -> Option<&CircuitBreakerRegistry<ServerClassifier>> {
        self.route_breaker.as_ref().map(KeyedCircuitBreakerLayer::registry)
    }
}

/// The service made by [`ServerStack`].
pub type ServerStackService<S> = ServerTrace<
    Metrics<
        Problems<
            LoadShed<
                ServerDeadline<
                    Either<KeyedCircuitBreaker<Timeout<S>, RouteTemplate, ServerClassifier>, Timeout<S>>,
                >,
            >,
        >,
        DefaultRoute,
    >,
>;

impl<S> Layer<S> for ServerStack {
    type Service = ServerStackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.timeout.layer(inner);
        let inner = match &self.route_breaker {
            Some(breaker) => Either::Left(breaker.layer(inner)),
            None => Either::Right(inner),
        };
        let inner = self.deadline.layer(inner);
        let inner = self.load_shed.layer(inner);
        let inner = ProblemLayer::new().layer(inner);
        let inner = self.metrics.layer(inner);
        self.trace.layer(inner)
    }
}

/// Configures a [`ServerStack`]. Setters never fail; [`build`](Self::build) checks the values.
#[derive(Debug)]
pub struct ServerStackBuilder {
    name: Cow<'static, str>,
    timeout: Duration,
    max_in_flight: usize,
    retry_after: Duration,
    trace: ServerTraceLayer,
    metrics: ServerMetricsLayer,
    deadline: ServerDeadlineLayer,
    route_breaker: Option<crate::circuit_breaker::CircuitBreakerBuilder<ServerClassifier>>,
}

impl ServerStackBuilder {
    /// The name of the timeout and load shedder, used as their metrics' `name` label
    /// (default `"server"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The server's own timeout for a request, clamped to the caller's deadline
    /// (default [`DEFAULT_SERVER_TIMEOUT`], 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many requests may be in flight at once; more are refused with `503` and a jittered
    /// `Retry-After` (default [`DEFAULT_MAX_IN_FLIGHT`]).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The base of the `Retry-After` a refused request gets, jittered up to twice this
    /// (default [`DEFAULT_RETRY_AFTER`], 1 s).
    pub fn retry_after(mut self, base: Duration) -> Self {
        self.retry_after = base;
        self
    }

    /// The trace layer (default: [`ServerTraceLayer::new`] without its `http_request` span, so log
    /// lines carry `trace_id` through [`trace::fmt`](crate::trace) (feature `fmt`) rather than a span
    /// field; pass `ServerTraceLayer::new()` for the span, e.g. for OpenTelemetry export).
    pub fn trace(mut self, trace: ServerTraceLayer) -> Self {
        self.trace = trace;
        self
    }

    /// The metrics layer (default [`ServerMetricsLayer::new`]).
    pub fn metrics(mut self, metrics: ServerMetricsLayer) -> Self {
        self.metrics = metrics;
        self
    }

    /// The deadline extraction (default [`ServerDeadlineLayer::new`]: `x-request-timeout-ms` and
    /// `grpc-timeout`).
    pub fn deadline(mut self, deadline: ServerDeadlineLayer) -> Self {
        self.deadline = deadline;
        self
    }

    /// Adds one circuit breaker per route template (off by default; see the [module docs](self)),
    /// configured by `breaker` (e.g. `CircuitBreakerLayer::builder().failure_rate_threshold(0.5)`).
    /// It counts with [`ServerClassifier`] whatever classifier `breaker` had: only 5xx and errors
    /// (a timed-out handler included) are failures, never a 4xx, a `429` or the caller's deadline.
    #[cfg(feature = "axum")]
    pub fn route_breaker<C>(mut self, breaker: crate::circuit_breaker::CircuitBreakerBuilder<C>) -> Self {
        self.route_breaker = Some(breaker.classifier(ServerClassifier));
        self
    }

    /// Builds the stack; fails on a zero timeout or a zero `max_in_flight`.
    pub fn build(self) -> Result<ServerStack, InvalidConfig> {
        let timeout = TimeoutLayer::builder(self.timeout).name(self.name.clone()).build()?;
        let load_shed = LoadShedLayer::builder()
            .name(self.name)
            .max_in_flight(self.max_in_flight)
            .retry_after(self.retry_after)
            .build()?;
        let route_breaker = match self.route_breaker {
            Some(builder) => Some(builder.build_registry()?.keyed_layer(RouteTemplate)),
            None => None,
        };
        Ok(ServerStack {
            trace: self.trace,
            metrics: self.metrics,
            load_shed,
            deadline: self.deadline,
            route_breaker,
            timeout,
        })
    }
}

/// The client preset for calls to one downstream: total deadline → retry → breaker → trace → metrics
/// → attempt deadline → per-attempt timeout (see the [module docs](self)).
///
/// The inner service receives `Request<`[`RetryBody<B>`](crate::retry::RetryBody)`>`.
#[derive(Clone, Debug)]
pub struct ClientStack<P = DefaultPolicy, M = DefaultClassifier> {
    total: ClientDeadlineLayer,
    retry: RetryLayer<P>,
    breaker: CircuitBreakerLayer<M>,
    trace: ClientTraceLayer,
    metrics: ClientMetricsLayer,
    attempt_deadline: ClientDeadlineLayer,
    attempt_timeout: TimeoutLayer,
}

impl ClientStack {
    /// A builder for calls to `peer` (the downstream's name: the `server_address` metric label and the
    /// name of its retry, breaker and timeout).
    pub fn builder(peer: impl Into<Cow<'static, str>>) -> ClientStackBuilder {
        let peer = peer.into();
        ClientStackBuilder {
            retry: RetryLayer::builder().name(peer.clone().into_owned()).build(),
            breaker: CircuitBreakerLayer::builder().name(peer.clone().into_owned()).build(),
            peer,
            total_budget: DEFAULT_CLIENT_BUDGET,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            deadline_header: None,
            trace: ClientTraceLayer::new(),
        }
    }
}

impl<P, M> ClientStack<P, M> {
    /// The handle of the downstream's circuit breaker.
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }
}

/// The service made by [`ClientStack`] (`P`: the retry policy, `M`: the breaker's classifier).
pub type ClientStackService<S, P = DefaultPolicy, M = DefaultClassifier> =
    ClientDeadline<Retry<CircuitBreaker<ClientTrace<Metrics<ClientDeadline<Timeout<S>>, ()>>, M>, P>>;

impl<S, P: Clone, M> Layer<S> for ClientStack<P, M> {
    type Service = ClientStackService<S, P, M>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.attempt_timeout.layer(inner);
        let inner = self.attempt_deadline.layer(inner);
        let inner = self.metrics.layer(inner);
        let inner = self.trace.layer(inner);
        let inner = self.breaker.layer(inner);
        let inner = self.retry.layer(inner);
        self.total.layer(inner)
    }
}

/// Configures a [`ClientStack`]. Setters never fail; [`build`](Self::build) reports invalid settings.
#[derive(Debug)]
pub struct ClientStackBuilder<P = DefaultPolicy, M = DefaultClassifier> {
    peer: Cow<'static, str>,
    total_budget: Duration,
    attempt_timeout: Duration,
    retry: Result<RetryLayer<P>, InvalidConfig>,
    breaker: Result<CircuitBreakerLayer<M>, InvalidConfig>,
    deadline_header: Option<String>,
    trace: ClientTraceLayer,
}

impl<P, M> ClientStackBuilder<P, M> {
    /// The budget of a call made without a [`Deadline`](crate::Deadline), retries included
    /// (default [`DEFAULT_CLIENT_BUDGET`], 10 s). A call that carries a deadline keeps it.
    pub fn total_budget(mut self, budget: Duration) -> Self {
        self.total_budget = budget;
        self
    }

    /// The timeout of one attempt (default [`DEFAULT_ATTEMPT_TIMEOUT`], 2 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The header the remaining budget is written in, to match the downstream's
    /// [`ServerDeadlineBuilder::header`](crate::timeout::ServerDeadlineBuilder::header) (default
    /// `x-request-timeout-ms`). An invalid name is reported by [`build`](Self::build).
    pub fn deadline_header(mut self, name: &str) -> Self {
        self.deadline_header = Some(name.to_owned());
        self
    }

    /// The retry layer, with any policy (default: [`RetryLayer::builder`]'s defaults, named after the
    /// peer).
    pub fn retry<P2>(self, retry: RetryLayer<P2>) -> ClientStackBuilder<P2, M> {
        ClientStackBuilder {
            peer: self.peer,
            total_budget: self.total_budget,
            attempt_timeout: self.attempt_timeout,
            retry: Ok(retry),
            breaker: self.breaker,
            deadline_header: self.deadline_header,
            trace: self.trace,
        }
    }

    /// The circuit breaker, with any classifier (default: [`CircuitBreakerLayer::builder`]'s
    /// defaults, named after the peer).
    pub fn breaker<M2>(self, breaker: CircuitBreakerLayer<M2>) -> ClientStackBuilder<P, M2> {
        ClientStackBuilder {
            peer: self.peer,
            total_budget: self.total_budget,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            breaker: Ok(breaker),
            deadline_header: self.deadline_header,
            trace: self.trace,
        }
    }

    /// The trace layer (default [`ClientTraceLayer::new`]).
    pub fn trace(mut self, trace: ClientTraceLayer) -> Self {
        self.trace = trace;
        self
    }

    /// Builds the stack; fails on a zero budget or timeout, or an invalid header name.
    pub fn build(self) -> Result<ClientStack<P, M>, InvalidConfig> {
        let peer = self.peer;
        // The total deadline only sets the deadline; the attempt layer writes what remains, per attempt.
        let total = ClientDeadlineLayer::builder()
            .default_budget(self.total_budget)
            .write_headers(false)
            .name(peer.clone())
            .build()?;
        let mut attempt_deadline = ClientDeadlineLayer::builder().name(peer.clone());
        if let Some(header) = &self.deadline_header {
            attempt_deadline = attempt_deadline.header(header);
        }
        let attempt_deadline = attempt_deadline.build()?;
        let attempt_timeout = TimeoutLayer::builder(self.attempt_timeout).name(peer.clone()).build()?;
        Ok(ClientStack {
            total,
            retry: self.retry?,
            breaker: self.breaker?,
            trace: self.trace,
            metrics: ClientMetricsLayer::new(peer),
            attempt_deadline,
            attempt_timeout,
        })
    }
}
