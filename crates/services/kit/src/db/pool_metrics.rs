//! Connection-pool metrics of a service's database: how many connections are open and idle, the
//! pool's limit, and how long getting a connection takes. Names follow OpenTelemetry's database
//! client semantic conventions (`db.client.connection.*`) translated to Prometheus, as palisade's
//! HTTP metrics do; every series carries the `service` label.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `db_client_connection_count` | gauge | `service`, `pool_name`, `state` (`idle` or `used`) | open connections |
//! | `db_client_connection_max` | gauge | `service`, `pool_name` | the pool's limit |
//! | `db_client_connection_wait_time_seconds` | histogram | `service`, `pool_name` | what a probe waited for a connection |
//! | `db_client_connection_timeouts_total` | counter | `service`, `pool_name` | probes that got no connection within the acquire timeout |
//!
//! `pool_name` (OpenTelemetry's `db.client.connection.pool.name`): on SQLite `read` (the
//! `db_max_connections` read-only connections) and `write` (the one connection writers queue for,
//! so its wait is the writers' queue, [`super::SqliteDb`]); on PostgreSQL `main`.
//!
//! **How they are measured.** sqlx offers no hook around the acquisitions that queries make, and
//! the stores run queries on the pool directly, so nothing in the kit sees every wait. Instead
//! [`spawn_sampler`] reads the pool's counts and makes one probe acquisition every
//! [`SAMPLE_INTERVAL`]: the probe queues in the pool's fair queue like a query arriving at that
//! moment, so its wait is what such a query waited (including the liveness ping sqlx runs on an
//! idle connection, and opening a connection when the pool may grow). It holds the connection for
//! no statement and returns it at once. The cost is one acquisition every 5 s; the request path pays
//! nothing. Rising wait times or any timeouts mean the pool is the bottleneck: raise
//! `db_max_connections` or find what holds connections.
//!
//! Under `shop all` every service's series sit in the one registry (docs/decisions/003), told apart
//! by `service`.

use std::time::Duration;

use tokio::time::Instant;

use super::Db;
use crate::jobs::Job;

/// Open connections, by `state`.
pub const DB_CLIENT_CONNECTION_COUNT: &str = "db_client_connection_count";
/// The pool's connection limit.
pub const DB_CLIENT_CONNECTION_MAX: &str = "db_client_connection_max";
/// Probe acquisition wait histogram, in seconds.
pub const DB_CLIENT_CONNECTION_WAIT_TIME: &str = "db_client_connection_wait_time_seconds";
/// Probe acquisitions that timed out.
pub const DB_CLIENT_CONNECTION_TIMEOUTS: &str = "db_client_connection_timeouts_total";
/// Label: the service whose pool it is.
pub const LABEL_SERVICE: &str = "service";
/// Label: which of the service's pools (`read`, `write`, `main`).
pub const LABEL_POOL: &str = "pool_name";
/// Label: `idle` or `used`.
pub const LABEL_STATE: &str = "state";

/// Buckets of [`DB_CLIENT_CONNECTION_WAIT_TIME`], in seconds: a connection from an idle pool
/// takes well under a millisecond, one that must be opened a few, and the acquire timeout is 5 s.
pub const WAIT_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How often [`spawn_sampler`] samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The service's pools by name, each with what [`record_counts`] and [`probe`] read from it.
fn pools(db: &Db) -> Vec<(&'static str, PoolHandle<'_>)> {
    match db {
        Db::Sqlite(db) => {
            db.pools().into_iter().map(|(name, pool)| (name, PoolHandle::Sqlite(pool))).collect()
        }
        Db::Postgres(pool) => vec![("main", PoolHandle::Postgres(pool))],
    }
}

enum PoolHandle<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

impl PoolHandle<'_> {
    fn counts(&self) -> (u32, usize, u32) {
        match self {
            Self::Sqlite(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
            Self::Postgres(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
        }
    }

    async fn acquire(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => pool.acquire().await.map(drop),
            Self::Postgres(pool) => pool.acquire().await.map(drop),
        }
    }
}

/// Sets the gauges of each of `service`'s pools from its current counts.
pub fn record_counts(service: &'static str, db: &Db) {
    for (name, pool) in pools(db) {
        let (size, idle, max) = pool.counts();
        // `num_idle` and `size` are read one after the other: never report more idle than open.
        let idle = (idle as u32).min(size);
        let gauge = |state| metrics::gauge!(DB_CLIENT_CONNECTION_COUNT, LABEL_SERVICE => service, LABEL_POOL => name, LABEL_STATE => state);
        gauge("idle").set(f64::from(idle));
        gauge("used").set(f64::from(size - idle));
        metrics::gauge!(DB_CLIENT_CONNECTION_MAX, LABEL_SERVICE => service, LABEL_POOL => name)
            .set(f64::from(max));
    }
}

/// Acquires one connection from each of `service`'s pools in turn and gives it back, recording
/// the wait (or the timeout).
pub async fn probe(service: &'static str, db: &Db) {
    for (name, pool) in pools(db) {
        let started = Instant::now();
        match pool.acquire().await {
            Ok(()) => metrics::histogram!(DB_CLIENT_CONNECTION_WAIT_TIME, LABEL_SERVICE => service, LABEL_POOL => name)
                .record(started.elapsed().as_secs_f64()),
            Err(sqlx::Error::PoolTimedOut) => {
                metrics::counter!(DB_CLIENT_CONNECTION_TIMEOUTS, LABEL_SERVICE => service, LABEL_POOL => name)
                    .increment(1);
            }
            // Closed (shutdown) or the database is down: readiness reports that, not this metric.
            Err(err) => tracing::debug!(service, pool = name, error = %err, "pool probe failed"),
        }
    }
}

/// Records the gauges now, then the gauges and a [`probe`] every [`SAMPLE_INTERVAL`] until the pool
/// closes or the job is dropped.
pub fn spawn_sampler(service: &'static str, db: &Db) -> Job {
    record_counts(service, db);
    let sampled = db.clone();
    Job::spawn("db-pool-metrics", db, SAMPLE_INTERVAL, move || {
        let db = sampled.clone();
        async move {
            // Counts before the probe: it may open a connection itself.
            record_counts(service, &db);
            probe(service, &db).await;
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use std::time::Duration;

    use super::{probe, record_counts};
    use crate::db::{Db, DbOptions, temp_sqlite_url};

    type Recorded = Vec<(String, Vec<(String, String)>, DebugValue)>;

    fn recorded(snapshotter: &metrics_util::debugging::Snapshotter) -> Recorded {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let labels = key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
                (key.key().name().to_owned(), labels, value)
            })
            .collect()
    }

    fn labelled(labels: &[(String, String)], key: &str, value: &str) -> bool {
        labels.iter().any(|(k, v)| k == key && v == value)
    }

    /// The values of `name` recorded for the catalog service.
    fn of_catalog(snapshotter: &metrics_util::debugging::Snapshotter, name: &str) -> Vec<DebugValue> {
        recorded(snapshotter)
            .into_iter()
            .filter(|(n, labels, _)| n == name && labelled(labels, "service", "catalog"))
            .map(|(_, _, value)| value)
            .collect()
    }

    fn gauge(values: &Recorded, name: &str, pool: &str, state: Option<&str>) -> Option<f64> {
        values.iter().find_map(|(n, labels, value)| match value {
            DebugValue::Gauge(g)
                if n == name
                    && labelled(labels, "service", "catalog")
                    && labelled(labels, "pool_name", pool)
                    && state.is_none_or(|s| labelled(labels, "state", s)) =>
            {
                Some(g.into_inner())
            }
            _ => None,
        })
    }

    #[tokio::test]
    async fn counts_and_probe_waits_are_recorded_per_pool_under_the_service() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // Thread-local, and the test's runtime has one thread: the probe records into it.
        let _local = metrics::set_default_local_recorder(&recorder);
        let db = Db::connect(&temp_sqlite_url("pool-metrics"), 3).await.unwrap();
        let Db::Sqlite(sqlite) = &db else { unreachable!("a SQLite URL") };
        let held = sqlite.reader().acquire().await.unwrap();
        record_counts("catalog", &db);
        let values = recorded(&snapshotter);
        assert_eq!(
            gauge(&values, "db_client_connection_count", "read", Some("used")),
            Some(1.0),
            "{values:?}"
        );
        assert_eq!(
            gauge(&values, "db_client_connection_count", "read", Some("idle")),
            Some(0.0),
            "{values:?}"
        );
        assert_eq!(gauge(&values, "db_client_connection_max", "read", None), Some(3.0), "{values:?}");
        assert_eq!(
            gauge(&values, "db_client_connection_count", "write", Some("idle")),
            Some(1.0),
            "{values:?}"
        );
        assert_eq!(gauge(&values, "db_client_connection_max", "write", None), Some(1.0), "{values:?}");

        probe("catalog", &db).await;
        drop(held);
        let waits: Vec<usize> = of_catalog(&snapshotter, "db_client_connection_wait_time_seconds")
            .into_iter()
            .filter_map(|v| match v {
                DebugValue::Histogram(samples) => Some(samples.len()),
                _ => None,
            })
            .collect();
        assert_eq!(waits, [1, 1], "one probe per pool, one wait sample each");
    }

    #[tokio::test]
    async fn a_writer_queue_that_does_not_move_in_time_counts_a_timeout() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let options =
            DbOptions { max_connections: 2, lock_timeout: Duration::from_millis(50), ..DbOptions::DEFAULT };
        let db = Db::connect_with(&temp_sqlite_url("pool-metrics-timeout"), &options).await.unwrap();
        let Db::Sqlite(sqlite) = &db else { unreachable!("a SQLite URL") };
        let held = sqlite.writer().acquire().await.unwrap();
        probe("catalog", &db).await;
        drop(held);
        let timeouts: Vec<(String, u64)> = recorded(&snapshotter)
            .into_iter()
            .filter(|(n, labels, _)| {
                n == "db_client_connection_timeouts_total" && labelled(labels, "service", "catalog")
            })
            .filter_map(|(_, labels, v)| match v {
                DebugValue::Counter(c) => Some((
                    labels.into_iter().find(|(k, _)| k == "pool_name").map(|(_, v)| v).unwrap_or_default(),
                    c,
                )),
                _ => None,
            })
            .collect();
        assert_eq!(timeouts, [("write".to_owned(), 1)]);
    }
}
