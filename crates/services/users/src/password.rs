//! Password hashing with argon2id (PHC strings), off the async runtime.
//!
//! Each hash or verification runs on tokio's blocking pool, and at most one per CPU runs at a time
//! (each holds `memory_kib` of memory), so a burst of logins queues instead of exhausting memory.
//! The permit lives as long as the hash, not the request: a request that times out or whose client
//! disconnects stops waiting, but its hash keeps its permit until argon2 returns, so cancelled requests
//! cannot pile hashes up beyond the bound. At most `max_queue` callers wait for a permit; one more
//! gets [`Busy`] at once (the handlers answer 503 with `Retry-After`), so a flood costs neither
//! memory nor an ever-growing wait.
//!
//! [`Hasher::verify_unknown`] verifies against a dummy hash made with the same parameters at start,
//! so a login for an unknown email costs what a wrong password costs: the two cannot be told apart
//! by their timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Callers waiting for a free CPU at most (default 64); more are answered [`Busy`].
    pub max_queue: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1, max_queue: 64 }
    }
}

/// Every CPU is hashing and `max_queue` callers already wait: try again after [`Busy::RETRY_AFTER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

impl Busy {
    /// What the handlers send as `Retry-After`.
    pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every password hashing slot is busy and the queue is full")
    }
}

impl std::error::Error for Busy {}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct Hasher(Arc<Inner>);

struct Inner {
    argon2: Argon2<'static>,
    dummy: String,
    permits: Arc<Semaphore>,
    max_queue: usize,
    /// Callers waiting for a permit.
    waiting: AtomicUsize,
    /// Hashes running now, and the most seen at once (tests and the flood bench read it).
    running: AtomicUsize,
    peak_running: AtomicUsize,
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
        Ok(Self(Arc::new(Inner {
            argon2,
            dummy,
            permits: Arc::new(Semaphore::new(cpus)),
            max_queue: config.max_queue,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak_running: AtomicUsize::new(0),
        })))
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

    /// The most hashes seen running at once since start (never more than the CPUs).
    pub fn peak_running(&self) -> usize {
        self.0.peak_running.load(Ordering::Relaxed)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, BoxError> + Send + 'static,
    ) -> Result<T, BoxError> {
        let permit = if let Ok(permit) = Arc::clone(&self.0.permits).try_acquire_owned() {
            permit
        } else {
            let _place = Waiting::join(&self.0)?;
            Arc::clone(&self.0.permits).acquire_owned().await?
        };
        let inner = Arc::clone(&self.0);
        // The permit moves into the blocking task: it is released when argon2 returns, even if the
        // request that asked for it is gone.
        tokio::task::spawn_blocking(move || {
            let running = inner.running.fetch_add(1, Ordering::Relaxed) + 1;
            inner.peak_running.fetch_max(running, Ordering::Relaxed);
            let result = work(&inner.argon2);
            inner.running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            result
        })
        .await?
    }
}

/// A place in the queue for a permit, given back when dropped (a cancelled waiter leaves the queue).
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn join(inner: &'a Inner) -> Result<Self, Busy> {
        let joined = inner.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
            (waiting < inner.max_queue).then_some(waiting + 1)
        });
        joined.map(|_| Self(inner)).map_err(|_| Busy)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
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
        let config =
            HashingConfig { memory_kib: 1024, iterations: 1, parallelism: 1, ..HashingConfig::default() };
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

    /// A flood of requests cancelled while they wait or hash (timeouts, clients gone) never runs more
    /// hashes at once than there are CPUs, and a full queue answers `Busy` at once. Memory is what
    /// the running hashes hold: sampled here and printed (`--nocapture`) for the record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_requests_keep_their_hash_bounded_and_a_full_queue_is_busy() {
        let config = HashingConfig { memory_kib: 8 * 1024, iterations: 1, parallelism: 1, max_queue: 8 };
        let hasher = Hasher::new(&config).unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let (rss_before, threads_before) = process_status();
        let mut busy = 0;
        let mut peak = (0, 0);
        for _ in 0..20 {
            let mut flood = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let hasher = hasher.clone();
                flood.spawn(async move {
                    // Cancelled after 1 ms: before the fix, its permit went with it while argon2 ran on.
                    tokio::time::timeout(
                        std::time::Duration::from_millis(1),
                        hasher.hash("a password to hash"),
                    )
                    .await
                });
            }
            while let Some(outcome) = flood.join_next().await {
                if let Ok(Err(err)) = outcome.unwrap() {
                    assert!(err.is::<super::Busy>(), "{err}");
                    busy += 1;
                }
            }
            let (rss, threads) = process_status();
            peak = (peak.0.max(rss), peak.1.max(threads));
        }
        assert!(hasher.peak_running() <= cpus, "{} hashes ran at once on {cpus} CPUs", hasher.peak_running());
        assert!(busy > 0, "a queue of 8 never filled under 50 callers at once");
        println!(
            "1000 cancelled hashes (8 MiB each), {cpus} CPUs: peak {} running, {busy} busy; RSS {} -> peak {} KiB, \
             threads {threads_before} -> peak {}",
            hasher.peak_running(),
            rss_before,
            peak.0,
            peak.1
        );
        // What the running hashes hold, plus what the allocator keeps in each blocking thread's arena
        // after a hash (seen: 110 to 190 MiB with 7 threads, glibc's choice). 50 hashes at once would
        // be over 400 MiB and 50+ threads: the thread count is the sharp check, RSS the coarse one.
        assert!(peak.0 < rss_before + 40 * 8 * 1024, "RSS {peak:?} KiB");
        assert!(peak.1 < threads_before + 2 * cpus as u64 + 8, "threads {peak:?}");
        // Still usable afterwards.
        hasher.hash("after the flood").await.unwrap();
    }

    /// VmRSS (KiB) and the thread count of this process.
    fn process_status() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("Threads:"))
    }
}
