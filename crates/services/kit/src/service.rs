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

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa::openapi::OpenApi;

use crate::BoxError;
use crate::auth::{JwtKeys, TOKEN_ISSUER, TokenChecker};
use crate::client::Clients;
use crate::config::{self, DownstreamConfig, GlobalConfig, ServiceConfig, Settings};
use crate::db::{Db, Migrations};
use crate::health::Health;
use crate::idempotency::{Idempotency, IdempotencyConfig};
use crate::jobs::Job;
use crate::ops::{Breakers, Ops};
use crate::outbox::{self, HttpPush, Outbox, OutboxConfig, SubscriberConfig};
use crate::reload::{Reloader, Running, Triggers};
use crate::server::{self, Server, Shutdown};
use crate::service_auth::{KeyPair, ServiceSigner, TrustedKey};
use crate::token_check::UsersTokenCheck;

/// What a service's `routes` function returns.
pub type RoutesFuture = Pin<Box<dyn Future<Output = Result<Router, BoxError>> + Send>>;

/// Everything a service needs to build its routes.
#[derive(Clone, Debug)]
pub struct Context {
    /// The service's name.
    pub name: &'static str,
    /// This service's settings.
    pub config: ServiceConfig,
    /// Settings shared by all services.
    pub global: GlobalConfig,
    /// All settings (for the service's own sections, via [`Settings::extract`]).
    pub settings: Settings,
    /// The service's database, migrated.
    pub db: Db,
    /// Signs this service's tokens for the services it calls ([`crate::service_auth`]).
    pub signer: ServiceSigner,
}

impl Context {
    /// This service's server-side `Idempotency-Key` store (settings `<service>.idempotency`), and
    /// the job that removes expired keys: keep the job for as long as the routes live.
    pub fn idempotency(&self) -> Result<(Idempotency, Job), BoxError> {
        let config: IdempotencyConfig = self.settings.extract(&format!("{}.idempotency", self.name))?;
        if config.retention_secs == 0 || config.lock_secs == 0 {
            return Err(format!(
                "{0}.idempotency.retention_secs and {0}.idempotency.lock_secs must be at least 1",
                self.name
            )
            .into());
        }
        let idempotency = Idempotency::new(self.db.clone(), config, self.config.body_limit_bytes);
        let expiry = idempotency.spawn_expiry();
        Ok((idempotency, expiry))
    }
}

/// A service another one calls with its own service token, and the scopes it asks for there.
#[derive(Debug)]
pub struct Calls {
    /// The callee.
    pub service: &'static str,
    /// The scopes the caller's tokens carry for it (`inventory:reserve`).
    pub scopes: &'static [&'static str],
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
    /// The keys of the service's own settings sections, relative to its name (users:
    /// `admin_email`, `login_limits.per_account`, …), usually from [`config::keys_of`]; the kit's
    /// own keys are known without it. A key set under the service that neither lists is refused.
    pub config_keys: fn() -> Vec<String>,
    /// The services this one calls with service tokens, and with which scopes: in `shop all`, each
    /// callee trusts this service's key for exactly these scopes unless configured otherwise.
    pub calls: &'static [Calls],
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
    /// The kit's background jobs (the outbox relay, the pool metrics sampler): they stop when this
    /// app's server stops.
    pub jobs: Vec<Job>,
    /// What builds `router` again with new settings, and the service's reloadable clients.
    pub layers: Layers,
}

impl App {
    /// Serves on `listener` (already bound) instead of the configured address.
    pub fn serve_on(self, listener: tokio::net::TcpListener) -> Server {
        Server::new(listener, self.router, self.health, server::Limits::from_config(&self.config))
            .with_jobs(self.jobs)
    }

    /// [`serve_on`](Self::serve_on), and the handle a [`Reloader`] applies
    /// new settings of `service` through.
    pub fn serve_reloadable(self, service: &Service, listener: tokio::net::TcpListener) -> (Server, Running) {
        let (config, layers) = (self.config.clone(), self.layers.clone());
        let server = self.serve_on(listener);
        let running = Running::new(service, config, layers, server.app().clone());
        (server, running)
    }

    /// Binds the configured host and port.
    pub async fn bind(self) -> std::io::Result<Server> {
        let addr = format!("{}:{}", self.config.host, self.config.port);
        let server =
            Server::bind(&addr, self.router, self.health, server::Limits::from_config(&self.config)).await?;
        Ok(server.with_jobs(self.jobs))
    }
}

impl Service {
    /// Connects to the configured database and brings its schema where this binary needs it:
    /// migrates when `migrate` (`shop migrate`) or the service migrates at start
    /// ([`ServiceConfig::migrates_at_start`]), else refuses a database that lacks a migration. A
    /// database with migrations this binary does not know (a rolled-back binary against a newer
    /// schema) is used as it is, with a WARN naming them: migrations only add (docs/decisions/013).
    pub async fn connect(&self, settings: &Settings, migrate: bool) -> Result<(ServiceConfig, Db), BoxError> {
        let name = self.name;
        let config = settings.service(name, self.default_port)?;
        let db = Db::connect_with(config.database_url.expose(), &config.db_options())
            .await
            .map_err(|e| format!("{name}: cannot open the database: {e}"))?;
        let schema =
            db.schema(self.migrations).await.map_err(|e| format!("{name}: cannot read the schema: {e}"))?;
        let newest =
            |versions: &[i64]| versions.iter().max().map_or_else(|| "none".to_owned(), i64::to_string);
        if !schema.unknown.is_empty() {
            tracing::warn!(
                service = name,
                unknown = ?schema.unknown,
                "the database has migrations this binary does not know (a newer release applied them): \
                 using the schema as it is"
            );
            if !schema.pending.is_empty() {
                return Err(format!(
                    "{name}: the database's migrations {:?} are unknown to this binary and its {:?} are \
                     missing from the database: the two histories diverged; refusing to start",
                    schema.unknown, schema.pending
                )
                .into());
            }
        }
        if !schema.pending.is_empty() {
            if migrate || config.migrates_at_start() {
                db.migrate(self.migrations).await.map_err(|e| format!("{name}: migrations failed: {e}"))?;
            } else {
                return Err(format!(
                    "{name}: the database is at migration {} and this binary needs {:?}: run `shop migrate` \
                     first (the deploy step), or set {name}.migrate_at_start: true",
                    newest(&schema.applied),
                    schema.pending
                )
                .into());
            }
        }
        Ok((config, db))
    }

    /// Builds the application: database, migrations, routes, layers. Every
    /// [`Downstream`](crate::client::Downstream) built meanwhile shows on its `/ops` page.
    pub async fn app(&self, settings: &Settings) -> Result<App, BoxError> {
        // The recorder first: what is built below (each downstream's breaker) records its initial
        // state at once, and a gauge set before the recorder exists is lost.
        let _ = crate::telemetry::prometheus();
        let (breakers, clients) = (Breakers::default(), Clients::default());
        // Boxed: the build is large, and every caller's future would carry it.
        let build = Box::pin(self.build(settings, breakers.clone(), clients.clone()));
        breakers.scope(clients.scope(build)).await
    }

    async fn build(
        &self,
        settings: &Settings,
        breakers: Breakers,
        clients: Clients,
    ) -> Result<App, BoxError> {
        let (config, db) = self.connect(settings, false).await?;
        let global = settings.global()?;
        global.check_jwt_secret(self.name, &config.host)?;
        let keys =
            JwtKeys::new(global.jwt_secret.expose().as_bytes(), Duration::from_secs(global.jwt_ttl_secs));
        let health = Health::new(db.clone(), Duration::from_millis(config.readiness_timeout_ms));
        let signer = config.signer(self.name)?;
        let outbox = self.outbox(settings, &db, &signer)?;
        let relay = outbox.spawn_relay();
        let context = Context {
            name: self.name,
            config: config.clone(),
            global,
            settings: settings.clone(),
            db,
            signer,
        };
        let ops = Ops::new(self.name).with_outbox(outbox.clone());
        let api = (self.routes)(context).await?.merge(outbox::admin::router(outbox));
        let checker = self.token_checker(&config)?;
        let layers = Layers {
            name: self.name,
            api,
            openapi: self.document(),
            health: health.clone(),
            keys: keys.clone(),
            checker,
            ops: ops.with_breakers(breakers.clone()),
            breakers,
            clients,
        };
        let router = layers.router(&config)?;
        let pool_metrics = crate::db::pool_metrics::spawn_sampler(self.name, health.db());
        Ok(App { router, health, config, keys, jobs: vec![relay, pool_metrics], layers })
    }

    /// The service's OpenAPI document, with the routes the kit adds to every service.
    pub fn document(&self) -> OpenApi {
        let mut doc = (self.openapi)();
        doc.merge(<outbox::admin::AdminDoc as utoipa::OpenApi>::openapi());
        crate::openapi::add_stack_errors(&mut doc);
        doc
    }

    /// The service's outbox (settings `<service>.events`): every service has one, so any can
    /// publish; its relay pushes to the configured subscribers with this service's token.
    fn outbox(&self, settings: &Settings, db: &Db, signer: &ServiceSigner) -> Result<Outbox, BoxError> {
        let config: OutboxConfig = settings.extract(&format!("{}.events", self.name))?;
        config.validate(self.name)?;
        let push = HttpPush::new(&config, Some(signer))?;
        Ok(Outbox::new(self.name, db.clone(), config, Arc::new(push)))
    }

    /// How this service tells a revoked token: users checks its own database (its routes install
    /// that); the others ask users at `downstreams.users.url`, or, without it, trust the signature
    /// until expiry (with a WARN).
    fn token_checker(&self, config: &ServiceConfig) -> Result<Option<TokenChecker>, BoxError> {
        if self.name == TOKEN_ISSUER {
            return Ok(None);
        }
        let Some(users) = config.downstreams.get(TOKEN_ISSUER) else {
            tracing::warn!(
                service = self.name,
                "no {TOKEN_ISSUER} downstream: tokens are checked by signature only, so a revoked or demoted \
                 token keeps working until it expires; set SHOP__{}__DOWNSTREAMS__USERS__URL",
                self.name.to_uppercase()
            );
            return Ok(None);
        };
        let ttl = Duration::from_millis(config.token_check_ttl_ms);
        Ok(Some(TokenChecker::new(UsersTokenCheck::new(users, ttl)?)))
    }

    /// Every settings key this service knows, dotted from the root (`users.port`,
    /// `users.downstreams.*.url`, `users.admin_email`); `*` stands for any one segment.
    pub fn known_keys(&self) -> Vec<String> {
        let mut keys = config::keys_of(self.name, &ServiceConfig::defaults(self.name, self.default_port));
        keys.extend(config::keys_of(&format!("{}.downstreams.*", self.name), &DownstreamConfig::default()));
        keys.extend(config::keys_of(&format!("{}.trusted_keys.*", self.name), &TrustedKey::default()));
        keys.extend(config::keys_of(&format!("{}.idempotency", self.name), &IdempotencyConfig::default()));
        keys.extend(config::keys_of(&format!("{}.events", self.name), &OutboxConfig::default()));
        keys.extend(config::keys_of(
            &format!("{}.events.subscribers.*", self.name),
            &SubscriberConfig::default(),
        ));
        keys.extend((self.config_keys)().into_iter().map(|key| format!("{}.{key}", self.name)));
        keys
    }
}

/// What a service's router is made of besides its settings: [`Layers::router`] puts the layers
/// around the same routes again (a reload: no database opened, no migration run, no route state
/// built). Cheap to clone.
#[derive(Clone)]
pub struct Layers {
    name: &'static str,
    api: Router,
    openapi: OpenApi,
    health: Health,
    keys: JwtKeys,
    checker: Option<TokenChecker>,
    ops: Ops,
    breakers: Breakers,
    clients: Clients,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers")
            .field("name", &self.name)
            .field("ops", &self.ops)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl Layers {
    /// The service's router: its routes behind the layers `config` sets ([`server::app_with_ops`]).
    pub fn router(&self, config: &ServiceConfig) -> Result<Router, palisade::InvalidConfig> {
        server::app_with_ops(
            self.name,
            self.api.clone(),
            self.openapi.clone(),
            &self.health,
            config,
            self.keys.clone(),
            self.checker.clone(),
            self.ops.clone(),
        )
    }

    /// The service's client-side breakers, as its `/ops` page lists them.
    pub const fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The service's reloadable downstream clients.
    pub const fn clients(&self) -> &Clients {
        &self.clients
    }
}

/// Refuses settings with a key that neither the kit nor any of `services` knows (a typo such as
/// `SHOP__USERS__ADMIN_PASWORD` would otherwise keep the default silently), naming each one and the
/// nearest known key.
pub fn check_keys(services: &[&Service], settings: &Settings) -> Result<(), BoxError> {
    let mut known = config::keys_of("", &GlobalConfig::default());
    for service in services {
        known.extend(service.known_keys());
    }
    let unknown = config::unknown_keys(settings, &known);
    if unknown.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = unknown
        .into_iter()
        .map(|(key, nearest)| match nearest {
            Some(nearest) => format!("`{key}` (did you mean `{nearest}`?)"),
            None => format!("`{key}`"),
        })
        .collect();
    Err(format!(
        "unknown configuration keys: {} (from CONFIG_PATH or SHOP__* variables; see kit::config for the keys)",
        listed.join(", ")
    )
    .into())
}

/// The service that consumes events: in `shop all`, every other service's outbox pushes to it
/// unless `<service>.events.subscribers.notifications` is configured.
pub const EVENT_CONSUMER: &str = "notifications";

/// Starts every service with the settings `load` returns, prints its URLs, and serves until
/// Ctrl-C/SIGTERM; on SIGHUP or a change of the file at `CONFIG_PATH`, calls `load` again and
/// applies what can change live ([`crate::reload`]).
///
/// Every listener is bound first, so each service's settings can name the others' real addresses:
/// a caller's `downstreams.<callee>.url` (users for token checks, and each [`Service::calls`]) and
/// the producers' `events.subscribers.notifications`, each unless configured.
pub async fn run<L>(services: &[&'static Service], load: L) -> Result<(), BoxError>
where
    L: Fn() -> Result<Settings, BoxError> + Send + Sync + 'static,
{
    let shutdown = Shutdown::on_signal();
    // Before anything slow: from here on, SIGHUP reloads instead of ending the process.
    let triggers = Triggers::new(config::config_path());
    let settings = load()?;
    if std::env::var_os("RUST_LOG").is_none()
        && let Err(problem) = crate::telemetry::set_log_filter(&settings.global()?.log_level)
    {
        tracing::debug!(%problem, "log_level not applied");
    }
    let mut listeners = Vec::with_capacity(services.len());
    for service in services {
        let config = settings.service(service.name, service.default_port)?;
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("{}: cannot listen on {addr}: {e}", service.name))?;
        listeners.push(listener);
    }
    let mut addresses = Vec::with_capacity(services.len());
    for (service, listener) in services.iter().zip(&listeners) {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        addresses.push((service.name, format!("http://{addr}")));
    }
    let callers = services.to_vec();
    // A reload wires the addresses the same way; the keys it leaves alone (they need a restart).
    let wire = move |settings: &Settings| wire_addresses(&callers, settings, &addresses);
    let wired = wire_service_keys(services, &wire(&settings))?;
    let reloader = Reloader::new(&settings, load)?.with_wiring(wire);
    let mut running = tokio::task::JoinSet::new();
    for (service, listener) in services.iter().zip(listeners) {
        let (server, reloadable) = service.app(&wired).await?.serve_reloadable(service, listener);
        reloader.add(reloadable);
        let base = format!("http://{}", server.local_addr());
        println!("{:<10} API {base}/v1  Swagger UI {base}/docs  metrics {base}/metrics", service.name);
        tracing::info!(service = service.name, address = %server.local_addr(), "listening");
        running.spawn(server.run(shutdown.clone()));
    }
    let _watching = reloader.spawn(triggers, shutdown);
    while let Some(result) = running.join_next().await {
        result??;
    }
    Ok(())
}

/// Defaults for the addresses of the other services of this process (see [`run`]).
fn wire_addresses(services: &[&Service], settings: &Settings, addresses: &[(&str, String)]) -> Settings {
    let mut wired = settings.clone();
    for caller in services {
        for (callee, url) in addresses.iter().filter(|(name, _)| *name != caller.name) {
            let calls = *callee == TOKEN_ISSUER || caller.calls.iter().any(|call| call.service == *callee);
            if calls {
                wired = wired.with_default(&format!("{}.downstreams.{callee}.url", caller.name), url.clone());
            }
            if *callee == EVENT_CONSUMER {
                wired = wired
                    .with_default(&format!("{}.events.subscribers.{callee}.url", caller.name), url.clone());
            }
        }
    }
    wired
}

/// Gives each of `services` without a configured `signing_key` a new one, and makes each callee in
/// this process trust each caller's key for the scopes the caller declares ([`Service::calls`]),
/// unless the callee's `trusted_keys` already names that key. Configured keys are left alone, so a
/// deployment states its trust explicitly.
fn wire_service_keys(services: &[&Service], settings: &Settings) -> Result<Settings, BoxError> {
    let mut wired = settings.clone();
    for caller in services {
        let config = settings.service(caller.name, caller.default_port)?;
        let seed = if config.signing_key.expose().is_empty() {
            let pair = KeyPair::generate()?;
            wired = wired.with_default(&format!("{}.signing_key", caller.name), pair.seed().expose());
            if !caller.calls.is_empty() && services.len() == 1 {
                tracing::warn!(
                    service = caller.name,
                    "no signing_key: using a new key, which only the services of this process trust; \
                     set SHOP__{}__SIGNING_KEY (`shop keygen`) and the callees' trusted_keys",
                    caller.name.to_uppercase()
                );
            }
            pair
        } else {
            KeyPair::from_seed(config.signing_key.expose())?
        };
        // What the caller sends each callee: its declared calls, and its events to each subscriber.
        let events: OutboxConfig = settings.extract(&format!("{}.events", caller.name))?;
        let mut scopes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for call in caller.calls {
            scopes.entry(call.service).or_default().extend(call.scopes.iter().map(|s| (*s).to_owned()));
        }
        for subscriber in events.subscribers.keys() {
            scopes.entry(subscriber.as_str()).or_default().push(outbox::DELIVER_SCOPE.to_owned());
        }
        for (callee_name, scopes) in scopes {
            let in_process = services.iter().any(|s| s.name == callee_name);
            if scopes.is_empty() || callee_name == caller.name || !in_process {
                continue;
            }
            let callee = settings.service(callee_name, 0)?;
            if callee.trusted_keys.contains_key(&config.signing_key_id) {
                continue;
            }
            let key = format!("{callee_name}.trusted_keys.{}", config.signing_key_id);
            let trusted =
                TrustedKey { issuer: caller.name.to_owned(), public_key: seed.public_key(), scopes };
            wired = wired.with_default(&key, trusted);
        }
    }
    Ok(wired)
}

/// Applies every service's migrations.
pub async fn migrate(services: &[&Service], settings: &Settings) -> Result<(), BoxError> {
    for service in services {
        let (_, db) = service.connect(settings, true).await?;
        db.close().await;
        println!("{}: migrations applied", service.name);
    }
    Ok(())
}

/// The OpenAPI document of `service` as the committed file holds it (pretty JSON, trailing newline).
pub fn openapi_json(service: &Service) -> Result<String, BoxError> {
    Ok(service.document().to_pretty_json()? + "\n")
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

#[cfg(test)]
mod tests {
    use figment::Figment;

    use super::Context;
    use crate::config::Settings;
    use crate::db::{Db, temp_sqlite_url};

    #[tokio::test]
    async fn context_debug_shows_no_secret() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("jwt_secret", "jwt-secret-that-must-never-be-printed"))
                .merge(("catalog.database_url", "postgres://shop:pa55word@db.internal/catalog"))
                .merge(("users.admin_password", "admin-password-never-printed"))
                .merge(("catalog.signing_key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")),
        );
        let config = settings.service("catalog", 8082).unwrap();
        let context = Context {
            name: "catalog",
            signer: config.signer("catalog").unwrap(),
            config,
            global: settings.global().unwrap(),
            settings,
            db: Db::connect(&temp_sqlite_url("context-debug"), 1).await.unwrap(),
        };
        let printed = format!("{context:?}");
        for secret in ["jwt-secret-that-must", "pa55word", "admin-password-never", "AAECAwQFBgcICQoLDA0O"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("catalog.database_url"), "the keys are still listed: {printed}");
    }
}
