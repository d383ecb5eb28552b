use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, Request};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::Scoped;
use super::{BUDGET_HEADER, GRPC_TIMEOUT, budget, header_name};
use crate::{Deadline, InvalidConfig};

/// Reads the caller's remaining budget from request headers and stores it as a [`Deadline`] in the
/// request's extensions.
///
/// Never fails a request: malformed values are ignored (logged at `debug`). See the
/// [module docs](super) for the formats and the recommended order.
#[derive(Clone, Debug)]
pub struct ServerDeadlineLayer {
    config: Arc<ServerConfig>,
}

#[derive(Debug)]
struct ServerConfig {
    header: HeaderName,
    grpc_timeout: bool,
    max_budget: Option<Duration>,
    default_budget: Option<Duration>,
}

impl ServerDeadlineLayer {
    /// Reads [`BUDGET_HEADER`] and `grpc-timeout`, with no maximum and no default budget.
    pub fn new() -> Self {
        Self::builder().build().expect("the default settings are valid")
    }

    /// A builder, starting from the settings of [`ServerDeadlineLayer::new`].
    pub fn builder() -> ServerDeadlineBuilder {
        ServerDeadlineBuilder {
            header: Ok(HeaderName::from_static(BUDGET_HEADER)),
            grpc_timeout: true,
            max_budget: None,
            default_budget: None,
        }
    }
}

impl Default for ServerDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline { inner, config: Arc::clone(&self.config) }
    }
}

/// Builds a [`ServerDeadlineLayer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerDeadlineBuilder {
    header: Result<HeaderName, InvalidConfig>,
    grpc_timeout: bool,
    max_budget: Option<Duration>,
    default_budget: Option<Duration>,
}

impl ServerDeadlineBuilder {
    /// The header carrying the budget in milliseconds (default [`BUDGET_HEADER`]). An invalid name
    /// makes [`build`](Self::build) fail.
    pub fn header(mut self, name: &str) -> Self {
        self.header = header_name(name);
        self
    }

    /// Whether to read the gRPC `grpc-timeout` header too (default `true`). When both headers are
    /// present, the smaller budget wins.
    pub fn grpc_timeout(mut self, enabled: bool) -> Self {
        self.grpc_timeout = enabled;
        self
    }

    /// Clamps every caller's budget to at most `max` (default: no maximum), so a caller cannot make
    /// this server work longer than it wants to.
    pub fn max_budget(mut self, max: Duration) -> Self {
        self.max_budget = Some(max);
        self
    }

    /// Gives requests without a budget header a deadline `budget` after arrival (default: none), so
    /// that calls made while handling them carry a deadline too.
    pub fn default_budget(mut self, budget: Duration) -> Self {
        self.default_budget = Some(budget);
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when the header name is invalid, or `max_budget` or `default_budget` is zero.
    pub fn build(self) -> Result<ServerDeadlineLayer, InvalidConfig> {
        let header = self.header?;
        if self.max_budget.is_some_and(|d| d.is_zero()) {
            return Err(InvalidConfig::new("max_budget", "must be greater than zero"));
        }
        if self.default_budget.is_some_and(|d| d.is_zero()) {
            return Err(InvalidConfig::new("default_budget", "must be greater than zero"));
        }
        let config = ServerConfig {
            header,
            grpc_timeout: self.grpc_timeout,
            max_budget: self.max_budget,
            default_budget: self.default_budget,
        };
        Ok(ServerDeadlineLayer { config: Arc::new(config) })
    }
}

impl ServerConfig {
    /// The smallest well-formed budget among the configured headers.
    fn budget_of(&self, headers: &HeaderMap) -> Option<Duration> {
        let mut budget = None;
        if let Some(value) = headers.get(&self.header) {
            budget = budget::parse_millis(value.as_bytes());
            if budget.is_none() {
                tracing::debug!(header = %self.header, ?value, "ignoring a malformed budget");
            }
        }
        if self.grpc_timeout
            && let Some(value) = headers.get(&GRPC_TIMEOUT)
        {
            if let Some(grpc) = budget::parse_grpc(value.as_bytes()) {
                budget = Some(budget.map_or(grpc, |millis: Duration| millis.min(grpc)));
            } else {
                tracing::debug!(header = "grpc-timeout", ?value, "ignoring a malformed budget");
            }
        }
        budget.or(self.default_budget)
    }

    fn extract<B>(&self, req: &mut Request<B>) {
        let Some(mut budget) = self.budget_of(req.headers()) else { return };
        if let Some(max) = self.max_budget {
            budget = budget.min(max);
        }
        // A budget too large for the clock is no limit at all.
        if let Some(at) = Instant::now().checked_add(budget) {
            Deadline::at(at).apply(req);
        }
    }
}

/// The service made by [`ServerDeadlineLayer`]. It passes the inner service's response and error
/// through unchanged.
#[derive(Clone, Debug)]
pub struct ServerDeadline<S> {
    inner: S,
    config: Arc<ServerConfig>,
}

inner_accessors!(ServerDeadline);

impl<S, B> Service<Request<B>> for ServerDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.config.extract(&mut req);
        // The handler's outgoing calls carry what is left of it with no code in the handler.
        let deadline = Deadline::of(&req);
        Deadline::scope(deadline, self.inner.call(req))
    }
}
