//! [`Store`] on SQLite ([`SqliteStore`]) and on PostgreSQL ([`PgStore`]): one implementation, written
//! once and generated for both pools by [`kit::sql_store!`]. The SQL is the same on both (`$n`
//! placeholders, `CAST`); only the column that orders a list differs (`rowid` / `seq`, from the
//! pool's [`Dialect`](kit::db::Dialect)).

use futures_util::future::BoxFuture;
use kit::db::{SqlPool as _, StoreError, now};
use kit::outbox::Event;
use kit::uow::UnitOfWork as _;
use uuid::Uuid;

use super::{
    Account, AccountChanges, AccountRow, COLUMNS, NewAccount, SELECTED, Store, StoreResult, accounts,
    encode_error, on_conflict, role_name,
};
use crate::model::{USER_REGISTERED, UserRegistered};

kit::sql_store! {
    /// Accounts in SQLite.
    sqlite: SqliteStore,
    /// Accounts in PostgreSQL.
    postgres: PgStore,
    impl Store {
        fn create<'a>(&'a self, account: &'a NewAccount) -> BoxFuture<'a, StoreResult<Account>> {
            Box::pin(async move {
                let mut tx = self.pool.begin_write().await?;
                let sql = format!(
                    "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {SELECTED}"
                );
                let row: AccountRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(Uuid::new_v4())
                    .bind(&account.email)
                    .bind(account.password_hash.expose())
                    .bind(account.display_name.as_deref())
                    .bind(role_name(account.role))
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(on_conflict)?;
                let created = Account::try_from(row)?;
                let data = UserRegistered {
                    user_id: created.id,
                    email: created.email.clone(),
                    name: created.display_name.clone(),
                };
                let event = Event::new(USER_REGISTERED, &created.id.to_string(), &data).map_err(encode_error)?;
                tx.publish(&event).await?;
                tx.commit().await?;
                Ok(created)
            })
        }

        fn get(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Account>>> {
            Box::pin(async move {
                let row: Option<AccountRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SELECTED} FROM users WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Account::try_from).transpose()
            })
        }

        fn find_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, StoreResult<Option<Account>>> {
            Box::pin(async move {
                let row: Option<AccountRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SELECTED} FROM users WHERE email = $1")))
                        .bind(email)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Account::try_from).transpose()
            })
        }

        fn list(&self, limit: u32, offset: u64) -> BoxFuture<'_, StoreResult<Vec<Account>>> {
            Box::pin(async move {
                let order = self.pool.dialect().insertion_order;
                let sql = format!("SELECT {SELECTED} FROM users ORDER BY {order} LIMIT $1 OFFSET $2");
                let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                accounts(rows)
            })
        }

        fn update<'a>(
            &'a self,
            id: Uuid,
            changes: &'a AccountChanges,
        ) -> BoxFuture<'a, StoreResult<Option<Account>>> {
            Box::pin(async move {
                // One statement: the version bump and the last-admin guard see the row they change.
                let sql = format!(
                    "UPDATE users SET display_name = CASE WHEN CAST($2 AS BOOLEAN) THEN $3 ELSE display_name END, \
                     password_hash = COALESCE(CAST($4 AS TEXT), password_hash), \
                     role = COALESCE(CAST($6 AS TEXT), role), \
                     token_version = token_version + CASE WHEN CAST($4 AS TEXT) IS NOT NULL \
                         OR COALESCE(CAST($6 AS TEXT), role) <> role THEN 1 ELSE 0 END, \
                     updated_at = $5 \
                     WHERE id = $1 AND (CAST($6 AS TEXT) IS NULL OR CAST($6 AS TEXT) = 'admin' OR role <> 'admin' \
                         OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1) \
                     RETURNING {SELECTED}"
                );
                let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(changes.display_name.is_some())
                    .bind(changes.display_name.as_ref().and_then(Option::as_deref))
                    .bind(changes.password_hash.as_ref().map(|h| h.expose().as_str()))
                    .bind(now())
                    .bind(changes.role.map(role_name))
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => Account::try_from(row).map(Some),
                    None if self.get(id).await?.is_some() => {
                        Err(StoreError::Conflict("the last admin cannot be demoted".to_owned()))
                    }
                    None => Ok(None),
                }
            })
        }

        fn count_admins(&self) -> BoxFuture<'_, StoreResult<i64>> {
            Box::pin(async move {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            })
        }
    }
}
