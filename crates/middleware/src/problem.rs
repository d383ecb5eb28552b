//! The one place where layer errors become HTTP responses: RFC 9457 `application/problem+json`.
//!
//! Layers return typed errors ([`BoxError`]) so that a client can react to them. In front of an axum
//! handler, the error type must be `Infallible`: wrap the stack in [`ProblemLayer`] (the presets in
//! [`crate::stack`] do), and each error becomes a response through [`problem_for_error`]:
//!
//! | error | status | extra |
//! |---|---|---|
//! | [`Overloaded`](crate::load_shed::error::Overloaded) | `503 Service Unavailable` | `Retry-After` (jittered, whole seconds, at least 1) |
//! | [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen) | `503 Service Unavailable` | `Retry-After` (whole seconds, at least 1) |
//! | [`Elapsed`](crate::timeout::error::Elapsed) | `504 Gateway Timeout` | |
//! | [`DeadlineExceeded`](crate::timeout::error::DeadlineExceeded) | `504 Gateway Timeout` | [`DEADLINE_EXCEEDED_HEADER`](crate::classify::DEADLINE_EXCEEDED_HEADER)`: 1`, so the caller's breaker ignores it |
//! | anything else | `500 Internal Server Error` | the cause is logged, never sent |
//!
//! A retry whose budget is exhausted is not an error: the retry layer returns the last failure as it
//! was. The `trace_id` member is filled from the current [`TraceContext`](crate::trace::TraceContext)
//! when the trace layer runs outside this one.
//!
//! ```
//! use palisade::problem::ProblemLayer;
//! use palisade::timeout::error::Elapsed;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new().layer(ProblemLayer::new()).service(service_fn(
//!     |_req: http::Request<()>| async { Err::<http::Response<String>, _>(Elapsed::new()) },
//! ));
//! let res = svc.oneshot(http::Request::new(())).await.unwrap(); // Infallible
//! assert_eq!(res.status(), 504);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # }
//! ```

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::BoxError;

/// The `Content-Type` of problem responses.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A response body type a problem document can be written into. [`Problems`] keeps the inner
/// service's body type, so in front of an axum handler the response stays an `axum::body::Body`
/// (axum boxes any other body type again, on every request).
///
/// Implemented for `axum::body::Body` (feature `axum`), `Full<D>`, `Either<L, R>` (as `Right`), the
/// boxed bodies of `http-body-util`, and `String`. For another body type, map it into one of these
/// (e.g. `Either<YourBody, Full<Bytes>>`) below the layer.
pub trait ProblemBody: Sized {
    /// A body holding `json`, a rendered problem document.
    fn from_problem(json: Bytes) -> Self;
}

impl<D: From<Bytes> + bytes::Buf> ProblemBody for Full<D> {
    fn from_problem(json: Bytes) -> Self {
        Self::new(D::from(json))
    }
}

impl<L, R: ProblemBody> ProblemBody for Either<L, R> {
    fn from_problem(json: Bytes) -> Self {
        Self::Right(R::from_problem(json))
    }
}

impl<E> ProblemBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_problem(json: Bytes) -> Self {
        Self::new(Full::new(json).map_err(|never| match never {}))
    }
}

impl<E> ProblemBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_problem(json: Bytes) -> Self {
        Self::new(Full::new(json).map_err(|never| match never {}))
    }
}

impl ProblemBody for String {
    fn from_problem(json: Bytes) -> Self {
        // Problem documents are always UTF-8 (`Problem::to_json`).
        Self::from_utf8_lossy(&json).into_owned()
    }
}

#[cfg(feature = "axum")]
impl ProblemBody for axum::body::Body {
    fn from_problem(json: Bytes) -> Self {
        Self::from(json)
    }
}

/// An RFC 9457 problem document, rendered to JSON without any serialization dependency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    type_uri: &'static str,
    title: &'static str,
    detail: Option<String>,
    retry_after: Option<Duration>,
    trace_id: Option<String>,
    /// A 504 for the caller's own expired deadline: marked so that the caller's breaker ignores it.
    deadline_exceeded: bool,
}

impl Problem {
    /// A problem with `status`, the `about:blank` type and the status's reason phrase as title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            type_uri: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            detail: None,
            retry_after: None,
            trace_id: None,
            deadline_exceeded: false,
        }
    }

    /// Sets the `type` URI (default `about:blank`).
    pub fn with_type(mut self, type_uri: &'static str) -> Self {
        self.type_uri = type_uri;
        self
    }

    /// Sets the `title` (default: the status's reason phrase).
    pub fn with_title(mut self, title: &'static str) -> Self {
        self.title = title;
        self
    }

    /// Sets the `detail`, a sentence for humans saying what happened.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a `Retry-After` header (rounded up to whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sets the `trace_id` member.
    pub fn with_trace_id(mut self, trace_id: impl fmt::Display) -> Self {
        self.trace_id = Some(trace_id.to_string());
        self
    }

    /// The status code.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("{\"type\":");
        push_json_string(&mut out, self.type_uri);
        out.push_str(",\"title\":");
        push_json_string(&mut out, self.title);
        let _ = write!(out, ",\"status\":{}", self.status.as_u16());
        if let Some(detail) = &self.detail {
            out.push_str(",\"detail\":");
            push_json_string(&mut out, detail);
        }
        if let Some(trace_id) = &self.trace_id {
            out.push_str(",\"trace_id\":");
            push_json_string(&mut out, trace_id);
        }
        out.push('}');
        out
    }

    /// The response: status, `Content-Type: application/problem+json`, `Retry-After` when set.
    pub fn into_http_response<B: ProblemBody>(self) -> Response<B> {
        let mut res = Response::new(B::from_problem(Bytes::from(self.to_json())));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if self.deadline_exceeded {
            headers.insert(crate::classify::DEADLINE_EXCEEDED_HEADER, HeaderValue::from_static("1"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        self.into_http_response()
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Maps an error from a palisade stack to its problem document: the one documented mapping (see the
/// module docs). The error's `source()` chain is searched, so wrapped layer errors are recognised.
pub fn problem_for_error(err: &(dyn StdError + 'static)) -> Problem {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(problem) = known_problem(e) {
            return problem;
        }
        cause = e.source();
    }
    tracing::error!(error = %err, "unhandled error from the service stack");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail("the server failed to handle the request")
}

#[allow(unused_variables)] // `err` is unused when no middleware feature is enabled.
fn known_problem(err: &(dyn StdError + 'static)) -> Option<Problem> {
    #[cfg(feature = "load-shed")]
    if let Some(overloaded) = err.downcast_ref::<crate::load_shed::error::Overloaded>() {
        return Some(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_type("https://palisade.dev/problems/overloaded")
                .with_title("Overloaded")
                .with_detail("the server has as many requests in flight as it accepts; try again later")
                .with_retry_after(overloaded.retry_after()),
        );
    }
    #[cfg(feature = "circuit-breaker")]
    if let Some(open) = err.downcast_ref::<crate::circuit_breaker::error::CircuitOpen>() {
        return Some(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_type("https://palisade.dev/problems/circuit-open")
                .with_title("Circuit open")
                .with_detail("a dependency is failing; the call was rejected without trying it")
                .with_retry_after(open.retry_after()),
        );
    }
    #[cfg(feature = "timeout")]
    if err.is::<crate::timeout::error::Elapsed>() {
        return Some(
            Problem::new(StatusCode::GATEWAY_TIMEOUT)
                .with_type("https://palisade.dev/problems/timeout")
                .with_title("Timeout")
                .with_detail("the request took longer than its timeout"),
        );
    }
    #[cfg(feature = "timeout")]
    if err.is::<crate::timeout::error::DeadlineExceeded>() {
        let mut problem = Problem::new(StatusCode::GATEWAY_TIMEOUT)
            .with_type("https://palisade.dev/problems/deadline-exceeded")
            .with_title("Deadline exceeded")
            .with_detail("the caller's deadline passed before the request was answered");
        problem.deadline_exceeded = true;
        return Some(problem);
    }
    None
}

/// Turns the errors of the service it wraps into problem responses, making the error type
/// `Infallible` (what axum requires). See the [module docs](self) for the mapping.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemLayer {
    _priv: (),
}

impl ProblemLayer {
    /// A new `ProblemLayer`.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for ProblemLayer {
    type Service = Problems<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Problems { inner, ready_error: None }
    }
}

/// The service made by [`ProblemLayer`].
#[derive(Debug)]
pub struct Problems<S> {
    inner: S,
    // An error from `poll_ready` cannot be returned (the error type is `Infallible`), so it is kept and
    // answered as a problem by the next `call`.
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for Problems<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), ready_error: None }
    }
}

inner_accessors!(Problems);

impl<S, ReqB, ResB> Service<Request<ReqB>> for Problems<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: ProblemBody,
{
    type Response = Response<ResB>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none()
            && let Err(err) = ready!(self.inner.poll_ready(cx))
        {
            self.ready_error = Some(err.into());
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let trace_id = current_trace_id();
        let state = match self.ready_error.take() {
            Some(err) => State::Failed { err: Some(err) },
            None => State::Calling { fut: self.inner.call(req) },
        };
        ResponseFuture { state, trace_id }
    }
}

#[cfg(feature = "trace")]
type TraceIdSlot = Option<crate::trace::TraceId>;
#[cfg(not(feature = "trace"))]
type TraceIdSlot = Option<Infallible>;

#[cfg(feature = "trace")]
fn current_trace_id() -> TraceIdSlot {
    crate::trace::TraceContext::current_trace_id()
}

#[cfg(not(feature = "trace"))]
fn current_trace_id() -> TraceIdSlot {
    None
}

pin_project! {
    /// Response future of [`Problems`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        trace_id: TraceIdSlot,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: ProblemBody,
{
    type Output = Result<Response<B>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let err: BoxError = match this.state.project() {
            StateProj::Calling { fut } => match ready!(fut.poll(cx)) {
                Ok(res) => return Poll::Ready(Ok(res)),
                Err(err) => err.into(),
            },
            StateProj::Failed { err } => err.take().expect("polled after completion"),
        };
        let mut problem = problem_for_error(&*err);
        if let Some(id) = this.trace_id.take() {
            problem = problem.with_trace_id(id);
        }
        Poll::Ready(Ok(problem.into_http_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_json() {
        let p = Problem::new(StatusCode::BAD_REQUEST).with_detail("bad \"x\"\n\u{1}");
        assert_eq!(
            p.to_json(),
            r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"bad \"x\"\n\u0001"}"#
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let res = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(Duration::from_millis(1500))
            .into_http_response::<Full<Bytes>>();
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let res = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(Duration::ZERO)
            .into_http_response::<Full<Bytes>>();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }

    #[cfg(feature = "timeout")]
    #[test]
    fn a_deadline_exceeded_504_is_marked_and_a_timeout_504_is_not() {
        use crate::classify::DEADLINE_EXCEEDED_HEADER;
        let expired = problem_for_error(&crate::timeout::error::DeadlineExceeded::new());
        let res = expired.into_http_response::<Full<Bytes>>();
        assert_eq!(res.headers()[DEADLINE_EXCEEDED_HEADER], "1");
        let elapsed = problem_for_error(&crate::timeout::error::Elapsed::new());
        assert!(
            !elapsed.into_http_response::<Full<Bytes>>().headers().contains_key(DEADLINE_EXCEEDED_HEADER)
        );
    }

    #[test]
    fn unknown_errors_are_500_without_their_message() {
        let err: BoxError = "database password is hunter2".into();
        let p = problem_for_error(&*err);
        assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.to_json().contains("hunter2"));
    }
}
