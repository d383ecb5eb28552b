//! `Db::connect` against real databases.

use kit::db::Db;

#[tokio::test]
async fn connect_creates_a_missing_sqlite_file_and_its_folder() {
    let dir = std::env::temp_dir().join(format!("shop-kit-db-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/nested/test.db?mode=rwc", dir.display());
    let db = Db::connect(&url, 2).await.expect("connects");
    db.ping().await.expect("answers");
    db.close().await;
    assert!(dir.join("nested/test.db").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn sqlite_durability_is_the_configured_synchronous_on_every_connection() {
    use kit::db::{DbOptions, Durability};
    for (durability, expected) in [(Durability::Normal, 1_i64), (Durability::Full, 2)] {
        let url = kit::db::temp_sqlite_url(&format!("durability-{durability:?}"));
        let db = Db::connect_with(&url, &DbOptions { max_connections: 2, durability, ..DbOptions::DEFAULT })
            .await
            .unwrap();
        let Db::Sqlite(sqlite) = &db else { unreachable!("a sqlite url") };
        for pool in [sqlite.writer(), sqlite.reader(), sqlite.reader()] {
            let mut conn = pool.acquire().await.unwrap();
            let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
            assert_eq!(level, expected, "{durability:?}");
        }
        db.close().await;
    }
}

#[tokio::test]
async fn connect_creates_a_missing_postgres_database_only_when_asked() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    if !admin.starts_with("postgres") {
        eprintln!("skipped: TEST_DATABASE_URL is not a postgres URL");
        return;
    }
    let server = admin.split('?').next().unwrap().rsplit_once('/').unwrap().0;
    let url = format!("{server}/shop_test_created_{}", uuid::Uuid::new_v4().simple());
    // By default nothing is created (a deployment's role needs no CREATEDB): the database is missing.
    assert!(Db::connect(&url, 1).await.is_err(), "a missing database was created unasked");
    let create = kit::db::DbOptions { create_database: true, ..kit::db::DbOptions::DEFAULT };
    let db = Db::connect_with(&url, &create).await.expect("creates the database and connects");
    db.ping().await.expect("answers");
    db.close().await;
    // A second start finds it and connects as usual.
    Db::connect(&url, 1).await.expect("connects again").close().await;
}

#[tokio::test]
async fn sqlite_writers_queue_for_the_write_connection_while_readers_go_on() {
    use std::time::Duration;

    use kit::db::{DbOptions, SqlPool as _};

    let options =
        DbOptions { max_connections: 4, lock_timeout: Duration::from_secs(10), ..DbOptions::DEFAULT };
    let db = Db::connect_with(&kit::db::temp_sqlite_url("kit-writer-queue"), &options).await.unwrap();
    let Db::Sqlite(sqlite) = db.clone() else { unreachable!("a sqlite url") };
    // Not a SELECT: routed to the write connection (the read ones are read-only).
    sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)").execute(&sqlite).await.unwrap();
    let id: i64 =
        sqlx::query_scalar("INSERT INTO t (n) VALUES (0) RETURNING rowid").fetch_one(&sqlite).await.unwrap();
    assert_eq!(id, 1, "a write that returns rows goes to the writer too");
    let refused = sqlx::query("INSERT INTO t (n) VALUES (-1)").execute(sqlite.reader()).await.unwrap_err();
    assert!(refused.to_string().contains("readonly"), "read connections refuse writes: {refused}");

    let mut holder = sqlite.begin_write().await.unwrap();
    sqlx::query("INSERT INTO t (n) VALUES (1)").execute(&mut *holder).await.unwrap();
    // 16 transactions and 16 single statements queue behind it; none can start yet.
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let sqlite = sqlite.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let mut tx = sqlite.begin_write().await?;
                    sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(i).execute(&mut *tx).await?;
                    tx.commit().await
                } else {
                    sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(i).execute(&sqlite).await.map(drop)
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(writers.iter().all(|w| !w.is_finished()), "writers wait for the write connection");
    // A reader is not behind them: it answers at once, from before the open transaction.
    let seen: i64 = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&sqlite),
    )
    .await
    .expect("a read does not wait for writers")
    .unwrap();
    assert_eq!(seen, 1);
    holder.commit().await.unwrap();
    for writer in writers {
        writer.await.unwrap().expect("a queued writer is never busy");
    }
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&sqlite).await.unwrap();
    assert_eq!(total, 2 + 32);
    db.close().await;
}

#[tokio::test]
async fn an_in_memory_sqlite_database_is_one_database_for_reads_and_writes() {
    use kit::db::SqlPool as _;

    let db = Db::connect("sqlite::memory:", 1).await.unwrap();
    let Db::Sqlite(sqlite) = &db else { unreachable!("a sqlite url") };
    sqlx::query("CREATE TABLE t (n INTEGER)").execute(sqlite).await.unwrap();
    let mut tx = sqlite.begin_write().await.unwrap();
    sqlx::query("INSERT INTO t (n) VALUES (7)").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT n FROM t").fetch_one(sqlite).await.unwrap();
    assert_eq!(n, 7);
    db.close().await;
}

#[tokio::test]
async fn sqlite_busy_is_retried_and_what_stays_busy_is_503() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use kit::db::{DbOptions, Retry, SqlPool as _, StoreError};

    let options =
        DbOptions { max_connections: 2, lock_timeout: Duration::from_millis(100), ..DbOptions::DEFAULT };
    let Db::Sqlite(pool) = Db::connect_with(&kit::db::temp_sqlite_url("kit-busy"), &options).await.unwrap()
    else {
        unreachable!()
    };
    let holder = Arc::new(Mutex::new(Some(pool.begin_write().await.unwrap())));
    let retry = Retry { budget: Duration::from_secs(5), ..Retry::for_options(&options) };

    // Locked for good: three attempts, each waiting out the busy timeout, then `Busy`, then 503.
    let mut attempts = 0;
    let started = std::time::Instant::now();
    let result = retry
        .run(|| {
            attempts += 1;
            let pool = pool.clone();
            async move { pool.begin_write().await.map(drop).map_err(StoreError::from) }
        })
        .await;
    assert_eq!(attempts, 3);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::Busy(_)), "{err}");
    let api = kit::error::ApiError::from(err);
    assert_eq!(api.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let res = axum::response::IntoResponse::into_response(api);
    assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");

    // Released after the first failure: the second attempt gets through.
    let mut attempts = 0;
    let result = retry
        .run(|| {
            attempts += 1;
            let (pool, holder) = (pool.clone(), holder.clone());
            async move {
                let tx = pool.begin_write().await;
                if tx.is_err() {
                    drop(holder.lock().unwrap().take());
                }
                tx?.commit().await?;
                Ok(())
            }
        })
        .await;
    result.unwrap();
    assert_eq!(attempts, 2);

    // Not contention: never retried.
    let mut attempts = 0;
    let result: Result<(), _> = retry
        .run(|| {
            attempts += 1;
            async { Err(StoreError::Database(sqlx::Error::RowNotFound)) }
        })
        .await;
    assert!(matches!(result, Err(StoreError::Database(_))));
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn the_retry_budget_stops_attempts_that_already_waited_long() {
    use std::time::Duration;

    use kit::db::{Retry, StoreError};

    let retry = Retry { budget: Duration::from_millis(50), ..Retry::default() };
    let mut attempts = 0;
    let result: Result<(), _> = retry
        .run(|| {
            attempts += 1;
            async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Err(StoreError::Busy(sqlx::Error::PoolTimedOut))
            }
        })
        .await;
    assert!(matches!(result, Err(StoreError::Busy(_))));
    assert_eq!(attempts, 1, "an attempt that outlasted the budget is not repeated");
}

#[tokio::test]
async fn postgres_connections_set_timeouts_and_transactions_state_read_committed() {
    use kit::db::{DbOptions, SqlPool as _};

    let Some(Ok(url)) = kit::db::temp_postgres_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not a postgres URL");
        return;
    };
    // A server (here: a database) whose default is stricter than what the stores rely on.
    let name = url.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;

    let plain = sqlx::PgPool::connect(&url).await.unwrap();
    let mut tx = plain.begin().await.unwrap();
    let level: String = sqlx::query_scalar("SHOW transaction_isolation").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(level, "repeatable read", "the database's default applies to a plain BEGIN");
    drop(tx);
    plain.close().await;

    let Db::Postgres(pool) = Db::connect_with(&url, &DbOptions::DEFAULT).await.unwrap() else {
        unreachable!()
    };
    let mut tx = pool.begin_write().await.unwrap();
    let level: String = sqlx::query_scalar("SHOW transaction_isolation").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(level, "read committed");
    for (setting, expected) in
        [("lock_timeout", "2s"), ("statement_timeout", "5s"), ("idle_in_transaction_session_timeout", "10s")]
    {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn postgres_lock_timeouts_are_busy() {
    use std::time::Duration;

    use kit::db::{DbOptions, SqlPool as _, StoreError};

    let Some(Ok(url)) = kit::db::temp_postgres_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not a postgres URL");
        return;
    };
    let options =
        DbOptions { max_connections: 2, lock_timeout: Duration::from_millis(200), ..DbOptions::DEFAULT };
    let Db::Postgres(pool) = Db::connect_with(&url, &options).await.unwrap() else { unreachable!() };
    sqlx::raw_sql("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let mut holder = pool.begin_write().await.unwrap();
    sqlx::query("SELECT id FROM t WHERE id = 1 FOR UPDATE").execute(&mut *holder).await.unwrap();
    let started = std::time::Instant::now();
    let update = sqlx::query("UPDATE t SET id = 2 WHERE id = 1").execute(&pool);
    let err = tokio::time::timeout(Duration::from_secs(5), update)
        .await
        .expect("the lock timeout ends the wait")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(err.as_database_error().and_then(sqlx::error::DatabaseError::code).as_deref(), Some("55P03"));
    assert!(matches!(StoreError::from(err), StoreError::Busy(_)));
    holder.rollback().await.unwrap();
    pool.close().await;
}
