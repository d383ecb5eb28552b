//! RED metrics layer: exact series and values recorded through a local `DebuggingRecorder`.
#![cfg(feature = "metrics")]

mod support;

use std::{convert::Infallible, time::Duration};

use http::{Method, Request, Response, StatusCode};
use palisade::{
    BoxError,
    metrics::{ClientMetricsLayer, ServerMetricsLayer, target_fn},
};
use support::{Recorder, Value, series};
use tower::{Layer, Service, ServiceExt, service_fn};

const DURATION: &str = "http_server_request_duration_seconds";
const ACTIVE: &str = "http_server_active_requests";

/// A handler that takes `delay` (paused time) and answers with the status in the `x-status` header.
fn handler(
    delay: Duration,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(move |req: Request<()>| async move {
        tokio::time::sleep(delay).await;
        let status = req.headers().get("x-status").map_or(200, |v| v.to_str().unwrap().parse().unwrap());
        Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
    })
}

fn products_route(req: &Request<()>) -> Option<&str> {
    req.uri().path().starts_with("/v1/products/").then_some("/v1/products/{id}")
}

fn request(method: Method, uri: &str, status: u16) -> Request<()> {
    Request::builder().method(method).uri(uri).header("x-status", status).body(()).unwrap()
}

#[test]
fn server_records_duration_per_method_route_and_status() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ServerMetricsLayer::builder()
            .target(products_route)
            .build()
            .unwrap()
            .layer(handler(Duration::from_millis(250)));
        svc.clone().oneshot(request(Method::GET, "/v1/products/42", 200)).await.unwrap();
        svc.clone().oneshot(request(Method::GET, "/v1/products/7", 200)).await.unwrap();
        svc.clone().oneshot(request(Method::POST, "/v1/products/7", 201)).await.unwrap();
        svc.clone().oneshot(request(Method::GET, "/v1/products/8", 404)).await.unwrap();
        // No template: recorded as `unmatched`, not as the path.
        svc.oneshot(request(Method::GET, "/elsewhere", 404)).await.unwrap();
    });
    let route = r#"http_route="/v1/products/{id}""#;
    assert_eq!(
        recorder.snapshot(),
        series([
            (&format!(r#"{ACTIVE}{{http_request_method="GET",{route}}}"#), Value::Gauge(0.0)),
            (&format!(r#"{ACTIVE}{{http_request_method="POST",{route}}}"#), Value::Gauge(0.0)),
            (&format!(r#"{ACTIVE}{{http_request_method="GET",http_route="unmatched"}}"#), Value::Gauge(0.0)),
            (
                &format!(
                    r#"{DURATION}{{http_request_method="GET",{route},http_response_status_code="200"}}"#
                ),
                Value::Histogram(vec![0.25, 0.25])
            ),
            (
                &format!(
                    r#"{DURATION}{{http_request_method="POST",{route},http_response_status_code="201"}}"#
                ),
                Value::Histogram(vec![0.25])
            ),
            (
                &format!(
                    r#"{DURATION}{{http_request_method="GET",{route},http_response_status_code="404"}}"#
                ),
                Value::Histogram(vec![0.25])
            ),
            (
                &format!(
                    r#"{DURATION}{{http_request_method="GET",http_route="unmatched",http_response_status_code="404"}}"#
                ),
                Value::Histogram(vec![0.25])
            ),
        ])
    );
}

#[test]
fn uncommon_status_codes_are_labelled_by_number() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ServerMetricsLayer::builder()
            .target(products_route)
            .build()
            .unwrap()
            .layer(handler(Duration::from_millis(5)));
        for status in [299, 299, 599, 103] {
            svc.clone().oneshot(request(Method::GET, "/v1/products/1", status)).await.unwrap();
        }
    });
    let histograms: Vec<(String, Value)> =
        recorder.snapshot().into_iter().filter(|(k, _)| k.starts_with(DURATION)).collect();
    let base = r#"http_request_method="GET",http_route="/v1/products/{id}""#;
    assert_eq!(
        histograms,
        [
            (
                format!(r#"{DURATION}{{{base},http_response_status_code="103"}}"#),
                Value::Histogram(vec![0.005])
            ),
            (
                format!(r#"{DURATION}{{{base},http_response_status_code="299"}}"#),
                Value::Histogram(vec![0.005, 0.005])
            ),
            (
                format!(r#"{DURATION}{{{base},http_response_status_code="599"}}"#),
                Value::Histogram(vec![0.005])
            ),
        ]
    );
}

#[test]
fn inner_error_is_labelled_error_and_passed_through_unchanged() {
    let recorder = Recorder::new();
    let err = recorder.run(async {
        let failing = service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<Response<()>, BoxError>("connection reset".into())
        });
        ClientMetricsLayer::new("payments")
            .layer(failing)
            .oneshot(request(Method::PUT, "/", 200))
            .await
            .unwrap_err()
    });
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(
        recorder.snapshot(),
        series([
            (
                r#"http_client_active_requests{http_request_method="PUT",server_address="payments"}"#,
                Value::Gauge(0.0)
            ),
            (
                r#"http_client_request_duration_seconds{http_request_method="PUT",server_address="payments",http_response_status_code="error"}"#,
                Value::Histogram(vec![0.1])
            ),
        ])
    );
}

#[test]
fn active_gauge_counts_calls_in_flight_and_a_dropped_call_releases_it() {
    let recorder = Recorder::new();
    let pending = service_fn(|_req: Request<()>| std::future::pending::<Result<Response<()>, Infallible>>());
    let mut svc = ServerMetricsLayer::builder().target(products_route).build().unwrap().layer(pending);
    let gauge = format!(r#"{ACTIVE}{{http_request_method="GET",http_route="/v1/products/{{id}}"}}"#);

    let (first, second) = recorder.with(|| {
        (
            svc.call(request(Method::GET, "/v1/products/1", 200)),
            svc.call(request(Method::GET, "/v1/products/2", 200)),
        )
    });
    assert_eq!(recorder.snapshot(), series([(&gauge, Value::Gauge(2.0))]));

    // Cancelled (dropped) calls: the gauge goes down, and no duration is recorded.
    drop(first);
    assert_eq!(recorder.snapshot(), series([(&gauge, Value::Gauge(-1.0))]), "snapshots are deltas");
    drop(second);
    assert_eq!(recorder.snapshot(), series([(&gauge, Value::Gauge(-1.0))]));
}

#[test]
fn active_gauge_is_up_while_the_call_runs() {
    let recorder = Recorder::new();
    let gauge = format!(r#"{ACTIVE}{{http_request_method="GET",http_route="/v1/products/{{id}}"}}"#);
    let mid_flight = recorder.run(async {
        let svc = ServerMetricsLayer::builder()
            .target(products_route)
            .build()
            .unwrap()
            .layer(handler(Duration::from_secs(1)));
        let call = svc.oneshot(request(Method::GET, "/v1/products/1", 200));
        tokio::pin!(call);
        let mid_flight = tokio::select! {
            _ = &mut call => panic!("the call takes 1 s"),
            () = tokio::time::sleep(Duration::from_millis(500)) => recorder.snapshot(),
        };
        call.await.unwrap();
        mid_flight
    });
    assert_eq!(mid_flight, series([(&gauge, Value::Gauge(1.0))]));
    let after = recorder.snapshot();
    assert_eq!(after[&gauge], Value::Gauge(-1.0), "released on completion (delta since the last snapshot)");
}

#[test]
fn extension_methods_share_the_other_label() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ServerMetricsLayer::builder()
            .target(products_route)
            .build()
            .unwrap()
            .layer(handler(Duration::ZERO));
        for method in ["PURGE", "PROPFIND", "X-CUSTOM"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            svc.clone().oneshot(request(method, "/v1/products/1", 200)).await.unwrap();
        }
    });
    assert_eq!(
        recorder.snapshot(),
        series([
            (
                r#"http_server_active_requests{http_request_method="_OTHER",http_route="/v1/products/{id}"}"#,
                Value::Gauge(0.0)
            ),
            (
                r#"http_server_request_duration_seconds{http_request_method="_OTHER",http_route="/v1/products/{id}",http_response_status_code="200"}"#,
                Value::Histogram(vec![0.0, 0.0, 0.0])
            ),
        ])
    );
}

#[test]
fn targets_past_the_cap_are_recorded_as_other_across_clones_and_services() {
    let recorder = Recorder::new();
    recorder.run(async {
        // The raw path as the route: leaky on purpose, the cap must contain it.
        let leaky = target_fn(|req: &Request<()>| Some(req.uri().path()));
        let layer = ServerMetricsLayer::builder().target(leaky).max_targets(2).build().unwrap();
        // Two services from one layer, and clones of them: one shared cache and one shared cap.
        let a = layer.layer(handler(Duration::ZERO));
        let b = layer.layer(handler(Duration::ZERO));
        for path in ["/a", "/b", "/c", "/d"] {
            a.clone().oneshot(request(Method::GET, path, 200)).await.unwrap();
            b.clone().oneshot(request(Method::GET, path, 200)).await.unwrap();
        }
    });
    let routes: Vec<(String, Value)> =
        recorder.snapshot().into_iter().filter(|(k, _)| k.starts_with(DURATION)).collect();
    let key = |route: &str| {
        format!(
            r#"{DURATION}{{http_request_method="GET",http_route="{route}",http_response_status_code="200"}}"#
        )
    };
    assert_eq!(
        routes,
        [
            (key("/a"), Value::Histogram(vec![0.0; 2])),
            (key("/b"), Value::Histogram(vec![0.0; 2])),
            (key("_OTHER"), Value::Histogram(vec![0.0; 4])),
        ]
    );
}

#[test]
fn max_targets_must_be_positive_and_bounded() {
    let server = |max| ServerMetricsLayer::builder().max_targets(max).build();
    assert_eq!(server(0).unwrap_err().setting(), "max_targets");
    assert_eq!(server(1 << 17).unwrap_err().setting(), "max_targets");
    assert!(server(1 << 16).is_ok());
    let client = |max| ClientMetricsLayer::builder().max_targets(max).build();
    assert_eq!(client(0).unwrap_err().setting(), "max_targets");
    assert!(client(1).is_ok());
}

#[test]
fn client_with_a_peer_name_labels_every_call_with_it() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ClientMetricsLayer::new("payments").layer(handler(Duration::from_millis(50)));
        svc.clone().oneshot(request(Method::POST, "http://10.0.0.7:8084/v1/payments", 201)).await.unwrap();
        svc.oneshot(request(Method::POST, "http://10.0.0.8:8084/v1/payments", 503)).await.unwrap();
    });
    let key = |status: u16| {
        format!(
            r#"http_client_request_duration_seconds{{http_request_method="POST",server_address="payments",http_response_status_code="{status}"}}"#
        )
    };
    assert_eq!(
        recorder.snapshot(),
        series([
            (
                r#"http_client_active_requests{http_request_method="POST",server_address="payments"}"#,
                Value::Gauge(0.0)
            ),
            (&key(201), Value::Histogram(vec![0.05])),
            (&key(503), Value::Histogram(vec![0.05])),
        ])
    );
}

#[test]
fn a_client_built_with_a_target_labels_calls_with_it() {
    let recorder = Recorder::new();
    recorder.run(async {
        let tenant =
            target_fn(|req: &Request<()>| req.headers().get("x-tenant").and_then(|v| v.to_str().ok()));
        let svc =
            ClientMetricsLayer::builder().target(tenant).build().unwrap().layer(handler(Duration::ZERO));
        let mut req = request(Method::GET, "http://shared-gateway/v1/things", 200);
        req.headers_mut().insert("x-tenant", "acme".parse().unwrap());
        svc.oneshot(req).await.unwrap();
    });
    let active = r#"http_client_active_requests{http_request_method="GET",server_address="acme"}"#;
    assert_eq!(recorder.snapshot().get(active), Some(&Value::Gauge(0.0)));
}

#[test]
fn client_by_host_labels_calls_with_the_uri_host() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ClientMetricsLayer::builder().build().unwrap().layer(handler(Duration::ZERO));
        for uri in [
            "http://catalog:8082/v1/products",
            "http://catalog:9999/x",
            "http://users/v1/users/me",
            "/relative",
        ] {
            svc.clone().oneshot(request(Method::GET, uri, 200)).await.unwrap();
        }
    });
    let histograms: Vec<(String, Value)> = recorder
        .snapshot()
        .into_iter()
        .filter(|(k, _)| k.starts_with("http_client_request_duration_seconds"))
        .collect();
    let key = |peer: &str| {
        format!(
            r#"http_client_request_duration_seconds{{http_request_method="GET",server_address="{peer}",http_response_status_code="200"}}"#
        )
    };
    assert_eq!(
        histograms,
        [
            (key("_OTHER"), Value::Histogram(vec![0.0])),
            (key("catalog"), Value::Histogram(vec![0.0, 0.0])),
            (key("users"), Value::Histogram(vec![0.0])),
        ]
    );
}

#[test]
fn a_closure_target_can_borrow_from_the_request() {
    #[derive(Clone)]
    struct Template(&'static str);
    let recorder = Recorder::new();
    recorder.run(async {
        let route = target_fn(|req: &Request<()>| req.extensions().get::<Template>().map(|t| t.0));
        let svc = ServerMetricsLayer::builder().target(route).build().unwrap().layer(handler(Duration::ZERO));
        let mut req = request(Method::DELETE, "/v1/orders/9", 204);
        req.extensions_mut().insert(Template("/v1/orders/{id}"));
        svc.oneshot(req).await.unwrap();
    });
    assert!(recorder.snapshot().contains_key(
        r#"http_server_request_duration_seconds{http_request_method="DELETE",http_route="/v1/orders/{id}",http_response_status_code="204"}"#
    ));
}

#[test]
fn wrapper_exposes_the_inner_service() {
    let mut svc = ServerMetricsLayer::new().layer(StatusCode::OK);
    assert_eq!(*svc.get_ref(), StatusCode::OK);
    *svc.get_mut() = StatusCode::ACCEPTED;
    assert_eq!(svc.into_inner(), StatusCode::ACCEPTED);
}

/// Without the `axum` feature the default target finds no template: everything is `unmatched`, never
/// the raw path.
#[cfg(not(feature = "axum"))]
#[test]
fn without_axum_the_default_server_target_is_unmatched() {
    let recorder = Recorder::new();
    recorder.run(async {
        let svc = ServerMetricsLayer::new().layer(handler(Duration::ZERO));
        for path in ["/a", "/b/1", "/c/2/3"] {
            svc.clone().oneshot(request(Method::GET, path, 200)).await.unwrap();
        }
    });
    let keys: Vec<String> = recorder.snapshot().into_keys().collect();
    assert_eq!(
        keys,
        [
            r#"http_server_active_requests{http_request_method="GET",http_route="unmatched"}"#,
            r#"http_server_request_duration_seconds{http_request_method="GET",http_route="unmatched",http_response_status_code="200"}"#,
        ]
    );
}

#[cfg(feature = "axum")]
mod axum_router {
    use axum::{Router, body::Body, routing::get};

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/v1/products/{id}", get(|| async { "product" }))
            .route("/v1/orders", get(|| async { "orders" }).post(|| async { StatusCode::CREATED }))
            .layer(ServerMetricsLayer::new())
    }

    fn get_request(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn matched_path_is_the_route_label() {
        let recorder = Recorder::new();
        recorder.run(async {
            let app = app();
            for uri in ["/v1/products/42", "/v1/products/7"] {
                assert_eq!(app.clone().oneshot(get_request(uri)).await.unwrap().status(), 200);
            }
            let post = Request::post("/v1/orders").body(Body::empty()).unwrap();
            assert_eq!(app.oneshot(post).await.unwrap().status(), 201);
        });
        assert_eq!(
            recorder.snapshot(),
            series([
                (
                    r#"http_server_active_requests{http_request_method="GET",http_route="/v1/products/{id}"}"#,
                    Value::Gauge(0.0)
                ),
                (
                    r#"http_server_active_requests{http_request_method="POST",http_route="/v1/orders"}"#,
                    Value::Gauge(0.0)
                ),
                (
                    r#"http_server_request_duration_seconds{http_request_method="GET",http_route="/v1/products/{id}",http_response_status_code="200"}"#,
                    Value::Histogram(vec![0.0, 0.0])
                ),
                (
                    r#"http_server_request_duration_seconds{http_request_method="POST",http_route="/v1/orders",http_response_status_code="201"}"#,
                    Value::Histogram(vec![0.0])
                ),
            ])
        );
    }

    #[test]
    fn a_thousand_unknown_paths_make_one_unmatched_series() {
        let recorder = Recorder::new();
        recorder.run(async {
            let app = app();
            for i in 0..1_000 {
                let res = app.clone().oneshot(get_request(&format!("/wp-admin/{i}/x{i}.php"))).await.unwrap();
                assert_eq!(res.status(), 404);
            }
        });
        let snapshot = recorder.snapshot();
        let histograms: Vec<(&String, &Value)> =
            snapshot.iter().filter(|(k, _)| k.starts_with("http_server_request_duration_seconds")).collect();
        assert_eq!(histograms.len(), 1, "{histograms:?}");
        assert_eq!(
            histograms[0].0,
            r#"http_server_request_duration_seconds{http_request_method="GET",http_route="unmatched",http_response_status_code="404"}"#
        );
        assert_eq!(histograms[0].1, &Value::Histogram(vec![0.0; 1_000]));
        assert_eq!(snapshot.len(), 2, "plus one gauge: {snapshot:?}");
    }

    #[test]
    fn route_layer_does_not_record_unmatched_requests() {
        let recorder = Recorder::new();
        recorder.run(async {
            let app = Router::new()
                .route("/v1/orders", get(|| async { "orders" }))
                .route_layer(ServerMetricsLayer::new());
            assert_eq!(app.clone().oneshot(get_request("/nope")).await.unwrap().status(), 404);
            assert_eq!(app.oneshot(get_request("/v1/orders")).await.unwrap().status(), 200);
        });
        let keys: Vec<String> = recorder.snapshot().into_keys().collect();
        assert_eq!(
            keys,
            [
                r#"http_server_active_requests{http_request_method="GET",http_route="/v1/orders"}"#,
                r#"http_server_request_duration_seconds{http_request_method="GET",http_route="/v1/orders",http_response_status_code="200"}"#,
            ]
        );
    }
}

/// A request made before `main` installs its recorder (a start-up probe), then traffic: the layers
/// built first still record, with the recorder that arrived later.
#[test]
fn layers_built_before_the_recorder_is_installed_record_their_series() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use palisade::retry::{Backoff, Budget, RetryBody, RetryLayer};
    use palisade::timeout::TimeoutLayer;

    let metrics = ServerMetricsLayer::builder().target(products_route).build().unwrap();
    let retry = RetryLayer::builder()
        .name("late")
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(Budget::unlimited())
        .build()
        .unwrap();
    let timeout = TimeoutLayer::builder(Duration::from_millis(100)).name("late").build().unwrap();

    let server = metrics.layer(handler(Duration::from_millis(10)));
    let flaky = retry.layer(service_fn(|_req: Request<RetryBody<Empty<Bytes>>>| async {
        Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap())
    }));
    let slow = timeout.layer(handler(Duration::from_secs(1)));

    let early =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    early.block_on(server.clone().oneshot(request(Method::GET, "/v1/products/1", 200))).unwrap();

    let recorder = Recorder::new();
    recorder.run(async {
        server.clone().oneshot(request(Method::GET, "/v1/products/2", 200)).await.unwrap();
        let res =
            flaky.clone().oneshot(Request::get("http://dep/").body(Empty::new()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 503, "three attempts failed: two retries counted");
        slow.clone().oneshot(request(Method::GET, "/", 200)).await.unwrap_err();
    });
    let route = r#"http_route="/v1/products/{id}""#;
    assert_eq!(
        recorder.snapshot(),
        series([
            (&format!(r#"{ACTIVE}{{http_request_method="GET",{route}}}"#), Value::Gauge(0.0)),
            (
                &format!(
                    r#"{DURATION}{{http_request_method="GET",{route},http_response_status_code="200"}}"#
                ),
                Value::Histogram(vec![0.01])
            ),
            (r#"palisade_retry_retries_total{name="late"}"#, Value::Counter(2)),
            (r#"palisade_timeout_total{name="late",kind="timeout"}"#, Value::Counter(1)),
        ])
    );
}
