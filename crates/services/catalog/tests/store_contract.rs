//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;

use kit::db::{Db, StoreError};
use kit::extract::Preconditions;
use shop_catalog::MIGRATIONS;
use shop_catalog::model::{ListFilter, Money, Product, ProductInput};
use shop_catalog::store::{self, Archive, Store, Update};

fn input(sku: &str, name: &str, category: &str, amount: i64) -> ProductInput {
    ProductInput {
        sku: sku.to_owned(),
        name: name.to_owned(),
        description: format!("about {name}"),
        category: category.to_owned(),
        price: Money { amount, currency: "EUR".to_owned() },
    }
}

fn filter() -> ListFilter {
    ListFilter { limit: 100, ..ListFilter::default() }
}

/// Runs `suite` on SQLite, then on PostgreSQL when configured.
async fn each_store<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Store>, Db) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("catalog-store", &MIGRATIONS, 4, |db| suite(store::for_db(&db), db)).await;
}

/// The `(type, subject, data)` of every event in `db`'s outbox, oldest first.
async fn events(db: &Db) -> Vec<(String, String, serde_json::Value)> {
    const SQL: &str = "SELECT type, subject, data FROM kit_outbox ORDER BY created_at";
    let rows: Vec<(String, String, String)> = match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|(t, s, d)| (t, s, serde_json::from_str(&d).unwrap())).collect()
}

fn if_match(product: &Product) -> Preconditions {
    Preconditions::new(Some(&product.etag()), None)
}

fn update_done(write: Update) -> Product {
    match write {
        Update::Done(product) => product,
        other => panic!("expected an update, got {other:?}"),
    }
}

fn archive_done(write: Archive) -> Product {
    match write {
        Archive::Done(product) => product,
        other => panic!("expected an archive, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_update_archive() {
    each_store(|store, _| async move {
        let created = store.create(&input("MUG-1", "Coffee Mug", "kitchen", 1299)).await.unwrap();
        assert_eq!((created.version, created.archived), (1, false));
        assert_eq!(created.price, Money { amount: 1299, currency: "EUR".into() });
        assert_eq!(store.get(created.id).await.unwrap().as_ref(), Some(&created));

        let updated = update_done(
            store
                .update(created.id, &input("MUG-1", "Tea Mug", "kitchen", 999), &if_match(&created))
                .await
                .unwrap(),
        );
        assert_eq!(updated.version, 2);
        assert_eq!(updated.name, "Tea Mug");
        assert_eq!(updated.created_at, created.created_at);
        assert_ne!(updated.etag(), created.etag());
        assert_eq!(store.get(created.id).await.unwrap().as_ref(), Some(&updated));

        let archived = archive_done(store.archive(created.id, &if_match(&updated)).await.unwrap());
        assert_eq!((archived.version, archived.archived), (3, true));
        assert_eq!(store.get(created.id).await.unwrap().as_ref(), Some(&archived), "the row stays");
        assert_eq!(
            store.archive(created.id, &if_match(&created)).await.unwrap(),
            Archive::AlreadyArchived(archived.clone()),
            "archiving again changes nothing, whatever the precondition"
        );
        let missing = uuid::Uuid::new_v4();
        assert_eq!(store.get(missing).await.unwrap(), None);
        assert_eq!(store.archive(missing, &Preconditions::default()).await.unwrap(), Archive::NotFound);
        let any = Preconditions::new(Some("*"), None);
        assert_eq!(
            store.update(missing, &input("MUG-1", "x", "y", 1), &any).await.unwrap(),
            Update::NotFound
        );
    })
    .await;
}

#[tokio::test]
async fn writes_check_preconditions_and_the_sku_never_changes() {
    each_store(|store, _| async move {
        let a = store.create(&input("SKU-A", "A", "c", 1)).await.unwrap();
        let b = store.create(&input("SKU-B", "B", "c", 1)).await.unwrap();
        match store.create(&input("SKU-A", "A again", "c", 1)).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("SKU-A"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            store.update(b.id, &input("SKU-A", "B", "c", 1), &if_match(&b)).await.unwrap(),
            Update::SkuImmutable(b.clone())
        );
        let b2 = update_done(store.update(b.id, &input("SKU-B", "B2", "c", 1), &if_match(&b)).await.unwrap());
        // `b`'s ETag is stale now.
        assert_eq!(
            store.update(b.id, &input("SKU-B", "B3", "c", 1), &if_match(&b)).await.unwrap(),
            Update::PreconditionFailed(b2.clone())
        );
        assert_eq!(
            store.archive(b.id, &if_match(&b)).await.unwrap(),
            Archive::PreconditionFailed(b2.clone())
        );
        assert_eq!(store.get(b.id).await.unwrap(), Some(b2));
        assert_eq!(store.get(a.id).await.unwrap(), Some(a));
    })
    .await;
}

#[tokio::test]
async fn a_price_change_is_published_in_the_update_transaction() {
    each_store(|store, db| async move {
        let p = store.create(&input("MUG-1", "Mug", "kitchen", 1299)).await.unwrap();
        let renamed = update_done(
            store.update(p.id, &input("MUG-1", "Big mug", "kitchen", 1299), &if_match(&p)).await.unwrap(),
        );
        assert_eq!(events(&db).await, [], "same price: no event");
        let repriced = Money { amount: 1299, currency: "USD".into() };
        let mut usd = input("MUG-1", "Big mug", "kitchen", 1299);
        usd.price = repriced.clone();
        update_done(store.update(p.id, &usd, &if_match(&renamed)).await.unwrap());
        let data = serde_json::json!({
            "product_id": p.id,
            "sku": "MUG-1",
            "old_price": { "amount": 1299, "currency": "EUR" },
            "new_price": { "amount": 1299, "currency": "USD" },
        });
        assert_eq!(events(&db).await, [("product.price_changed".to_owned(), p.id.to_string(), data)]);
        // Refused writes publish nothing.
        store.update(p.id, &input("MUG-1", "Big mug", "kitchen", 1), &if_match(&p)).await.unwrap();
        assert_eq!(events(&db).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn lists_hide_archived_products_unless_asked() {
    each_store(|store, _| async move {
        let a = store.create(&input("SKU-A", "A", "c", 1)).await.unwrap();
        let b = store.create(&input("SKU-B", "B", "c", 1)).await.unwrap();
        archive_done(store.archive(a.id, &if_match(&a)).await.unwrap());
        let ids = |items: Vec<Product>| items.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list(&filter()).await.unwrap()), [b.id]);
        let all = ListFilter { include_archived: true, ..filter() };
        assert_eq!(ids(store.list(&all).await.unwrap()), [a.id, b.id]);
    })
    .await;
}

#[tokio::test]
async fn list_filters_searches_and_pages() {
    each_store(|store, _| async move {
        for (i, (name, category, amount)) in [
            ("Red Mug", "kitchen", 500),
            ("Blue mug", "kitchen", 1500),
            ("Desk Lamp", "office", 2500),
            ("100% Cotton_Tee", "clothes", 1000),
        ]
        .into_iter()
        .enumerate()
        {
            store.create(&input(&format!("SKU-{i}"), name, category, amount)).await.unwrap();
        }
        let names =
            |items: Vec<shop_catalog::model::Product>| items.into_iter().map(|p| p.name).collect::<Vec<_>>();

        assert_eq!(store.list(&filter()).await.unwrap().len(), 4);
        let kitchen = ListFilter { category: Some("kitchen".into()), ..filter() };
        assert_eq!(names(store.list(&kitchen).await.unwrap()), ["Red Mug", "Blue mug"]);
        let mugs = ListFilter { q: Some("MUG".into()), ..filter() };
        assert_eq!(names(store.list(&mugs).await.unwrap()), ["Red Mug", "Blue mug"]);
        let range = ListFilter { min_price: Some(1000), max_price: Some(2000), ..filter() };
        assert_eq!(names(store.list(&range).await.unwrap()), ["Blue mug", "100% Cotton_Tee"]);
        // LIKE wildcards in the search text are literal.
        let percent = ListFilter { q: Some("0%".into()), ..filter() };
        assert_eq!(names(store.list(&percent).await.unwrap()), ["100% Cotton_Tee"]);
        let underscore = ListFilter { q: Some("n_t".into()), ..filter() };
        assert_eq!(names(store.list(&underscore).await.unwrap()), ["100% Cotton_Tee"]);

        let page1 = store.list(&ListFilter { limit: 3, ..filter() }).await.unwrap();
        let page2 = store.list(&ListFilter { limit: 3, offset: 3, ..filter() }).await.unwrap();
        assert_eq!(page1.len(), 3);
        assert_eq!(page2.len(), 1);
        assert!(page1.iter().all(|p| p.id != page2[0].id));
    })
    .await;
}
