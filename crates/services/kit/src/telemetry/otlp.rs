//! Span export over OTLP/HTTP (protobuf), on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; without either, nothing here runs: no exporter, no
//! thread, no span per request.
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL (`http://127.0.0.1:4318`); spans go to `<it>/v1/traces` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full traces URL, used as it is (wins over the one above) |
//! | `OTEL_SDK_DISABLED=true` | no export, whatever the endpoint |
//! | `OTEL_SERVICE_NAME` | the resource's `service.name` (default: the service `shop <service>` runs, `shop` for `shop all`) |
//! | `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER` | as the OpenTelemetry SDK reads them |
//!
//! Only `http/protobuf` is built in (no gRPC, no TLS: a collector sidecar or agent on the node
//! listens on plain HTTP); an `OTEL_EXPORTER_OTLP_PROTOCOL` naming another protocol gets a warning.
//!
//! **What is exported.** When exporting, the server stack opens palisade's `http_request` span per
//! request (a child of the caller's `traceparent`, kind `server`, attribute `shop.service`) and every
//! [`Downstream`](crate::client::Downstream) attempt runs in an `http_client_request` span (kind
//! `client`) whose ids are the `traceparent` sent, so the callee's server span is the child of the
//! caller's client span: one trace across services. Log events inside a span become span events.
//! Without export the server makes no span (docs/decisions/005): `trace_id` on log lines comes
//! from the trace context.
//!
//! **One resource per process** (docs/decisions/022): `shop all` runs every service in one process
//! with one tracer, so its spans share `service.name` (`shop`) and carry `shop.service`; one service
//! per process, the deployed shape, gives each its own `service.name`.
//!
//! **Where the export runs.** The SDK's batch processor exports from its own thread; the HTTP client
//! here runs each export on a small runtime of that thread, so exporting never takes a worker of the
//! service's runtime and a slow or absent collector never delays a request. A failing collector is
//! logged once (WARN) and its recovery once (INFO), not on every batch. [`Otlp::shutdown`] flushes
//! what is queued.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tower::util::MapRequestLayer;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};

use crate::BoxError;

/// The span attribute naming the service of a server span (all of `shop all` shares one
/// `service.name`).
pub const SERVICE_ATTRIBUTE: &str = "shop.service";

/// How long one export request may take (the OTLP default timeout).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a collector's answer that is read (it is a small protobuf message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where and as whom spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's traces URL (`http://127.0.0.1:4318/v1/traces`).
    pub traces_endpoint: String,
    /// The resource's `service.name`.
    pub service_name: String,
}

impl OtlpConfig {
    /// The configuration the process environment names (see the [module docs](self)), `None` when
    /// no endpoint is set.
    pub fn from_env(default_service_name: &str) -> Option<Self> {
        Self::from_vars(|name| std::env::var(name).ok(), default_service_name)
    }

    /// [`from_env`](Self::from_env) with the variables read through `var` (tests pass a map: the
    /// process environment is shared by every test thread).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, default_service_name: &str) -> Option<Self> {
        let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let traces_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            set("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })?;
        let service_name = set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service_name.to_owned());
        Some(Self { traces_endpoint, service_name })
    }
}

/// The protocol the variables ask for when it is not `http/protobuf`, the only one built in.
pub fn unsupported_protocol(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .into_iter()
        .find_map(|name| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
        .filter(|protocol| protocol != "http/protobuf")
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process has started an exporter ([`Otlp::start`]): the server stack then opens a
/// span per request. Read when an app is built, never per request.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A running exporter: add its [`layer`](Self::layer) to the subscriber, and
/// [`shutdown`](Self::shutdown) it when the process stops.
#[derive(Debug)]
pub struct Otlp {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Otlp {
    /// Starts the batch exporter for `config` (its thread, no connection yet). From now on apps
    /// built in this process open request spans ([`exporting`]).
    pub fn start(config: &OtlpConfig) -> Result<Self, BoxError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ExportClient::default())
            .with_endpoint(config.traces_endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let scope = opentelemetry::InstrumentationScope::builder("palisade")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Self { provider, tracer })
    }

    /// The `tracing` layer that turns spans into exported OpenTelemetry spans. Source locations,
    /// thread names, targets and busy/idle times are left out: they would cost on every span and
    /// say nothing the span's name and attributes do not.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
    }

    /// Exports every span ended so far, waiting for the collector (at most the export timeout).
    pub async fn flush(&self) -> Result<(), BoxError> {
        let provider = self.provider.clone();
        // The SDK's flush blocks until its thread has exported: off the runtime's workers.
        tokio::task::spawn_blocking(move || provider.force_flush()).await??;
        Ok(())
    }

    /// Flushes what is queued and stops the exporter's thread; spans ended later are dropped.
    pub async fn shutdown(self) -> Result<(), BoxError> {
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown()).await??;
        Ok(())
    }
}

/// The layer that names the service on the request's server span (`shop.service`), inside the
/// server trace layer (whose span is the current one while the stack's `call` runs).
pub(crate) fn service_attribute(
    service: &'static str,
) -> MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    MapRequestLayer::new(move |req: Request<Body>| {
        tracing::Span::current().set_attribute(SERVICE_ATTRIBUTE, service);
        req
    })
}

/// The exporter's HTTP client: hyper, on a current-thread runtime of the exporting thread (the
/// SDK's batch processor polls the export with a plain executor, where hyper alone cannot run).
#[derive(Debug)]
struct ExportClient {
    client: Client<HttpConnector, Full<Bytes>>,
    // Made on first use, so it is made, used and dropped on the exporter's thread, never inside a
    // runtime (a runtime must not be dropped there).
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    failing: AtomicBool,
}

impl Default for ExportClient {
    fn default() -> Self {
        // A connection per export (one every few seconds): a pooled one could have been closed by
        // the collector while this runtime was not running.
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http();
        Self { client, runtime: OnceLock::new(), failing: AtomicBool::new(false) }
    }
}

impl ExportClient {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let exchange = async {
            let response = self.client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(EXPORT_TIMEOUT, exchange).await.map_err(|_| "the OTLP export timed out")?
    }

    /// Logs a change between exporting and failing, once each way.
    fn report(&self, result: &Result<Response<Bytes>, HttpError>) {
        let problem = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered {}", response.status())),
            Err(err) => Some(err.to_string()),
        };
        match problem {
            Some(problem) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %problem, "OTLP span export failing; spans are dropped until it recovers");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("OTLP span export recovered");
            }
            _ => {}
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Not the SDK's batch thread: blocking here would stall a runtime.
            return Err("the OTLP export client runs on the exporter's own thread only".into());
        }
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
        });
        let result = match runtime {
            Ok(runtime) => runtime.block_on(self.send(request)),
            Err(err) => Err(format!("cannot start the OTLP export runtime: {err}").into()),
        };
        self.report(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::OtlpConfig;
    use crate::db::{Db, temp_sqlite_url};
    use crate::health::Health;

    fn from(vars: &[(&str, &str)]) -> Option<OtlpConfig> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        OtlpConfig::from_vars(|name| vars.get(name).cloned(), "shop")
    }

    #[test]
    fn no_endpoint_no_export() {
        assert_eq!(from(&[]), None);
        assert_eq!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  "), ("OTEL_SERVICE_NAME", "catalog")]), None);
        let disabled =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"), ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(from(&disabled), None);
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_signal_endpoint_is_used_as_it_is() {
        let config = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(
            config,
            OtlpConfig {
                traces_endpoint: "http://collector:4318/v1/traces".to_owned(),
                service_name: "shop".to_owned()
            }
        );
        let config = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/in"),
            ("OTEL_SERVICE_NAME", "catalog-eu"),
        ])
        .unwrap();
        assert_eq!(
            (config.traces_endpoint.as_str(), config.service_name.as_str()),
            ("http://traces:9999/in", "catalog-eu")
        );
    }

    #[test]
    fn only_http_protobuf_is_supported() {
        let var = |value: &'static str| {
            move |name: &str| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| value.to_owned())
        };
        assert_eq!(super::unsupported_protocol(var("http/protobuf")), None);
        assert_eq!(super::unsupported_protocol(var("grpc")), Some("grpc".to_owned()));
        assert_eq!(super::unsupported_protocol(|_| None), None);
    }

    /// Names of this process's threads (`comm`: at most 15 bytes each).
    #[cfg(target_os = "linux")]
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// Nothing in this test binary starts an exporter: the server makes no span per request (a
    /// subscriber that records everything would see one) and no export thread exists.
    #[tokio::test]
    async fn without_an_exporter_requests_make_no_span_and_no_export_thread_runs() {
        assert!(!super::exporting());
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let db = Db::connect(&temp_sqlite_url("otlp-off"), 1).await.unwrap();
        let health = Health::new(db, Duration::from_secs(1));
        let api = Router::new().route(
            "/v1/span",
            get(|| async { if tracing::Span::current().is_none() { "none" } else { "a span" } }),
        );
        let config = crate::config::ServiceConfig::defaults("off", 0);
        let keys = crate::auth::JwtKeys::new(b"otlp-off-test-secret", Duration::from_secs(60));
        let openapi = utoipa::openapi::OpenApiBuilder::new().build();
        let app = crate::server::app("off", api, openapi, &health, &config, keys, None).unwrap();
        let req = http::Request::get("/v1/span")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        let echoed = res.headers()["traceparent"].to_str().unwrap().to_owned();
        assert!(echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{echoed}");
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "none");
        #[cfg(target_os = "linux")]
        {
            let names = thread_names();
            assert!(!names.iter().any(|n| n.starts_with("OpenTelemetry")), "{names:?}");
        }
    }
}
