//! The HTTP server every service runs: [`app`] assembles the routes and layers; [`Server`] binds
//! first (so tests use port 0), then [`Server::run`]s until a [`Shutdown`].
//!
//! Layers on every `/v1` route (and the 404 fallback), outermost first: the palisade [`ServerStack`]
//! (trace → metrics → problem → load shedding → deadline → timeout), the JWT keys (request extension
//! for [`crate::auth`]), the body limit (413), and [`ProblemContextLayer`] (fills `instance`/`trace_id`
//! into problem documents). When spans are exported ([`telemetry::otlp`]), the trace layer opens a
//! span per request and a layer inside it names the service on that span; otherwise neither exists.
//!
//! Operational routes, outside `/v1` and outside the OpenAPI paths: `/livez`, `/readyz`, `/metrics`,
//! `/ops` (the live resilience page, [`crate::ops`]), `/openapi.json`, `/docs` (Swagger UI, assets
//! in the binary). They are added *after* the layers, so
//! no load shedding, timeout or problem rewriting ever touches them: a probe answers while the API
//! sheds load, and a `/readyz` 503 keeps its `application/health+json` body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::routing::get;
use axum::{Extension, Router};
use http::{HeaderName, HeaderValue, Method, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use palisade::InvalidConfig;
use palisade::stack::ServerStack;
use palisade::trace::ServerTraceLayer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate as _, SizeAbove};
use tower_http::cors::CorsLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{JwtKeys, TokenChecker};
use crate::client_ip::TrustedProxies;
use crate::config::ServiceConfig;
use crate::error::{ProblemContextLayer, not_found};
use crate::health::Health;
use crate::jobs::Job;
use crate::ops::Ops;
use crate::reload::Swap;
use crate::telemetry;

/// The full application of service `name`: `api` (its `/v1` routes, state applied) plus the
/// operational routes, behind every layer (see the [module docs](self)); its `/ops` page shows the
/// routes of `openapi` and no breaker or outbox (see [`app_with_ops`]).
pub fn app(
    name: &'static str,
    api: Router,
    openapi: OpenApi,
    health: &Health,
    config: &ServiceConfig,
    keys: JwtKeys,
    token_checker: Option<TokenChecker>,
) -> Result<Router, InvalidConfig> {
    app_with_ops(name, api, openapi, health, config, keys, token_checker, Ops::new(name))
}

/// [`app`], with `ops` for its `/ops` page ([`crate::ops`]): the service's breakers and outbox.
#[allow(clippy::too_many_arguments)] // `app`'s, plus the page's
pub fn app_with_ops(
    name: &'static str,
    api: Router,
    openapi: OpenApi,
    health: &Health,
    config: &ServiceConfig,
    keys: JwtKeys,
    token_checker: Option<TokenChecker>,
    ops: Ops,
) -> Result<Router, InvalidConfig> {
    // The preset's trace layer, plus one INFO event per answer unless `access_log: false`. No span
    // unless spans are exported (`trace_id` on log lines comes from the context).
    let exporting = telemetry::otlp::exporting();
    let mut trace = ServerTraceLayer::builder().span(exporting);
    if config.access_log {
        trace = trace.access_log(tracing::Level::INFO);
    }
    let stack = ServerStack::builder()
        .name(name)
        .trace(trace.build()?)
        .timeout(config.request_timeout())
        .max_in_flight(config.max_in_flight)
        .build()?;
    let ops = crate::ops::router(
        ops.with_routes(openapi.paths.paths.keys().cloned())
            .with_route_breakers(stack.route_breakers().cloned()),
        keys.clone(),
        token_checker.clone(),
    );
    let trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
        .map_err(|problem| InvalidConfig::new("trusted_proxies", problem))?;
    let service_tokens = crate::service_auth::ServiceVerifier::new(name, &config.trusted_keys)
        .map_err(|problem| InvalidConfig::new("trusted_keys", problem))?;
    let prometheus = telemetry::prometheus();
    let metrics = get(move || {
        let body = prometheus.render();
        async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body) }
    });
    // Outside everything, operational routes included.
    let edge = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .option_layer(cors(&config.cors_allowed_origins)?)
        .layer(
            CompressionLayer::new().gzip(true).compress_when(
                SizeAbove::new(config.compress_min_bytes)
                    .and(NotForContentType::GRPC)
                    .and(NotForContentType::IMAGES)
                    .and(NotForContentType::SSE),
            ),
        );
    let inner = ServiceBuilder::new()
        .layer(Extension(keys))
        .option_layer(token_checker.map(Extension))
        .layer(Extension(trusted_proxies))
        .layer(Extension(service_tokens))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(ProblemContextLayer)
        // Inside the problem context: a panic's 500 carries `instance` and `trace_id`.
        .map_response(|res: http::Response<_>| res.map(axum::body::Body::new))
        .layer(CatchPanicLayer::custom(panic_response));
    let api = Router::new().merge(api).fallback(not_found);
    // One `Router::layer` call for the whole stack: axum boxes each call's result per route and
    // clones every box level on each request, so n calls cost ~n²/2 allocations per request. Two
    // branches rather than an optional layer, so that without export the stack is what it was.
    let api = if exporting {
        let attribute = telemetry::otlp::service_attribute(name);
        api.layer(ServiceBuilder::new().layer(stack).layer(attribute).layer(inner))
    } else {
        api.layer(ServiceBuilder::new().layer(stack).layer(inner))
    };
    Ok(api
        // After `.layer`: axum leaves routes added later unwrapped.
        .merge(health.routes())
        .route("/metrics", metrics)
        .merge(ops)
        .merge(Router::from(SwaggerUi::new("/docs").url("/openapi.json", openapi)).layer(
            SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            ),
        ))
        .layer(edge))
}

/// Swagger UI's Content-Security-Policy: its bundle and initializer are files of its own (no inline
/// script), it calls only this origin ("Try it out"); it sets inline styles and uses `data:` images,
/// so those are allowed. `scripts/browser-check.sh` checks it still renders under this policy.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                            img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                            form-action 'self'; frame-ancestors 'none'";

/// CORS for `origins` (none: no layer, so no CORS header): the methods and headers the API uses,
/// and the response headers a browser client needs to read (`ETag`, `Location`, `Retry-After`).
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, InvalidConfig> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins =
        origins.iter().map(|origin| HeaderValue::from_str(origin)).collect::<Result<Vec<_>, _>>().map_err(
            |_| InvalidConfig::new("cors_allowed_origins", "an origin is not a valid header value"),
        )?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-timeout-ms"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([header::ETAG, header::LOCATION, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}

/// A handler's panic: logged with its message at ERROR, answered 500 problem+json (nothing of the
/// message reaches the client); the connection and the process carry on.
#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom calls
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    axum::response::IntoResponse::into_response(crate::error::ApiError::internal(format!(
        "handler panicked: {message}"
    )))
}

/// How [`Server::run`] treats connections; [`Limits::from_config`] reads them from a service's
/// settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// After the shutdown signal: how long `/readyz` answers 503 before the listener closes.
    pub drain_delay: Duration,
    /// After the listener closes: how long open connections may finish before they are closed.
    pub shutdown_grace: Duration,
    /// A request head must arrive within it; an idle HTTP/1 keep-alive connection is closed after it.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// HTTP/2 keep-alive ping interval.
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2: a ping unanswered this long closes the connection.
    pub http2_keep_alive_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub http2_max_concurrent_streams: u32,
}

impl Limits {
    /// The limits a service's settings name.
    pub fn from_config(config: &ServiceConfig) -> Self {
        Self {
            drain_delay: Duration::from_millis(config.drain_delay_ms),
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            max_connections: config.max_connections.max(1),
            http2_keep_alive_interval: Duration::from_millis(config.http2_keep_alive_interval_ms),
            http2_keep_alive_timeout: Duration::from_millis(config.http2_keep_alive_timeout_ms),
            http2_max_concurrent_streams: config.http2_max_concurrent_streams,
        }
    }
}

impl Default for Limits {
    /// The defaults of [`ServiceConfig`].
    fn default() -> Self {
        Self::from_config(&ServiceConfig::defaults("default", 0))
    }
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Swap<Router>,
    health: Health,
    limits: Limits,
    jobs: Vec<Job>,
}

impl Server {
    /// Binds `addr` (port 0: any free port).
    pub async fn bind(addr: &str, app: Router, health: Health, limits: Limits) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::new(listener, app, health, limits))
    }

    /// Serves on `listener`, already bound.
    pub fn new(listener: TcpListener, app: Router, health: Health, limits: Limits) -> Self {
        Self { listener, app: Swap::new(app), health, limits, jobs: Vec::new() }
    }

    /// The router it serves: [`Swap::store`] a new one and each request from then on goes to it
    /// (on open connections too), while requests in flight finish on the one they started on.
    pub const fn app(&self) -> &Swap<Router> {
        &self.app
    }

    /// Keeps `jobs` running for as long as the server runs.
    #[must_use]
    pub fn with_jobs(mut self, jobs: Vec<Job>) -> Self {
        self.jobs.extend(jobs);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves HTTP/1 and HTTP/2 (cleartext, by prior knowledge) until `shutdown`; then `/readyz`
    /// answers 503 for the drain delay, the listener closes, open connections get the shutdown
    /// grace to finish (HTTP/1 ones are closed after their current response, HTTP/2 ones get a
    /// GOAWAY), what is still open after it is closed, and the database pool closes.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        let Self { listener, app, health, limits, jobs: _jobs } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keep_alive_interval)
            .keep_alive_timeout(limits.http2_keep_alive_timeout)
            .max_concurrent_streams(limits.http2_max_concurrent_streams);

        let draining = {
            let health = health.clone();
            async move {
                shutdown.wait().await;
                health.start_draining();
                tokio::time::sleep(limits.drain_delay).await;
            }
        };
        let mut draining = std::pin::pin!(draining);
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            // A permit first: at the limit, new connections wait in the backlog, not in memory.
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.map_err(std::io::Error::other)?,
                () = &mut draining => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut draining => break,
            };
            let _ = stream.set_nodelay(true);
            let router = app.clone();
            let service = service_fn(move |req: http::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                router.current().oneshot(req)
            });
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let connection = graceful.watch(connection);
            connections.spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        let open = connections.len();
        if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(
                open = connections.len(),
                grace_ms = limits.shutdown_grace.as_millis(),
                "connections still open after the shutdown grace: closing them"
            );
            connections.abort_all();
        } else {
            tracing::debug!(open, "every connection finished within the shutdown grace");
        }
        while connections.join_next().await.is_some() {}
        health.db().close().await;
        Ok(())
    }
}

/// Tells servers to stop; clone it for each server.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers a [`Shutdown`]; dropping it also triggers it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Stops every server holding the matching [`Shutdown`].
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A shutdown triggered by hand (tests).
    pub fn manual() -> (ShutdownTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Self(rx))
    }

    /// A shutdown triggered by Ctrl-C or SIGTERM.
    pub fn on_signal() -> Self {
        let (trigger, shutdown) = Self::manual();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut sig) => {
                        sig.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<()>();
            tokio::select! {
                _ = ctrl_c => {}
                () = term => {}
            }
            tracing::info!("shutdown signal received: draining");
            trigger.trigger();
        });
        shutdown
    }

    /// Resolves once triggered.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{Limits, Server, Shutdown};
    use crate::db::{Db, temp_sqlite_url};
    use crate::extract::ClientIp;
    use crate::health::Health;

    #[tokio::test]
    async fn drains_then_stops() {
        let db = Db::connect(&temp_sqlite_url("kit-server"), 1).await.unwrap();
        let health = Health::new(db, Duration::from_secs(1));
        let app = Router::new()
            .route(
                "/ip",
                get(|ClientIp(ip): ClientIp| async move { ip.map(|ip| ip.to_string()).unwrap_or_default() }),
            )
            .merge(health.routes());
        let limits = Limits { drain_delay: Duration::from_secs(10), ..Limits::default() };
        let server = Server::bind("127.0.0.1:0", app, health.clone(), limits).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let (trigger, shutdown) = Shutdown::manual();
        let running = tokio::spawn(server.run(shutdown));
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let get = |path: &str| {
            let (client, uri) = (client.clone(), format!("{base}{path}"));
            async move {
                let res = client.get(uri.parse().unwrap()).await.unwrap();
                let status = res.status();
                (status, res.into_body().collect().await.unwrap().to_bytes())
            }
        };

        assert_eq!(get("/ip").await.1, "127.0.0.1");
        assert_eq!(get("/readyz").await.0, 200);
        trigger.trigger();
        // During the drain delay the listener still answers, and readiness says 503.
        let mut status = get("/readyz").await.0;
        for _ in 0..50 {
            if status == 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            status = get("/readyz").await.0;
        }
        assert_eq!(status, 503);
        assert_eq!(get("/livez").await.0, 200);
        running.abort();
    }

    /// A server with `limits` on a fresh database, answering `/livez`; its address and shutdown.
    async fn serve(
        limits: Limits,
    ) -> (SocketAddr, super::ShutdownTrigger, tokio::task::JoinHandle<std::io::Result<()>>) {
        let db = Db::connect(&temp_sqlite_url("kit-server-limits"), 1).await.unwrap();
        let health = Health::new(db, Duration::from_secs(1));
        let server = Server::bind("127.0.0.1:0", health.routes(), health.clone(), limits).await.unwrap();
        let addr = server.local_addr();
        let (trigger, shutdown) = Shutdown::manual();
        (addr, trigger, tokio::spawn(server.run(shutdown)))
    }

    /// Reads until the server closes the connection (`true`), or `false` after `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0_u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    const LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n";

    #[tokio::test]
    async fn a_client_sending_half_a_request_head_is_cut_off() {
        let limits = Limits { header_read_timeout: Duration::from_millis(200), ..Limits::default() };
        let (addr, trigger, running) = serve(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /livez HTTP/1.1\r\nHost: te").await.unwrap();
        assert!(
            closed_within(&mut slow, Duration::from_secs(10)).await,
            "a slowloris connection stayed open"
        );
        // An idle keep-alive connection is closed the same way; a served one answered first.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(LIVEZ).await.unwrap();
        let mut head = [0_u8; 12];
        idle.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        assert!(
            closed_within(&mut idle, Duration::from_secs(10)).await,
            "an idle keep-alive connection stayed open"
        );
        trigger.trigger();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_past_the_limit_wait_until_one_closes() {
        let limits = Limits { max_connections: 2, ..Limits::default() };
        let (addr, trigger, running) = serve(limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(LIVEZ).await.unwrap();
        let mut head = [0_u8; 12];
        let waited = tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut head)).await;
        assert!(waited.is_err(), "a third connection was served while two were open");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut head)).await.unwrap().unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        trigger.trigger();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_half_sent_request_cannot_hold_shutdown_past_the_grace() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, trigger, running) = serve(limits).await;
        let mut stuck = TcpStream::connect(addr).await.unwrap();
        stuck.write_all(b"GET /livez HTTP/1.1\r\nHost: te").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(10), running).await;
        assert!(stopped.is_ok(), "shutdown waited on a half-sent request");
        stopped.unwrap().unwrap().unwrap();
        assert!(closed_within(&mut stuck, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn http2_by_prior_knowledge_is_served() {
        let (addr, trigger, running) = serve(Limits::default()).await;
        let client =
            Client::builder(TokioExecutor::new()).http2_only(true).build_http::<Empty<bytes::Bytes>>();
        let res = client.get(format!("http://{addr}/livez").parse().unwrap()).await.unwrap();
        assert_eq!((res.status(), res.version()), (http::StatusCode::OK, http::Version::HTTP_2));
        trigger.trigger();
        running.await.unwrap().unwrap();
    }

    /// One HTTP/1.1 response read off `stream`: status line and headers, and the body by its length.
    async fn read_response(stream: &mut TcpStream) -> (String, String) {
        let mut raw = Vec::new();
        let mut byte = [0_u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            raw.push(byte[0]);
        }
        let head = String::from_utf8(raw).unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0_u8; length];
        stream.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_and_the_connection_lives_on() {
        let db = Db::connect(&temp_sqlite_url("kit-server-panic"), 1).await.unwrap();
        let health = Health::new(db, Duration::from_secs(1));
        let api = Router::new()
            .route(
                "/v1/boom",
                get(|| async {
                    panic!("the secret cause");
                    #[allow(unreachable_code)]
                    "never"
                }),
            )
            .route("/v1/ok", get(|| async { "fine" }));
        let config = crate::config::ServiceConfig::defaults("panics", 0);
        let keys = crate::auth::JwtKeys::new(b"panic-test-secret", Duration::from_secs(60));
        let openapi = utoipa::openapi::OpenApiBuilder::new().build();
        let app = super::app("panics", api, openapi, &health, &config, keys, None).unwrap();
        let server = Server::bind("127.0.0.1:0", app, health.clone(), Limits::default()).await.unwrap();
        let addr = server.local_addr();
        let (trigger, shutdown) = Shutdown::manual();
        let running = tokio::spawn(server.run(shutdown));

        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /v1/boom HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 500"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/problem+json"), "{head}");
        assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((problem["status"].as_u64(), problem["instance"].as_str()), (Some(500), Some("/v1/boom")));
        assert_eq!(problem["trace_id"].as_str().map(str::len), Some(32), "{problem}");
        assert!(!body.contains("the secret cause"), "{body}");
        // The same connection serves the next request.
        stream.write_all(b"GET /v1/ok HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "fine");
        // Operational routes carry the security header too.
        stream.write_all(LIVEZ).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{head}");
        trigger.trigger();
        running.await.unwrap().unwrap();
    }

    /// `server::app` around `api` with `config`, served in process.
    async fn kit_app(api: Router, config: &crate::config::ServiceConfig) -> Router {
        let db = Db::connect(&temp_sqlite_url("kit-server-edge"), 1).await.unwrap();
        let health = Health::new(db, Duration::from_secs(1));
        let keys = crate::auth::JwtKeys::new(b"edge-test-secret", Duration::from_secs(60));
        let openapi = utoipa::openapi::OpenApiBuilder::new().build();
        super::app("edge", api, openapi, &health, config, keys, None).unwrap()
    }

    async fn call(app: &Router, req: http::Request<axum::body::Body>) -> http::Response<axum::body::Body> {
        use tower::ServiceExt as _;
        app.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn large_answers_are_gzipped_when_accepted_and_small_ones_never() {
        let big = serde_json::json!({ "items": vec!["a product name of some length"; 200] });
        let api = Router::new()
            .route("/v1/big", get(move || async move { axum::Json(big) }))
            .route("/v1/small", get(|| async { axum::Json(serde_json::json!({ "ok": true })) }));
        let app = kit_app(api, &crate::config::ServiceConfig::defaults("edge", 0)).await;
        let request = |path: &str, gzip: bool| {
            let mut req = http::Request::get(path);
            if gzip {
                req = req.header(http::header::ACCEPT_ENCODING, "gzip");
            }
            req.body(axum::body::Body::empty()).unwrap()
        };
        let res = call(&app, request("/v1/big", true)).await;
        assert_eq!(res.headers()[http::header::CONTENT_ENCODING], "gzip");
        let compressed = res.into_body().collect().await.unwrap().to_bytes();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut plain)
            .unwrap();
        assert!(plain.starts_with(r#"{"items":["a product name"#) && compressed.len() < plain.len() / 10);
        for (path, gzip) in [("/v1/small", true), ("/v1/big", false), ("/livez", true)] {
            let res = call(&app, request(path, gzip)).await;
            assert!(!res.headers().contains_key(http::header::CONTENT_ENCODING), "{path} gzip={gzip}");
        }
    }

    #[tokio::test]
    async fn cors_is_off_by_default_and_answers_only_configured_origins() {
        let api = Router::new().route("/v1/ok", get(|| async { "fine" }));
        let preflight = |origin: &str| {
            http::Request::builder()
                .method("OPTIONS")
                .uri("/v1/ok")
                .header(http::header::ORIGIN, origin)
                .header(http::header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
                .header(http::header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let off = kit_app(api.clone(), &crate::config::ServiceConfig::defaults("edge", 0)).await;
        let res = call(&off, preflight("https://shop.example")).await;
        assert!(!res.headers().contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN));

        let mut config = crate::config::ServiceConfig::defaults("edge", 0);
        config.cors_allowed_origins = vec!["https://shop.example".to_owned()];
        config.validate("edge").unwrap();
        let on = kit_app(api, &config).await;
        let res = call(&on, preflight("https://shop.example")).await;
        assert_eq!(res.headers()[http::header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
        let allowed = res.headers()[http::header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_owned();
        assert!(allowed.contains("authorization"), "{allowed}");
        let res = call(&on, preflight("https://evil.example")).await;
        assert!(!res.headers().contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN));

        config.cors_allowed_origins = vec!["*.example".to_owned(), "https://shop.example/".to_owned()];
        let err = config.validate("edge").unwrap_err().to_string();
        assert!(err.contains(r#""*.example""#) && err.contains(r#""https://shop.example/""#), "{err}");
    }
}
