//! [`Store`](super::Store) on SQLite.

use sqlx::{Sqlite, SqlitePool};

/// Stock and reservations in SQLite.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A store on `pool` (migrated).
    pub const fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// Write transactions take SQLite's write lock at once (see the [module docs](super)).
async fn begin(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// No row locks on SQLite: `BEGIN IMMEDIATE` already serializes writers.
const LOCK: &str = "";

sql_store!(SqliteStore, Sqlite);
