//! Typed configuration: defaults, then the YAML file at `CONFIG_PATH` (optional), then environment
//! variables.
//!
//! Keys, with their environment variable (prefix `SHOP__`, `__` between levels):
//!
//! | key | env | default |
//! |---|---|---|
//! | `profile` | `SHOP__PROFILE` | `production`; `development` allows weak secrets on any address |
//! | `jwt_secret` | `SHOP__JWT_SECRET` | a development secret (only on loopback or in the development profile) |
//! | `jwt_ttl_secs` | `SHOP__JWT_TTL_SECS` | `3600` (60 to 86400) |
//! | `log_level` | `SHOP__LOG_LEVEL` | `info`: a level or `target=level` directives (`warn,kit=debug`); `RUST_LOG` wins at start, a reload applies a changed one |
//! | `<service>.host` | `SHOP__CATALOG__HOST` | `127.0.0.1` |
//! | `<service>.port` | `SHOP__CATALOG__PORT` | the service's port (catalog 8082) |
//! | `<service>.database_url` | `SHOP__CATALOG__DATABASE_URL` | `sqlite://data/<service>.db?mode=rwc` |
//! | `<service>.db_max_connections` | `SHOP__CATALOG__DB_MAX_CONNECTIONS` | `8` |
//! | `<service>.db_lock_timeout_ms` | `SHOP__CATALOG__DB_LOCK_TIMEOUT_MS` | `2000`: PostgreSQL `lock_timeout`, SQLite busy timeout; also the retry budget ([`crate::db::Retry`]) |
//! | `<service>.db_statement_timeout_ms` | `SHOP__CATALOG__DB_STATEMENT_TIMEOUT_MS` | `5000`: PostgreSQL `statement_timeout` |
//! | `<service>.db_idle_in_transaction_timeout_ms` | `SHOP__CATALOG__DB_IDLE_IN_TRANSACTION_TIMEOUT_MS` | `10000`: PostgreSQL `idle_in_transaction_session_timeout` |
//! | `<service>.db_create` | `SHOP__CATALOG__DB_CREATE` | `false`: PostgreSQL database created at start when missing (needs `CREATEDB`) |
//! | `<service>.db_synchronous` | `SHOP__ORDERS__DB_SYNCHRONOUS` | `normal`: SQLite loses the last commits on power failure (not on a process crash); `full` loses none, one fsync per commit |
//! | `<service>.migrate_at_start` | `SHOP__CATALOG__MIGRATE_AT_START` | on for SQLite, off for PostgreSQL (`shop migrate` is the deploy step) |
//! | `<service>.db_retry_attempts` | `SHOP__CATALOG__DB_RETRY_ATTEMPTS` | `3`: attempts of a transaction that lost to a concurrent one (then 503) |
//! | `<service>.request_timeout_ms` | `SHOP__CATALOG__REQUEST_TIMEOUT_MS` | `10000` |
//! | `<service>.body_limit_bytes` | `SHOP__CATALOG__BODY_LIMIT_BYTES` | `65536` |
//! | `<service>.readiness_timeout_ms` | `SHOP__CATALOG__READINESS_TIMEOUT_MS` | `1000` |
//! | `<service>.trusted_proxies` | `SHOP__USERS__TRUSTED_PROXIES` (YAML list in the file) | none: see [`crate::client_ip`] |
//! | `<service>.access_log` | `SHOP__CATALOG__ACCESS_LOG` | `true`: one INFO event per `/v1` answer |
//! | `<service>.cors_allowed_origins` | YAML list | none: no CORS headers |
//! | `<service>.compress_min_bytes` | `SHOP__CATALOG__COMPRESS_MIN_BYTES` | `1024`: gzip for larger responses when accepted |
//! | `<service>.token_check_ttl_ms` | `SHOP__CATALOG__TOKEN_CHECK_TTL_MS` | `5000`: how stale users' word on a token may be |
//! | `<service>.drain_delay_ms` | `SHOP__CATALOG__DRAIN_DELAY_MS` | `0` (set ~5000 behind a load balancer) |
//! | `<service>.shutdown_grace_ms` | `SHOP__CATALOG__SHUTDOWN_GRACE_MS` | `20000`: then open connections are closed |
//! | `<service>.header_read_timeout_ms` | `SHOP__CATALOG__HEADER_READ_TIMEOUT_MS` | `10000`: request head, and HTTP/1 keep-alive idle |
//! | `<service>.max_connections` | `SHOP__CATALOG__MAX_CONNECTIONS` | `4096` |
//! | `<service>.http2_keep_alive_interval_ms` / `_timeout_ms` | `SHOP__CATALOG__HTTP2_KEEP_ALIVE_INTERVAL_MS` | `30000` / `10000` |
//! | `<service>.http2_max_concurrent_streams` | `SHOP__CATALOG__HTTP2_MAX_CONCURRENT_STREAMS` | `200` |
//! | `<service>.downstreams.<peer>.*` | `SHOP__ORDERS__DOWNSTREAMS__CATALOG__URL` | see [`DownstreamConfig`] |
//! | `<service>.downstreams.users.url` | `SHOP__CATALOG__DOWNSTREAMS__USERS__URL` | set by `shop all`; else tokens are checked by signature only (a WARN) |
//!
//! A service's own extra settings live under its key too and are read with [`Settings::extract`].
//!
//! **Outside these settings**, read from the environment once at start: `RUST_LOG` (which wins over
//! `log_level` at start), `LOG_FORMAT` and span export over OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`; see [`crate::telemetry::otlp`]), which are the process's, not a service's.
//!
//! **Reloaded live** ([`crate::reload`], on SIGHUP or a change of the file): `log_level`, and per
//! service the keys of [`LIVE_SERVICE_KEYS`] (the server's layers: `request_timeout_ms`,
//! `max_in_flight`, `access_log`, `compress_min_bytes`, `cors_allowed_origins`, `trusted_proxies`)
//! and every setting of a `downstreams.<peer>` the service calls. Any other key that changes is
//! named in a WARN and applies at the next restart.
//!
//! **Checked at start.** A key no service knows (`SHOP__USERS__ADMIN_PASWORD`) stops the binary with
//! the key and the nearest known one ([`unknown_keys`]); values out of range stop it too
//! ([`GlobalConfig::validate`], [`ServiceConfig::validate`]). A weak JWT secret (the development one,
//! or under [`MIN_JWT_SECRET_BYTES`]) is refused unless the service listens on loopback only or
//! `profile: development` is set ([`GlobalConfig::check_jwt_secret`]): anyone who knows it can forge
//! an admin token.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::value::{Dict, Value};
use palisade::InvalidConfig;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::{Backoff, RetryLayer};
use palisade::stack::ClientStack;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::BoxError;
use crate::secret::Secret;

/// The development JWT secret used when none is configured.
pub const DEV_JWT_SECRET: &str = "palisade-shop-development-secret-change-me";

/// The shortest JWT secret accepted outside development: HS256 wants a key as long as its output.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The accepted range of `jwt_ttl_secs`: a minute to a day.
pub const JWT_TTL_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// All configuration sources, merged; read typed sections from it.
///
/// `Debug` shows the sources and the keys set, never a value (figment's own `Debug` prints every
/// secret in clear).
#[derive(Clone)]
pub struct Settings {
    figment: Figment,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<String> = self.figment.metadata().map(|m| m.name.to_string()).collect();
        f.debug_struct("Settings").field("sources", &sources).field("keys", &self.keys()).finish()
    }
}

impl Settings {
    /// `CONFIG_PATH` (when set; the file must exist), then `SHOP__*` environment variables.
    pub fn load() -> Result<Self, BoxError> {
        Self::load_from(config_path().as_deref())
    }

    /// The YAML file at `path` (when given; it must exist and parse), then `SHOP__*` environment
    /// variables.
    pub fn load_from(path: Option<&std::path::Path>) -> Result<Self, BoxError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(format!("CONFIG_PATH {} is not a file", path.display()).into());
            }
            // Read once: these settings are a snapshot (a reload compares the file's old and new
            // values), and a file that does not parse is named here.
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("CONFIG_PATH {}: {e}", path.display()))?;
            let file = FileSnapshot { path: path.to_owned(), yaml: Yaml::string(&text) };
            Figment::from(&file)
                .extract::<Dict>()
                .map_err(|e| format!("CONFIG_PATH {}: {e}", path.display()))?;
            figment = figment.merge(file);
        }
        Ok(Self { figment: figment.merge(Env::prefixed("SHOP__").split("__")) })
    }

    /// Settings from any figment (tests: `Figment::new().merge(("catalog.port", 0))`).
    pub const fn from_figment(figment: Figment) -> Self {
        Self { figment }
    }

    /// Settings for a test of `service`: port 0 on loopback, the given database, a test JWT secret.
    pub fn for_test(service: &str, database_url: &str) -> Self {
        Self::from_figment(
            Figment::new()
                .merge((format!("{service}.port"), 0))
                .merge((format!("{service}.database_url"), database_url))
                .merge(("jwt_secret", "test-secret-test-secret-test-secret")),
        )
    }

    /// The settings shared by every service, validated.
    pub fn global(&self) -> Result<GlobalConfig, BoxError> {
        let config: GlobalConfig = Figment::from(Serialized::defaults(GlobalConfig::default()))
            .merge(self.figment.clone())
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The settings of `service`, with `default_port` when none is configured, validated.
    pub fn service(&self, service: &str, default_port: u16) -> Result<ServiceConfig, BoxError> {
        let defaults = ServiceConfig::defaults(service, default_port);
        let config: ServiceConfig =
            Figment::from(Serialized::defaults(defaults)).merge(self.figment.focus(service)).extract()?;
        config.validate(service)?;
        Ok(config)
    }

    /// These settings with `value` at `key` where no source sets it (sources still win).
    #[must_use]
    pub fn with_default(&self, key: &str, value: impl Serialize) -> Self {
        Self { figment: self.figment.clone().join(Serialized::default(key, value)) }
    }

    /// Every key set by a source, dotted (`catalog.port`), sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Ok(dict) = self.figment.extract::<Dict>() {
            leaf_keys("", &Value::from(dict), &mut keys);
        }
        keys.sort();
        keys
    }

    /// Every value a source sets, by dotted key (lists are one value); what a reload compares.
    pub fn values(&self) -> Result<BTreeMap<String, Value>, BoxError> {
        let dict: Dict = self.figment.extract()?;
        let mut values = BTreeMap::new();
        leaf_values("", &Value::from(dict), &mut values);
        Ok(values)
    }

    /// A section of the settings (`"catalog.cache"`), its defaults from `T::default()`.
    pub fn extract<T: DeserializeOwned + Serialize + Default>(&self, key: &str) -> Result<T, BoxError> {
        let value =
            Figment::from(Serialized::defaults(T::default())).merge(self.figment.focus(key)).extract()?;
        Ok(value)
    }
}

/// A YAML file as it was read once, named after its path in errors.
struct FileSnapshot {
    path: std::path::PathBuf,
    yaml: figment::providers::Data<Yaml>,
}

impl figment::Provider for FileSnapshot {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::from("YAML file", self.path.as_path())
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, Dict>, figment::Error> {
        self.yaml.data()
    }
}

/// The leaf keys under `value`, dotted and prefixed with `prefix`. An empty map is a leaf.
fn leaf_keys(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Dict(_, dict) if !dict.is_empty() => {
            for (key, value) in dict {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaf_keys(&path, value, out);
            }
        }
        _ if !prefix.is_empty() => out.push(prefix.to_owned()),
        _ => {}
    }
}

/// The leaf values under `value` by dotted key, like [`leaf_keys`].
fn leaf_values(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Dict(_, dict) if !dict.is_empty() => {
            for (key, value) in dict {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaf_values(&path, value, out);
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.to_owned(), value.clone());
        }
        _ => {}
    }
}

/// `CONFIG_PATH`, when set.
pub fn config_path() -> Option<std::path::PathBuf> {
    std::env::var_os("CONFIG_PATH").map(std::path::PathBuf::from)
}

/// The keys `value` serializes to, dotted, under `prefix` (`""` for none): what a settings section
/// knows. A service lists its own sections with it ([`Service::config_keys`](crate::service::Service)).
pub fn keys_of<T: Serialize>(prefix: &str, value: &T) -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(value) = Value::serialize(value) {
        leaf_keys(prefix, &value, &mut keys);
    }
    keys
}

/// The keys of `settings` that no pattern of `known` matches (`*` matches one segment), each with the
/// nearest known key when one is close (a typo).
pub fn unknown_keys(settings: &Settings, known: &[String]) -> Vec<(String, Option<String>)> {
    let matches = |key: &str, pattern: &str| {
        let (mut k, mut p) = (key.split('.'), pattern.split('.'));
        loop {
            match (k.next(), p.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if a == b || b == "*" => {}
                _ => return false,
            }
        }
    };
    settings
        .keys()
        .into_iter()
        .filter(|key| !known.iter().any(|pattern| matches(key, pattern)))
        .map(|key| {
            let nearest = known
                .iter()
                .map(|pattern| (strsim::levenshtein(&key, pattern), pattern))
                .filter(|(distance, _)| *distance <= 3)
                .min_by_key(|(distance, _)| *distance)
                .map(|(_, pattern)| pattern.clone());
            (key, nearest)
        })
        .collect()
}

/// What the deployment is: `production` (default) refuses weak secrets on a non-loopback address,
/// `development` only warns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Weak secrets only on loopback.
    #[default]
    Production,
    /// Weak secrets allowed anywhere (with a WARN): a shared development machine.
    Development,
}

/// Settings shared by every service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct GlobalConfig {
    /// `production` or `development`: see [`Profile`].
    pub profile: Profile,
    /// HS256 key for the JWTs users issues and every service verifies.
    pub jwt_secret: Secret<String>,
    /// Lifetime of an issued token, in seconds.
    pub jwt_ttl_secs: u64,
    /// The log filter when `RUST_LOG` is not set: a level (`info`) or `target=level` directives
    /// (`warn,kit=debug`); applied again when a reload changes it ([`crate::reload`]).
    pub log_level: String,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Production,
            jwt_secret: Secret::new(DEV_JWT_SECRET.to_owned()),
            jwt_ttl_secs: 3600,
            log_level: "info".to_owned(),
        }
    }
}

impl GlobalConfig {
    /// Checks the ranges: `jwt_ttl_secs` in [`JWT_TTL_SECS`], a non-empty secret, a `log_level`
    /// that parses.
    pub fn validate(&self) -> Result<(), BoxError> {
        let mut problems = Vec::new();
        if !JWT_TTL_SECS.contains(&self.jwt_ttl_secs) {
            problems.push(format!(
                "jwt_ttl_secs must be between {} and {} (is {})",
                JWT_TTL_SECS.start(),
                JWT_TTL_SECS.end(),
                self.jwt_ttl_secs
            ));
        }
        if self.jwt_secret.expose().is_empty() {
            problems.push("jwt_secret must not be empty".to_owned());
        }
        if let Err(problem) = crate::telemetry::log_filter(&self.log_level) {
            problems.push(format!("log_level: {problem}"));
        }
        invalid(&problems)
    }

    /// Whether weak secrets may be used by a service listening on `host`: in the development
    /// profile, or when `host` is a loopback address (nobody else can reach it).
    pub fn weak_secrets_allowed(&self, host: &str) -> bool {
        self.profile == Profile::Development || is_loopback(host)
    }

    /// Refuses the development JWT secret, or one under [`MIN_JWT_SECRET_BYTES`], for `service`
    /// listening on `host` unless [weak secrets are allowed](Self::weak_secrets_allowed) (then it
    /// warns).
    pub fn check_jwt_secret(&self, service: &str, host: &str) -> Result<(), BoxError> {
        let secret = self.jwt_secret.expose();
        let weakness = if secret == DEV_JWT_SECRET {
            "is the development secret, which anyone can read in the source"
        } else if secret.len() < MIN_JWT_SECRET_BYTES {
            "is shorter than 32 bytes"
        } else {
            return Ok(());
        };
        if self.weak_secrets_allowed(host) {
            tracing::warn!(service, host, "jwt_secret {weakness}: fine on loopback or in development only");
            return Ok(());
        }
        Err(format!(
            "{service}: refusing to listen on {host}: jwt_secret {weakness}, so anyone could forge admin \
             tokens. Set SHOP__JWT_SECRET to at least {MIN_JWT_SECRET_BYTES} random bytes (for example \
             `openssl rand -base64 48`), or SHOP__PROFILE=development on a development machine"
        )
        .into())
    }
}

/// Whether `host` (an address or `localhost`) can only be reached from this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `Ok` when `problems` is empty, else one error naming them all.
fn invalid(problems: &[String]) -> Result<(), BoxError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid configuration: {}", problems.join("; ")).into())
    }
}

/// The keys of a service (relative to it) that a reload applies while it runs: the server's
/// layers. Each downstream's settings (`downstreams.<peer>.*`) are live too, for the peers the
/// service calls; every other key needs a restart ([`crate::reload`]).
pub const LIVE_SERVICE_KEYS: &[&str] = &[
    "request_timeout_ms",
    "max_in_flight",
    "access_log",
    "compress_min_bytes",
    "cors_allowed_origins",
    "trusted_proxies",
];

/// The settings shared by every service that a reload applies while the process runs.
pub const LIVE_GLOBAL_KEYS: &[&str] = &["log_level"];

/// One service's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ServiceConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// `sqlite://…` or `postgres://…` (may hold a password: secret).
    pub database_url: Secret<String>,
    /// Size of the database pool; on SQLite the read-only connections, with one write connection
    /// besides ([`crate::db::SqliteDb`]).
    pub db_max_connections: u32,
    /// How long a statement waits for a lock (PostgreSQL `lock_timeout`; SQLite: for the write
    /// connection, and the busy timeout).
    pub db_lock_timeout_ms: u64,
    /// PostgreSQL `statement_timeout`.
    pub db_statement_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout`.
    pub db_idle_in_transaction_timeout_ms: u64,
    /// Attempts of a transaction that loses to a concurrent one ([`crate::db::Retry`]).
    pub db_retry_attempts: u32,
    /// PostgreSQL: create the database at start when missing (needs `CREATEDB`); default off.
    pub db_create: bool,
    /// SQLite durability: `normal` (default) or `full` ([`crate::db::Durability`]).
    pub db_synchronous: crate::db::Durability,
    /// Apply migrations at start (default: on for SQLite, off for PostgreSQL: run `shop migrate`).
    #[serde(default)]
    pub migrate_at_start: Option<bool>,
    /// The server's own timeout for one request.
    pub request_timeout_ms: u64,
    /// Requests in flight the `/v1` routes accept at once; more are answered 503 with `Retry-After`
    /// (operational routes are never counted nor refused).
    pub max_in_flight: usize,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// How long `/readyz` waits for the database.
    pub readiness_timeout_ms: u64,
    /// After a shutdown signal: how long `/readyz` answers 503 before the listener closes.
    pub drain_delay_ms: u64,
    /// After the listener closes: how long open connections may finish before they are closed.
    pub shutdown_grace_ms: u64,
    /// How long a client may take to send a request head, and how long an idle HTTP/1 keep-alive
    /// connection stays open (slow clients and slowloris are cut off after it).
    pub header_read_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP/2: how often an idle connection is pinged, and how long a ping may stay unanswered.
    pub http2_keep_alive_interval_ms: u64,
    /// HTTP/2: see `http2_keep_alive_interval_ms`.
    pub http2_keep_alive_timeout_ms: u64,
    /// HTTP/2: concurrent streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Proxies (CIDRs) whose forwarding headers name the client ([`crate::client_ip`]).
    pub trusted_proxies: Vec<String>,
    /// How long an answer of users about a token is trusted ([`crate::token_check`]).
    pub token_check_ttl_ms: u64,
    /// One INFO event per answered `/v1` request (method, route template, status, duration,
    /// `trace_id`), so a default subscriber shows the traffic.
    pub access_log: bool,
    /// Browser origins (`https://shop.example`) allowed to call the API cross-origin (CORS); none by
    /// default, which sends no CORS header at all.
    pub cors_allowed_origins: Vec<String>,
    /// Responses at least this large are gzip-compressed for clients that accept it (smaller ones
    /// are not worth the CPU).
    pub compress_min_bytes: u64,
    /// Client settings per downstream service, by name.
    pub downstreams: BTreeMap<String, DownstreamConfig>,
    /// The id of this service's signing key (`kid` of its service tokens; see
    /// [`crate::service_auth`]). Default `<service>-1`.
    pub signing_key_id: String,
    /// This service's Ed25519 seed (base64url, from `shop keygen`) for its service tokens. Empty:
    /// a key is generated at start, trusted only by the services of the same `shop` process.
    pub signing_key: Secret<String>,
    /// Keys of other services whose tokens this service accepts, by key id, with the scopes each
    /// may use here.
    pub trusted_keys: BTreeMap<String, crate::service_auth::TrustedKey>,
}

impl ServiceConfig {
    /// The defaults of `service`: SQLite under `data/`, loopback, `port`.
    pub fn defaults(service: &str, port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
            database_url: Secret::new(format!("sqlite://data/{service}.db?mode=rwc")),
            db_max_connections: 8,
            db_lock_timeout_ms: 2_000,
            db_statement_timeout_ms: 5_000,
            db_idle_in_transaction_timeout_ms: 10_000,
            db_retry_attempts: 3,
            db_create: false,
            db_synchronous: crate::db::Durability::Normal,
            migrate_at_start: None,
            request_timeout_ms: 10_000,
            max_in_flight: palisade::load_shed::DEFAULT_MAX_IN_FLIGHT,
            body_limit_bytes: 64 * 1024,
            readiness_timeout_ms: 1_000,
            drain_delay_ms: 0,
            shutdown_grace_ms: 20_000,
            header_read_timeout_ms: 10_000,
            max_connections: 4_096,
            http2_keep_alive_interval_ms: 30_000,
            http2_keep_alive_timeout_ms: 10_000,
            http2_max_concurrent_streams: 200,
            trusted_proxies: Vec::new(),
            token_check_ttl_ms: 5_000,
            access_log: true,
            cors_allowed_origins: Vec::new(),
            compress_min_bytes: 1_024,
            downstreams: BTreeMap::new(),
            signing_key_id: format!("{service}-1"),
            signing_key: Secret::new(String::new()),
            trusted_keys: BTreeMap::new(),
        }
    }

    /// This service's signer: the configured key, or a new one (see `signing_key`).
    pub fn signer(&self, service: &str) -> Result<crate::service_auth::ServiceSigner, BoxError> {
        let pair = if self.signing_key.expose().is_empty() {
            crate::service_auth::KeyPair::generate()?
        } else {
            crate::service_auth::KeyPair::from_seed(self.signing_key.expose())?
        };
        Ok(crate::service_auth::ServiceSigner::new(service, &self.signing_key_id, &pair))
    }

    /// The server timeout.
    pub const fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The database pool's settings.
    pub const fn db_options(&self) -> crate::db::DbOptions {
        crate::db::DbOptions {
            max_connections: self.db_max_connections,
            lock_timeout: Duration::from_millis(self.db_lock_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            idle_in_transaction_timeout: Duration::from_millis(self.db_idle_in_transaction_timeout_ms),
            create_database: self.db_create,
            durability: self.db_synchronous,
        }
    }

    /// Whether the service applies its migrations at start: `migrate_at_start` when set, else on for
    /// SQLite (development) and off for PostgreSQL, where `shop migrate` is the deploy step.
    pub fn migrates_at_start(&self) -> bool {
        self.migrate_at_start.unwrap_or_else(|| self.database_url.expose().starts_with("sqlite:"))
    }

    /// How the stores retry a transaction that lost to a concurrent one.
    pub fn db_retry(&self) -> crate::db::Retry {
        crate::db::Retry {
            max_attempts: self.db_retry_attempts,
            ..crate::db::Retry::for_options(&self.db_options())
        }
    }

    /// These settings with the [live ones](LIVE_SERVICE_KEYS) and the downstreams taken from
    /// `new`: what a reload runs with (the rest waits for a restart).
    #[must_use]
    pub fn with_live(&self, new: &Self) -> Self {
        Self {
            request_timeout_ms: new.request_timeout_ms,
            max_in_flight: new.max_in_flight,
            access_log: new.access_log,
            compress_min_bytes: new.compress_min_bytes,
            cors_allowed_origins: new.cors_allowed_origins.clone(),
            trusted_proxies: new.trusted_proxies.clone(),
            downstreams: new.downstreams.clone(),
            ..self.clone()
        }
    }

    /// Whether the server's layers differ between `self` and `other` (a reload rebuilds them).
    pub fn layers_differ(&self, other: &Self) -> bool {
        (self.request_timeout_ms, self.max_in_flight, self.access_log, self.compress_min_bytes)
            != (other.request_timeout_ms, other.max_in_flight, other.access_log, other.compress_min_bytes)
            || self.cors_allowed_origins != other.cors_allowed_origins
            || self.trusted_proxies != other.trusted_proxies
    }

    /// Checks that limits are positive and every downstream makes a valid client (URL, timeouts,
    /// retry and breaker settings); `service` names the keys in the error.
    pub fn validate(&self, service: &str) -> Result<(), BoxError> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(format!("{service}.host must not be empty"));
        }
        let positive = [
            ("db_max_connections", u64::from(self.db_max_connections)),
            ("db_lock_timeout_ms", self.db_lock_timeout_ms),
            ("db_statement_timeout_ms", self.db_statement_timeout_ms),
            ("db_idle_in_transaction_timeout_ms", self.db_idle_in_transaction_timeout_ms),
            ("db_retry_attempts", u64::from(self.db_retry_attempts)),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_in_flight", self.max_in_flight as u64),
            ("body_limit_bytes", self.body_limit_bytes as u64),
            ("readiness_timeout_ms", self.readiness_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("http2_keep_alive_interval_ms", self.http2_keep_alive_interval_ms),
            ("http2_keep_alive_timeout_ms", self.http2_keep_alive_timeout_ms),
            ("http2_max_concurrent_streams", u64::from(self.http2_max_concurrent_streams)),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("{service}.{key} must be at least 1"));
            }
        }
        for origin in &self.cors_allowed_origins {
            let ok = origin.parse::<http::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty())
            });
            if !ok || origin.ends_with('/') {
                problems.push(format!(
                    "{service}.cors_allowed_origins: {origin:?} is not an origin like https://shop.example"
                ));
            }
        }
        if let Err(problem) = crate::client_ip::TrustedProxies::parse(&self.trusted_proxies) {
            problems.push(format!("{service}.trusted_proxies: {problem}"));
        }
        for (peer, downstream) in &self.downstreams {
            if let Err(problem) = downstream.validate(peer) {
                problems.push(format!("{service}.downstreams.{peer}: {problem}"));
            }
        }
        if !self.signing_key.expose().is_empty()
            && let Err(problem) = crate::service_auth::KeyPair::from_seed(self.signing_key.expose())
        {
            problems.push(format!("{service}.{problem}"));
        }
        if let Err(problem) = crate::service_auth::ServiceVerifier::new(service, &self.trusted_keys) {
            problems.push(format!("{service}.{problem}"));
        }
        invalid(&problems)
    }
}

/// How a service calls one downstream: maps to [`palisade::stack::ClientStack`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DownstreamConfig {
    /// Base URL (`http://127.0.0.1:8082`).
    pub url: String,
    /// Budget of one call including retries, when the caller has no deadline.
    pub total_budget_ms: u64,
    /// Timeout of one attempt.
    pub attempt_timeout_ms: u64,
    /// Attempts in all (1: no retry).
    pub retry_max_attempts: u32,
    /// First backoff delay.
    pub retry_base_delay_ms: u64,
    /// Largest backoff delay.
    pub retry_max_delay_ms: u64,
    /// Failure rate (0..1) over the window that opens the breaker.
    pub breaker_failure_rate: f64,
    /// Calls in the breaker's sliding window.
    pub breaker_window_calls: u64,
    /// Calls needed in the window before the rate counts.
    pub breaker_minimum_calls: u64,
    /// How long the breaker stays open before probing.
    pub breaker_open_ms: u64,
    /// Largest response body read from the downstream; a longer one fails the call.
    pub max_response_bytes: usize,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            total_budget_ms: 10_000,
            attempt_timeout_ms: 2_000,
            retry_max_attempts: 3,
            retry_base_delay_ms: 50,
            retry_max_delay_ms: 1_000,
            breaker_failure_rate: 0.5,
            breaker_window_calls: 20,
            breaker_minimum_calls: 10,
            breaker_open_ms: 5_000,
            max_response_bytes: 1024 * 1024,
        }
    }
}

impl DownstreamConfig {
    /// Checks the URL (`http` or `https` with a host) and that a client stack can be built.
    pub fn validate(&self, peer: &str) -> Result<(), String> {
        let uri: http::Uri = self.url.parse().map_err(|e| format!("url {:?} is not a URL: {e}", self.url))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!("url {:?} must be http:// or https:// with a host", self.url));
        }
        if self.max_response_bytes == 0 {
            return Err("max_response_bytes must be at least 1".to_owned());
        }
        // A throwaway stack, built under a no-op recorder: a new breaker sets its state gauge, and
        // a reload validates while the real breaker of this name runs.
        metrics::with_local_recorder(&metrics::NoopRecorder, || self.client_stack(peer))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The client stack for calls to `peer` with these settings.
    pub fn client_stack(&self, peer: &str) -> Result<ClientStack, InvalidConfig> {
        self.client_stack_with(peer, self.retry_layer(peer)?, self.breaker_layer(peer)?)
    }

    /// The client stack for calls to `peer` with these timeouts around `retry` and `breaker`
    /// (kept from an earlier stack by a reload that did not change them: their state lives on).
    pub fn client_stack_with(
        &self,
        peer: &str,
        retry: RetryLayer,
        breaker: CircuitBreakerLayer,
    ) -> Result<ClientStack, InvalidConfig> {
        ClientStack::builder(peer.to_owned())
            .total_budget(Duration::from_millis(self.total_budget_ms))
            .attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .retry(retry)
            .breaker(breaker)
            .build()
    }

    /// The retry layer for `peer` (`retry_*`); a new one has a full retry budget.
    pub fn retry_layer(&self, peer: &str) -> Result<RetryLayer, InvalidConfig> {
        RetryLayer::builder()
            .name(peer.to_owned())
            .max_attempts(self.retry_max_attempts)
            .backoff(
                Backoff::exponential(Duration::from_millis(self.retry_base_delay_ms))
                    .cap(Duration::from_millis(self.retry_max_delay_ms)),
            )
            .build()
    }

    /// The circuit breaker for `peer` (`breaker_*`); a new one starts closed.
    pub fn breaker_layer(&self, peer: &str) -> Result<CircuitBreakerLayer, InvalidConfig> {
        CircuitBreakerLayer::builder()
            .name(peer.to_owned())
            .failure_rate_threshold(self.breaker_failure_rate)
            .count_window(self.breaker_window_calls)
            .minimum_calls(self.breaker_minimum_calls)
            .open_interval(Duration::from_millis(self.breaker_open_ms))
            .build()
    }

    /// Whether `other` has the same retry settings (a reload keeps the retry layer and its budget).
    pub fn same_retry(&self, other: &Self) -> bool {
        (self.retry_max_attempts, self.retry_base_delay_ms, self.retry_max_delay_ms)
            == (other.retry_max_attempts, other.retry_base_delay_ms, other.retry_max_delay_ms)
    }

    /// Whether `other` has the same breaker settings (a reload keeps the breaker and its state).
    pub fn same_breaker(&self, other: &Self) -> bool {
        self.breaker_failure_rate.to_bits() == other.breaker_failure_rate.to_bits()
            && (self.breaker_window_calls, self.breaker_minimum_calls, self.breaker_open_ms)
                == (other.breaker_window_calls, other.breaker_minimum_calls, other.breaker_open_ms)
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;

    use std::collections::BTreeMap;

    use figment::providers::Serialized;
    use figment::value::Value;

    use super::{
        DEV_JWT_SECRET, DownstreamConfig, GlobalConfig, LIVE_SERVICE_KEYS, Profile, Secret, ServiceConfig,
        Settings, is_loopback, keys_of, unknown_keys,
    };

    #[test]
    fn defaults_then_overrides() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("catalog.port", 9999))
                .merge(("catalog.downstreams.users.url", "http://127.0.0.1:1"))
                .merge(("catalog.downstreams.users.retry_max_attempts", 1)),
        );
        let config = settings.service("catalog", 8082).unwrap();
        assert_eq!(config.port, 9999);
        assert_eq!(config.database_url.expose(), "sqlite://data/catalog.db?mode=rwc");
        assert_eq!(config.body_limit_bytes, 65536);
        let users = &config.downstreams["users"];
        assert_eq!(users.retry_max_attempts, 1);
        assert_eq!(users.attempt_timeout_ms, 2_000);
        users.client_stack("users").unwrap();
        assert_eq!(settings.service("users", 8081).unwrap().port, 8081);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail fixes the error type
    fn env_overrides_and_secrets_are_redacted() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("shop.yaml", "catalog:\n  port: 7000\n  request_timeout_ms: 3000\n")?;
            jail.set_env("CONFIG_PATH", "shop.yaml");
            jail.set_env("SHOP__CATALOG__PORT", "7001");
            jail.set_env("SHOP__CATALOG__DATABASE_URL", "postgres://shop:pa55word@localhost/catalog");
            jail.set_env("SHOP__JWT_SECRET", "from-the-environment");
            let settings = Settings::load().map_err(|e| e.to_string())?;
            let config = settings.service("catalog", 8082).map_err(|e| e.to_string())?;
            assert_eq!(config.port, 7001);
            assert_eq!(config.request_timeout_ms, 3000);
            let global = settings.global().map_err(|e| e.to_string())?;
            assert_eq!(global.jwt_secret.expose(), "from-the-environment");
            let printed = format!("{config:?} {global:?}");
            assert!(!printed.contains("pa55word") && !printed.contains("from-the-environment"), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn debug_names_sources_and_keys_never_values() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("jwt_secret", "a-secret-that-must-not-show-up-anywhere"))
                .merge(("catalog.database_url", "postgres://shop:pa55word@db/catalog")),
        );
        let printed = format!("{settings:?}");
        assert!(printed.contains("catalog.database_url") && printed.contains("jwt_secret"), "{printed}");
        assert!(!printed.contains("pa55word") && !printed.contains("must-not-show-up"), "{printed}");
    }

    #[test]
    fn unknown_keys_are_named_with_the_nearest_known_one() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("users.admin_pasword", "x"))
                .merge(("users.port", 1))
                .merge(("users.downstreams.catalog.url", "http://127.0.0.1:1"))
                .merge(("users.downstreams.catalog.retry_attempts", 2))
                .merge(("something_else", true)),
        );
        let mut known = keys_of("", &GlobalConfig::default());
        known.extend(["users.port", "users.admin_password", "users.downstreams.*.url"].map(String::from));
        known.push("users.downstreams.*.retry_max_attempts".to_owned());
        let unknown = unknown_keys(&settings, &known);
        assert_eq!(
            unknown,
            [
                ("something_else".to_owned(), None),
                ("users.admin_pasword".to_owned(), Some("users.admin_password".to_owned())),
                ("users.downstreams.catalog.retry_attempts".to_owned(), None),
            ]
        );
        assert_eq!(
            keys_of("", &GlobalConfig::default()),
            ["jwt_secret", "jwt_ttl_secs", "log_level", "profile"]
        );
    }

    /// `with_live` takes from the new settings exactly the keys [`LIVE_SERVICE_KEYS`] lists and the
    /// downstreams, and keeps every other one; `layers_differ` sees each server key.
    #[test]
    fn a_reload_takes_exactly_the_live_keys() {
        let old = ServiceConfig::defaults("catalog", 8082);
        let peer = DownstreamConfig { url: "http://127.0.0.1:1".to_owned(), ..DownstreamConfig::default() };
        // Every field differs from `old` (a new field fails to compile here until it is decided).
        let new = ServiceConfig {
            host: "0.0.0.0".to_owned(),
            port: 9000,
            database_url: Secret::new("postgres://db/catalog".to_owned()),
            db_max_connections: 9,
            db_lock_timeout_ms: 9,
            db_statement_timeout_ms: 9,
            db_idle_in_transaction_timeout_ms: 9,
            db_retry_attempts: 9,
            db_create: true,
            db_synchronous: crate::db::Durability::Full,
            migrate_at_start: Some(true),
            request_timeout_ms: 9,
            max_in_flight: 9,
            body_limit_bytes: 9,
            readiness_timeout_ms: 9,
            drain_delay_ms: 9,
            shutdown_grace_ms: 9,
            header_read_timeout_ms: 9,
            max_connections: 9,
            http2_keep_alive_interval_ms: 9,
            http2_keep_alive_timeout_ms: 9,
            http2_max_concurrent_streams: 9,
            trusted_proxies: vec!["10.0.0.0/8".to_owned()],
            token_check_ttl_ms: 9,
            access_log: false,
            cors_allowed_origins: vec!["https://shop.example".to_owned()],
            compress_min_bytes: 9,
            downstreams: [("users".to_owned(), peer)].into(),
            signing_key_id: "other-1".to_owned(),
            signing_key: Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".to_owned()),
            trusted_keys: [("orders-1".to_owned(), crate::service_auth::TrustedKey::default())].into(),
        };
        let values = |config: &ServiceConfig| {
            let mut values = BTreeMap::new();
            super::leaf_values("", &Value::serialize(config).unwrap(), &mut values);
            values
        };
        let (before, after, merged) = (values(&old), values(&new), values(&old.with_live(&new)));
        for key in before.keys().chain(after.keys()) {
            let live = LIVE_SERVICE_KEYS.contains(&key.as_str()) || key.starts_with("downstreams");
            let expected = if live { &after } else { &before };
            assert_eq!(merged.get(key), expected.get(key), "{key} (live: {live})");
            assert_ne!(before.get(key), after.get(key), "{key} must differ for the test to see it");
        }
        for key in LIVE_SERVICE_KEYS {
            let mut one = old.clone();
            let mut changed = Figment::from(Serialized::defaults(&one));
            changed = changed.merge(Serialized::default(key, &after[*key]));
            one = changed.extract().unwrap();
            assert!(one.layers_differ(&old), "{key}");
        }
        assert!(!old.layers_differ(&old.with_live(&ServiceConfig { port: 1, ..old.clone() })));
    }

    #[test]
    fn log_levels_are_levels_or_target_directives() {
        for good in ["info", "WARN", "warn,kit=debug", "palisade=trace, kit::reload=debug", "off"] {
            crate::telemetry::log_filter(good).unwrap();
        }
        for bad in ["debgu", "info,kit", "kit=loud", "", " , "] {
            assert!(crate::telemetry::log_filter(bad).is_err(), "{bad}");
        }
        let settings = Settings::from_figment(Figment::new().merge(("log_level", "verbose")));
        let err = settings.global().unwrap_err().to_string();
        assert!(err.contains("log_level: \"verbose\" is neither a level"), "{err}");
    }

    #[test]
    fn values_out_of_range_are_refused_together() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("jwt_ttl_secs", 0))
                .merge(("catalog.max_in_flight", 0))
                .merge(("catalog.db_max_connections", 0))
                .merge(("catalog.downstreams.users.url", "users:8081"))
                .merge(("catalog.downstreams.stock.url", "http://127.0.0.1:8083"))
                .merge(("catalog.downstreams.stock.breaker_failure_rate", 2.0)),
        );
        let err = settings.global().unwrap_err().to_string();
        assert!(err.contains("jwt_ttl_secs must be between 60 and 86400 (is 0)"), "{err}");
        let err = settings.service("catalog", 8082).unwrap_err().to_string();
        assert!(err.contains("catalog.max_in_flight must be at least 1"), "{err}");
        assert!(err.contains("catalog.db_max_connections must be at least 1"), "{err}");
        assert!(err.contains("catalog.downstreams.users: url \"users:8081\" must be http://"), "{err}");
        assert!(err.contains("catalog.downstreams.stock: "), "{err}");
    }

    #[test]
    fn weak_jwt_secrets_only_on_loopback_or_in_development() {
        let global = |secret: &str, profile| GlobalConfig {
            jwt_secret: Secret::new(secret.to_owned()),
            profile,
            ..GlobalConfig::default()
        };
        let strong = "0123456789abcdef0123456789abcdef";
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
            global(DEV_JWT_SECRET, Profile::Production).check_jwt_secret("users", host).unwrap();
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "users.internal"] {
            assert!(!is_loopback(host), "{host}");
            let err =
                global(DEV_JWT_SECRET, Profile::Production).check_jwt_secret("users", host).unwrap_err();
            assert!(err.to_string().contains("development secret"), "{err}");
            let err = global("31-bytes-long-secret-0123456789", Profile::Production)
                .check_jwt_secret("users", host)
                .unwrap_err();
            assert!(err.to_string().contains("shorter than 32 bytes"), "{err}");
            assert!(!err.to_string().contains("31-bytes-long"), "the secret is never shown: {err}");
            global(strong, Profile::Production).check_jwt_secret("users", host).unwrap();
            global(DEV_JWT_SECRET, Profile::Development).check_jwt_secret("users", host).unwrap();
        }
    }
}
