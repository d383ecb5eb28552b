//! OTLP export end to end: two kit services on loopback, one calling the other (the token check a
//! service makes against users), an OTLP/HTTP collector on loopback decoding what is exported.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use bytes::Bytes;
use figment::Figment;
use http::StatusCode;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kit::auth::{AuthUser, Role};
use kit::config::Settings;
use kit::db::{Migrations, temp_sqlite_url};
use kit::server::{Shutdown, ShutdownTrigger};
use kit::service::{Context, RoutesFuture, Service};
use kit::telemetry::otlp::{Otlp, OtlpConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

static NO_MIGRATIONS: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

fn no_openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}

fn no_keys() -> Vec<String> {
    Vec::new()
}

/// Stands in for users: `GET /v1/users/me` answers the token check of the other service.
static USERS: Service = Service {
    name: "users",
    default_port: 0,
    migrations: &NO_MIGRATIONS,
    openapi: no_openapi,
    routes: users_routes,
    config_keys: no_keys,
    calls: &[],
};

fn users_routes(_: Context) -> RoutesFuture {
    Box::pin(async {
        Ok(Router::new().route(
            "/v1/users/me",
            get(|| async { axum::Json(serde_json::json!({ "id": "user-1", "role": "customer" })) }),
        ))
    })
}

/// A service with one signed-in route: the kit asks users whether the token is current before the
/// handler runs (`kit::token_check`), a call to another service inside the request.
static FRONT: Service = Service {
    name: "front",
    default_port: 0,
    migrations: &NO_MIGRATIONS,
    openapi: no_openapi,
    routes: front_routes,
    config_keys: no_keys,
    calls: &[],
};

fn front_routes(_: Context) -> RoutesFuture {
    Box::pin(async { Ok(Router::new().route("/v1/whoami", get(|user: AuthUser| async move { user.id }))) })
}

/// Every span the collector received, with the `service.name` of its resource.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
        let service_name = string_attribute(&attributes, "service.name").unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            spans.extend(scope_spans.spans.into_iter().map(|span| (service_name.clone(), span)));
        }
    }
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

/// A collector accepting `POST /v1/traces` on a loopback port; its traces URL.
async fn start_collector() -> (Collector, String) {
    let collector = Collector::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(collector.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (collector, url)
}

/// Serves `service` with `settings` on a loopback port: its base URL, JWT keys and shutdown.
async fn serve(
    service: &'static Service,
    settings: &Settings,
) -> (String, kit::auth::JwtKeys, ShutdownTrigger) {
    let app = service.app(settings).await.unwrap();
    let keys = app.keys.clone();
    let server = app.serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let base = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = Shutdown::manual();
    tokio::spawn(server.run(shutdown));
    (base, keys, trigger)
}

/// Users and front (which checks tokens with users) on loopback; front's base URL and keys.
async fn two_services() -> (String, kit::auth::JwtKeys, [ShutdownTrigger; 2]) {
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("users.database_url", temp_sqlite_url("otlp-users")))
            .merge(("front.database_url", temp_sqlite_url("otlp-front"))),
    );
    let (users, _, users_stop) = serve(&USERS, &settings).await;
    let settings = settings.with_default("front.downstreams.users.url", users);
    let (front, keys, front_stop) = serve(&FRONT, &settings).await;
    (front, keys, [users_stop, front_stop])
}

/// `GET front/v1/whoami` as a signed-in user, continuing the trace `TRACE_ID` from `PARENT_ID`.
async fn whoami(front: &str, keys: &kit::auth::JwtKeys) -> http::Response<Bytes> {
    let token = keys.issue("user-1", "someone@example.com", Role::Customer).unwrap();
    let request = http::Request::get(format!("{front}/v1/whoami"))
        .header("authorization", format!("Bearer {token}"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (parts, body) = client.request(request).await.unwrap().into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[tokio::test]
async fn one_cross_service_request_is_one_trace_with_the_right_parents() {
    let (collector, traces_endpoint) = start_collector().await;
    let otlp = Otlp::start(&OtlpConfig { traces_endpoint, service_name: "shop-test".to_owned() }).unwrap();
    // The test's runtime has one thread, so every task of both services runs under this subscriber.
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(otlp.layer()));
    let (front, keys, _stop) = two_services().await;

    let res = whoami(&front, &keys).await;
    assert_eq!((res.status(), res.body().as_ref()), (StatusCode::OK, b"user-1".as_ref()));

    // Spans end as their futures are dropped: flush until all three arrived (bounded).
    let mut spans = Vec::new();
    for _ in 0..50 {
        otlp.flush().await.unwrap();
        spans = collector.spans.lock().unwrap().clone();
        if spans.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary: Vec<_> = spans
        .iter()
        .map(|(_, s)| (s.name.clone(), string_attribute(&s.attributes, "shop.service"), hex(&s.span_id)))
        .collect();
    assert_eq!(spans.len(), 3, "front's server span, its client span, users' server span: {summary:?}");
    for (service_name, span) in &spans {
        assert_eq!(hex(&span.trace_id), TRACE_ID, "{} is in the caller's trace", span.name);
        assert_eq!(service_name, "shop-test");
    }
    let server = |service: &str| {
        spans
            .iter()
            .map(|(_, span)| span)
            .find(|s| {
                s.name == "http_request"
                    && string_attribute(&s.attributes, "shop.service").as_deref() == Some(service)
            })
            .unwrap_or_else(|| panic!("no server span of {service}: {summary:?}"))
    };
    let (front_server, users_server) = (server("front"), server("users"));
    let client = spans.iter().map(|(_, s)| s).find(|s| s.name == "http_client_request").unwrap();

    assert_eq!(hex(&front_server.parent_span_id), PARENT_ID, "the caller's span is front's parent");
    assert_eq!(front_server.kind, SpanKind::Server as i32);
    assert_eq!(hex(&client.parent_span_id), hex(&front_server.span_id), "front's call is its child");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(hex(&users_server.parent_span_id), hex(&client.span_id), "users serves front's call");
    assert_eq!(users_server.kind, SpanKind::Server as i32);
    // The answer's `traceparent` names front's exported server span.
    let echoed = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(echoed, format!("00-{TRACE_ID}-{}-01", hex(&front_server.span_id)));

    otlp.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_work_while_the_collector_is_unreachable() {
    // A port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config =
        OtlpConfig { traces_endpoint: format!("http://{closed}/v1/traces"), service_name: "shop".into() };
    let otlp = Otlp::start(&config).unwrap();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(otlp.layer()));
    let (front, keys, _stop) = two_services().await;

    for _ in 0..3 {
        let res = whoami(&front, &keys).await;
        assert_eq!((res.status(), res.body().as_ref()), (StatusCode::OK, b"user-1".as_ref()));
    }
    assert!(otlp.flush().await.is_err(), "the export failed, and said so");
}
