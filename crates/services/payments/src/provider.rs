//! The simulated payment provider: what a card processor would do, with configurable latency and
//! failures, so the system can be exercised under a slow, failing or hanging dependency.
//!
//! Settings `payments.provider.*` ([`ProviderConfig`]); adjustable live by admins through
//! `GET`/`PUT /ops/provider` (see [`crate::api`]). Each charge draws, independently and with
//! `fastrand`: a hang (`hang_rate`: never answers), else a latency (log-normal with median
//! `latency_ms_p50` and 99th percentile `latency_ms_p99`, capped at three times the latter), then
//! an error (`error_rate`: the provider failed) or a decline (`decline_rate`), else a capture.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use kit::error::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest configurable latency, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// How the simulated provider behaves (`payments.provider`, and the body of `PUT /ops/provider`,
/// where every field is required).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Median latency of a charge, ms (default 2; at most 60 000).
    #[schema(minimum = 0, maximum = 60_000, example = 2)]
    pub latency_ms_p50: u64,
    /// 99th percentile latency, ms (default 10; at least `latency_ms_p50`, at most 60 000).
    #[schema(minimum = 0, maximum = 60_000, example = 10)]
    pub latency_ms_p99: u64,
    /// Share of charges declined, 0–1 (default 0).
    #[schema(minimum = 0, maximum = 1, example = 0.0)]
    pub decline_rate: f64,
    /// Share of charges the provider fails, 0–1 (default 0).
    #[schema(minimum = 0, maximum = 1, example = 0.0)]
    pub error_rate: f64,
    /// Share of charges that never answer, 0–1 (default 0): only the request's deadline ends them.
    #[schema(minimum = 0, maximum = 1, example = 0.0)]
    pub hang_rate: f64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self { latency_ms_p50: 2, latency_ms_p99: 10, decline_rate: 0.0, error_rate: 0.0, hang_rate: 0.0 }
    }
}

impl ProviderConfig {
    /// Checks every field; one [`FieldError`] per problem (pointers as in the `PUT` body).
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (name, value) in
            [("latency_ms_p50", self.latency_ms_p50), ("latency_ms_p99", self.latency_ms_p99)]
        {
            if value > MAX_LATENCY_MS {
                errors
                    .push(FieldError::new(format!("#/{name}"), format!("must be at most {MAX_LATENCY_MS}")));
            }
        }
        if self.latency_ms_p99 < self.latency_ms_p50 {
            errors.push(FieldError::new("#/latency_ms_p99", "must be at least latency_ms_p50"));
        }
        for (name, rate) in [
            ("decline_rate", self.decline_rate),
            ("error_rate", self.error_rate),
            ("hang_rate", self.hang_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                errors.push(FieldError::new(format!("#/{name}"), "must be between 0 and 1"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// [`check`](Self::check) for start-up, naming the settings keys.
    pub fn validate(&self) -> Result<(), kit::BoxError> {
        self.check().map_err(|errors| {
            let problems: Vec<String> = errors
                .iter()
                .map(|e| format!("payments.provider.{} {}", e.pointer.trim_start_matches("#/"), e.detail))
                .collect();
            problems.join("; ").into()
        })
    }

    /// A latency drawn from the configured distribution.
    fn latency(&self) -> Duration {
        let (p50, p99) = (self.latency_ms_p50 as f64, self.latency_ms_p99 as f64);
        if p50 <= 0.0 {
            return Duration::from_millis(fastrand::u64(0..=self.latency_ms_p99));
        }
        // Log-normal: ln(latency) ~ N(ln p50, sigma), sigma so that the 99th percentile is p99.
        let sigma = (p99 / p50).ln() / 2.326;
        let normal = standard_normal();
        let ms = (p50 * (sigma * normal).exp()).min(p99 * 3.0).max(0.0);
        Duration::from_micros((ms * 1_000.0) as u64)
    }
}

/// A standard normal draw (Box–Muller).
fn standard_normal() -> f64 {
    let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
    let u2 = fastrand::f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// What the provider answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Captured.
    Captured,
    /// Declined, with the reason.
    Declined(String),
    /// The provider failed; nothing was captured.
    Failed,
}

const DECLINE_REASONS: [&str; 3] = ["insufficient_funds", "card_declined", "do_not_honor"];

/// The simulated provider; cheap to clone, settings shared by the clones.
#[derive(Clone, Debug)]
pub struct Provider {
    config: Arc<RwLock<ProviderConfig>>,
}

impl Provider {
    /// A provider with `config` (validated).
    pub fn new(config: ProviderConfig) -> Self {
        Self { config: Arc::new(RwLock::new(config)) }
    }

    /// The current settings.
    pub fn config(&self) -> ProviderConfig {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the settings (validated by the caller); charges already running keep theirs.
    pub fn set(&self, config: ProviderConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Charges `amount` minor units. Never resolves on a hang: race it against a deadline (dropping
    /// the future stops the charge).
    pub async fn charge(&self, amount: i64) -> Outcome {
        let config = self.config();
        if fastrand::f64() < config.hang_rate {
            tracing::debug!(amount, "simulated provider: hanging");
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(config.latency()).await;
        if fastrand::f64() < config.error_rate {
            return Outcome::Failed;
        }
        if fastrand::f64() < config.decline_rate {
            let reason = DECLINE_REASONS[fastrand::usize(..DECLINE_REASONS.len())];
            return Outcome::Declined(reason.to_owned());
        }
        Outcome::Captured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_named() {
        assert!(ProviderConfig::default().check().is_ok());
        let bad = ProviderConfig {
            latency_ms_p50: 20,
            latency_ms_p99: 10,
            decline_rate: 1.5,
            error_rate: -0.1,
            hang_rate: f64::NAN,
        };
        let pointers: Vec<String> = bad.check().unwrap_err().into_iter().map(|e| e.pointer).collect();
        assert_eq!(pointers, ["#/latency_ms_p99", "#/decline_rate", "#/error_rate", "#/hang_rate"]);
        assert!(bad.validate().unwrap_err().to_string().contains("payments.provider.decline_rate"));
    }

    #[test]
    fn latency_stays_within_three_times_p99() {
        let config = ProviderConfig { latency_ms_p50: 5, latency_ms_p99: 50, ..ProviderConfig::default() };
        for _ in 0..1_000 {
            assert!(config.latency() <= Duration::from_millis(150));
        }
        let zero = ProviderConfig { latency_ms_p50: 0, latency_ms_p99: 0, ..ProviderConfig::default() };
        assert_eq!(zero.latency(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_of_one_decide_the_outcome() {
        let provider = Provider::new(ProviderConfig { decline_rate: 1.0, ..ProviderConfig::default() });
        assert!(matches!(provider.charge(100).await, Outcome::Declined(_)));
        provider.set(ProviderConfig { error_rate: 1.0, decline_rate: 1.0, ..ProviderConfig::default() });
        assert_eq!(provider.charge(100).await, Outcome::Failed);
        provider.set(ProviderConfig::default());
        assert_eq!(provider.charge(100).await, Outcome::Captured);
        provider.set(ProviderConfig { hang_rate: 1.0, ..ProviderConfig::default() });
        let hung = tokio::time::timeout(Duration::from_secs(3600), provider.charge(100)).await;
        assert!(hung.is_err(), "a hang never answers");
    }
}
