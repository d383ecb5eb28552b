//! The expiry sweeper's lifecycle: it stops when the database pool closes (the end of a graceful
//! shutdown) and when it is stopped or dropped.

use std::time::Duration;

use kit::db::Db;
use shop_inventory::MIGRATIONS;
use shop_inventory::expiry::Sweeper;
use shop_inventory::store;

async fn db() -> Db {
    let db = Db::connect(&kit::db::temp_sqlite_url("inventory-expiry"), 2).await.unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    db
}

#[tokio::test]
async fn stops_when_the_pool_closes() {
    let db = db().await;
    let sweeper = Sweeper::spawn(store::for_db(&db), &db, Duration::from_millis(10), 10);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!sweeper.is_finished());
    db.close().await;
    for _ in 0..200 {
        if sweeper.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sweeper still runs after the pool closed");
}

#[tokio::test]
async fn stops_on_request() {
    let db = db().await;
    let sweeper = Sweeper::spawn(store::for_db(&db), &db, Duration::from_hours(1), 10);
    tokio::time::timeout(Duration::from_secs(10), sweeper.stop()).await.expect("the sweeper stopped");
}
