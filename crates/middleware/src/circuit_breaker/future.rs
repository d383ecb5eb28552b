//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::error::CircuitOpen;
use super::shared::{Shared, shard_count, thread_shard};
use crate::{BoxError, Classify};

/// What the futures of one thread's calls share: the breaker and its classifier.
///
/// A call's future holds an `Arc` to one `Local`. Cloning *that* `Arc` touches a reference count
/// private to the calling thread's stripe (see [`Locals`]), not one shared by every core, which is what
/// a future holding the breaker's own `Arc` would do on every call. The alignment keeps two stripes'
/// reference counts (and so two cores' writes) off a shared cache line.
#[repr(align(128))]
pub(crate) struct Local<C> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
}

/// One [`Local`] per shard of the breaker (per thread, round-robin), made once per
/// [`layer`](tower::Layer::layer) call and shared by every clone of the service, so cloning the
/// service is one reference-count increment and no allocation (axum clones the layered service for
/// every request), while each call's future still shares a reference count with its own thread only.
pub(crate) struct Locals<C> {
    stripes: Box<[Arc<Local<C>>]>,
}

impl<C: Clone> Locals<C> {
    pub(crate) fn new(shared: &Arc<Shared>, classifier: &C) -> Self {
        let stripes = (0..shard_count())
            .map(|_| Arc::new(Local { shared: Arc::clone(shared), classifier: classifier.clone() }))
            .collect();
        Self { stripes }
    }
}

impl<C> Locals<C> {
    /// The calling thread's stripe.
    #[inline]
    pub(crate) fn this_thread(&self) -> &Arc<Local<C>> {
        // `shard_count` is a power of two, and so the stripe count.
        &self.stripes[thread_shard() & (self.stripes.len() - 1)]
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.stripes[0].shared
    }
}

/// A call admitted by the breaker, to be recorded when it completes.
pub(crate) struct Permit<C> {
    local: Arc<Local<C>>,
    generation: u64,
    /// A half-open probe whose permit is still held (given back on drop).
    probe: bool,
    start: Option<Instant>,
}

impl<C> Permit<C> {
    pub(crate) fn new(local: Arc<Local<C>>, generation: u64, probe: bool, start: Option<Instant>) -> Self {
        Self { local, generation, probe, start }
    }

    fn complete<Res>(mut self, result: Result<&Res, &BoxError>)
    where
        C: Classify<Res, BoxError>,
    {
        let failure = self.local.classifier.classify(result).is_failure();
        self.local.shared.on_result(self.generation, self.probe, failure, self.start);
        self.probe = false; // recorded: nothing to give back on drop
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        if self.probe {
            self.local.shared.release_probe(self.generation);
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { error: CircuitOpen },
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
        Self { kind: Kind::Rejected { error }, permit: None }
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
            KindProj::Rejected { error } => Poll::Ready(Err(error.clone().into())),
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
