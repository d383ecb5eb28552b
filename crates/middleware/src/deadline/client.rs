use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, Request};
use metrics::Label;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{BUDGET_HEADER, GRPC_TIMEOUT, budget, header_name};
use crate::metric_handles::LazyCounter;
use crate::metric_names::{LABEL_KIND, LABEL_NAME, TIMEOUTS};
use crate::timeout::future::ClientDeadlineFuture;
use crate::{BoxError, Deadline, InvalidConfig};

/// Writes the remaining budget of a request's [`Deadline`] on outgoing calls, and fails calls whose
/// deadline has passed with [`DeadlineExceeded`](crate::timeout::error::DeadlineExceeded) without sending them.
///
/// See the [module docs](super) for the formats and the recommended order.
#[derive(Clone, Debug)]
pub struct ClientDeadlineLayer {
    shared: Arc<ClientShared>,
}

/// Less than this left fails locally with `DeadlineExceeded` instead of being sent.
const MIN_BUDGET: Duration = Duration::from_millis(1);

struct ClientShared {
    header: HeaderName,
    grpc_timeout: bool,
    write_headers: bool,
    default_budget: Option<Duration>,
    name: Cow<'static, str>,
    expired: LazyCounter,
}

impl fmt::Debug for ClientShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientShared")
            .field("header", &self.header)
            .field("grpc_timeout", &self.grpc_timeout)
            .field("write_headers", &self.write_headers)
            .field("default_budget", &self.default_budget)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientDeadlineLayer {
    /// Writes [`BUDGET_HEADER`] (not `grpc-timeout`), sets no default deadline, and is named
    /// `"default"`.
    pub fn new() -> Self {
        Self::builder().build().expect("the default settings are valid")
    }

    /// A builder, starting from the settings of [`ClientDeadlineLayer::new`].
    pub fn builder() -> ClientDeadlineBuilder {
        ClientDeadlineBuilder {
            header: Ok(HeaderName::from_static(BUDGET_HEADER)),
            grpc_timeout: false,
            write_headers: true,
            default_budget: None,
            name: Cow::Borrowed("default"),
        }
    }
}

impl Default for ClientDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ClientDeadlineLayer {
    type Service = ClientDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientDeadline { inner, shared: Arc::clone(&self.shared) }
    }
}

/// Builds a [`ClientDeadlineLayer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientDeadlineBuilder {
    header: Result<HeaderName, InvalidConfig>,
    grpc_timeout: bool,
    write_headers: bool,
    default_budget: Option<Duration>,
    name: Cow<'static, str>,
}

impl ClientDeadlineBuilder {
    /// The header to write the budget to, in milliseconds (default [`BUDGET_HEADER`]). An invalid
    /// name makes [`build`](Self::build) fail.
    pub fn header(mut self, name: &str) -> Self {
        self.header = header_name(name);
        self
    }

    /// Whether to write the gRPC `grpc-timeout` header too (default `false`).
    pub fn grpc_timeout(mut self, enabled: bool) -> Self {
        self.grpc_timeout = enabled;
        self
    }

    /// Whether to write the budget headers at all (default `true`). A total-deadline layer outside a
    /// retry layer sets `false`: it only gives calls their [`Deadline`] and fails expired ones, and the
    /// layer inside the retry writes what remains on each attempt, so the header is not written twice.
    pub fn write_headers(mut self, enabled: bool) -> Self {
        self.write_headers = enabled;
        self
    }

    /// Gives calls without a [`Deadline`] one `budget` from now (default: none; such calls are sent
    /// without a budget header).
    pub fn default_budget(mut self, budget: Duration) -> Self {
        self.default_budget = Some(budget);
        self
    }

    /// The `name` label of this layer's metrics (default `"default"`), e.g. the downstream's name.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the layer, resolving its metric handle once.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when the header name is invalid or `default_budget` is zero.
    pub fn build(self) -> Result<ClientDeadlineLayer, InvalidConfig> {
        let header = self.header?;
        if self.default_budget.is_some_and(|d| d.is_zero()) {
            return Err(InvalidConfig::new("default_budget", "must be greater than zero"));
        }
        let labels = vec![Label::new(LABEL_NAME, self.name.clone()), Label::new(LABEL_KIND, "deadline")];
        let expired = LazyCounter::new(TIMEOUTS, labels);
        let shared = ClientShared {
            header,
            grpc_timeout: self.grpc_timeout,
            write_headers: self.write_headers,
            default_budget: self.default_budget,
            name: self.name,
            expired,
        };
        Ok(ClientDeadlineLayer { shared: Arc::new(shared) })
    }
}

/// The service made by [`ClientDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct ClientDeadline<S> {
    inner: S,
    shared: Arc<ClientShared>,
}

inner_accessors!(ClientDeadline);

impl<S, B> Service<Request<B>> for ClientDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClientDeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        // A request without a deadline of its own gets the current one: the deadline of the request
        // being handled (docs of `crate::deadline`), with no code in the handler.
        let own = Deadline::of(&req).or_else(|| Deadline::current().map(|current| current.apply(&mut req)));
        let remaining = match (own, shared.default_budget) {
            (Some(deadline), _) => deadline.remaining(),
            (None, Some(budget)) => {
                if let Some(at) = Instant::now().checked_add(budget) {
                    Deadline::at(at).apply(&mut req);
                }
                budget
            }
            (None, None) => return ClientDeadlineFuture::called(self.inner.call(req)),
        };
        // Under a millisecond is `x-request-timeout-ms: 0` on the wire: the call could not succeed.
        if remaining < MIN_BUDGET {
            shared.expired.get().increment(1);
            tracing::debug!(name = %shared.name, "deadline passed before sending the call");
            return ClientDeadlineFuture::expired();
        }
        if shared.write_headers {
            // Header values own their bytes: one small allocation per call that carries a deadline.
            let headers = req.headers_mut();
            headers.insert(&shared.header, budget::format_millis(remaining));
            if shared.grpc_timeout {
                headers.insert(GRPC_TIMEOUT, budget::format_grpc(remaining));
            }
        }
        ClientDeadlineFuture::called(self.inner.call(req))
    }
}
