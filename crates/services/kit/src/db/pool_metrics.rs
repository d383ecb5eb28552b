//! Connection-pool metrics of a service's database: how many connections are open and idle, the
//! pool's limit, and how long getting a connection takes. Names follow OpenTelemetry's database
//! client semantic conventions (`db.client.connection.*`) translated to Prometheus, as palisade's
//! HTTP metrics do; every series carries the `service` label.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `db_client_connection_count` | gauge | `service`, `state` (`idle` or `used`) | open connections |
//! | `db_client_connection_max` | gauge | `service` | the pool's limit (`<service>.db_max_connections`) |
//! | `db_client_connection_wait_time_seconds` | histogram | `service` | what a probe waited for a connection |
//! | `db_client_connection_timeouts_total` | counter | `service` | probes that got no connection within the acquire timeout |
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
/// Label: `idle` or `used`.
pub const LABEL_STATE: &str = "state";

/// Buckets of [`DB_CLIENT_CONNECTION_WAIT_TIME`], in seconds: a connection from an idle pool
/// takes well under a millisecond, one that must be opened a few, and the acquire timeout is 5 s.
pub const WAIT_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How often [`spawn_sampler`] samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the gauges of `service`'s pool from its current counts.
pub fn record_counts(service: &'static str, db: &Db) {
    let (size, idle, max) = match db {
        Db::Sqlite(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
        Db::Postgres(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
    };
    // `num_idle` and `size` are read one after the other: never report more idle than open.
    let idle = (idle as u32).min(size);
    metrics::gauge!(DB_CLIENT_CONNECTION_COUNT, LABEL_SERVICE => service, LABEL_STATE => "idle")
        .set(f64::from(idle));
    metrics::gauge!(DB_CLIENT_CONNECTION_COUNT, LABEL_SERVICE => service, LABEL_STATE => "used")
        .set(f64::from(size - idle));
    metrics::gauge!(DB_CLIENT_CONNECTION_MAX, LABEL_SERVICE => service).set(f64::from(max));
}

/// Acquires one connection from `service`'s pool and gives it back, recording the wait (or the
/// timeout).
pub async fn probe(service: &'static str, db: &Db) {
    let started = Instant::now();
    let acquired = match db {
        Db::Sqlite(pool) => pool.acquire().await.map(drop),
        Db::Postgres(pool) => pool.acquire().await.map(drop),
    };
    match acquired {
        Ok(()) => metrics::histogram!(DB_CLIENT_CONNECTION_WAIT_TIME, LABEL_SERVICE => service)
            .record(started.elapsed().as_secs_f64()),
        Err(sqlx::Error::PoolTimedOut) => {
            metrics::counter!(DB_CLIENT_CONNECTION_TIMEOUTS, LABEL_SERVICE => service).increment(1);
        }
        // Closed (shutdown) or the database is down: readiness reports that, not this metric.
        Err(err) => tracing::debug!(service, error = %err, "pool probe failed"),
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

    use std::str::FromStr as _;

    use super::{probe, record_counts};
    use crate::db::{Db, temp_sqlite_url};

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

    fn gauge(values: &Recorded, name: &str, state: Option<&str>) -> Option<f64> {
        values.iter().find_map(|(n, labels, value)| match value {
            DebugValue::Gauge(g)
                if n == name
                    && labelled(labels, "service", "catalog")
                    && state.is_none_or(|s| labelled(labels, "state", s)) =>
            {
                Some(g.into_inner())
            }
            _ => None,
        })
    }

    #[tokio::test]
    async fn counts_and_probe_waits_are_recorded_under_the_service() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // Thread-local, and the test's runtime has one thread: the probe records into it.
        let _local = metrics::set_default_local_recorder(&recorder);
        let db = Db::connect(&temp_sqlite_url("pool-metrics"), 3).await.unwrap();
        let Db::Sqlite(pool) = &db else { unreachable!("a SQLite URL") };
        let held = pool.acquire().await.unwrap();
        record_counts("catalog", &db);
        let values = recorded(&snapshotter);
        assert_eq!(gauge(&values, "db_client_connection_count", Some("used")), Some(1.0), "{values:?}");
        assert_eq!(gauge(&values, "db_client_connection_count", Some("idle")), Some(0.0), "{values:?}");
        assert_eq!(gauge(&values, "db_client_connection_max", None), Some(3.0), "{values:?}");

        probe("catalog", &db).await;
        drop(held);
        let waits: Vec<usize> = of_catalog(&snapshotter, "db_client_connection_wait_time_seconds")
            .into_iter()
            .filter_map(|v| match v {
                DebugValue::Histogram(samples) => Some(samples.len()),
                _ => None,
            })
            .collect();
        assert_eq!(waits, [1], "one probe, one wait sample");
    }

    #[tokio::test]
    async fn a_probe_that_gets_no_connection_in_time_counts_a_timeout() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let url = temp_sqlite_url("pool-metrics-timeout");
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(50))
            .connect_with(options)
            .await
            .unwrap();
        let held = pool.acquire().await.unwrap();
        probe("catalog", &Db::Sqlite(pool.clone())).await;
        drop(held);
        let timeouts: Vec<u64> = of_catalog(&snapshotter, "db_client_connection_timeouts_total")
            .into_iter()
            .filter_map(|v| match v {
                DebugValue::Counter(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(timeouts, [1]);
    }
}
