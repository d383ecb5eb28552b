//! The `/v1/users` and `/v1/sessions` handlers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use kit::auth::{AdminUser, AuthUser, Claims, JwtKeys, Role, TokenCheck, revoked};
use kit::error::{ApiError, PROBLEM_JSON as PROBLEM, Problem};
use kit::extract::{ClientIp, Json, Path, Query};
use kit::openapi::{AuthErrors, NotAdmin};
use kit::rate_limit::address_key;
use kit::secret::Secret;
use kit::service_auth::{Caller, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::config::Limiters;
use crate::model::{
    ListQuery, LoginRequest, MAX_EMAIL_CHARS, RegisterRequest, TokenResponse, UpdateMeRequest,
    UpdateUserRequest, User, UserPage, normalize_email,
};
use crate::password::{Busy, Hasher};
use crate::store::{Account, AccountChanges, NewAccount, Store};

/// Handler state.
#[derive(Clone)]
pub struct AppState {
    /// The accounts.
    pub store: Arc<dyn Store>,
    /// argon2id hashing.
    pub hasher: Hasher,
    /// Signs the tokens issued at login.
    pub keys: JwtKeys,
    /// Lifetime of those tokens, in seconds (`expires_in`).
    pub token_ttl_secs: u64,
    /// Login and registration limits.
    pub limits: Arc<Limiters>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("hasher", &self.hasher)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list_users))
        .routes(routes!(get_me, update_me))
        .routes(routes!(get_user, update_user))
        .routes(routes!(login))
}

/// Users' own [`TokenCheck`]: a token is current while its version and role are the account's.
#[derive(Clone)]
pub struct LocalTokenCheck(pub Arc<dyn Store>);

impl std::fmt::Debug for LocalTokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalTokenCheck")
    }
}

impl TokenCheck for LocalTokenCheck {
    fn check<'a>(&'a self, _token: &'a str, claims: &'a Claims) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Ok(id) = claims.sub.parse::<Uuid>() else { return Err(revoked()) };
            match self.0.get(id).await? {
                Some(account) if account.token_version == claims.ver && account.role == claims.role => Ok(()),
                Some(_) => Err(revoked()),
                None => Err(account_gone()),
            }
        })
    }
}

/// The one answer to a failed login, whether the email is unknown or the password wrong.
/// The scope a service token needs to read accounts.
const USERS_READ: &str = "users:read";

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED)
        .with_type("https://palisade.dev/problems/invalid-credentials", "Invalid credentials")
        .with_detail("the email or password is wrong")
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"shop\""))
}

fn account_gone() -> ApiError {
    ApiError::unauthorized("the token's account no longer exists")
}

/// The rate-limit key of an account: its normalised email, bounded in length.
fn account_key(email: &str) -> String {
    normalize_email(email).chars().take(MAX_EMAIL_CHARS).collect()
}

/// A failed hash: 503 with `Retry-After` when every slot is busy (the client may try again), else 500.
fn hashing_failed(err: kit::BoxError) -> ApiError {
    if err.is::<Busy>() {
        ApiError::unavailable(Busy::RETRY_AFTER, "too many password checks at once; try again shortly")
    } else {
        ApiError::internal(err)
    }
}

/// One password guess for `account` from `address`: checked against the per-address, the strict
/// per-account-and-address and the loose per-account limits, in that order. A refusal is logged once
/// per lockout (not per refused attempt, which an attacker controls).
fn check_guess(limits: &Limiters, account: &str, address: &str) -> Result<(), ApiError> {
    let checks = [
        (&limits.address, address.to_owned(), "address"),
        (&limits.account_and_address, format!("{account}|{address}"), "account and address"),
        (&limits.account, account.to_owned(), "account"),
    ];
    for (limiter, key, limit) in checks {
        if let Err(limited) = limiter.take(&key) {
            if limited.first {
                tracing::warn!(account, address, limit, "login attempts locked out for a while");
            }
            return Err(ApiError::too_many_requests(limited.retry_after));
        }
    }
    Ok(())
}

/// A successful password check clears the account's counts (a stranger's guesses elsewhere stay).
fn guess_succeeded(limits: &Limiters, account: &str, address: &str) {
    limits.account_and_address.reset(&format!("{account}|{address}"));
    limits.account.reset(account);
}

/// The caller's account (401 when the token names none).
async fn current_account(state: &AppState, user: &AuthUser) -> Result<Account, ApiError> {
    let id = Uuid::parse_str(&user.id).map_err(|_| account_gone())?;
    state.store.get(id).await?.ok_or_else(account_gone)
}

/// Register an account (role `customer`).
#[utoipa::path(
    post, path = "/v1/users", tag = "users",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = User,
            headers(("Location" = String, description = "The account's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The email is taken", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields, one entry in `errors` each", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many registrations from this address", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Every password hashing slot is busy and the queue is full", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(input): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    let (email, display_name) = input.validate().map_err(ApiError::validation)?;
    let address = address_key(ip);
    if let Err(limited) = state.limits.registrations.take(&address) {
        if limited.first {
            tracing::warn!(address, "registrations from this address limited for a while");
        }
        return Err(ApiError::too_many_requests(limited.retry_after));
    }
    let password_hash =
        Secret::new(state.hasher.hash(input.password.expose()).await.map_err(hashing_failed)?);
    let account = NewAccount { email, password_hash, display_name, role: Role::Customer };
    let user = User::from(state.store.create(&account).await?);
    tracing::info!(user_id = %user.id, "user registered");
    let location = HeaderValue::from_str(&format!("/v1/users/{}", user.id)).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

/// Log in: exchange an email and password for a bearer token.
///
/// A wrong password and an unknown email get the same answer. Attempts are limited per account and
/// address (strict), per account from all addresses (looser) and per client address; a successful
/// login clears its account's counts.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = PROBLEM,
            headers(("WWW-Authenticate" = String, description = "Bearer challenge"))),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is missing, of the wrong type, or longer than registration allows", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many attempts for this account, or from this address", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Every password hashing slot is busy and the queue is full", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(input): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    input.validate().map_err(ApiError::validation)?;
    let address = address_key(ip);
    let key = account_key(&input.email);
    check_guess(&state.limits, &key, &address)?;
    let password = input.password.expose();
    let account = state.store.find_by_email(&key).await?;
    let verified = match &account {
        Some(account) => state.hasher.verify(password, account.password_hash.expose()).await,
        None => state.hasher.verify_unknown(password).await,
    }
    .map_err(hashing_failed)?;
    let Some(account) = account.filter(|_| verified) else {
        return Err(invalid_credentials());
    };
    guess_succeeded(&state.limits, &key, &address);
    let access_token = state
        .keys
        .issue_versioned(&account.id.to_string(), &account.email, account.role, account.token_version)
        .map_err(ApiError::internal)?;
    let body = TokenResponse { access_token, token_type: "Bearer", expires_in: state.token_ttl_secs };
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// The caller's account.
#[utoipa::path(
    get, path = "/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = User),
        (status = 401, description = "Missing, invalid or expired token, or the account is gone", body = Problem,
            content_type = PROBLEM, headers(("WWW-Authenticate" = String, description = "Bearer challenge"))),
    )
)]
async fn get_me(State(state): State<AppState>, user: AuthUser) -> Result<Json<User>, ApiError> {
    Ok(Json(current_account(&state, &user).await?.into()))
}

/// Change the caller's display name or password (the password needs `current_password`).
#[utoipa::path(
    patch, path = "/v1/users/me", tag = "users",
    request_body(content = UpdateMeRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, invalid or expired token, or the account is gone", body = Problem,
            content_type = PROBLEM, headers(("WWW-Authenticate" = String, description = "Bearer challenge"))),
        (status = 403, description = "`current_password` is wrong", body = Problem, content_type = PROBLEM),
        (status = 413, description = "The body is too large", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid fields, one entry in `errors` each", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many password attempts for this account", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Every password hashing slot is busy and the queue is full", body = Problem,
            content_type = PROBLEM, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn update_me(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    user: AuthUser,
    Json(input): Json<UpdateMeRequest>,
) -> Result<Json<User>, ApiError> {
    let update = input.validate().map_err(ApiError::validation)?;
    let account = current_account(&state, &user).await?;
    let mut changes = AccountChanges { display_name: update.display_name, password_hash: None, role: None };
    if let Some((new, current)) = update.password_change {
        // The current password is a password guess like a login: the same limits.
        let (key, address) = (account_key(&account.email), address_key(ip));
        check_guess(&state.limits, &key, &address)?;
        let verified = state
            .hasher
            .verify(current.expose(), account.password_hash.expose())
            .await
            .map_err(hashing_failed)?;
        if !verified {
            return Err(ApiError::forbidden("the current password is wrong"));
        }
        guess_succeeded(&state.limits, &key, &address);
        changes.password_hash =
            Some(Secret::new(state.hasher.hash(new.expose()).await.map_err(hashing_failed)?));
    }
    let updated = state.store.update(account.id, &changes).await?.ok_or_else(account_gone)?;
    Ok(Json(updated.into()))
}

/// One account (admins: any; services with `users:read`: any; others: their own).
///
/// A service token is one of `kit::service_auth` (orders checks the customer of an order with it).
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "Account id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = PROBLEM),
        AuthErrors,
        (status = 403, description = "Another user's account, and not an admin; or a service token without \
            `users:read`", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such account", body = Problem, content_type = PROBLEM),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<User>, ApiError> {
    match principal {
        Principal::User(user) if user.role == Role::Admin || user.id == id.to_string() => {}
        Principal::User(_) => return Err(ApiError::forbidden("only admins may read other users' accounts")),
        Principal::Service(service) => Caller::Service(service).require(USERS_READ)?,
    }
    let account =
        state.store.get(id).await?.ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    Ok(Json(account.into()))
}

/// Change an account's role (admin). A change revokes the account's tokens at once, in every
/// service (within their token-check cache time); the last admin cannot be demoted (409).
#[utoipa::path(
    patch, path = "/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "Account id")),
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account as changed", body = User),
        (status = 400, description = "The id is not a UUID, or the body is not JSON", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
        (status = 404, description = "No such account", body = Problem, content_type = PROBLEM),
        (status = 409, description = "It would demote the last admin", body = Problem, content_type = PROBLEM),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = PROBLEM),
        (status = 422, description = "An unknown field or role", body = Problem, content_type = PROBLEM),
    )
)]
async fn update_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let changes = AccountChanges { role: input.role, ..AccountChanges::default() };
    let updated = state
        .store
        .update(id, &changes)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    tracing::info!(user_id = %id, role = ?updated.role, by = %admin.id, "role changed");
    Ok(Json(updated.into()))
}

/// List accounts, oldest first (admin).
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = UserPage),
        (status = 400, description = "Invalid query parameters", body = Problem, content_type = PROBLEM),
        AuthErrors,
        NotAdmin,
    )
)]
async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let (limit, offset) = query.validate().map_err(ApiError::invalid_params)?;
    // One more row tells whether there is a next page.
    let mut accounts = state.store.list(limit + 1, offset).await?;
    let next_offset = kit::paging::finish(&mut accounts, limit, offset);
    let items = accounts.into_iter().map(User::from).collect();
    Ok(Json(UserPage { items, limit, offset, next_offset }))
}
