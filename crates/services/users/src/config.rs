//! The users service's own settings (`users.*`, next to the kit's host, port and database).
//!
//! | key | env | default |
//! |---|---|---|
//! | `users.admin_email` | `SHOP__USERS__ADMIN_EMAIL` | `admin@palisade.local` |
//! | `users.admin_password` | `SHOP__USERS__ADMIN_PASSWORD` | `palisade-admin-password` (a WARN is logged) |
//! | `users.login_limits.per_account_and_address` | `SHOP__USERS__LOGIN_LIMITS__PER_ACCOUNT_AND_ADDRESS` | `5` per period |
//! | `users.login_limits.per_account` | `SHOP__USERS__LOGIN_LIMITS__PER_ACCOUNT` | `50` per period, from all addresses; each new lockout halves the refill |
//! | `users.login_limits.per_address` | `SHOP__USERS__LOGIN_LIMITS__PER_ADDRESS` | `20` per period |
//! | `users.login_limits.period_secs` | `SHOP__USERS__LOGIN_LIMITS__PERIOD_SECS` | `60` |
//! | `users.login_limits.registrations_per_address` | `SHOP__USERS__LOGIN_LIMITS__REGISTRATIONS_PER_ADDRESS` | `10` per registration period |
//! | `users.login_limits.registration_period_secs` | `SHOP__USERS__LOGIN_LIMITS__REGISTRATION_PERIOD_SECS` | `3600` |
//! | `users.login_limits.max_keys` | `SHOP__USERS__LOGIN_LIMITS__MAX_KEYS` | `100000` tracked keys per limit |
//! | `users.password_hashing.*` | `SHOP__USERS__PASSWORD_HASHING__MEMORY_KIB` | see [`HashingConfig`] |

use std::time::Duration;

use kit::rate_limit::RateLimiter;
use kit::secret::Secret;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::password::HashingConfig;

/// The admin email used when none is configured.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@palisade.local";
/// The admin password used when none is configured: fine for a walkthrough, never for production.
pub const DEFAULT_ADMIN_PASSWORD: &str = "palisade-admin-password";

/// `users.*`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct UsersConfig {
    /// The admin account created at first start (when no admin exists).
    pub admin_email: String,
    /// Its password.
    #[serde(deserialize_with = "string_secret")]
    pub admin_password: Secret<String>,
    /// Login attempt limits.
    pub login_limits: LoginLimits,
    /// argon2id cost.
    pub password_hashing: HashingConfig,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            admin_email: DEFAULT_ADMIN_EMAIL.to_owned(),
            admin_password: Secret::new(DEFAULT_ADMIN_PASSWORD.to_owned()),
            login_limits: LoginLimits::default(),
            password_hashing: HashingConfig::default(),
        }
    }
}

/// A secret that must be a string. Values that parse as numbers or booleans (an all-digit password
/// in an environment variable) are refused rather than converted (`0123` would lose its zero) and
/// the error never shows them, unlike serde's usual "invalid type: found `…`".
fn string_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret<String>, D::Error> {
    struct StringOnly;

    const NOT_A_STRING: &str = "must be a string (quote it in YAML; in the environment, not all digits); \
                                the value is not shown";

    impl Visitor<'_> for StringOnly {
        type Value = String;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }

        fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
            Ok(value)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }

        fn visit_i128<E: de::Error>(self, _: i128) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }

        fn visit_u128<E: de::Error>(self, _: u128) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(NOT_A_STRING))
        }
    }

    deserializer.deserialize_string(StringOnly).map(Secret::new)
}

/// Login and registration limits. The strict login limit is per account *and* address, so a
/// stranger guessing from elsewhere cannot lock the owner out; the looser per-account limit caps a
/// guessing campaign spread over many addresses; the per-address one caps one address trying many
/// accounts. A successful login clears its account's counts (not its address's). Addresses are keyed
/// by [`kit::rate_limit::address_key`] (IPv6 per /64; no known address is one shared key).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginLimits {
    /// Attempts per account from one address per period.
    pub per_account_and_address: u32,
    /// Attempts per account from all addresses per period.
    pub per_account: u32,
    /// Login attempts per client address per period.
    pub per_address: u32,
    /// The period, in seconds.
    pub period_secs: u64,
    /// Registrations per client address per `registration_period_secs`.
    pub registrations_per_address: u32,
    /// The registration period, in seconds.
    pub registration_period_secs: u64,
    /// Keys tracked at most by each limit; bounds memory (the least recently used key goes).
    pub max_keys: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_account_and_address: 5,
            per_account: 50,
            per_address: 20,
            period_secs: 60,
            registrations_per_address: 10,
            registration_period_secs: 3600,
            max_keys: 100_000,
        }
    }
}

/// The limiters [`LoginLimits`] describes.
#[derive(Debug)]
pub struct Limiters {
    /// Keyed `account|address`.
    pub account_and_address: RateLimiter,
    /// Keyed by account; growing: each new lockout of an account halves its refill rate.
    pub account: RateLimiter,
    /// Login attempts, keyed by address.
    pub address: RateLimiter,
    /// Registrations, keyed by address.
    pub registrations: RateLimiter,
}

impl LoginLimits {
    /// The limiters.
    pub fn limiters(&self) -> Limiters {
        let period = Duration::from_secs(self.period_secs.max(1));
        let registration_period = Duration::from_secs(self.registration_period_secs.max(1));
        Limiters {
            account_and_address: RateLimiter::new(self.per_account_and_address, period, self.max_keys),
            account: RateLimiter::growing(self.per_account, period, self.max_keys),
            address: RateLimiter::new(self.per_address, period, self.max_keys),
            registrations: RateLimiter::new(
                self.registrations_per_address,
                registration_period,
                self.max_keys,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use kit::config::Settings;

    use super::{DEFAULT_ADMIN_EMAIL, UsersConfig};

    #[test]
    fn defaults_overrides_and_redaction() {
        let settings = Settings::from_figment(
            Figment::new()
                .merge(("users.port", 9000))
                .merge(("users.admin_password", "an admin password"))
                .merge(("users.login_limits.per_account", 2)),
        );
        let config: UsersConfig = settings.extract("users").unwrap();
        assert_eq!(config.admin_email, DEFAULT_ADMIN_EMAIL);
        assert_eq!(config.admin_password.expose(), "an admin password");
        assert_eq!((config.login_limits.per_account, config.login_limits.per_address), (2, 20));
        assert_eq!(config.login_limits.per_account_and_address, 5);
        assert!(!format!("{config:?}").contains("an admin password"));
        assert_eq!(UsersConfig::default().admin_password.expose(), super::DEFAULT_ADMIN_PASSWORD);
    }

    #[test]
    fn a_password_that_is_not_a_string_is_refused_without_showing_it() {
        for value in [
            serde_json::json!(123_456_789_012_u64),
            serde_json::json!(-42),
            serde_json::json!(1.5),
            serde_json::json!(true),
        ] {
            let settings =
                Settings::from_figment(Figment::new().merge(("users.admin_password", value.clone())));
            let err = settings.extract::<UsersConfig>("users").unwrap_err().to_string();
            assert!(err.contains("must be a string"), "{err}");
            assert!(!err.contains(&value.to_string()), "{err}");
        }
    }
}
