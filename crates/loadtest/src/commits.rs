//! The floor of a durability setting: how many orders per second the machine allows when each order
//! costs `per_order` SQLite commits spread over `files` databases (orders, inventory, payments), made
//! by a bare program with nothing else to do — no HTTP, no JSON, no services. `make load-orders`
//! prints it beside the shop's run with the same `synchronous`, so the shop's cost above the floor
//! is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use crate::BoxError;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Floor {
    /// Folder of the database files (created).
    pub dir: std::path::PathBuf,
    /// `normal` or `full`.
    pub full: bool,
    /// Commits per order.
    pub per_order: u32,
    /// Database files the commits go to, in turn.
    pub files: u32,
    /// Orders in flight at once.
    pub concurrency: u32,
    /// How long to run.
    pub duration: Duration,
}

/// Runs the floor; returns `(orders, commits, elapsed)`.
pub async fn run(floor: &Floor) -> Result<(u64, u64, Duration), BoxError> {
    std::fs::create_dir_all(&floor.dir)?;
    let mut pools: Vec<Pool<Sqlite>> = Vec::new();
    for i in 0..floor.files.max(1) {
        let options = SqliteConnectOptions::new()
            .filename(floor.dir.join(format!("floor-{i}.db")))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if floor.full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&pool)
            .await?;
        pools.push(pool);
    }
    let pools = Arc::new(pools);
    let orders = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + floor.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..floor.concurrency.max(1) {
        let (pools, orders, per_order) = (pools.clone(), orders.clone(), floor.per_order);
        tasks.spawn(async move {
            while Instant::now() < until {
                for i in 0..per_order {
                    let pool = &pools[i as usize % pools.len()];
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO floor (body) VALUES ('{\"an\":\"order-sized row\"}')")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                orders.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    let orders = orders.load(Ordering::Relaxed);
    Ok((orders, orders * u64::from(floor.per_order), elapsed))
}
