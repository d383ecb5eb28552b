//! Databases by URL: SQLite (default; WAL, 5 s busy timeout, foreign keys) or PostgreSQL, with
//! migrations embedded in the binary.
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

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
pub use sqlx::postgres::PgPool;
use sqlx::postgres::PgPoolOptions;
pub use sqlx::sqlite::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// A service's migrations for each backend.
#[derive(Debug)]
pub struct Migrations {
    /// `migrations/<service>/sqlite`.
    pub sqlite: Migrator,
    /// `migrations/<service>/postgres`.
    pub postgres: Migrator,
}

/// A connection pool to the service's database.
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite (`sqlite:` URLs).
    Sqlite(SqlitePool),
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

impl Db {
    /// Connects to `url` with at most `max_connections`. For a SQLite file, its folder is created; a
    /// PostgreSQL database is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let acquire_timeout = Duration::from_secs(5);
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            create_postgres_database(url).await?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .connect(url)
                .await?;
            Ok(Self::Postgres(pool))
        } else {
            Err(sqlx::Error::Configuration("the database URL must start with sqlite: or postgres:".into()))
        }
    }

    /// Applies the migrations for this backend.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), MigrateError> {
        match self {
            Self::Sqlite(pool) => migrations.sqlite.run(pool).await,
            Self::Postgres(pool) => migrations.postgres.run(pool).await,
        }
    }

    /// `SELECT 1`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
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
}

impl Dialect {
    /// SQLite.
    pub const SQLITE: Self = Self { insertion_order: "rowid", ilike: "LIKE", row_lock: "" };
    /// PostgreSQL.
    pub const POSTGRES: Self = Self { insertion_order: "seq", ilike: "ILIKE", row_lock: " FOR UPDATE" };
}

/// What a store needs to know about its pool ([`SqlitePool`] or [`PgPool`]) to send the same SQL
/// to either database.
pub trait SqlPool {
    /// The database this pool connects to.
    type Database: sqlx::Database;

    /// This database's [`Dialect`].
    fn dialect(&self) -> Dialect;

    /// Starts a transaction that will write. SQLite: `BEGIN IMMEDIATE`, taking the database's
    /// write lock up front (waiting up to the 5 s busy timeout), because a deferred transaction
    /// that reads and then writes can fail with `SQLITE_BUSY` at the upgrade, which the busy
    /// timeout does not cover. PostgreSQL: a plain `BEGIN` (`READ COMMITTED`).
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl SqlPool for SqlitePool {
    type Database = sqlx::Sqlite;

    fn dialect(&self) -> Dialect {
        Dialect::SQLITE
    }

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
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
        self.begin()
    }
}

/// Declares a SQLite and a PostgreSQL store (`struct { pool }` with `const fn new(pool)`) and
/// implements one store trait for both from a single body, so each query is written once. In the
/// body, `self.pool` is the backend's pool (a [`SqlitePool`] or a [`PgPool`]); with [`SqlPool`] in
/// scope, `self.pool.dialect()` gives the words that differ and `self.pool.begin_write()` starts a
/// write transaction the right way for the database.
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
        $crate::sql_store!(@one $(#[$sqlite_meta])* $sqlite, $crate::db::SqlitePool, $store, { $($body)* });
        $crate::sql_store!(@one $(#[$pg_meta])* $pg, $crate::db::PgPool, $store, { $($body)* });
    };
    (@one $(#[$meta:meta])* $name:ident, $pool:ty, $store:path, { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            /// A store on `pool` (migrated).
            pub const fn new(pool: $pool) -> Self {
                Self { pool }
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
    /// Any other database failure (becomes 500; the cause is logged, never sent).
    Database(sqlx::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(what) => write!(f, "conflict: {what}"),
            Self::Database(err) => write!(f, "database error: {err}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Conflict(_) => None,
            Self::Database(err) => Some(err),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// Unique violations become [`StoreError::Conflict`] naming the constraint; the rest
    /// [`StoreError::Database`].
    fn from(err: sqlx::Error) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Conflict(
                db.constraint().map_or_else(|| "a unique value is taken".to_owned(), str::to_owned),
            ),
            _ => Self::Database(err),
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
            // The same creation `Db::connect` does at start-up, done here so the URL names a database.
            create_postgres_database(&url).await?;
            Ok(url)
        }
        .await,
    )
}
