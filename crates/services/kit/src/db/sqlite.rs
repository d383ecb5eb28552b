//! A SQLite database as two pools: readers share several connections; writers queue for one.
//!
//! SQLite lets one transaction write at a time. With every connection free to write, writers that
//! lose the race wait in SQLite's busy handler, which sleeps in growing steps (1 ms up to 100 ms)
//! and so oversleeps the moment the lock frees: under load most of a write's latency was sleep
//! (docs/performance.md, "Orders: the checkout under load"). Here a writer instead waits its turn
//! for the one write connection in the pool's fair queue and starts the moment the previous writer
//! returns it, while reads (WAL: they never wait for a writer) keep their own connections.
//!
//! Which pool a statement outside a transaction goes to is decided by its text: a `SELECT` reads,
//! anything else (an `INSERT … RETURNING`, an `UPDATE`, a `WITH`) writes. The read connections are
//! opened read-only, so a write routed wrong fails loudly instead of bypassing the queue.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePoolOptions, SqliteQueryResult, SqliteRow};
use sqlx::{Either, Execute, Executor, SqlStr, Sqlite, SqlitePool};

/// A SQLite database: a pool of read-only connections and a one-connection pool for writes.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    read: SqlitePool,
    write: SqlitePool,
    /// In memory: `read` and `write` are one pool.
    shared: bool,
}

impl SqliteDb {
    /// Opens the write connection (creating the file if the URL allows it) and then the read pool
    /// of up to `max_readers`. A writer waits for its turn at most `lock_wait`, then fails with
    /// [`sqlx::Error::PoolTimedOut`] ([`super::StoreError::Busy`]). An in-memory database is one
    /// database per pool, so it gets a single pool for both.
    pub(super) async fn open(
        connect: SqliteConnectOptions,
        max_readers: u32,
        lock_wait: Duration,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        // sqlx names an in-memory database `file:sqlx-in-memory-<n>` (`sqlite::memory:`) and keeps
        // its flag private; `mode=memory` URLs have no file name.
        let name = connect.get_filename().to_string_lossy();
        let in_memory =
            name.is_empty() || name.contains(":memory:") || name.starts_with("file:sqlx-in-memory-");
        // A connection is a local file on its own thread, and sqlx already checks it when it comes
        // back to the pool: a second check when it is handed out is one more round trip to that
        // thread per statement (or transaction) for nothing.
        let options = || SqlitePoolOptions::new().test_before_acquire(false);
        if in_memory {
            let pool = options()
                .max_connections(max_readers.max(1))
                .acquire_timeout(acquire_timeout)
                .connect_with(connect)
                .await?;
            return Ok(Self { read: pool.clone(), write: pool, shared: true });
        }
        let write =
            options().max_connections(1).acquire_timeout(lock_wait).connect_with(connect.clone()).await?;
        let read = options()
            .max_connections(max_readers.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_with(connect.read_only(true).create_if_missing(false))
            .await?;
        Ok(Self { read, write, shared: false })
    }

    /// The pool of read-only connections.
    pub const fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// The one-connection pool writers queue for: [`super::SqlPool::begin_write`] and every
    /// statement that is not a `SELECT` use it.
    pub const fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// The pools by name, for metrics: `read` and `write`, or `main` when they are one.
    pub fn pools(&self) -> Vec<(&'static str, &SqlitePool)> {
        if self.shared {
            vec![("main", &self.read)]
        } else {
            vec![("read", &self.read), ("write", &self.write)]
        }
    }

    /// Closes both pools, waiting for connections in use.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Resolves once the pools are closed ([`SqlitePool::close_event`] of the write pool).
    pub fn close_event(&self) -> sqlx::pool::CloseEvent {
        self.write.close_event()
    }

    /// The pool for `query` and the query itself, taken apart to read its text and put back.
    fn route<'q, E: Execute<'q, Sqlite>>(&self, mut query: E) -> (&SqlitePool, Routed) {
        let persistent = query.persistent();
        let arguments = Some(query.take_arguments());
        let sql = query.sql();
        let pool = if reads_only(sql.as_str()) { &self.read } else { &self.write };
        (pool, Routed { sql, arguments, persistent })
    }
}

/// Whether `sql` is a plain `SELECT` (leading blanks and `--` comments skipped). Anything else is
/// treated as a write, the safe side.
fn reads_only(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    while let Some(comment) = rest.strip_prefix("--") {
        rest = comment.split_once('\n').map_or("", |(_, after)| after).trim_start();
    }
    rest.get(..6).is_some_and(|word| word.eq_ignore_ascii_case("select"))
}

/// A query after [`SqliteDb::route`] read its text: the same SQL, arguments and caching flag.
struct Routed {
    sql: SqlStr,
    arguments: Option<Result<Option<SqliteArguments>, BoxDynError>>,
    persistent: bool,
}

impl Execute<'_, Sqlite> for Routed {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&<Sqlite as sqlx::Database>::Statement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<SqliteArguments>, BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

// `fetch_many` and `fetch_optional` are the two ways in: the trait's other methods (`execute`,
// `fetch_one`, `fetch_all`, …) are built on them, so they route too.
impl<'p> Executor<'p> for &SqliteDb {
    type Database = Sqlite;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<SqliteQueryResult, SqliteRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        let (pool, query) = self.route(query);
        pool.fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<SqliteRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        let (pool, query) = self.route(query);
        pool.fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<Sqlite as sqlx::Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Sqlite as sqlx::Database>::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        self.read.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Sqlite>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.read.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::reads_only;

    #[test]
    fn only_a_plain_select_is_a_read() {
        assert!(reads_only("SELECT 1"));
        assert!(reads_only("  select id FROM t"));
        assert!(reads_only("-- why\n  SELECT x"));
        assert!(!reads_only("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!reads_only("UPDATE t SET x = 1 RETURNING x"));
        assert!(!reads_only("WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone"));
        assert!(!reads_only("DELETE FROM t"));
        assert!(!reads_only("PRAGMA optimize"));
        assert!(!reads_only("SELEC"));
        assert!(!reads_only("-- only a comment"));
        assert!(!reads_only(""));
    }
}
