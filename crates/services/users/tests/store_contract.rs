//! One contract suite for every `Store`: SQLite always; PostgreSQL when `TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a server (each test creates its own database there).

use std::sync::Arc;

use kit::auth::Role;
use kit::db::{Db, StoreError};
use kit::secret::Secret;
use shop_users::MIGRATIONS;
use shop_users::store::{self, AccountChanges, NewAccount, Store};

fn account(email: &str, role: Role) -> NewAccount {
    NewAccount {
        email: email.to_owned(),
        password_hash: Secret::new(format!("$argon2id$v=19$m=19456,t=2,p=1$salt$hash-of-{email}")),
        display_name: Some(format!("name of {email}")),
        role,
    }
}

/// Runs `suite` on SQLite, then on PostgreSQL when configured.
async fn each_store<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn Store>, Db) -> Fut,
    Fut: Future<Output = ()>,
{
    kit::testing::each_database("users-store", &MIGRATIONS, 4, |db| suite(store::for_db(&db), db)).await;
}

/// The `(type, subject, data)` of every event in `db`'s outbox, oldest first.
async fn events(db: &Db) -> Vec<(String, String, serde_json::Value)> {
    const SQL: &str = "SELECT type, subject, data FROM kit_outbox ORDER BY created_at, id";
    let rows: Vec<(String, String, String)> = match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|(t, s, d)| (t, s, serde_json::from_str(&d).unwrap())).collect()
}

#[tokio::test]
async fn create_publishes_user_registered_in_its_transaction() {
    each_store(|store, db| async move {
        let created = store.create(&account("alice@example.com", Role::Customer)).await.unwrap();
        let data = serde_json::json!({
            "user_id": created.id,
            "email": "alice@example.com",
            "name": "name of alice@example.com",
        });
        assert_eq!(events(&db).await, [("user.registered".to_owned(), created.id.to_string(), data)]);
        // The duplicate is rolled back with its event.
        assert!(matches!(
            store.create(&account("alice@example.com", Role::Customer)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(events(&db).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn create_get_find_update() {
    each_store(|store, _| async move {
        let created = store.create(&account("alice@example.com", Role::Customer)).await.unwrap();
        assert_eq!(created.email, "alice@example.com");
        assert_eq!(created.role, Role::Customer);
        assert_eq!(created.display_name.as_deref(), Some("name of alice@example.com"));
        assert_eq!(created.created_at, created.updated_at);
        let printed = format!("{created:?}");
        assert!(printed.contains("alice@example.com") && !printed.contains("hash-of"), "{printed}");
        assert_eq!(store.get(created.id).await.unwrap().as_ref(), Some(&created));
        assert_eq!(store.find_by_email("alice@example.com").await.unwrap().as_ref(), Some(&created));
        assert_eq!(store.find_by_email("bob@example.com").await.unwrap(), None);
        assert_eq!(store.get(uuid::Uuid::new_v4()).await.unwrap(), None);

        // No changes: only updated_at may move.
        let same = store.update(created.id, &AccountChanges::default()).await.unwrap().unwrap();
        assert_eq!(
            (&same.display_name, &same.password_hash),
            (&created.display_name, &created.password_hash)
        );

        let renamed =
            AccountChanges { display_name: Some(Some("Alice".into())), password_hash: None, role: None };
        let updated = store.update(created.id, &renamed).await.unwrap().unwrap();
        assert_eq!(updated.display_name.as_deref(), Some("Alice"));
        assert_eq!(updated.password_hash, created.password_hash);
        assert_eq!(updated.created_at, created.created_at);

        let new_hash = Secret::new("$argon2id$v=19$m=19456,t=2,p=1$salt$new".to_owned());
        assert_eq!(updated.token_version, created.token_version, "a rename revokes nothing");
        let rehashed =
            AccountChanges { display_name: None, password_hash: Some(new_hash.clone()), role: None };
        let updated = store.update(created.id, &rehashed).await.unwrap().unwrap();
        assert_eq!(updated.password_hash, new_hash);
        assert_eq!(updated.display_name.as_deref(), Some("Alice"));
        assert_eq!(updated.token_version, created.token_version + 1, "a password change revokes tokens");

        let cleared = AccountChanges { display_name: Some(None), password_hash: None, role: None };
        let updated = store.update(created.id, &cleared).await.unwrap().unwrap();
        assert_eq!(updated.display_name, None);
        assert_eq!(store.get(created.id).await.unwrap(), Some(updated));

        assert_eq!(store.update(uuid::Uuid::new_v4(), &renamed).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn emails_are_unique_and_lowercase_in_the_database() {
    each_store(|store, _| async move {
        store.create(&account("dup@example.com", Role::Customer)).await.unwrap();
        match store.create(&account("dup@example.com", Role::Admin)).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("email"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        // The database itself refuses an email that is not normalised.
        assert!(matches!(
            store.create(&account("Upper@Example.com", Role::Customer)).await,
            Err(StoreError::Database(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_give_one_account() {
    each_store(|store, _| async move {
        let attempts = (0..8).map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(&account("race@example.com", Role::Customer)).await })
        });
        let mut created = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("expected a conflict, got {other:?}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(store.list(100, 0).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn list_pages_in_insertion_order_and_counts_admins() {
    each_store(|store, _| async move {
        assert_eq!(store.count_admins().await.unwrap(), 0);
        let emails = ["c@example.com", "a@example.com", "b@example.com", "d@example.com"];
        for (i, email) in emails.iter().enumerate() {
            let role = if i == 2 { Role::Admin } else { Role::Customer };
            store.create(&account(email, role)).await.unwrap();
        }
        assert_eq!(store.count_admins().await.unwrap(), 1);
        let all: Vec<_> = store.list(100, 0).await.unwrap().into_iter().map(|a| a.email).collect();
        assert_eq!(all, emails);
        let page1: Vec<_> = store.list(3, 0).await.unwrap().into_iter().map(|a| a.email).collect();
        let page2: Vec<_> = store.list(3, 3).await.unwrap().into_iter().map(|a| a.email).collect();
        assert_eq!(page1, emails[..3]);
        assert_eq!(page2, emails[3..]);
        assert!(store.list(3, 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn role_changes_bump_the_token_version_and_keep_one_admin() {
    each_store(|store, _| async move {
        let first = store.create(&account("root@example.com", Role::Admin)).await.unwrap();
        let other = store.create(&account("carol@example.com", Role::Customer)).await.unwrap();
        assert_eq!(first.token_version, 0);
        let demote = AccountChanges { role: Some(Role::Customer), ..AccountChanges::default() };
        let promote = AccountChanges { role: Some(Role::Admin), ..AccountChanges::default() };
        // The only admin stays one, untouched.
        match store.update(first.id, &demote).await {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("last admin"), "{msg}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.get(first.id).await.unwrap().unwrap().role, Role::Admin);
        let promoted = store.update(other.id, &promote).await.unwrap().unwrap();
        assert_eq!((promoted.role, promoted.token_version), (Role::Admin, 1));
        // Setting the role it has changes no version.
        let same = store.update(other.id, &promote).await.unwrap().unwrap();
        assert_eq!(same.token_version, 1);
        let demoted = store.update(first.id, &demote).await.unwrap().unwrap();
        assert_eq!((demoted.role, demoted.token_version), (Role::Customer, 1));
        assert_eq!(store.count_admins().await.unwrap(), 1);
    })
    .await;
}
