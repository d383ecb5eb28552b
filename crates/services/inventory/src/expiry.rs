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
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::Store;

/// The running sweep; dropping it stops the task.
#[derive(Debug)]
pub struct Sweeper {
    stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Sweeper {
    /// Starts sweeping `store` every `interval`, expiring up to `batch` reservations per query,
    /// until `db` closes or the sweeper is dropped. Needs a Tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, db: &Db, interval: Duration, batch: u32) -> Self {
        let (stop, stopped) = watch::channel(());
        let task = tokio::spawn(run(store, db.clone(), interval, batch.max(1), stopped));
        Self { stop, task }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task and waits for it (a sweep in progress finishes first).
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    db: Db,
    interval: Duration,
    batch: u32,
    mut stopped: watch::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = db_closed(db);
    tokio::pin!(closed);
    loop {
        tokio::select! {
            // `Err` once the sender is dropped; nothing is ever sent.
            _ = stopped.changed() => break,
            () = &mut closed => break,
            _ = ticker.tick() => {
                sweep(store.as_ref(), OffsetDateTime::now_utc(), batch).await;
            }
        }
    }
    tracing::debug!("reservation expiry sweep stopped");
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

async fn db_closed(db: Db) {
    match db {
        Db::Sqlite(pool) => pool.close_event().await,
        Db::Postgres(pool) => pool.close_event().await,
    }
}
