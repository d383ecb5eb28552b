//! The bounded registry and the keyed breaker.

use std::time::Duration;

use http::Request;
use palisade::circuit_breaker::{CircuitBreakerLayer, State};
use tokio::time::advance;
use tower::Layer;

use crate::support::{Backend, Plan, plan, rejection, send};

/// The key of a request: its `x-tenant` header.
fn tenant(req: &Request<Plan>) -> Option<&str> {
    req.headers().get("x-tenant").and_then(|value| value.to_str().ok())
}

fn for_tenant(tenant: &str, status: u16) -> Request<Plan> {
    let mut req = plan(status);
    req.headers_mut().insert("x-tenant", tenant.parse().unwrap());
    req
}

#[tokio::test(start_paused = true)]
async fn each_key_gets_its_own_breaker_and_unkeyed_requests_pass() {
    let registry = CircuitBreakerLayer::builder().consecutive_failures(2).build_registry().unwrap();
    let backend = Backend::default();
    let mut svc = registry.keyed_layer(tenant).layer(backend.service());

    for _ in 0..2 {
        send(&mut svc, for_tenant("a", 500)).await.unwrap();
    }
    assert!(rejection(send(&mut svc, for_tenant("a", 200)).await).is_some(), "a's breaker is open");
    send(&mut svc, for_tenant("b", 200)).await.unwrap();
    for _ in 0..5 {
        send(&mut svc, plan(500)).await.unwrap(); // no key: unguarded, never rejected
    }
    assert_eq!(backend.calls(), 8);
    let states: Vec<_> = registry.handles().iter().map(|h| (h.name().to_owned(), h.state())).collect();
    assert_eq!(states, [("a".to_owned(), State::Open), ("b".to_owned(), State::Closed)]);
}

#[tokio::test(start_paused = true)]
async fn the_registry_evicts_idle_closed_breakers_past_its_capacity() {
    let registry = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_interval(Duration::from_secs(3600))
        .registry_capacity(2)
        .registry_idle_timeout(Duration::from_secs(60))
        .build_registry()
        .unwrap();
    let mut svc = registry.keyed_layer(tenant).layer(Backend::default().service());

    send(&mut svc, for_tenant("open", 500)).await.unwrap();
    send(&mut svc, for_tenant("idle", 200)).await.unwrap();
    advance(Duration::from_secs(61)).await;
    send(&mut svc, for_tenant("new", 200)).await.unwrap();
    let names: Vec<_> = registry.handles().iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["new", "open"], "the idle closed breaker went; the open one stays");

    // A breaker in use (here: held by a layer) is never evicted, even when idle: the bound is soft.
    let held = registry.layer("held");
    advance(Duration::from_secs(61)).await;
    send(&mut svc, for_tenant("newer", 200)).await.unwrap();
    let names: Vec<_> = registry.handles().iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["held", "newer", "open"]);
    drop(held);
    assert!(rejection(send(&mut svc, for_tenant("open", 200)).await).is_some(), "kept its state");
}

#[test]
fn builder_rejects_a_registry_of_zero_breakers() {
    let err = CircuitBreakerLayer::builder().registry_capacity(0).build_registry().unwrap_err();
    assert!(err.to_string().contains("registry_capacity"), "{err}");
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn one_breaker_per_axum_route_template() {
    use axum::Router;
    use axum::routing::get;
    use http::Response;
    use http::StatusCode;
    use palisade::circuit_breaker::MatchedPathKey;
    use tower::ServiceExt;

    let registry = CircuitBreakerLayer::builder().consecutive_failures(1).build_registry().unwrap();
    let app = Router::new()
        .route("/items/{id}", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/users/{id}", get(|| async { StatusCode::OK }))
        // The breaker's errors are `BoxError`: the problem layer makes them responses for axum.
        .layer(
            tower::ServiceBuilder::new()
                .layer(palisade::problem::ProblemLayer::new())
                .layer(registry.keyed_layer(MatchedPathKey)),
        );
    let get = |uri: &str| Request::get(uri).body(axum::body::Body::empty()).unwrap();

    assert_eq!(app.clone().oneshot(get("/items/1")).await.unwrap().status(), 500);
    let res: Response<_> = app.clone().oneshot(get("/items/2")).await.unwrap();
    assert_eq!(res.status(), 503, "the route template's breaker is open, for every id");
    assert_eq!(app.clone().oneshot(get("/users/1")).await.unwrap().status(), 200, "other routes work");
    assert_eq!(app.clone().oneshot(get("/nowhere")).await.unwrap().status(), 404);
    let names: Vec<_> = registry.handles().iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["/items/{id}", "/users/{id}"]);
}
