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
//! | [server deadline](crate::timeout::ServerDeadlineLayer) | stores the caller's budget before the timeout reads it |
//! | [timeout](crate::timeout::TimeoutLayer) | the server's own limit, clamped to the caller's deadline |
//! | [circuit breaker](crate::circuit_breaker) | innermost: sheds load while the handlers keep failing, and counts timeouts as their failures |
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
//! let breaker = stack.breaker();
//! let app = Router::new().route("/v1/items/{id}", get(|| async { "item" })).layer(stack);
//!
//! let res = app.clone().oneshot(http::Request::get("/v1/items/1").body(axum::body::Body::empty())?).await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers().contains_key("traceparent"));
//!
//! breaker.force_open(); // an operator sheds load: answered at once with problem+json
//! let res = app.oneshot(http::Request::get("/v1/items/1").body(axum::body::Body::empty())?).await?;
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::time::Duration;

use tower::Layer;

use crate::InvalidConfig;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer};
use crate::metrics::{ClientMetricsLayer, DefaultRoute, Metrics, ServerMetricsLayer};
use crate::problem::{ProblemLayer, Problems};
use crate::retry::{Retry, RetryLayer};
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

/// The server preset: trace → metrics → problem → deadline → timeout → breaker (see the
/// [module docs](self)). Apply it with `Router::layer` so metrics and spans see the route template.
///
/// One breaker is shared by every route and clone the stack wraps.
#[derive(Clone, Debug)]
pub struct ServerStack {
    trace: ServerTraceLayer,
    metrics: ServerMetricsLayer,
    deadline: ServerDeadlineLayer,
    timeout: TimeoutLayer,
    breaker: CircuitBreakerLayer,
}

impl ServerStack {
    /// A builder with every default.
    pub fn builder() -> ServerStackBuilder {
        ServerStackBuilder {
            name: Cow::Borrowed("server"),
            timeout: DEFAULT_SERVER_TIMEOUT,
            trace: ServerTraceLayer::new(),
            metrics: ServerMetricsLayer::new(),
            deadline: ServerDeadlineLayer::new(),
            breaker: None,
        }
    }

    /// The handle of the stack's circuit breaker (read state, force open, reset).
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }
}

/// The service made by [`ServerStack`].
pub type ServerStackService<S> =
    ServerTrace<Metrics<Problems<ServerDeadline<Timeout<CircuitBreaker<S>>>>, DefaultRoute>>;

impl<S> Layer<S> for ServerStack {
    type Service = ServerStackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.breaker.layer(inner);
        let inner = self.timeout.layer(inner);
        let inner = self.deadline.layer(inner);
        let inner = ProblemLayer::new().layer(inner);
        let inner = self.metrics.layer(inner);
        self.trace.layer(inner)
    }
}

/// Configures a [`ServerStack`].
#[derive(Debug)]
pub struct ServerStackBuilder {
    name: Cow<'static, str>,
    timeout: Duration,
    trace: ServerTraceLayer,
    metrics: ServerMetricsLayer,
    deadline: ServerDeadlineLayer,
    breaker: Option<CircuitBreakerLayer>,
}

impl ServerStackBuilder {
    /// The name of the timeout and default breaker, used as their metrics' `name` label
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

    /// The trace layer (default [`ServerTraceLayer::new`]: span at `INFO`, `traceparent` echoed).
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

    /// The circuit breaker (default: [`CircuitBreakerLayer::builder`]'s defaults, named after the stack).
    pub fn breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Builds the stack; fails on a zero timeout.
    pub fn build(self) -> Result<ServerStack, InvalidConfig> {
        let timeout = TimeoutLayer::builder(self.timeout).name(self.name.clone()).build()?;
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreakerLayer::builder().name(self.name.into_owned()).build()?,
        };
        Ok(ServerStack {
            trace: self.trace,
            metrics: self.metrics,
            deadline: self.deadline,
            timeout,
            breaker,
        })
    }
}

/// The client preset for calls to one downstream: total deadline → retry → breaker → trace → metrics
/// → attempt deadline → per-attempt timeout (see the [module docs](self)).
///
/// The inner service receives `Request<`[`RetryBody<B>`](crate::retry::RetryBody)`>`.
#[derive(Clone, Debug)]
pub struct ClientStack {
    total: ClientDeadlineLayer,
    retry: RetryLayer,
    breaker: CircuitBreakerLayer,
    trace: ClientTraceLayer,
    metrics: ClientMetricsLayer,
    attempt_deadline: ClientDeadlineLayer,
    attempt_timeout: TimeoutLayer,
}

impl ClientStack {
    /// A builder for calls to `peer` (the downstream's name: the `server_address` metric label and the
    /// name of its retry, breaker and timeout).
    pub fn builder(peer: impl Into<Cow<'static, str>>) -> ClientStackBuilder {
        ClientStackBuilder {
            peer: peer.into(),
            total_budget: DEFAULT_CLIENT_BUDGET,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            retry: None,
            breaker: None,
            trace: ClientTraceLayer::new(),
        }
    }

    /// The handle of the downstream's circuit breaker.
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }
}

/// The service made by [`ClientStack`].
pub type ClientStackService<S> =
    ClientDeadline<Retry<CircuitBreaker<ClientTrace<Metrics<ClientDeadline<Timeout<S>>, ()>>>>>;

impl<S> Layer<S> for ClientStack {
    type Service = ClientStackService<S>;

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

/// Configures a [`ClientStack`].
#[derive(Debug)]
pub struct ClientStackBuilder {
    peer: Cow<'static, str>,
    total_budget: Duration,
    attempt_timeout: Duration,
    retry: Option<RetryLayer>,
    breaker: Option<CircuitBreakerLayer>,
    trace: ClientTraceLayer,
}

impl ClientStackBuilder {
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

    /// The retry layer (default: [`RetryLayer::builder`]'s defaults, named after the peer).
    pub fn retry(mut self, retry: RetryLayer) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The circuit breaker (default: [`CircuitBreakerLayer::builder`]'s defaults, named after the peer).
    pub fn breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The trace layer (default [`ClientTraceLayer::new`]).
    pub fn trace(mut self, trace: ClientTraceLayer) -> Self {
        self.trace = trace;
        self
    }

    /// Builds the stack; fails on a zero budget or timeout.
    pub fn build(self) -> Result<ClientStack, InvalidConfig> {
        let peer = self.peer;
        // The total deadline only sets the deadline; the attempt layer writes what remains, per attempt.
        let total = ClientDeadlineLayer::builder()
            .default_budget(self.total_budget)
            .write_headers(false)
            .name(peer.clone())
            .build()?;
        let attempt_deadline = ClientDeadlineLayer::builder().name(peer.clone()).build()?;
        let attempt_timeout = TimeoutLayer::builder(self.attempt_timeout).name(peer.clone()).build()?;
        let retry = match self.retry {
            Some(retry) => retry,
            None => RetryLayer::builder().name(peer.clone().into_owned()).build()?,
        };
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreakerLayer::builder().name(peer.clone().into_owned()).build()?,
        };
        Ok(ClientStack {
            total,
            retry,
            breaker,
            trace: self.trace,
            metrics: ClientMetricsLayer::new(peer),
            attempt_deadline,
            attempt_timeout,
        })
    }
}
