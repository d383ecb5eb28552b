//! [`Downstream`]: a JSON client for one other service, behind the palisade client stack configured by
//! [`DownstreamConfig`] (deadline, retry, breaker, trace, metrics, per-attempt timeout).
//!
//! **The body is part of the attempt.** The stack's innermost service reads the response body to the
//! end, at most [`DownstreamConfig::max_response_bytes`], before it answers: a downstream that sends
//! its headers and then trickles (or never ends) its body is cut off by the per-attempt timeout and
//! the caller's deadline like one that never answers, and a retry or the breaker sees it; a body
//! over the limit is a failed call, not an allocation the downstream chooses.
//!
//! **Errors.** A non-2xx answer is [`ClientError::Status`]; its problem document, when it sent one,
//! is decoded by [`ClientError::problem`] (`type`, `title`, `detail`, `errors`), so a caller can tell
//! one business refusal from another (inventory's `insufficient-stock` from a taken order id). What a
//! caller does not handle becomes this service's answer by one mapping, [`Downstream::api_error`]:
//!
//! | downstream failure | this service answers |
//! |---|---|
//! | open circuit (the breaker fails fast) | 503 `downstream-unavailable`, `Retry-After` until the breaker probes |
//! | deadline passed, or the attempt timed out | 504 `downstream-timeout` |
//! | any non-2xx status (after retries) | 502 `downstream-error`, naming the service and its status |
//! | unreachable, reset, body too large, not the expected JSON | 502 `downstream-error` |
//!
//! **Unanswered attempts.** The stack retries inside one call, so the last attempt's failure does not
//! say everything: an attempt that timed out (or whose connection broke) after it was sent may have
//! been acted on, even when a later attempt found the breaker open or got a 5xx. An error after
//! such an attempt is [`ClientError::AfterUnanswered`]; a caller deciding whether something "certainly did not happen"
//! (orders before it undoes a charge) must treat it as unknown.
//!
//! Nothing of the downstream's body is copied into the answer (it may hold what the caller must not
//! see); the log line has it.
//!
//! **Reload.** A client's stack sits behind an atomic pointer: a reload of `downstreams.<peer>`
//! ([`crate::reload`]) builds a new one, which the next call uses; a call in flight finishes on the
//! one it started with. The breaker (and its state) and the retry layer (and its budget) are kept
//! unless their own settings changed; a new breaker starts closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::circuit_breaker::CircuitBreakerHandle;
use palisade::circuit_breaker::error::CircuitOpen;
use palisade::retry::RetryBody;
use palisade::stack::ClientStackService;
use palisade::timeout::error::{DeadlineExceeded, Elapsed};
use palisade::trace::TraceContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceExt};

use crate::BoxError;
use crate::config::DownstreamConfig;
use crate::error::ApiError;
use crate::service_auth::ServiceSigner;

mod live;

pub use self::live::{Clients, Prepared};
use self::live::{Live, register};

type Body = RetryBody<Full<Bytes>>;
type Http = ClientStackService<Collect>;

/// Why a downstream call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The downstream answered with a non-2xx status (body kept: see [`ClientError::problem`]).
    Status(StatusCode, Bytes),
    /// Transport error, timeout, deadline, open circuit or a body over the limit.
    Call(BoxError),
    /// The body was not the expected JSON.
    Decode(serde_json::Error),
    /// The call failed as the inner error says, and some attempt of it (an earlier one, or this
    /// last one) was sent without its whole answer coming back (it timed out, its connection broke,
    /// its body was cut off): the downstream may have acted on it.
    AfterUnanswered(Box<ClientError>),
}

/// A downstream's RFC 9457 problem document, as far as this client reads it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RemoteProblem {
    /// `type` (`about:blank` when absent).
    #[serde(rename = "type", default = "about_blank")]
    pub type_uri: String,
    /// `title`.
    #[serde(default)]
    pub title: String,
    /// `detail`.
    #[serde(default)]
    pub detail: Option<String>,
    /// The `errors` extension: one entry per field or line.
    #[serde(default)]
    pub errors: Vec<RemoteFieldError>,
}

/// One entry of a [`RemoteProblem`]'s `errors`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RemoteFieldError {
    /// JSON pointer or name.
    #[serde(default)]
    pub pointer: String,
    /// What is wrong with it.
    #[serde(default)]
    pub detail: String,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl RemoteProblem {
    /// Whether `type` ends with `/<kind>` (`insufficient-stock`), so callers need not spell out the
    /// whole URI.
    pub fn is(&self, kind: &str) -> bool {
        self.type_uri.rsplit('/').next() == Some(kind)
    }
}

impl ClientError {
    /// The status the downstream answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self.last() {
            Self::Status(status, _) => Some(*status),
            _ => None,
        }
    }

    /// The downstream's problem document, when it answered non-2xx with a JSON body.
    pub fn problem(&self) -> Option<RemoteProblem> {
        match self.last() {
            Self::Status(_, body) => serde_json::from_slice(body).ok(),
            _ => None,
        }
    }

    /// The last attempt's failure (itself, unless this is [`ClientError::AfterUnanswered`]).
    pub fn last(&self) -> &Self {
        match self {
            Self::AfterUnanswered(last) => last.last(),
            other => other,
        }
    }

    /// Whether some attempt may have been acted on without its answer arriving: see
    /// [`ClientError::AfterUnanswered`] (a last attempt that timed out is [`ClientError::timed_out`]).
    pub const fn after_unanswered(&self) -> bool {
        matches!(self, Self::AfterUnanswered(_))
    }

    /// Whether the call failed fast on an open breaker (and after how long it probes again).
    pub fn circuit_open(&self) -> Option<Duration> {
        self.find::<CircuitOpen>().map(CircuitOpen::retry_after)
    }

    /// Whether the caller's deadline or the per-attempt timeout ended the call.
    pub fn timed_out(&self) -> bool {
        self.find::<DeadlineExceeded>().is_some() || self.find::<Elapsed>().is_some()
    }

    fn find<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let Self::Call(err) = self.last() else { return None };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
        while let Some(e) = cause {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            cause = e.source();
        }
        None
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, _) => write!(f, "downstream answered {status}"),
            Self::Call(err) => write!(f, "downstream call failed: {err}"),
            Self::Decode(err) => write!(f, "downstream sent unexpected JSON: {err}"),
            Self::AfterUnanswered(last) => write!(f, "{last} (after an attempt left unanswered)"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The innermost service of a [`Downstream`]: hyper's client, with the response body read to the
/// end (at most `limit` bytes) inside the call, so the attempt's timeout covers it.
#[derive(Clone, Debug)]
pub struct Collect {
    client: Client<HttpConnector, Body>,
    limit: usize,
}

impl Service<Request<Body>> for Collect {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(&mut self.client, cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let unanswered = req.extensions().get::<Unanswered>().cloned();
        let response = self.client.request(req);
        let limit = self.limit;
        Box::pin(async move {
            let mut attempt = Attempt { unanswered, settled: false };
            let response = response.await;
            // Refused before anything was sent: nothing there can have acted on it.
            attempt.settled = response.as_ref().is_err_and(hyper_util::client::legacy::Error::is_connect);
            let (parts, body) = response?.into_parts();
            let bytes = Limited::new(body, limit).collect().await?.to_bytes();
            attempt.settled = true;
            Ok(Response::from_parts(parts, Full::new(bytes)))
        })
    }
}

/// Set by any attempt of one call that was sent and did not get its whole answer (a request
/// extension, so every retried attempt shares it).
#[derive(Clone, Debug, Default)]
struct Unanswered(Arc<AtomicBool>);

/// One attempt in flight: unless settled (answered, or refused before sending), it marks the call
/// [`Unanswered`] when it ends — also when the timeout above drops it.
struct Attempt {
    unanswered: Option<Unanswered>,
    settled: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let (false, Some(unanswered)) = (self.settled, &self.unanswered) {
            unanswered.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A downstream's answer: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// An earlier attempt of this call was sent and got no whole answer (see [`ClientError::AfterUnanswered`]).
    pub after_unanswered: bool,
}

/// A client for one downstream service; cheap to clone (the breaker and budgets are shared, and so
/// is what a reload replaces: see [`Clients`]).
#[derive(Clone, Debug)]
pub struct Downstream {
    live: Arc<Live>,
    credentials: Option<Credentials>,
}

/// The service token a [`Downstream`] sends when the call carries no `Authorization` of its own.
#[derive(Clone, Debug)]
struct Credentials {
    signer: ServiceSigner,
    audience: String,
    scopes: &'static [&'static str],
}

impl Downstream {
    /// A client for `peer` at `config.url`; a reload applies `<service>.downstreams.<peer>` to it
    /// ([`Clients`]).
    pub fn new(peer: &str, config: &DownstreamConfig) -> Result<Self, palisade::InvalidConfig> {
        Self::build(peer, Some(peer), config)
    }

    /// A client for `peer` configured by `<service>.downstreams.<key>`, which a reload applies (the
    /// revocation check calls users under a breaker of its own).
    pub fn from_setting(
        peer: &str,
        key: &str,
        config: &DownstreamConfig,
    ) -> Result<Self, palisade::InvalidConfig> {
        Self::build(peer, Some(key), config)
    }

    /// A client whose settings do not come from `downstreams` (the outbox's push to its
    /// subscribers): a reload leaves it alone.
    pub fn fixed(peer: &str, config: &DownstreamConfig) -> Result<Self, palisade::InvalidConfig> {
        Self::build(peer, None, config)
    }

    fn build(
        peer: &str,
        key: Option<&str>,
        config: &DownstreamConfig,
    ) -> Result<Self, palisade::InvalidConfig> {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let live = Live::new(peer, key, client, config)?;
        crate::ops::register(&live.current.load().breaker.handle());
        if key.is_some() {
            register(&live);
        }
        Ok(Self { live, credentials: None })
    }

    /// This client sends a service token for `audience` with `scopes`, signed by `signer`, on every
    /// call without an `Authorization` header of its own ([`crate::service_auth`]).
    #[must_use]
    pub fn authenticated(
        mut self,
        signer: ServiceSigner,
        audience: &str,
        scopes: &'static [&'static str],
    ) -> Self {
        self.credentials = Some(Credentials { signer, audience: audience.to_owned(), scopes });
        self
    }

    /// The downstream's name (metrics label, breaker name, log lines).
    pub fn peer(&self) -> &str {
        &self.live.peer
    }

    /// The handle of this downstream's circuit breaker (a reload that changes `breaker_*` replaces
    /// the breaker: ask again after one).
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.live.current.load().breaker.handle()
    }

    /// `GET base+path`, decoding a 2xx JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None::<&()>, &[]).await
    }

    /// Sends `method base+path` with an optional JSON body and extra headers (`Authorization`,
    /// `Idempotency-Key`), decoding a 2xx JSON body.
    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(body) => Some(Bytes::from(serde_json::to_vec(body).map_err(ClientError::Decode)?)),
            None => None,
        };
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        let reply = self.call(method, path, body, &all, None).await?;
        if !reply.status.is_success() {
            let err = ClientError::Status(reply.status, reply.body);
            return Err(if reply.after_unanswered {
                ClientError::AfterUnanswered(Box::new(err))
            } else {
                err
            });
        }
        serde_json::from_slice(&reply.body).map_err(ClientError::Decode)
    }

    /// Sends one request and returns the reply whatever its status. `trace` continues that trace
    /// instead of the current one (work on another task, such as the outbox relay, carries its own).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
        trace: Option<TraceContext>,
    ) -> Result<Reply, ClientError> {
        // The settings of this call: a reload meanwhile applies to the next one.
        let stack = self.live.current.load_full();
        let mut req = Request::builder().method(method).uri(format!("{}{path}", stack.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(credentials) = &self.credentials
            && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            let token = credentials
                .signer
                .token(&credentials.audience, credentials.scopes)
                .map_err(ClientError::Call)?;
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut req =
            req.body(Full::new(body.unwrap_or_default())).map_err(|e| ClientError::Call(e.into()))?;
        if let Some(trace) = trace {
            req.extensions_mut().insert(trace);
        }
        let unanswered = Unanswered::default();
        req.extensions_mut().insert(unanswered.clone());
        let after_unanswered = || unanswered.0.load(Ordering::Relaxed);
        let res = stack.http.clone().oneshot(req).await.map_err(|e| {
            let err = ClientError::Call(e);
            if after_unanswered() { ClientError::AfterUnanswered(Box::new(err)) } else { err }
        })?;
        let (parts, body) = res.into_parts();
        // Already in memory (see `Collect`): this only unwraps the stack's body wrappers.
        let body = body.collect().await.map_err(|e| ClientError::Call(e.into()))?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body, after_unanswered: after_unanswered() })
    }

    /// This service's answer for a failed call to this downstream: the one mapping in the
    /// [module docs](self). Logs what went wrong (with the request's `trace_id`).
    pub fn api_error(&self, err: &ClientError) -> ApiError {
        let peer = self.peer();
        tracing::warn!(downstream = %peer, error = %err, body = ?body_of(err), "downstream call failed");
        if let Some(retry_after) = err.circuit_open() {
            return ApiError::unavailable(
                retry_after.max(Duration::from_secs(1)),
                format!("the {peer} service is failing; calls to it are paused"),
            )
            .with_type("https://palisade.dev/problems/downstream-unavailable", "Downstream unavailable");
        }
        // A downstream's own 504 is the same news one hop further: nobody answered in time.
        if err.timed_out() || err.status() == Some(StatusCode::GATEWAY_TIMEOUT) {
            return ApiError::new(StatusCode::GATEWAY_TIMEOUT)
                .with_type("https://palisade.dev/problems/downstream-timeout", "Downstream timeout")
                .with_detail(format!("the {peer} service did not answer in time"));
        }
        let detail = match err.status() {
            Some(status) => format!("the {peer} service answered {}", status.as_u16()),
            None => format!("the {peer} service could not be used"),
        };
        ApiError::new(StatusCode::BAD_GATEWAY)
            .with_type("https://palisade.dev/problems/downstream-error", "Downstream error")
            .with_detail(detail)
    }
}

/// The start of a failed answer's body, for the log line.
fn body_of(err: &ClientError) -> Option<String> {
    match err.last() {
        ClientError::Status(_, body) => {
            Some(String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned())
        }
        _ => None,
    }
}

/// `Retry-After` seconds a downstream sent, if any.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok()?.parse().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests;
