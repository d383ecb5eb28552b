//! [`Store`](super::Store) on PostgreSQL.

use sqlx::{PgPool, Postgres};

/// Stock and reservations in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A store on `pool` (migrated).
    pub const fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// `READ COMMITTED`: conditional updates re-check their `WHERE` after a row lock.
async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

/// A reservation row is locked before its status changes.
const LOCK: &str = " FOR UPDATE";

sql_store!(PgStore, Postgres);
