//! [`Service`]: what a service crate exports so the `shop` binary can run, migrate and document it.
//!
//! A service crate defines one `pub static SERVICE: kit::service::Service` (see the catalog); the
//! binary lists them, so adding a service is one line.
//!
//! Adding a service, by copying `crates/services/catalog`:
//!
//! 1. `crates/services/<name>/src/`: `model.rs` (API types, `validate()` → `Vec<FieldError>`),
//!    `store/{mod,sqlite,postgres}.rs` (a `Store` trait returning `BoxFuture`s, one impl per
//!    [`Db`] variant, `store::for_db`), `api.rs` (handlers with `#[utoipa::path]`, an
//!    `OpenApiRouter<AppState>`), `lib.rs` (`SERVICE`, `MIGRATIONS`, `openapi()`, `routes()`).
//! 2. `migrations/<name>/{sqlite,postgres}/0001_<what>.sql`, embedded with `sqlx::migrate!`.
//! 3. One line in the binary's `SERVICES` (root `src/main.rs`) and the dependency in the root
//!    `Cargo.toml`.
//! 4. `cargo run --bin shop -- openapi` writes `openapi/<name>.json`; copy the catalog's tests
//!    (`tests/store_contract.rs`, `tests/api.rs`, including the OpenAPI drift test).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use utoipa::openapi::OpenApi;

use crate::BoxError;
use crate::auth::JwtKeys;
use crate::config::{DEV_JWT_SECRET, GlobalConfig, ServiceConfig, Settings};
use crate::db::{Db, Migrations};
use crate::health::Health;
use crate::server::{self, Server, Shutdown};

/// What a service's `routes` function returns.
pub type RoutesFuture = Pin<Box<dyn Future<Output = Result<Router, BoxError>> + Send>>;

/// Everything a service needs to build its routes.
#[derive(Clone, Debug)]
pub struct Context {
    /// This service's settings.
    pub config: ServiceConfig,
    /// Settings shared by all services.
    pub global: GlobalConfig,
    /// All settings (for the service's own sections, via [`Settings::extract`]).
    pub settings: Settings,
    /// The service's database, migrated.
    pub db: Db,
}

/// A runnable service.
#[derive(Debug)]
pub struct Service {
    /// Name: config key, metrics name, `data/<name>.db`, `openapi/<name>.json`.
    pub name: &'static str,
    /// Port when none is configured.
    pub default_port: u16,
    /// Embedded migrations.
    pub migrations: &'static Migrations,
    /// The OpenAPI document (no database needed).
    pub openapi: fn() -> OpenApi,
    /// The service's `/v1` routes with their state applied.
    pub routes: fn(Context) -> RoutesFuture,
}

/// A service's assembled application, not yet bound.
#[derive(Debug)]
pub struct App {
    /// Every route behind every layer: use with `Router::oneshot` in tests.
    pub router: Router,
    /// Readiness state.
    pub health: Health,
    /// The service's settings.
    pub config: ServiceConfig,
    /// The JWT keys (tests issue tokens with them).
    pub keys: JwtKeys,
}

impl App {
    /// Binds the configured host and port.
    pub async fn bind(self) -> std::io::Result<Server> {
        let addr = format!("{}:{}", self.config.host, self.config.port);
        Server::bind(&addr, self.router, self.health, Duration::from_millis(self.config.drain_delay_ms)).await
    }
}

impl Service {
    /// Connects to the configured database and applies the migrations.
    pub async fn connect(&self, settings: &Settings) -> Result<(ServiceConfig, Db), BoxError> {
        let config = settings.service(self.name, self.default_port)?;
        let db = Db::connect(config.database_url.expose(), config.db_max_connections)
            .await
            .map_err(|e| format!("{}: cannot open the database: {e}", self.name))?;
        db.migrate(self.migrations).await.map_err(|e| format!("{}: migrations failed: {e}", self.name))?;
        Ok((config, db))
    }

    /// Builds the application: database, migrations, routes, layers.
    pub async fn app(&self, settings: &Settings) -> Result<App, BoxError> {
        let (config, db) = self.connect(settings).await?;
        let global = settings.global()?;
        if global.jwt_secret.expose() == DEV_JWT_SECRET {
            tracing::warn!(service = self.name, "using the development JWT secret: set SHOP__JWT_SECRET");
        }
        let keys =
            JwtKeys::new(global.jwt_secret.expose().as_bytes(), Duration::from_secs(global.jwt_ttl_secs));
        let health = Health::new(db.clone(), Duration::from_millis(config.readiness_timeout_ms));
        let context = Context { config: config.clone(), global, settings: settings.clone(), db };
        let api = (self.routes)(context).await?;
        let router = server::app(self.name, api, (self.openapi)(), &health, &config, keys.clone())?;
        Ok(App { router, health, config, keys })
    }
}

/// Starts every service, prints its URLs, and serves until Ctrl-C/SIGTERM.
pub async fn run(services: &[&Service], settings: &Settings) -> Result<(), BoxError> {
    let shutdown = Shutdown::on_signal();
    let mut running = tokio::task::JoinSet::new();
    for service in services {
        let server =
            service.app(settings).await?.bind().await.map_err(|e| format!("{}: bind: {e}", service.name))?;
        let base = format!("http://{}", server.local_addr());
        println!("{:<10} API {base}/v1  Swagger UI {base}/docs  metrics {base}/metrics", service.name);
        tracing::info!(service = service.name, address = %server.local_addr(), "listening");
        running.spawn(server.run(shutdown.clone()));
    }
    while let Some(result) = running.join_next().await {
        result??;
    }
    Ok(())
}

/// Applies every service's migrations.
pub async fn migrate(services: &[&Service], settings: &Settings) -> Result<(), BoxError> {
    for service in services {
        let (_, db) = service.connect(settings).await?;
        db.close().await;
        println!("{}: migrations applied", service.name);
    }
    Ok(())
}

/// The OpenAPI document of `service` as the committed file holds it (pretty JSON, trailing newline).
pub fn openapi_json(service: &Service) -> Result<String, BoxError> {
    Ok((service.openapi)().to_pretty_json()? + "\n")
}

/// Writes `dir/<name>.json` for every service.
pub fn write_openapi(services: &[&Service], dir: &std::path::Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    for service in services {
        let path = dir.join(format!("{}.json", service.name));
        std::fs::write(&path, openapi_json(service)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
