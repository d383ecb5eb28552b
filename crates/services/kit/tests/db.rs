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
async fn connect_creates_a_missing_postgres_database() {
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
    let db = Db::connect(&url, 2).await.expect("creates the database and connects");
    db.ping().await.expect("answers");
    db.close().await;
    // A second start finds it and connects as usual.
    Db::connect(&url, 1).await.expect("connects again").close().await;
}
