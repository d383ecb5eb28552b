//! [`Job`]: a background task that runs one unit of work every interval (with jitter), for the
//! outbox relay, key expiry, saga recovery and the reservation sweep.
//!
//! A job stops when the service's database pool closes (what [`crate::server::Server::run`] does at
//! the end of a graceful shutdown, after the last request), or when its [`Job`] handle is dropped
//! (the router and its state are gone), whichever comes first; a run in progress finishes first, so
//! a job never leaves a half-done transaction behind at shutdown.
//!
//! **Several replicas.** A job runs in every replica; what makes that safe is the work itself: it
//! claims the rows it handles in a transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, which
//! [`Dialect::claim_lock`](crate::db::Dialect::claim_lock) gives; SQLite has one writer anyway),
//! so two replicas never work on the same row at once. The jitter keeps replicas started together
//! from polling in lockstep.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;

/// A running job; dropping it stops the task after its current run.
#[derive(Debug)]
pub struct Job {
    name: &'static str,
    stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Job {
    /// Runs `work` every `interval` plus up to 10 % random jitter, first after one interval, until
    /// `db` closes or the job is dropped. `work` returns whether there is more to do at once (a full
    /// batch): then it runs again without waiting. Needs a Tokio runtime.
    pub fn spawn<F, Fut>(name: &'static str, db: &Db, interval: Duration, mut work: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let (stop, mut stopped) = watch::channel(());
        let closed = closed(db.clone());
        let task = tokio::spawn(async move {
            tokio::pin!(closed);
            loop {
                let jitter = interval.mul_f64(fastrand::f64() * 0.1);
                tokio::select! {
                    // `Err` once the sender is dropped; nothing is ever sent.
                    _ = stopped.changed() => break,
                    () = &mut closed => break,
                    () = tokio::time::sleep(interval + jitter) => {
                        // Drain a backlog without waiting, but give the runtime a turn between batches.
                        while work().await {
                            tokio::task::yield_now().await;
                            if stopped.has_changed().is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            tracing::debug!(job = name, "job stopped");
        });
        Self { name, stop, task }
    }

    /// The job's name (in its log lines).
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task and waits for it (a run in progress finishes first).
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

async fn closed(db: Db) {
    match db {
        Db::Sqlite(pool) => pool.close_event().await,
        Db::Postgres(pool) => pool.close_event().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::Job;
    use crate::db::{Db, temp_sqlite_url};

    #[tokio::test]
    async fn runs_every_interval_drains_full_batches_and_stops_when_the_pool_closes() {
        let db = Db::connect(&temp_sqlite_url("jobs"), 1).await.unwrap();
        // Paused after connecting: the pool's own timers need real time.
        tokio::time::pause();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        // The first run reports two more full batches; later runs find nothing.
        let job = Job::spawn("test", &db, Duration::from_secs(1), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move { n < 2 }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0, "first run after one interval");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "a full batch runs again at once");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        db.close().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(job.is_finished(), "a closed pool ends the job");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_task() {
        let db = Db::connect(&temp_sqlite_url("jobs-drop"), 1).await.unwrap();
        let job = Job::spawn("test", &db, Duration::from_millis(10), || async { false });
        assert!(!job.is_finished());
        job.stop().await;
    }
}
