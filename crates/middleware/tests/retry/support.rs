//! Drives a [`Retry`](palisade::retry::Retry) over a `tower_test` mock with a script of replies,
//! recording every attempt the inner service receives.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use palisade::BoxError;
use palisade::retry::{Policy, RetryBody, RetryLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_test::mock;

pub(crate) type Res = Response<&'static str>;

/// What the mock answers to one attempt.
#[derive(Clone, Copy)]
pub(crate) enum Reply {
    Status(u16),
    /// A status with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// A transport error.
    Error(&'static str),
    /// A specific error.
    #[cfg_attr(not(any(feature = "timeout", feature = "circuit-breaker")), allow(dead_code))]
    ErrorWith(fn() -> BoxError),
}

/// An extension a test puts on its request, to see it on every attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker(pub(crate) &'static str);

/// One attempt as the inner service saw it.
#[derive(Debug)]
pub(crate) struct Seen {
    /// Virtual time since the request was sent.
    pub(crate) at: Duration,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// The request's [`Marker`] extension, if it had one.
    pub(crate) marker: Option<Marker>,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

pub(crate) struct Run {
    pub(crate) result: Result<Res, BoxError>,
    pub(crate) attempts: Vec<Seen>,
    /// Virtual time from sending the request to its result.
    pub(crate) elapsed: Duration,
}

impl Run {
    pub(crate) fn status(&self) -> u16 {
        self.result.as_ref().expect("a response").status().as_u16()
    }

    pub(crate) fn times(&self) -> Vec<Duration> {
        self.attempts.iter().map(|a| a.at).collect()
    }
}

/// Sends `req` through `layer` over a fresh mock that answers with `script`, in order.
pub(crate) async fn run<P, B>(layer: &RetryLayer<P>, req: Request<B>, script: &[Reply]) -> Run
where
    P: Policy<&'static str> + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mock, mut handle) = mock::pair::<Request<RetryBody<B>>, Res>();
    let svc = layer.layer(mock);
    let start = Instant::now();
    let mut task = tokio::spawn(svc.oneshot(req));
    let mut script = script.iter().copied();
    let mut attempts = Vec::new();
    loop {
        tokio::select! {
            biased;
            result = &mut task => {
                let elapsed = start.elapsed();
                return Run { result: result.expect("no panic"), attempts, elapsed };
            }
            Some((req, send)) = handle.next_request() => {
                let at = start.elapsed();
                let (parts, body) = req.into_parts();
                let collected = body.collect().await.map_err(Into::into).expect("a readable body");
                let trailers = collected.trailers().cloned();
                attempts.push(Seen {
                    at,
                    marker: parts.extensions.get::<Marker>().cloned(),
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    body: collected.to_bytes(),
                    trailers,
                });
                match script.next().unwrap_or_else(|| panic!("attempt {} was not scripted", attempts.len())) {
                    Reply::Status(code) => send.send_response(status(code)),
                    Reply::RetryAfter(code, after) => {
                        let mut res = status(code);
                        res.headers_mut().insert(http::header::RETRY_AFTER, after.parse().unwrap());
                        send.send_response(res);
                    }
                    Reply::Error(msg) => send.send_error(msg),
                    Reply::ErrorWith(make) => send.send_error(make()),
                }
            }
        }
    }
}

pub(crate) fn status(code: u16) -> Res {
    Response::builder().status(code).body("").unwrap()
}

pub(crate) fn get() -> Request<http_body_util::Empty<Bytes>> {
    request(Method::GET)
}

pub(crate) fn request(method: Method) -> Request<http_body_util::Empty<Bytes>> {
    Request::builder().method(method).uri("http://dep/v1/things").body(http_body_util::Empty::new()).unwrap()
}

pub(crate) fn with_body<B>(method: Method, body: B) -> Request<B> {
    Request::builder().method(method).uri("http://dep/v1/things").body(body).unwrap()
}

/// A body of chunks with whatever size hint the test chooses (truthful or not), and optional trailers.
#[derive(Debug)]
pub(crate) struct Chunks {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    hint: SizeHint,
}

impl Chunks {
    /// Chunks with a truthful exact size hint.
    pub(crate) fn exact(chunks: &[&'static str]) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self::with_hint(chunks, SizeHint::with_exact(len))
    }

    /// Chunks whose length is not known in advance.
    pub(crate) fn unknown(chunks: &[&'static str]) -> Self {
        Self::with_hint(chunks, SizeHint::new())
    }

    pub(crate) fn with_hint(chunks: &[&'static str], hint: SizeHint) -> Self {
        Self { data: chunks.iter().map(|c| Bytes::from_static(c.as_bytes())).collect(), trailers: None, hint }
    }

    pub(crate) fn trailers(mut self, trailers: HeaderMap) -> Self {
        self.trailers = Some(trailers);
        self
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.pop_front() {
            Some(chunk) => Some(Frame::data(chunk)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// An empty body that fails the test if anyone reads it: proves empty bodies are not buffered.
#[derive(Debug)]
pub(crate) struct MustNotBeRead;

impl Body for MustNotBeRead {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        panic!("an empty body was read")
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}
