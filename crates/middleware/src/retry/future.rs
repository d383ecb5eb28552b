//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version, request};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::layer::Shared;
use super::{Decision, Policy, RequestHead, RetryBody};
use crate::{BoxError, Deadline};

pin_project! {
    /// Response future of [`Retry`](super::Retry): buffers the body when it must, calls the inner
    /// service, and retries as the policy, backoff, budget and deadline allow.
    pub struct ResponseFuture<S, P, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        #[pin]
        state: State<S::Future, B>,
        // `None` when the request is sent once (not retryable, or its body could not be buffered).
        // Boxed: a request sent once then carries a future hardly larger than the inner one, and
        // moving the future (which `.await` does) stays cheap.
        replay: Option<Box<Replay<S, P>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // Reading the caller's body into memory before the first attempt. Boxed so that it can be moved
        // into the request afterwards whether or not `B: Unpin`; only bodies being buffered pay for it.
        Buffering { body: Option<Pin<Box<B>>>, buf: Box<Collected> },
        // An attempt in flight.
        Called { #[pin] fut: F },
        // Backing off before the next attempt.
        // Boxed, like the other rare states, to keep the common ones small.
        Waiting { sleep: Pin<Box<Sleep>> },
        // Waiting for the inner service to be ready for the next attempt.
        Retrying,
    }
}

/// Everything needed to send the request again.
pub(crate) struct Replay<S, P> {
    pub(crate) svc: S,
    pub(crate) shared: Arc<Shared<P>>,
    head: Head,
    // `None` for a bodiless request. Boxed: most retried requests have none.
    body: Option<Box<Buffered>>,
    pub(crate) attempts: u32,
    pub(crate) previous_delay: Duration,
}

/// A request head kept part by part: an `http::request::Parts` can only be had by building a default
/// head first, then overwriting and dropping it.
#[derive(Clone)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    // `None` for a request without headers: no map to build, nor to drop.
    headers: Option<Box<HeaderMap>>,
    extensions: Extensions,
}

impl Head {
    fn from_parts(parts: request::Parts) -> Self {
        let request::Parts { method, uri, version, headers, extensions, .. } = parts;
        let headers = (!headers.is_empty()).then(|| Box::new(headers));
        Self { method, uri, version, headers, extensions }
    }

    fn copy_of<B>(req: &Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: (!req.headers().is_empty()).then(|| Box::new(req.headers().clone())),
            extensions: req.extensions().clone(), // no allocation when there are none
        }
    }

    fn into_request<T>(self, body: T) -> Request<T> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        if let Some(headers) = self.headers {
            *req.headers_mut() = *headers;
        }
        *req.extensions_mut() = self.extensions;
        req
    }
}

/// A body read into memory, to be sent with every attempt.
struct Buffered {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl<S, P> Replay<S, P> {
    /// Keeps the head `parts` (a request whose body is read before the first attempt).
    pub(crate) fn from_parts(svc: S, shared: Arc<Shared<P>>, parts: request::Parts) -> Self {
        Self::new(svc, shared, Head::from_parts(parts))
    }

    /// A copy of the head of `req`, a bodiless request about to be sent.
    pub(crate) fn copy_of<B>(svc: S, shared: Arc<Shared<P>>, req: &Request<B>) -> Box<Self> {
        Box::new(Self::new(svc, shared, Head::copy_of(req)))
    }

    const fn new(svc: S, shared: Arc<Shared<P>>, head: Head) -> Self {
        Self { svc, shared, head, body: None, attempts: 1, previous_delay: Duration::ZERO }
    }

    fn head(&self) -> RequestHead<'_> {
        let head = &self.head;
        RequestHead {
            method: &head.method,
            uri: &head.uri,
            version: head.version,
            headers: head.headers.as_deref(),
            extensions: &head.extensions,
        }
    }

    /// The request to send once more, with a copy of the head and of the buffered body.
    fn request<B>(&self) -> Request<RetryBody<B>> {
        let body = match self.body.as_deref() {
            Some(buffered) => RetryBody::buffered(buffered.data.clone(), buffered.trailers.clone()),
            None => RetryBody::empty(),
        };
        self.head.clone().into_request(body)
    }

    /// The service, and the request to send it once with `body`: the head is moved, not copied.
    fn into_request<T>(self, body: T) -> (S, Request<T>) {
        (self.svc, self.head.into_request(body))
    }

    /// The delay before the next attempt, or `None` to return `result` as it is.
    fn next_delay<ResB>(&mut self, result: &Result<Response<ResB>, BoxError>) -> Option<Duration>
    where
        P: Policy<ResB>,
    {
        let shared = &*self.shared;
        if self.attempts >= shared.max_attempts {
            return None;
        }
        let after = match shared.policy.decide(&self.head(), result.as_ref()) {
            Decision::Retry => Duration::ZERO,
            Decision::RetryAfter(after) if after <= shared.max_retry_after => after,
            Decision::Return | Decision::RetryAfter(_) => return None,
        };
        // A server-given delay is the earliest time to come back, not a time to come back at: every
        // caller told `Retry-After: 0` (or the same date) would return at the same instant. The
        // backoff, jittered, spreads them after it.
        let backoff = shared.backoff.delay(self.attempts, self.previous_delay);
        let delay = after.saturating_add(backoff);
        if let Some(deadline) = self.head.extensions.get::<Deadline>() {
            // A retry that would start at or after the deadline could not finish in time.
            if Instant::now().checked_add(delay).is_none_or(|start| start >= deadline.instant()) {
                return None;
            }
        }
        if let Some(budget) = &shared.budget
            && !budget.withdraw()
        {
            shared.exhausted.get().increment(1);
            return None;
        }
        self.previous_delay = backoff;
        Some(delay)
    }
}

/// A body being read into memory: one chunk is kept as it is, several are copied into one.
#[derive(Default)]
struct Collected {
    first: Bytes,
    more: Option<BytesMut>,
    trailers: Option<HeaderMap>,
    len: u64,
}

impl Collected {
    fn push(&mut self, data: Bytes) {
        self.len += data.len() as u64;
        if data.is_empty() {
            return;
        }
        if let Some(more) = &mut self.more {
            more.extend_from_slice(&data);
        } else if self.first.is_empty() {
            self.first = data;
        } else {
            let mut more = BytesMut::with_capacity(self.first.len() + data.len());
            more.extend_from_slice(&self.first);
            more.extend_from_slice(&data);
            self.first = Bytes::new();
            self.more = Some(more);
        }
    }

    fn into_bytes(self) -> Bytes {
        self.more.map_or(self.first, BytesMut::freeze)
    }
}

impl<S, P, B> ResponseFuture<S, P, B>
where
    S: Service<Request<RetryBody<B>>>,
{
    /// The first attempt is in flight; `replay`, if any, can send it again.
    pub(crate) fn new(fut: S::Future, replay: Option<Box<Replay<S, P>>>) -> Self {
        Self { state: State::Called { fut }, replay }
    }

    /// Reads `body` first, then calls `replay.svc`, which must be ready.
    pub(crate) fn buffering(body: B, replay: Replay<S, P>) -> Self {
        Self {
            state: State::Buffering { body: Some(Box::pin(body)), buf: Box::default() },
            replay: Some(Box::new(replay)),
        }
    }
}

impl<S, P, B> fmt::Debug for ResponseFuture<S, P, B>
where
    S: Service<Request<RetryBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Buffering { .. } => "Buffering",
            State::Called { .. } => "Called",
            State::Waiting { .. } => "Waiting",
            State::Retrying => "Retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.replay.as_ref().map(|r| r.attempts))
            .finish_non_exhaustive()
    }
}

impl<S, P, B, ResB> Future for ResponseFuture<S, P, B>
where
    S: Service<Request<RetryBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    P: Policy<ResB>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A request sent once: the result of its one attempt, with nothing to decide. Kept apart from
        // the rest, which a request passed through never needs.
        if self.replay.is_none()
            && let StateProj::Called { fut } = self.as_mut().project().state.project()
        {
            return fut.poll(cx).map_err(Into::into);
        }
        self.poll_attempts(cx)
    }
}

impl<S, P, B, ResB> ResponseFuture<S, P, B>
where
    S: Service<Request<RetryBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    P: Policy<ResB>,
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Everything else: reading the body, the attempts of a request that may be retried, the decisions
    /// on their results, backing off.
    fn poll_attempts(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Response<ResB>, BoxError>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering { body, buf } => {
                    let replay = this.replay.as_mut().expect("a buffering future has a replay");
                    let reader = body.as_mut().expect("polled after completion");
                    let complete = loop {
                        match ready!(reader.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    buf.push(data.copy_to_bytes(data.remaining()));
                                    if buf.len > replay.shared.max_buffered_body {
                                        break false;
                                    }
                                }
                                Err(frame) => {
                                    if let Ok(trailers) = frame.into_trailers() {
                                        buf.trailers.get_or_insert_with(HeaderMap::new).extend(trailers);
                                    }
                                }
                            },
                            Some(Err(err)) => return Poll::Ready(Err(err.into())),
                            None => break true,
                        }
                    };
                    let mut collected = mem::take(&mut **buf);
                    let fut = if complete {
                        let trailers = collected.trailers.take();
                        let data = collected.into_bytes();
                        if !data.is_empty() || trailers.is_some() {
                            replay.body = Some(Box::new(Buffered { data, trailers }));
                        }
                        let req = replay.request();
                        replay.svc.call(req)
                    } else {
                        // Larger than its size hint said: send what was read and the rest, once.
                        let reader = body.take().expect("polled after completion");
                        let replay = *this.replay.take().expect("checked above");
                        let (mut svc, req) =
                            replay.into_request(RetryBody::spilled(collected.into_bytes(), reader));
                        svc.call(req)
                    };
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let result = ready!(fut.poll(cx)).map_err(Into::into);
                    let Some(replay) = this.replay.as_mut() else { return Poll::Ready(result) };
                    match replay.next_delay(&result) {
                        None => return Poll::Ready(result),
                        Some(delay) if delay.is_zero() => this.state.set(State::Retrying),
                        Some(delay) => {
                            this.state.set(State::Waiting { sleep: Box::pin(tokio::time::sleep(delay)) });
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    let replay = this.replay.as_mut().expect("a retrying future has a replay");
                    if let Err(err) = ready!(replay.svc.poll_ready(cx)) {
                        return Poll::Ready(Err(err.into()));
                    }
                    let req = replay.request();
                    replay.attempts += 1;
                    replay.shared.retries.get().increment(1);
                    this.state.set(State::Called { fut: replay.svc.call(req) });
                }
            }
        }
    }
}
