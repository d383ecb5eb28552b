//! Databases by URL: SQLite (default; WAL, busy timeout, foreign keys) or PostgreSQL (lock,
//! statement and idle-in-transaction timeouts, `READ COMMITTED`), with migrations embedded in the
//! binary.
//!
//! A service embeds its two migration folders and hides its SQL behind its own `Store` trait with one
//! implementation per [`Db`] variant:
//!
//! ```ignore
//! pub static MIGRATIONS: kit::db::Migrations = kit::db::Migrations {
//!     sqlite: sqlx::migrate!("../../../migrations/catalog/sqlite"),
//!     postgres: sqlx::migrate!("../../../migrations/catalog/postgres"),
//! };
//! ```
//!
//! When the SQL is the same on both databases (`$1`, `$2`, … placeholders work on SQLite too),
//! [`sql_store!`](crate::sql_store) generates both implementations from one body; the few words that
//! differ come from the pool's [`Dialect`] ([`SqlPool`]).
//!
//! **Concurrent writers.** Every PostgreSQL transaction a store opens with
//! [`SqlPool::begin_write`] states its isolation level (`READ COMMITTED`, what the stores' conditional
//! `UPDATE`s rely on), so a server whose `default_transaction_isolation` is stricter behaves the same;
//! every connection also sets that default, `lock_timeout`, `statement_timeout` and
//! `idle_in_transaction_session_timeout` ([`DbOptions`]). A transaction that loses to another one
//! (serialization failure, deadlock, lock timeout, `SQLITE_BUSY`/`SQLITE_LOCKED`) is
//! [`StoreError::Busy`]; [`Retry::run`] runs it again a bounded number of times with jittered
//! backoff, and what is still busy is answered 503 with `Retry-After` ([`crate::error`]), never 500.
//!
//! **SQLite writers queue.** A SQLite database is a [`SqliteDb`]: `db_max_connections` read-only
//! connections, and one write connection that [`SqlPool::begin_write`] and every statement other
//! than a `SELECT` wait for in a fair queue (at most `db_lock_timeout_ms`), instead of racing for
//! SQLite's write lock and sleeping in its busy handler.
//!
//! **Pool metrics.** [`pool_metrics`] samples each service's pool (open, idle and maximum
//! connections, and the wait for a connection) into `/metrics`.

pub mod pool_metrics;
mod sqlite;

pub use sqlite::SqliteDb;

use std::str::FromStr;
use std::time::Duration;

use palisade::retry::{Backoff, Jitter};
use sqlx::migrate::{MigrateError, Migrator};
pub use sqlx::postgres::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
pub use sqlx::sqlite::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// A service's migrations for each backend.
#[derive(Debug)]
pub struct Migrations {
    /// `migrations/<service>/sqlite`.
    pub sqlite: Migrator,
    /// `migrations/<service>/postgres`.
    pub postgres: Migrator,
}

/// The kit's own tables ([`crate::outbox`], [`crate::inbox`], [`crate::idempotency`], [`crate::audit`]),
/// in every service's database. Their versions start at 1000001, clear of the services' own.
static KIT_MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("../../../migrations/kit/sqlite"),
    postgres: sqlx::migrate!("../../../migrations/kit/postgres"),
};

impl Migrations {
    /// A service's migrations followed by the kit's, for one backend: what [`Db::migrate`] applies
    /// and [`Db::schema`] compares against.
    fn with_kit(own: &Migrator, kit: &Migrator) -> Migrator {
        Migrator::with_migrations(own.iter().chain(kit.iter()).cloned().collect())
    }

    fn sqlite_all(&self) -> Migrator {
        Self::with_kit(&self.sqlite, &KIT_MIGRATIONS.sqlite)
    }

    fn postgres_all(&self) -> Migrator {
        Self::with_kit(&self.postgres, &KIT_MIGRATIONS.postgres)
    }
}

/// Where a database's schema stands against a binary's migrations ([`Db::schema`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Versions applied, in order.
    pub applied: Vec<i64>,
    /// This binary's versions the database lacks.
    pub pending: Vec<i64>,
    /// The database's versions this binary does not know (a newer release applied them).
    pub unknown: Vec<i64>,
}

/// A connection pool to the service's database.
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite (`sqlite:` URLs): read connections and one queued write connection ([`SqliteDb`]).
    Sqlite(SqliteDb),
    /// PostgreSQL (`postgres:`/`postgresql:` URLs).
    Postgres(PgPool),
}

/// Creates the PostgreSQL database `url` names when it does not exist yet (as `mode=rwc` does for a
/// SQLite file), so a fresh server needs no manual `CREATE DATABASE`. A concurrent creation by another
/// instance is fine.
async fn create_postgres_database(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    if sqlx::Postgres::database_exists(url).await? {
        return Ok(());
    }
    match sqlx::Postgres::create_database(url).await {
        Ok(()) => Ok(()),
        Err(_) if sqlx::Postgres::database_exists(url).await? => Ok(()),
        Err(err) => Err(err),
    }
}

/// How a pool's connections wait and give up (from [`crate::config::ServiceConfig`]'s `db_*` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbOptions {
    /// Size of the pool (at least 1).
    pub max_connections: u32,
    /// How long a statement waits for a lock before it fails: PostgreSQL's `lock_timeout`, SQLite's
    /// busy timeout. Default 2 s.
    pub lock_timeout: Duration,
    /// PostgreSQL's `statement_timeout`: the longest a statement may run. Default 5 s.
    pub statement_timeout: Duration,
    /// PostgreSQL's `idle_in_transaction_session_timeout`: a session idle this long inside a
    /// transaction is ended, releasing its locks. Default 10 s.
    pub idle_in_transaction_timeout: Duration,
    /// PostgreSQL: create the database when it is missing (needs `CREATEDB` and a connection to the
    /// `postgres` maintenance database). Off by default: a deployment's role needs neither.
    pub create_database: bool,
    /// SQLite's `synchronous` in WAL mode: [`Durability::Normal`] (default) or [`Durability::Full`].
    /// PostgreSQL ignores it (its `synchronous_commit` is the server's, default on).
    pub durability: Durability,
}

/// What a SQLite commit survives (`<service>.db_synchronous`). In WAL mode, `normal` syncs the log
/// only at checkpoints: a commit survives a crash of the process, but an operating-system crash or a
/// power failure can lose the last commits (never corrupt the file). `full` syncs the log on every
/// commit: a commit the client saw survives power failure too, at the price of one fsync per commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `PRAGMA synchronous = NORMAL`.
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`.
    Full,
}

impl DbOptions {
    /// The defaults: 8 connections, 2 s / 5 s / 10 s.
    pub const DEFAULT: Self = Self {
        max_connections: 8,
        lock_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        idle_in_transaction_timeout: Duration::from_secs(10),
        create_database: false,
        durability: Durability::Normal,
    };
}

impl Default for DbOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A PostgreSQL setting in milliseconds; `0` would disable the timeout, so at least 1.
fn pg_ms(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

impl Db {
    /// Connects to `url` with at most `max_connections` and the default [`DbOptions`]. For a SQLite
    /// file, its folder is created; a PostgreSQL database must exist (see
    /// [`DbOptions::create_database`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, &DbOptions { max_connections, ..DbOptions::DEFAULT }).await
    }

    /// Connects to `url` with `options` (see [`Db::connect`]).
    pub async fn connect_with(url: &str, options: &DbOptions) -> Result<Self, sqlx::Error> {
        let acquire_timeout = Duration::from_secs(5);
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match options.durability {
                    Durability::Normal => SqliteSynchronous::Normal,
                    Durability::Full => SqliteSynchronous::Full,
                })
                .busy_timeout(options.lock_timeout)
                .foreign_keys(true);
            if let Some(dir) = connect.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let db = SqliteDb::open(connect, options.max_connections, options.lock_timeout, acquire_timeout)
                .await?;
            Ok(Self::Sqlite(db))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            if options.create_database {
                create_postgres_database(url).await?;
            }
            // Startup parameters: every connection has them from its first statement on, whatever
            // the server's or the database's defaults (`ALTER DATABASE … SET …`) say.
            let connect = PgConnectOptions::from_str(url)?.options([
                ("default_transaction_isolation", "read committed".to_owned()),
                ("lock_timeout", pg_ms(options.lock_timeout)),
                ("statement_timeout", pg_ms(options.statement_timeout)),
                ("idle_in_transaction_session_timeout", pg_ms(options.idle_in_transaction_timeout)),
            ]);
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .connect_with(connect)
                .await?;
            Ok(Self::Postgres(pool))
        } else {
            Err(sqlx::Error::Configuration("the database URL must start with sqlite: or postgres:".into()))
        }
    }

    /// Applies the service's migrations and the kit's for this backend. On PostgreSQL they run on one connection without the
    /// lock and statement timeouts, which are meant for requests, not for schema changes.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), MigrateError> {
        match self {
            Self::Sqlite(db) => migrations.sqlite_all().run(db.writer()).await,
            Self::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::raw_sql("SET lock_timeout = 0; SET statement_timeout = 0").execute(&mut *conn).await?;
                let ran = migrations.postgres_all().run(&mut *conn).await;
                // Back to the connection's startup values.
                sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout").execute(&mut *conn).await?;
                ran
            }
        }
    }

    /// Where the schema stands against `migrations`: what this binary has that the database lacks
    /// (`pending`), and what the database has that this binary does not know (`unknown`: a newer
    /// release applied it).
    pub async fn schema(&self, migrations: &Migrations) -> Result<Schema, sqlx::Error> {
        // The same two queries on either pool; only "does the table exist" is dialect-specific.
        macro_rules! applied {
            ($pool:expr, $table_exists:literal) => {{
                let exists: bool = sqlx::query_scalar($table_exists).fetch_one($pool).await?;
                if exists {
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                        .fetch_all($pool)
                        .await?
                } else {
                    Vec::new()
                }
            }};
        }
        let (migrator, applied): (Migrator, Vec<i64>) = match self {
            Self::Sqlite(db) => (
                migrations.sqlite_all(),
                applied!(
                    db.reader(),
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')"
                ),
            ),
            Self::Postgres(pool) => (
                migrations.postgres_all(),
                applied!(pool, "SELECT to_regclass('_sqlx_migrations') IS NOT NULL"),
            ),
        };
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        Ok(Schema {
            pending: known.iter().copied().filter(|v| !applied.contains(v)).collect(),
            unknown: applied.iter().copied().filter(|v| !known.contains(v)).collect(),
            applied,
        })
    }

    /// `SELECT 1`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(db) => sqlx::query("SELECT 1").execute(db.reader()).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// The words of SQL that differ between SQLite and PostgreSQL in the stores' queries. Placeholders
/// do not differ: `$1`, `$2`, … work on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// The column that orders rows by insertion, stable across pages: SQLite's implicit `rowid`;
    /// on PostgreSQL the `seq` identity column every service's tables declare for this.
    pub insertion_order: &'static str,
    /// Case-insensitive `LIKE`: SQLite's `LIKE` (case-insensitive for ASCII); PostgreSQL's `ILIKE`.
    pub ilike: &'static str,
    /// The suffix of a `SELECT` that locks the rows it reads until the transaction ends: none on
    /// SQLite (a write transaction from [`SqlPool::begin_write`] already holds the database's write
    /// lock); `" FOR UPDATE"` on PostgreSQL.
    pub row_lock: &'static str,
    /// The suffix of a `SELECT` that claims rows for a background job: `" FOR UPDATE SKIP LOCKED"`
    /// on PostgreSQL, so replicas claim different rows instead of waiting for each other; none on
    /// SQLite (one writer at a time).
    pub claim_lock: &'static str,
}

impl Dialect {
    /// SQLite.
    pub const SQLITE: Self = Self { insertion_order: "rowid", ilike: "LIKE", row_lock: "", claim_lock: "" };
    /// PostgreSQL.
    pub const POSTGRES: Self = Self {
        insertion_order: "seq",
        ilike: "ILIKE",
        row_lock: " FOR UPDATE",
        claim_lock: " FOR UPDATE SKIP LOCKED",
    };
}

/// What a store needs to know about its pool ([`SqliteDb`] or [`PgPool`]) to send the same SQL
/// to either database.
pub trait SqlPool {
    /// The database this pool connects to.
    type Database: sqlx::Database;

    /// This database's [`Dialect`].
    fn dialect(&self) -> Dialect;

    /// Starts a transaction that will write. SQLite: `BEGIN IMMEDIATE`, taking the database's
    /// write lock up front (waiting up to the busy timeout, [`DbOptions::lock_timeout`]), because a
    /// deferred transaction that reads and then writes can fail with `SQLITE_BUSY` at the upgrade,
    /// which the busy timeout does not cover. PostgreSQL: `BEGIN ISOLATION LEVEL READ COMMITTED`,
    /// stated rather than left to the server's `default_transaction_isolation`: the stores'
    /// conditional `UPDATE … WHERE` re-check their condition after waiting for a row lock, which
    /// `REPEATABLE READ` would turn into serialization failures.
    ///
    /// Run the transaction inside [`Retry::run`] so that losing to a concurrent one is retried.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl SqlPool for SqliteDb {
    type Database = sqlx::Sqlite;

    fn dialect(&self) -> Dialect {
        Dialect::SQLITE
    }

    /// On the write connection, after the writers queued before this one ([`SqliteDb`]).
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.writer().begin_with("BEGIN IMMEDIATE")
    }
}

impl SqlPool for PgPool {
    type Database = sqlx::Postgres;

    fn dialect(&self) -> Dialect {
        Dialect::POSTGRES
    }

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
    }
}

/// Declares a SQLite and a PostgreSQL store (`struct { pool }` with `const fn new(pool)`) and
/// implements one store trait for both from a single body, so each query is written once. In the
/// body, `self.pool` is the backend's pool (a [`SqliteDb`] or a [`PgPool`]); with [`SqlPool`] in
/// scope, `self.pool.dialect()` gives the words that differ and `self.pool.begin_write()` starts a
/// write transaction the right way for the database; `self.retry` ([`Retry`]) runs a transaction
/// again when it lost to a concurrent one:
/// `self.retry.run(|| async move { let mut tx = self.pool.begin_write().await?; …; tx.commit().await?; Ok(…) })`.
///
/// ```ignore
/// use kit::db::SqlPool as _;
///
/// kit::sql_store! {
///     /// Products in SQLite.
///     sqlite: SqliteStore,
///     /// Products in PostgreSQL.
///     postgres: PgStore,
///     impl Store {
///         fn count(&self) -> BoxFuture<'_, StoreResult<i64>> {
///             Box::pin(async move {
///                 Ok(sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&self.pool).await?)
///             })
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! sql_store {
    (
        $(#[$sqlite_meta:meta])* sqlite: $sqlite:ident,
        $(#[$pg_meta:meta])* postgres: $pg:ident,
        impl $store:path { $($body:tt)* }
    ) => {
        $crate::sql_store!(@one $(#[$sqlite_meta])* $sqlite, $crate::db::SqliteDb, $store, { $($body)* });
        $crate::sql_store!(@one $(#[$pg_meta])* $pg, $crate::db::PgPool, $store, { $($body)* });
    };
    (@one $(#[$meta:meta])* $name:ident, $pool:ty, $store:path, { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            pool: $pool,
            retry: $crate::db::Retry,
        }

        impl $name {
            /// A store on `pool` (migrated), retrying busy transactions with [`Retry::default`]($crate::db::Retry).
            pub fn new(pool: $pool) -> Self {
                Self { pool, retry: $crate::db::Retry::default() }
            }

            /// The same store retrying busy transactions with `retry`.
            #[must_use]
            pub const fn with_retry(mut self, retry: $crate::db::Retry) -> Self {
                self.retry = retry;
                self
            }

            /// How this store retries a busy transaction.
            pub const fn retry(&self) -> &$crate::db::Retry {
                &self.retry
            }
        }

        impl $store for $name {
            $($body)*
        }
    };
}

/// Now, at millisecond precision: what both databases store exactly, so a timestamp reads back
/// equal to the one written.
pub fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// A fresh SQLite database file under the temp dir, for tests: `sqlite://…/shop-<label>-<uuid>.db?mode=rwc`.
pub fn temp_sqlite_url(label: &str) -> String {
    let path = std::env::temp_dir().join(format!("shop-{label}-{}.db", uuid::Uuid::new_v4()));
    format!("sqlite://{}?mode=rwc", path.display())
}

/// What a `Store` method fails with.
#[derive(Debug)]
pub enum StoreError {
    /// A unique constraint was violated (becomes 409); the text says which value.
    Conflict(String),
    /// The database is contended: a serialization failure (`40001`), a deadlock (`40P01`), a lock
    /// or statement timeout (`55P03`, `57014`), `SQLITE_BUSY`/`SQLITE_LOCKED`, or no free pooled
    /// connection in time. [`Retry::run`] retries it; what is left becomes 503 with `Retry-After`
    /// (the cause is logged, never sent).
    Busy(sqlx::Error),
    /// Any other database failure (becomes 500; the cause is logged, never sent).
    Database(sqlx::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(what) => write!(f, "conflict: {what}"),
            Self::Busy(err) => write!(f, "database busy: {err}"),
            Self::Database(err) => write!(f, "database error: {err}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Conflict(_) => None,
            Self::Busy(err) | Self::Database(err) => Some(err),
        }
    }
}

/// PostgreSQL SQLSTATEs of contention: serialization failure, deadlock, lock not available (the
/// lock timeout), query canceled (the statement timeout).
const PG_BUSY_STATES: [&str; 4] = ["40001", "40P01", "55P03", "57014"];
/// SQLite primary result codes of contention: `SQLITE_BUSY`, `SQLITE_LOCKED` (extended codes carry
/// them in their low byte, e.g. `SQLITE_BUSY_SNAPSHOT` = 517).
const SQLITE_BUSY_CODES: [i64; 2] = [5, 6];

/// Whether `err` means the database is contended rather than broken (see [`StoreError::Busy`]).
pub fn is_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i64>().is_ok_and(|code| SQLITE_BUSY_CODES.contains(&(code & 0xff)))
            } else {
                PG_BUSY_STATES.contains(&code.as_ref())
            }
        }
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    /// Unique violations become [`StoreError::Conflict`] naming the constraint; contention
    /// ([`is_busy`]) [`StoreError::Busy`]; the rest [`StoreError::Database`].
    fn from(err: sqlx::Error) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Conflict(
                db.constraint().map_or_else(|| "a unique value is taken".to_owned(), str::to_owned),
            ),
            _ if is_busy(&err) => Self::Busy(err),
            _ => Self::Database(err),
        }
    }
}

/// How a store runs a transaction again after it lost to a concurrent one ([`StoreError::Busy`]):
/// at most `max_attempts` attempts in all, a jittered exponential backoff between them, and no new
/// attempt once `budget` has passed since the first began (an attempt that already waited out the
/// lock timeout is not worth repeating: the client gets its 503 within about that timeout).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    /// Attempts in all (1: no retry). Default 3.
    pub max_attempts: u32,
    /// The backoff between attempts. Default 10 ms doubling up to 200 ms, equal jitter (half fixed,
    /// half random).
    pub backoff: Backoff,
    /// No attempt starts after this much time since the first. Default 2 s, the default lock
    /// timeout ([`Retry::for_options`] uses the configured one).
    pub budget: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self::for_options(&DbOptions::DEFAULT)
    }
}

impl Retry {
    /// The default policy with `options`' lock timeout as the budget.
    pub fn for_options(options: &DbOptions) -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::exponential(Duration::from_millis(10))
                .cap(Duration::from_millis(200))
                .jitter(Jitter::Equal),
            budget: options.lock_timeout,
        }
    }

    /// Runs `attempt` (which opens, uses and commits one transaction; dropping it rolls back) until
    /// it succeeds, fails with anything but [`StoreError::Busy`], or the policy is spent; then the
    /// last result. Each attempt starts from scratch, so nothing of a failed one is kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use kit::db::{Retry, StoreError};
    ///
    /// let mut calls = 0;
    /// let result: Result<u32, StoreError> = Retry::default()
    ///     .run(|| {
    ///         calls += 1;
    ///         let busy = calls < 3;
    ///         async move { if busy { Err(StoreError::Busy(sqlx::Error::PoolTimedOut)) } else { Ok(7) } }
    ///     })
    ///     .await;
    /// assert_eq!((result.unwrap(), calls), (7, 3));
    /// # }
    /// ```
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let start = tokio::time::Instant::now();
        let mut previous = Duration::ZERO;
        let mut attempts = 1;
        loop {
            match attempt().await {
                Err(StoreError::Busy(err))
                    if attempts < self.max_attempts && start.elapsed() < self.budget =>
                {
                    let delay = self.backoff.delay(attempts, previous);
                    tracing::debug!(error = %err, attempt = attempts, ?delay, "database busy; retrying");
                    previous = delay;
                    attempts += 1;
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

/// Creates a uniquely named PostgreSQL database on the server that `TEST_DATABASE_URL` (or
/// `DATABASE_URL`) names and returns its URL, for tests that need a fresh schema. That URL must name a
/// database the role can connect to (`postgres://shop:shop@127.0.0.1:5432/postgres`) and the role needs
/// `CREATEDB`. `None` when neither variable is a `postgres:` URL.
pub async fn temp_postgres_url() -> Option<Result<String, sqlx::Error>> {
    let admin = std::env::var("TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")).ok()?;
    if !admin.starts_with("postgres") {
        return None;
    }
    Some(
        async {
            let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
            let (base, query) = admin.split_once('?').map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
            let base = base.rsplit_once('/').map_or(base, |(server, _db)| server);
            let url = match query {
                Some(q) => format!("{base}/{name}?{q}"),
                None => format!("{base}/{name}"),
            };
            // Tests ask for the database; a deployment's start never creates one unless configured.
            create_postgres_database(&url).await?;
            Ok(url)
        }
        .await,
    )
}
