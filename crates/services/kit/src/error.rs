//! [`ApiError`]: every error response is RFC 9457 `application/problem+json`.
//!
//! Handlers return `Result<_, ApiError>`. The body is rendered when the error becomes a response;
//! [`ProblemContextLayer`] (installed on every route by [`crate::server`]) then adds the request's
//! `instance` (path) and `trace_id`, and turns the framework's own bodiless errors (405, 413, …) into
//! problem documents. That middleware is the one mechanism: handlers never pass the request along.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use palisade::trace::{TraceContext, TraceId};
use serde::Serialize;

/// The `Content-Type` of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request (RFC 9457 §3 "errors" extension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer to the field (`#/price/amount`), or the query parameter's name.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldError {
    /// A field error for `pointer`.
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }
}

/// An RFC 9457 problem document, as sent.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub type_uri: Cow<'static, str>,
    /// A short summary of the kind of problem.
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The W3C trace id of the request, to find its logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Invalid fields (validation errors).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error a handler returns; becomes a problem+json response. One pointer wide, so `Result`s
/// that carry it stay small.
#[derive(Clone, Debug)]
pub struct ApiError(Box<Repr>);

#[derive(Clone, Debug)]
struct Repr {
    problem: Problem,
    headers: HeaderMap,
}

impl ApiError {
    /// An error with `status`, type `about:blank` and the status's reason phrase as title.
    pub fn new(status: StatusCode) -> Self {
        Self(Box::new(Repr {
            problem: Problem {
                type_uri: Cow::Borrowed("about:blank"),
                title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
                status: status.as_u16(),
                detail: None,
                instance: None,
                trace_id: None,
                errors: Vec::new(),
            },
            headers: HeaderMap::new(),
        }))
    }

    /// Sets `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.problem.detail = Some(detail.into());
        self
    }

    /// Sets `type` and `title`.
    pub fn with_type(mut self, type_uri: &'static str, title: &'static str) -> Self {
        self.0.problem.type_uri = Cow::Borrowed(type_uri);
        self.0.problem.title = Cow::Borrowed(title);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// Sets the per-item `errors` (e.g. the lines of a 409 that could not be served).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.problem.errors = errors;
        self
    }

    /// 400 with `detail`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 400 for invalid query parameters, one [`FieldError`] each.
    pub fn invalid_params(errors: Vec<FieldError>) -> Self {
        let mut err = Self::bad_request("the query parameters are invalid");
        err.0.problem.errors = errors;
        err
    }

    /// 404 with `detail`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    /// 409 with `detail`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT).with_detail(detail)
    }

    /// 401 with `WWW-Authenticate: Bearer` naming the error (RFC 6750 §3).
    pub fn unauthorized(detail: &'static str) -> Self {
        let challenge =
            format!("Bearer realm=\"shop\", error=\"invalid_token\", error_description=\"{detail}\"");
        Self::new(StatusCode::UNAUTHORIZED).with_detail(detail).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer realm=\"shop\"")),
        )
    }

    /// 403 with `detail`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN).with_detail(detail)
    }

    /// 422 with one [`FieldError`] per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut err = Self::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type("https://palisade.dev/problems/validation", "Validation failed")
            .with_detail("the request body has invalid fields");
        err.0.problem.errors = errors;
        err
    }

    /// 429 with `Retry-After` in whole seconds (at least 1).
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
        Self::new(StatusCode::TOO_MANY_REQUESTS)
            .with_detail("too many attempts; try again later")
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// 503 with `Retry-After` in whole seconds (at least 1): the service is saturated, not broken.
    pub fn unavailable(retry_after: std::time::Duration, detail: impl Into<String>) -> Self {
        let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// 500: logs `cause` (with the request's span, so its `trace_id`) and sends nothing of it.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail("the server failed to handle the request")
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem document (without `instance`/`trace_id`, which are added per request).
    pub const fn problem(&self) -> &Problem {
        &self.0.problem
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.problem.status, self.0.problem.title)?;
        if let Some(detail) = &self.0.problem.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<crate::db::StoreError> for ApiError {
    fn from(err: crate::db::StoreError) -> Self {
        match err {
            crate::db::StoreError::Conflict(what) => Self::conflict(what),
            crate::db::StoreError::Busy(err) => {
                // Retried already (`Retry::run`): tell the client to come back, not that we broke.
                tracing::warn!(error = %err, "database busy");
                Self::unavailable(
                    std::time::Duration::from_secs(1),
                    "the data is being changed concurrently; try again shortly",
                )
            }
            crate::db::StoreError::Database(err) => Self::internal(err),
        }
    }
}

fn render(problem: &Problem, status: StatusCode, headers: HeaderMap) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let Repr { problem, headers } = *self.0;
        let mut res = render(&problem, status, headers);
        // Kept so `ProblemContextLayer` can re-render it with the request's path and trace id.
        res.extensions_mut().insert(RenderedProblem(problem));
        res
    }
}

#[derive(Clone, Debug)]
struct RenderedProblem(Problem);

/// The layer (installed on every route by [`crate::server`]) that completes every error response as a
/// problem document with `instance` and `trace_id`. Responses that are already problem+json from
/// elsewhere (the palisade layers) pass unchanged; bodiless framework errors (405, 413, …) get a
/// document.
///
/// A typed tower layer rather than `axum::middleware::from_fn`: that one boxes a future and clones
/// the inner service into a boxed `Next` on every request, on the hot path of every service.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemContextLayer;

impl<S> tower::Layer<S> for ProblemContextLayer {
    type Service = ProblemContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemContext { inner }
    }
}

/// The service of [`ProblemContextLayer`].
#[derive(Clone, Debug)]
pub struct ProblemContext<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for ProblemContext<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ProblemContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let uri = req.uri().clone();
        // Inside the palisade trace layer's scope (it runs outside this one).
        let trace_id = TraceContext::current_trace_id();
        ProblemContextFuture { inner: self.inner.call(req), context: Some((uri, trace_id)) }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ProblemContext`].
    pub struct ProblemContextFuture<F> {
        #[pin]
        inner: F,
        context: Option<(Uri, Option<TraceId>)>,
    }
}

impl<F, E> Future for ProblemContextFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let (uri, trace_id) = this.context.take().expect("polled after completion");
        Poll::Ready(Ok(complete_problem(res, &uri, trace_id)))
    }
}

fn complete_problem(res: Response, uri: &Uri, trace_id: Option<TraceId>) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let mut problem = match parts.extensions.remove::<RenderedProblem>() {
        Some(RenderedProblem(problem)) => problem,
        None if parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v == PROBLEM_JSON) => {
            return Response::from_parts(parts, body);
        }
        None => ApiError::new(status).with_detail(framework_detail(status)).0.problem,
    };
    problem.instance = Some(uri.path().to_owned());
    problem.trace_id = trace_id.map(|id| id.to_string());
    parts.headers.remove(header::CONTENT_LENGTH);
    render(&problem, status, parts.headers)
}

fn framework_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "the resource does not support this method; see the Allow header",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the server accepts",
        StatusCode::NOT_FOUND => "no resource at this path",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "the request body has an unsupported content type",
        s if s.is_server_error() => "the server failed to handle the request",
        _ => "the request was rejected",
    }
}

/// Fallback handler: 404 problem for every unknown path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no resource at this path")
}
