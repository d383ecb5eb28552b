//! The expiry sweep: a background task that expires pending reservations past their deadline and
//! gives their stock back, every `expiry_interval_ms`.
//!
//! It is not the only guard: commit, release and `GET` of a reservation check its deadline
//! themselves (lazily), so a reservation past `expires_at` never commits even between sweeps.
//!
//! The task stops when the service's database pool closes (what [`kit::server::Server::run`] does
//! at the end of a graceful shutdown) or when the [`Sweeper`] is dropped (the router and every
//! clone of its state are gone), whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use kit::db::Db;
use kit::jobs::Job;
use time::OffsetDateTime;

use crate::store::Store;

/// The running sweep (a [`kit::jobs::Job`]); dropping it stops the task.
#[derive(Debug)]
pub struct Sweeper(Job);

impl Sweeper {
    /// Starts sweeping `store` every `interval`, expiring up to `batch` reservations per query,
    /// until `db` closes or the sweeper is dropped. Needs a Tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, db: &Db, interval: Duration, batch: u32) -> Self {
        Self(Job::spawn("reservation-expiry", db, interval, move || {
            let store = store.clone();
            async move {
                sweep(store.as_ref(), OffsetDateTime::now_utc(), batch.max(1)).await;
                false
            }
        }))
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Stops the task and waits for it (a sweep in progress finishes first).
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// Expires every reservation due at `now`, `batch` at a time; returns how many.
pub async fn sweep(store: &dyn Store, now: OffsetDateTime, batch: u32) -> u64 {
    let mut total = 0;
    loop {
        match store.expire_due(now, batch).await {
            Ok(expired) => {
                total += expired;
                if expired < u64::from(batch) {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "reservation expiry sweep failed; retrying at the next interval");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(expired = total, "expired reservations and returned their stock");
    }
    total
}
