//! Password hashing with argon2id (PHC strings), off the async runtime.
//!
//! Each hash or verification runs on tokio's blocking pool, and at most one per CPU runs at a time
//! (each holds `memory_kib` of memory), so a burst of logins queues instead of exhausting memory.
//!
//! [`Hasher::verify_unknown`] verifies against a dummy hash made with the same parameters at start,
//! so a login for an unknown email costs what a wrong password costs: the two cannot be told apart
//! by their timing.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use kit::BoxError;

/// argon2id cost (`users.password_hashing.*`); the defaults are OWASP's recommendation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HashingConfig {
    /// Memory per hash, in KiB (default 19456 = 19 MiB).
    pub memory_kib: u32,
    /// Passes over the memory (default 2).
    pub iterations: u32,
    /// Lanes (default 1).
    pub parallelism: u32,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct Hasher(Arc<Inner>);

struct Inner {
    argon2: Argon2<'static>,
    dummy: String,
    permits: Semaphore,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("params", self.0.argon2.params()).finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher with `config`'s cost; computes the dummy hash (one hash, on the calling thread).
    pub fn new(config: &HashingConfig) -> Result<Self, BoxError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| format!("users.password_hashing: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon2, b"not the password of any account")?;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(Self(Arc::new(Inner { argon2, dummy, permits: Semaphore::new(cpus) })))
    }

    /// The PHC string (`$argon2id$v=19$m=…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, BoxError> {
        let password = password.to_owned();
        self.blocking(move |argon2| hash_with(argon2, password.as_bytes())).await
    }

    /// Whether `password` matches `phc` (with the parameters recorded in `phc`).
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, BoxError> {
        let (password, phc) = (password.to_owned(), phc.to_owned());
        self.blocking(move |argon2| verify_with(argon2, password.as_bytes(), &phc)).await
    }

    /// Does the work of a verification for an account that does not exist; always `false`.
    pub async fn verify_unknown(&self, password: &str) -> Result<bool, BoxError> {
        self.verify(password, &self.0.dummy).await.map(|_| false)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, BoxError> + Send + 'static,
    ) -> Result<T, BoxError> {
        let _permit = self.0.permits.acquire().await?;
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || work(&inner.argon2)).await?
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, BoxError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2.hash_password(password, &salt).map_err(|e| format!("argon2: {e}"))?.to_string())
}

fn verify_with(argon2: &Argon2<'_>, password: &[u8], phc: &str) -> Result<bool, BoxError> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("stored password hash: {e}"))?;
    match argon2.verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(format!("argon2: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Hasher, HashingConfig};

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let config = HashingConfig { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let hasher = Hasher::new(&config).unwrap();
        let a = hasher.hash("correct horse battery").await.unwrap();
        let b = hasher.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(hasher.verify("correct horse battery", &a).await.unwrap());
        assert!(!hasher.verify("correct horse batterY", &a).await.unwrap());
        assert!(hasher.verify("x", "not a phc string").await.is_err());
        // The dummy hash has the configured cost, so unknown emails cost what known ones do.
        assert!(hasher.0.dummy.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(!hasher.verify_unknown("not the password of any account").await.unwrap());
        // Hashes made with other parameters still verify (they carry their own).
        let stronger = Hasher::new(&HashingConfig { memory_kib: 2048, ..config }).unwrap();
        assert!(
            hasher
                .verify("correct horse battery", &stronger.hash("correct horse battery").await.unwrap())
                .await
                .unwrap()
        );
    }

    #[test]
    fn invalid_cost_is_a_config_error() {
        let err = Hasher::new(&HashingConfig { memory_kib: 1, ..HashingConfig::default() }).unwrap_err();
        assert!(err.to_string().starts_with("users.password_hashing"), "{err}");
    }
}
