//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;

use kit::db::StoreError;
use shop_catalog::MIGRATIONS;
use shop_catalog::model::{ListFilter, Money, ProductInput};
use shop_catalog::store::{self, Store};

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
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("catalog-store", &MIGRATIONS, 4, |db| suite(store::for_db(&db))).await;
}

#[tokio::test]
async fn create_get_update_delete() {
    each_store(|store| async move {
        let created = store.create(&input("MUG-1", "Coffee Mug", "kitchen", 1299)).await.unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.price, Money { amount: 1299, currency: "EUR".into() });
        assert_eq!(store.get(created.id).await.unwrap().as_ref(), Some(&created));

        let updated =
            store.update(created.id, &input("MUG-1", "Tea Mug", "kitchen", 999)).await.unwrap().unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.name, "Tea Mug");
        assert_eq!(updated.created_at, created.created_at);
        assert_ne!(updated.etag(), created.etag());
        assert_eq!(store.get(created.id).await.unwrap(), Some(updated));

        assert!(store.delete(created.id).await.unwrap());
        assert!(!store.delete(created.id).await.unwrap());
        assert_eq!(store.get(created.id).await.unwrap(), None);
        assert_eq!(store.update(created.id, &input("MUG-1", "x", "y", 1)).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn sku_is_unique() {
    each_store(|store| async move {
        store.create(&input("SKU-A", "A", "c", 1)).await.unwrap();
        let b = store.create(&input("SKU-B", "B", "c", 1)).await.unwrap();
        match store.create(&input("SKU-A", "A again", "c", 1)).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("SKU-A"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        match store.update(b.id, &input("SKU-A", "B", "c", 1)).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn list_filters_searches_and_pages() {
    each_store(|store| async move {
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
