//! The request body the retry layer hands to the service it wraps.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body the inner service of [`Retry`](super::Retry) receives: either a replayable copy
    /// of a buffered body (empty bodies included: they are never buffered), or the caller's body
    /// streamed through as it is (a request that is sent once). Every byte and trailer of the caller's
    /// body comes through, whichever it is. Data frames are [`Bytes`]; errors are the caller's body's.
    pub struct RetryBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Trailers boxed: they are rare, and the body stays small to move.
        Buffered { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
        Streaming { #[pin] body: B },
        // A body that turned out larger than the buffer cap: what was read, then the rest.
        Spilled { prefix: Option<Bytes>, body: Pin<Box<B>> },
    }
}

impl<B> RetryBody<B> {
    /// A body streamed through as it is.
    pub const fn streaming(body: B) -> Self {
        Self { kind: Kind::Streaming { body } }
    }

    /// A fully buffered body.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let data = if data.is_empty() { None } else { Some(data) };
        Self { kind: Kind::Buffered { data, trailers: trailers.map(Box::new) } }
    }

    /// An empty body.
    pub const fn empty() -> Self {
        Self { kind: Kind::Buffered { data: None, trailers: None } }
    }

    pub(crate) fn spilled(prefix: Bytes, body: Pin<Box<B>>) -> Self {
        let prefix = if prefix.is_empty() { None } else { Some(prefix) };
        Self { kind: Kind::Spilled { prefix, body } }
    }
}

impl<B> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Buffered { .. } => "Buffered",
            Kind::Streaming { .. } => "Streaming",
            Kind::Spilled { .. } => "Spilled",
        };
        f.debug_tuple("RetryBody").field(&kind).finish()
    }
}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    // Zero-copy when `D` is `Bytes`.
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

impl<B: Body> Body for RetryBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, trailers } => Poll::Ready(
                data.take().map(Frame::data).or_else(|| trailers.take().map(|t| Frame::trailers(*t))).map(Ok),
            ),
            // A body that has ended is not read (a replayed request's empty body, for one).
            KindProj::Streaming { body } if body.is_end_stream() => Poll::Ready(None),
            KindProj::Streaming { body } => body.poll_frame(cx).map(|f| f.map(|r| r.map(to_bytes))),
            KindProj::Spilled { prefix, body } => match prefix.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => body.as_mut().poll_frame(cx).map(|f| f.map(|r| r.map(to_bytes))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streaming { body } => body.is_end_stream(),
            Kind::Spilled { prefix, body } => prefix.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Streaming { body } => body.size_hint(),
            Kind::Spilled { prefix, body } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}
