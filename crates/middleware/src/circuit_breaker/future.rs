//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::error::CircuitOpen;
use super::shared::{Shared, Ticket, Verdict, shard_count, thread_shard};
use crate::{BoxError, Classify, Outcome};

/// What the futures of one thread's calls share: the breaker.
///
/// A call's future holds an `Arc` to one `Local`. Cloning *that* `Arc` touches a reference count
/// private to the calling thread's stripe (see [`Locals`]), not one shared by every core, which is what
/// a future holding the breaker's own `Arc` would do on every call. The alignment keeps two stripes'
/// reference counts (and so two cores' writes) off a shared cache line.
#[repr(align(128))]
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
}

/// One [`Local`] per shard of the breaker (per thread, round-robin), plus the breaker's
/// [`MakeClassify`](crate::MakeClassify), made once per breaker and shared by every clone of its
/// services, so cloning a service is one reference-count increment and no allocation (axum clones
/// the layered service for every request), while each call's future still shares a reference
/// count with its own thread only.
pub(crate) struct Locals<M> {
    stripes: Box<[Arc<Local>]>,
    pub(crate) make_classify: M,
}

impl<M> Locals<M> {
    pub(crate) fn new(shared: &Arc<Shared>, make_classify: M) -> Self {
        let stripes = (0..shard_count()).map(|_| Arc::new(Local { shared: Arc::clone(shared) })).collect();
        Self { stripes, make_classify }
    }

    /// The calling thread's stripe.
    #[inline]
    pub(crate) fn this_thread(&self) -> &Arc<Local> {
        // `shard_count` is a power of two, and so the stripe count.
        &self.stripes[thread_shard() & (self.stripes.len() - 1)]
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.stripes[0].shared
    }

    /// Whether anything but the owner of this `Arc<Locals>` (a layer, a service, a call in flight,
    /// a handle) still uses the breaker.
    pub(crate) fn in_use(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1
            || Arc::strong_count(self.shared()) > self.stripes.len()
            || self.stripes.iter().any(|stripe| Arc::strong_count(stripe) > 1)
    }
}

/// A call admitted by the breaker, to be recorded when it completes.
pub(crate) struct Permit<C> {
    local: Arc<Local>,
    classify: C,
    ticket: Ticket,
    /// A half-open probe whose permit is still held (given back on drop).
    probe: bool,
    start: Option<Instant>,
}

impl<C> Permit<C> {
    pub(crate) fn new(
        local: Arc<Local>,
        classify: C,
        ticket: Ticket,
        probe: bool,
        start: Option<Instant>,
    ) -> Self {
        Self { local, classify, ticket, probe, start }
    }

    fn complete<Res>(mut self, result: Result<&Res, &BoxError>)
    where
        C: Classify<Res, BoxError>,
    {
        let verdict = match self.classify.classify(result) {
            Outcome::Failure => Verdict::Failure,
            Outcome::Ignore => Verdict::Ignore,
            Outcome::Success => Verdict::Success,
        };
        self.local.shared.on_result(self.ticket, self.probe, verdict, self.start);
        self.probe = false; // recorded (or given back): nothing to give back on drop
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        if self.probe {
            self.local.shared.release_probe(self.ticket);
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { error: Option<CircuitOpen> },
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): the inner call, recorded when it
    /// completes, or an immediate [`CircuitOpen`].
    ///
    /// Dropping it before completion records nothing; a half-open probe gives its permit back.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<Permit<C>>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: Option<Permit<C>>) -> Self {
        Self { kind: Kind::Called { future }, permit }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self { kind: Kind::Rejected { error: Some(error) }, permit: None }
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, BoxError>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            // Boxing the rejection allocates, on the rejected path only: `BoxError` is the contract.
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("ResponseFuture polled after completion").into()))
            }
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(permit) = this.permit.take() {
                    permit.complete(result.as_ref());
                }
                Poll::Ready(result)
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected = matches!(self.kind, Kind::Rejected { .. });
        f.debug_struct("ResponseFuture").field("rejected", &rejected).finish_non_exhaustive()
    }
}
