//! The HTTP server every service runs: [`app`] assembles the routes and layers; [`Server`] binds
//! first (so tests use port 0), then [`Server::run`]s until a [`Shutdown`].
//!
//! Layers on every `/v1` route (and the 404 fallback), outermost first: the palisade [`ServerStack`]
//! (trace → metrics → problem → load shedding → deadline → timeout), the JWT keys (request extension
//! for [`crate::auth`]), the body limit (413), and [`ProblemContextLayer`] (fills `instance`/`trace_id`
//! into problem documents).
//!
//! Operational routes, outside `/v1` and outside the OpenAPI paths: `/livez`, `/readyz`, `/metrics`,
//! `/openapi.json`, `/docs` (Swagger UI, assets in the binary). They are added *after* the layers, so
//! no load shedding, timeout or problem rewriting ever touches them: a probe answers while the API
//! sheds load, and a `/readyz` 503 keeps its `application/health+json` body.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Extension, Router};
use http::{HeaderValue, header};
use palisade::InvalidConfig;
use palisade::stack::ServerStack;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceBuilder;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{JwtKeys, TokenChecker};
use crate::client_ip::TrustedProxies;
use crate::config::ServiceConfig;
use crate::error::{ProblemContextLayer, not_found};
use crate::health::Health;
use crate::telemetry;

/// The full application of service `name`: `api` (its `/v1` routes, state applied) plus the
/// operational routes, behind every layer (see the [module docs](self)).
pub fn app(
    name: &'static str,
    api: Router,
    openapi: OpenApi,
    health: &Health,
    config: &ServiceConfig,
    keys: JwtKeys,
    token_checker: Option<TokenChecker>,
) -> Result<Router, InvalidConfig> {
    let stack = ServerStack::builder()
        .name(name)
        .timeout(config.request_timeout())
        .max_in_flight(config.max_in_flight)
        .build()?;
    let trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
        .map_err(|problem| InvalidConfig::new("trusted_proxies", problem))?;
    let prometheus = telemetry::prometheus();
    let metrics = get(move || {
        let body = prometheus.render();
        async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body) }
    });
    Ok(Router::new()
        .merge(api)
        .fallback(not_found)
        // One `Router::layer` call for the whole stack: axum boxes each call's result per route and
        // clones every box level on each request, so n calls cost ~n²/2 allocations per request.
        .layer(
            ServiceBuilder::new()
                .layer(stack)
                .layer(Extension(keys))
                .option_layer(token_checker.map(Extension))
                .layer(Extension(trusted_proxies))
                .layer(DefaultBodyLimit::max(config.body_limit_bytes))
                .layer(ProblemContextLayer),
        )
        // After `.layer`: axum leaves routes added later unwrapped.
        .merge(health.routes())
        .route("/metrics", metrics)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi)))
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Router,
    health: Health,
    drain_delay: Duration,
}

impl Server {
    /// Binds `addr` (port 0: any free port).
    pub async fn bind(
        addr: &str,
        app: Router,
        health: Health,
        drain_delay: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self { listener, app, health, drain_delay })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown`; then `/readyz` answers 503 for the drain delay, the listener
    /// closes, in-flight requests finish, and the database pool closes.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        let health = self.health.clone();
        let drain_delay = self.drain_delay;
        let signal = async move {
            shutdown.wait().await;
            health.start_draining();
            tokio::time::sleep(drain_delay).await;
        };
        let app = self.app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(signal).await?;
        self.health.db().close().await;
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

    use super::{Server, Shutdown};
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
        let server = Server::bind("127.0.0.1:0", app, health.clone(), Duration::from_secs(10)).await.unwrap();
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
}
