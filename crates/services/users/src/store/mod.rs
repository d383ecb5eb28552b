//! The users service's persistence, behind [`Store`]: one implementation per database
//! ([`SqliteStore`], [`PgStore`]), both generated from the one body in `store/sql.rs`.

mod sql;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use kit::auth::Role;
use kit::db::{Db, StoreError};
use kit::secret::Secret;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::User;

pub use self::sql::{PgStore, SqliteStore};

/// What a store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// An account as stored: a [`User`] plus its password hash (redacted in `Debug`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Identifier.
    pub id: Uuid,
    /// Lowercase email, unique.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: Secret<String>,
    /// Name to show.
    pub display_name: Option<String>,
    /// Role.
    pub role: Role,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Last changed at.
    pub updated_at: OffsetDateTime,
    /// Bumped by every password or role change; tokens issued at an older one are revoked.
    pub token_version: i64,
}

impl From<Account> for User {
    fn from(account: Account) -> Self {
        Self {
            id: account.id,
            email: account.email,
            display_name: account.display_name,
            role: account.role,
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

/// A new account: the email normalised (lowercase) and the password already hashed.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Lowercase email.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: Secret<String>,
    /// Name to show.
    pub display_name: Option<String>,
    /// Role.
    pub role: Role,
}

/// Changes to an account; `None` fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct AccountChanges {
    /// `Some(None)` removes the display name.
    pub display_name: Option<Option<String>>,
    /// A new argon2id PHC string (bumps the token version).
    pub password_hash: Option<Secret<String>>,
    /// A new role (bumps the token version when it differs). Demoting the last admin is refused
    /// with [`StoreError::Conflict`].
    pub role: Option<Role>,
}

/// Account persistence. Email uniqueness is enforced by the database ([`StoreError::Conflict`]),
/// so two concurrent registrations of one email give one account and one conflict.
pub trait Store: Send + Sync + 'static {
    /// Inserts an account and, in the same transaction, publishes `user.registered`
    /// ([`UserRegistered`](crate::model::UserRegistered); every new account, the configured admin
    /// too).
    fn create<'a>(&'a self, account: &'a NewAccount) -> BoxFuture<'a, StoreResult<Account>>;
    /// The account with `id`.
    fn get(&self, id: Uuid) -> BoxFuture<'_, StoreResult<Option<Account>>>;
    /// The account with `email` (already normalised).
    fn find_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, StoreResult<Option<Account>>>;
    /// A page of accounts, oldest first.
    fn list(&self, limit: u32, offset: u64) -> BoxFuture<'_, StoreResult<Vec<Account>>>;
    /// Applies `changes`; `None` when absent; a conflict when it would demote the last admin.
    fn update<'a>(
        &'a self,
        id: Uuid,
        changes: &'a AccountChanges,
    ) -> BoxFuture<'a, StoreResult<Option<Account>>>;
    /// How many accounts have role `admin`.
    fn count_admins(&self) -> BoxFuture<'_, StoreResult<i64>>;
}

/// The store for `db`.
pub fn for_db(db: &Db) -> Arc<dyn Store> {
    match db {
        Db::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
        Db::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
    }
}

const COLUMNS: &str = "id, email, password_hash, display_name, role, created_at, updated_at";
/// What a read returns: [`COLUMNS`] and the token version (which inserts leave at its default).
const SELECTED: &str = "id, email, password_hash, display_name, role, created_at, updated_at, token_version";

/// A row of `users`, shared by both backends.
#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    email: String,
    password_hash: String,
    display_name: Option<String>,
    role: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    token_version: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> StoreResult<Self> {
        let role = match row.role.as_str() {
            "customer" => Role::Customer,
            "admin" => Role::Admin,
            other => {
                return Err(StoreError::Database(sqlx::Error::Decode(
                    format!("users.role holds an unknown role `{other}`").into(),
                )));
            }
        };
        Ok(Self {
            id: row.id,
            email: row.email,
            password_hash: Secret::new(row.password_hash),
            display_name: row.display_name,
            role,
            created_at: row.created_at,
            updated_at: row.updated_at,
            token_version: row.token_version,
        })
    }
}

fn accounts(rows: Vec<AccountRow>) -> StoreResult<Vec<Account>> {
    rows.into_iter().map(Account::try_from).collect()
}

const fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

/// A JSON error building an event, as a store error (a bug: the event types always serialize).
fn encode_error(err: serde_json::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(Box::new(err)))
}

/// A duplicate email, with a message for the client.
fn on_conflict(err: sqlx::Error) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("an account with this email already exists".to_owned())
        }
        other @ (StoreError::Busy(_) | StoreError::Database(_)) => other,
    }
}
