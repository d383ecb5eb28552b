//! The breaker's per-request paths allocate nothing: a keyed lookup of an existing key, a call
//! through a keyed or a plain breaker (counted with `stats_alloc`).
#![cfg(feature = "circuit-breaker")]

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use palisade::circuit_breaker::CircuitBreakerLayer;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations made while `f` runs (the process's: nextest runs this binary's one test alone).
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let out = f();
    (out, region.change().allocations)
}

fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("ready at once"),
    }
}

fn backend()
-> impl Service<Request<&'static str>, Response = Response<()>, Error = std::convert::Infallible> + Clone {
    service_fn(|_req: Request<&'static str>| std::future::ready(Ok(Response::new(()))))
}

#[expect(clippy::unnecessary_wraps, reason = "a key function's signature")]
fn key<'a>(req: &'a Request<&'static str>) -> Option<&'a str> {
    Some(req.body())
}

fn call<S: Service<Request<&'static str>>>(svc: &mut S, req: Request<&'static str>) {
    assert!(now(std::future::poll_fn(|cx| svc.poll_ready(cx))).is_ok());
    assert!(now(svc.call(req)).is_ok());
}

#[test]
fn per_request_paths_allocate_nothing() {
    let registry = CircuitBreakerLayer::builder().build_registry().unwrap();
    let mut keyed = registry.keyed_layer(key).layer(backend());
    let mut plain = CircuitBreakerLayer::builder().build().unwrap().layer(backend());
    let mut bare = backend();
    // Warm up: the key's breaker is created, thread-locals are initialised, the window is warm
    // (`minimum_calls` is 20 by default).
    for _ in 0..30 {
        call(&mut keyed, Request::new("payments"));
        call(&mut plain, Request::new("payments"));
    }

    let (_, layer) = allocations(|| registry.layer("payments"));
    assert_eq!(layer, 0, "looking an existing key up allocates nothing");

    let requests: Vec<_> = (0..3).map(|_| Request::new("payments")).collect();
    let mut requests = requests.into_iter();
    let ((), bare) = allocations(|| call(&mut bare, requests.next().unwrap()));
    let ((), keyed) = allocations(|| call(&mut keyed, requests.next().unwrap()));
    let ((), plain) = allocations(|| call(&mut plain, requests.next().unwrap()));
    assert_eq!((keyed, plain), (bare, bare), "the breakers add no allocation to a call");
}
