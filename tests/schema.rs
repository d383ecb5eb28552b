//! Starting against a schema that is not the binary's: behind (refused unless migrating at start),
//! ahead (a rolled-back binary starts, with a WARN), diverged (refused), and PostgreSQL without
//! creating anything unless asked.

use figment::Figment;
use kit::config::Settings;
use kit::db::Db;

fn settings(url: &str, migrate_at_start: Option<bool>) -> Settings {
    let mut figment = Figment::new()
        .merge(("catalog.port", 0))
        .merge(("catalog.database_url", url))
        .merge(("jwt_secret", "schema-test-secret-of-enough-bytes!!"));
    if let Some(migrate) = migrate_at_start {
        figment = figment.merge(("catalog.migrate_at_start", migrate));
    }
    Settings::from_figment(figment)
}

async fn sqlite(url: &str) -> kit::db::SqliteDb {
    match Db::connect(url, 1).await.unwrap() {
        Db::Sqlite(db) => db,
        Db::Postgres(_) => unreachable!("a sqlite URL"),
    }
}

#[tokio::test]
async fn a_database_behind_the_binary_is_refused_unless_it_migrates_at_start() {
    let url = kit::db::temp_sqlite_url("schema-behind");
    let err = shop_catalog::SERVICE.app(&settings(&url, Some(false))).await.unwrap_err().to_string();
    assert!(err.contains("catalog: the database is at migration none"), "{err}");
    assert!(err.contains("run `shop migrate`"), "{err}");
    // SQLite migrates at start by default; `shop migrate` (connect with migrate) always does.
    shop_catalog::SERVICE.app(&settings(&url, None)).await.unwrap();
    shop_catalog::SERVICE.app(&settings(&url, Some(false))).await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_binary_starts_against_a_newer_schema_and_a_diverged_one_does_not() {
    let url = kit::db::temp_sqlite_url("schema-ahead");
    shop_catalog::SERVICE.app(&settings(&url, None)).await.unwrap();
    let pool = sqlite(&url).await;
    // What a newer release would have recorded.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for migrate in [None, Some(false), Some(true)] {
        shop_catalog::SERVICE.app(&settings(&url, migrate)).await.unwrap();
    }
    // Remove one of this binary's own: the histories diverge.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MIN(version) FROM _sqlx_migrations)")
        .execute(&pool)
        .await
        .unwrap();
    let err = shop_catalog::SERVICE.app(&settings(&url, None)).await.unwrap_err().to_string();
    assert!(err.contains("diverged"), "{err}");
    assert!(err.contains("99990101000000"), "{err}");
}

#[tokio::test]
async fn postgres_is_not_created_unless_asked() {
    let Some(Ok(url)) = kit::db::temp_postgres_url().await else {
        eprintln!("note: TEST_DATABASE_URL is not a postgres URL; PostgreSQL start-up test skipped");
        return;
    };
    let missing = format!("{}_missing", url.split('?').next().unwrap());
    let err = shop_catalog::SERVICE.app(&settings(&missing, Some(true))).await.unwrap_err().to_string();
    assert!(err.contains("cannot open the database"), "{err}");
    // PostgreSQL does not migrate at start by default: the deploy step is `shop migrate`.
    let err = shop_catalog::SERVICE.app(&settings(&url, None)).await.unwrap_err().to_string();
    assert!(err.contains("run `shop migrate`"), "{err}");
    shop_catalog::SERVICE.app(&settings(&url, Some(true))).await.unwrap();
    shop_catalog::SERVICE.app(&settings(&url, None)).await.unwrap();
}
