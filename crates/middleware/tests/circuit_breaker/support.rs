//! Helpers: a scripted backend and shorthands for sending calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use palisade::BoxError;
use palisade::circuit_breaker::error::CircuitOpen;
use tower::{Service, ServiceExt, service_fn};

/// What the backend does with one call: answer `status` after `delay`; status 0 means a transport
/// error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) status: u16,
    pub(crate) delay: Duration,
}

pub(crate) fn plan(status: u16) -> Request<Plan> {
    Request::new(Plan { status, delay: Duration::ZERO })
}

pub(crate) fn slow_plan(status: u16, delay: Duration) -> Request<Plan> {
    Request::new(Plan { status, delay })
}

/// A backend that follows each request's plan and counts the calls that reached it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Backend {
    calls: Arc<AtomicUsize>,
}

impl Backend {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<Request<Plan>, Response = Response<()>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static {
        let calls = Arc::clone(&self.calls);
        service_fn(move |req: Request<Plan>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let Plan { status, delay } = *req.body();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if status == 0 {
                    return Err::<_, BoxError>("connection refused".into());
                }
                Ok(Response::builder().status(status).body(()).unwrap())
            }
        })
    }
}

/// Sends one call through `svc`.
pub(crate) async fn send<S>(svc: &mut S, req: Request<Plan>) -> Result<Response<()>, BoxError>
where
    S: Service<Request<Plan>, Response = Response<()>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

/// Sends `n` calls answered with `status`, asserting none was rejected.
pub(crate) async fn send_n<S>(svc: &mut S, n: usize, status: u16)
where
    S: Service<Request<Plan>, Response = Response<()>, Error = BoxError>,
{
    for i in 0..n {
        if let Err(err) = send(svc, plan(status)).await {
            assert!(err.downcast_ref::<CircuitOpen>().is_none(), "call {i} with {status} was rejected");
        }
    }
}

/// The rejection, if the call was rejected by the breaker.
pub(crate) fn rejection(result: Result<Response<()>, BoxError>) -> Option<CircuitOpen> {
    result.err().and_then(|err| err.downcast_ref::<CircuitOpen>().cloned())
}

/// The request the mock received, failing (instead of waiting forever) when there is none.
pub(crate) fn take_request<T, U>(
    handle: &mut tower_test::mock::Handle<T, U>,
) -> (T, tower_test::mock::SendResponse<U>) {
    match handle.poll_request() {
        std::task::Poll::Ready(Some(request)) => request,
        _ => panic!("expected a request to reach the inner service"),
    }
}
