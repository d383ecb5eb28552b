//! `ServiceBuilderExt` beside tower's own `ServiceBuilder` methods.
//!
//! palisade's dev-dependencies turn on tower's `retry` feature (common in applications), which adds
//! the inherent `ServiceBuilder::retry(policy)`. An inherent method wins over a trait method of the
//! same name, so an extension method called `retry` could not be called at all then: this file only
//! compiles because palisade's is `retry_layer`.
#![cfg(all(feature = "retry", feature = "metrics", feature = "trace"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use palisade::ServiceBuilderExt;
use palisade::retry::RetryBody;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A tower retry policy that never retries: only here to show tower's `retry` is there too.
#[derive(Clone)]
struct Never;

impl<Req, Res, E> tower::retry::Policy<Req, Res, E> for Never {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _req: &mut Req, _result: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, _req: &Req) -> Option<Req> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn retry_layer_is_callable_with_towers_retry_feature_on() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&attempts);
    let flaky = service_fn(move |_req: Request<RetryBody<Empty<Bytes>>>| {
        let attempt = seen.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let status = if attempt == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
        }
    });
    let svc =
        ServiceBuilder::new().client_trace().client_metrics("catalog").retry_layer("catalog").service(flaky);
    let res =
        svc.oneshot(Request::get("http://catalog/v1/products").body(Empty::new()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "palisade's retry layer retried the 503");

    // tower's inherent method, from the same feature set.
    let towers = ServiceBuilder::new()
        .retry(Never)
        .service(service_fn(|req: u8| async move { Ok::<_, std::convert::Infallible>(req) }));
    assert_eq!(towers.oneshot(7).await.unwrap(), 7);
}

#[tokio::test]
async fn server_side_methods_build_their_default_layers() {
    let svc = ServiceBuilder::new().server_trace().server_metrics().problems().service(service_fn(
        |_req: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) },
    ));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("traceparent"));
}
