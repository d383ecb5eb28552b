//! Typed configuration: defaults, then the YAML file at `CONFIG_PATH` (optional), then environment
//! variables.
//!
//! Keys, with their environment variable (prefix `SHOP__`, `__` between levels):
//!
//! | key | env | default |
//! |---|---|---|
//! | `jwt_secret` | `SHOP__JWT_SECRET` | a development secret (a WARN is logged when used) |
//! | `jwt_ttl_secs` | `SHOP__JWT_TTL_SECS` | `3600` |
//! | `<service>.host` | `SHOP__CATALOG__HOST` | `127.0.0.1` |
//! | `<service>.port` | `SHOP__CATALOG__PORT` | the service's port (catalog 8082) |
//! | `<service>.database_url` | `SHOP__CATALOG__DATABASE_URL` | `sqlite://data/<service>.db?mode=rwc` |
//! | `<service>.db_max_connections` | `SHOP__CATALOG__DB_MAX_CONNECTIONS` | `8` |
//! | `<service>.request_timeout_ms` | `SHOP__CATALOG__REQUEST_TIMEOUT_MS` | `10000` |
//! | `<service>.body_limit_bytes` | `SHOP__CATALOG__BODY_LIMIT_BYTES` | `65536` |
//! | `<service>.readiness_timeout_ms` | `SHOP__CATALOG__READINESS_TIMEOUT_MS` | `1000` |
//! | `<service>.drain_delay_ms` | `SHOP__CATALOG__DRAIN_DELAY_MS` | `0` (set ~5000 behind a load balancer) |
//! | `<service>.downstreams.<peer>.*` | `SHOP__ORDERS__DOWNSTREAMS__CATALOG__URL` | see [`DownstreamConfig`] |
//!
//! A service's own extra settings live under its key too and are read with [`Settings::extract`].

use std::collections::BTreeMap;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
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

/// All configuration sources, merged; read typed sections from it.
#[derive(Clone, Debug)]
pub struct Settings {
    figment: Figment,
}

impl Settings {
    /// `CONFIG_PATH` (when set; the file must exist), then `SHOP__*` environment variables.
    pub fn load() -> Result<Self, BoxError> {
        let mut figment = Figment::new();
        if let Some(path) = std::env::var_os("CONFIG_PATH") {
            if !std::path::Path::new(&path).is_file() {
                return Err(format!("CONFIG_PATH {} is not a file", path.to_string_lossy()).into());
            }
            figment = figment.merge(Yaml::file(path));
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

    /// The settings shared by every service.
    pub fn global(&self) -> Result<GlobalConfig, BoxError> {
        let config: GlobalConfig = Figment::from(Serialized::defaults(GlobalConfig::default()))
            .merge(self.figment.clone())
            .extract()?;
        Ok(config)
    }

    /// The settings of `service`, with `default_port` when none is configured.
    pub fn service(&self, service: &str, default_port: u16) -> Result<ServiceConfig, BoxError> {
        let defaults = ServiceConfig::defaults(service, default_port);
        let config =
            Figment::from(Serialized::defaults(defaults)).merge(self.figment.focus(service)).extract()?;
        Ok(config)
    }

    /// A section of the settings (`"catalog.cache"`), its defaults from `T::default()`.
    pub fn extract<T: DeserializeOwned + Serialize + Default>(&self, key: &str) -> Result<T, BoxError> {
        let value =
            Figment::from(Serialized::defaults(T::default())).merge(self.figment.focus(key)).extract()?;
        Ok(value)
    }
}

/// Settings shared by every service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct GlobalConfig {
    /// HS256 key for the JWTs users issues and every service verifies.
    pub jwt_secret: Secret<String>,
    /// Lifetime of an issued token, in seconds.
    pub jwt_ttl_secs: u64,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self { jwt_secret: Secret::new(DEV_JWT_SECRET.to_owned()), jwt_ttl_secs: 3600 }
    }
}

/// One service's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ServiceConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// `sqlite://…` or `postgres://…` (may hold a password: secret).
    pub database_url: Secret<String>,
    /// Size of the database pool.
    pub db_max_connections: u32,
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
    /// Client settings per downstream service, by name.
    pub downstreams: BTreeMap<String, DownstreamConfig>,
}

impl ServiceConfig {
    /// The defaults of `service`: SQLite under `data/`, loopback, `port`.
    pub fn defaults(service: &str, port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
            database_url: Secret::new(format!("sqlite://data/{service}.db?mode=rwc")),
            db_max_connections: 8,
            request_timeout_ms: 10_000,
            max_in_flight: palisade::load_shed::DEFAULT_MAX_IN_FLIGHT,
            body_limit_bytes: 64 * 1024,
            readiness_timeout_ms: 1_000,
            drain_delay_ms: 0,
            downstreams: BTreeMap::new(),
        }
    }

    /// The server timeout.
    pub const fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// How a service calls one downstream: maps to [`palisade::stack::ClientStack`].
#[derive(Clone, Debug, Deserialize, Serialize)]
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
        }
    }
}

impl DownstreamConfig {
    /// The client stack for calls to `peer` with these settings.
    pub fn client_stack(&self, peer: &str) -> Result<ClientStack, InvalidConfig> {
        let retry = RetryLayer::builder()
            .name(peer.to_owned())
            .max_attempts(self.retry_max_attempts)
            .backoff(
                Backoff::exponential(Duration::from_millis(self.retry_base_delay_ms))
                    .cap(Duration::from_millis(self.retry_max_delay_ms)),
            )
            .build()?;
        let breaker = CircuitBreakerLayer::builder()
            .name(peer.to_owned())
            .failure_rate_threshold(self.breaker_failure_rate)
            .count_window(self.breaker_window_calls)
            .minimum_calls(self.breaker_minimum_calls)
            .open_interval(Duration::from_millis(self.breaker_open_ms))
            .build()?;
        ClientStack::builder(peer.to_owned())
            .total_budget(Duration::from_millis(self.total_budget_ms))
            .attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .retry(retry)
            .breaker(breaker)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;

    use super::Settings;

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
}
