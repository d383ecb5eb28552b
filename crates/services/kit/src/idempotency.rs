//! Server-side `Idempotency-Key` (the IETF httpapi idempotency-key draft, with Stripe's semantics),
//! written once for every service's POSTs that must take effect once: a middleware ([`layer`]) in
//! front of the route, and a [`Claim`] the handler uses to store its answer in its own transaction.
//!
//! | request | answer |
//! |---|---|
//! | no `Idempotency-Key` (or an empty, non-ASCII or over 255 characters one) | 400 `idempotency-key-missing` / `-invalid` |
//! | a new key | the handler runs; its answer is stored under the key |
//! | the same key while the first request is still running | 409 `idempotency-key-in-flight`, `Retry-After: 1` |
//! | the same key with another method, path or body | 422 `idempotency-key-reused` |
//! | the same key after the first completed | the stored answer again (status, body, `Content-Type`, `Location`, `ETag`), with `Idempotent-Replayed: true` |
//!
//! - **Scope**: keys belong to the caller (the token's `sub`): two callers' keys never collide, and
//!   nobody replays another's answer. The route must be authenticated; the middleware answers 401 itself.
//!   A service token's keys belong to the service (`service:<name>`).
//! - **Fingerprint**: SHA-256 of method, path with query, and body bytes.
//! - **What is stored**: 2xx and 4xx answers, errors included (a replay of a declined payment is
//!   declined again), except 408, 425 and 429, which say "try again". A 5xx (or a handler that never
//!   answered, a crash) stores nothing and frees the key, so a retry runs the request again.
//! - **Atomic with the change**: a handler that writes rows stores its answer in the same
//!   transaction with [`Claim::store`], so after a crash either both the change and its answer exist
//!   or neither; otherwise the middleware stores the answer after the handler returns.
//! - **In flight**: the first request holds the key for `lock_secs` (longer than the request
//!   timeout); a key whose holder crashed is taken over after that.
//! - **Retention**: answers are kept for `retention_secs` (default 24 h), then removed by the
//!   expiry [`Job`]; an expired key is a new key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::db::{Db, SqlPool as _, StoreError};
use crate::error::ApiError;
use crate::jobs::Job;
use crate::outbox::millis;
use crate::service_auth::Principal;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed answer.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;
/// Largest answer body stored for replay.
const MAX_STORED_BODY: usize = 1024 * 1024;
/// Headers of an answer kept for its replay.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

/// Settings (`<service>.idempotency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long a completed answer is replayed (default 86 400 s).
    pub retention_secs: u64,
    /// How long a request holds its key before another may take it over (default 60 s).
    pub lock_secs: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { retention_secs: 86_400, lock_secs: 60 }
    }
}

/// The keys of one service's database; the state of [`layer`].
#[derive(Clone, Debug)]
pub struct Idempotency {
    db: Db,
    config: IdempotencyConfig,
    body_limit: usize,
}

/// What the middleware found for a key.
enum Found {
    /// New (or taken over): run the handler.
    Claimed,
    /// Another request holds it.
    InFlight,
    /// Used with another request.
    Reused,
    /// Completed: its stored answer.
    Done(Response),
}

type Row = (String, Option<i64>, Option<String>, Option<Vec<u8>>, i64, i64);

impl Idempotency {
    /// Keys in `db`; request bodies are read up to `body_limit` bytes (the service's limit).
    pub const fn new(db: Db, config: IdempotencyConfig, body_limit: usize) -> Self {
        Self { db, config, body_limit }
    }

    /// Removes expired keys every minute, until the pool closes or the job is dropped.
    pub fn spawn_expiry(&self) -> Job {
        let this = self.clone();
        Job::spawn("idempotency-expiry", &self.db, Duration::from_secs(60), move || {
            let this = this.clone();
            async move {
                match this.expire(OffsetDateTime::now_utc(), 1_000).await {
                    Ok(removed) => removed >= 1_000,
                    Err(err) => {
                        tracing::warn!(error = %err, "idempotency key expiry failed");
                        false
                    }
                }
            }
        })
    }

    /// Removes up to `limit` keys expired at `now`; returns how many.
    pub async fn expire(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM kit_idempotency WHERE (scope, key) IN \
                           (SELECT scope, key FROM kit_idempotency WHERE expires_at <= $1 LIMIT $2)";
        let now = millis(now);
        Ok(match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query(SQL).bind(now).bind(i64::from(limit)).execute(pool).await?.rows_affected()
            }
            Db::Postgres(pool) => {
                sqlx::query(SQL).bind(now).bind(i64::from(limit)).execute(pool).await?.rows_affected()
            }
        })
    }

    async fn claim(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Found, StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        let secs = |s: u64| i64::try_from(s.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let locked_until = now.saturating_add(secs(self.config.lock_secs));
        let expires_at = now.saturating_add(secs(self.config.retention_secs));
        macro_rules! claim {
            ($pool:expr) => {{
                let pool = $pool;
                let select = format!(
                    "SELECT fingerprint, status, headers, body, locked_until, expires_at FROM kit_idempotency \
                     WHERE scope = $1 AND key = $2{}",
                    pool.dialect().row_lock
                );
                let mut tx = pool.begin_write().await?;
                let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let found = match row {
                    Some((_, _, _, _, _, expires)) if expires <= now => None,
                    other => other,
                };
                let outcome = match found {
                    Some((stored, ..)) if stored != fingerprint => Found::Reused,
                    Some((_, Some(status), headers, body, _, _)) => Found::Done(replay(status, headers, body)),
                    Some((_, None, _, _, until, _)) if until > now => Found::InFlight,
                    _ => {
                        // New, expired, or held by a request that died: (re)start it in flight.
                        let upsert = "INSERT INTO kit_idempotency \
                            (scope, key, fingerprint, status, headers, body, created_at, locked_until, expires_at) \
                            VALUES ($1, $2, $3, NULL, NULL, NULL, $4, $5, $6) \
                            ON CONFLICT (scope, key) DO UPDATE SET fingerprint = $3, status = NULL, headers = NULL, \
                            body = NULL, created_at = $4, locked_until = $5, expires_at = $6";
                        sqlx::query(upsert)
                            .bind(scope)
                            .bind(key)
                            .bind(fingerprint)
                            .bind(now)
                            .bind(locked_until)
                            .bind(expires_at)
                            .execute(&mut *tx)
                            .await?;
                        Found::Claimed
                    }
                };
                tx.commit().await?;
                outcome
            }};
        }
        let outcome = match &self.db {
            Db::Sqlite(pool) => claim!(pool),
            Db::Postgres(pool) => claim!(pool),
        };
        Ok(outcome)
    }

    /// Stores `status`/`headers`/`body` for a key still in flight (the handler did not store it).
    async fn complete(
        &self,
        claim: &Claim,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(), StoreError> {
        let headers = kept_headers(headers);
        macro_rules! run {
            ($pool:expr) => {
                sqlx::query(COMPLETE)
                    .bind(&claim.0.scope)
                    .bind(&claim.0.key)
                    .bind(i64::from(status.as_u16()))
                    .bind(&headers)
                    .bind(body.as_ref())
                    .execute($pool)
                    .await
                    .map(drop)?
            };
        }
        match &self.db {
            Db::Sqlite(pool) => run!(pool),
            Db::Postgres(pool) => run!(pool),
        }
        Ok(())
    }

    /// Frees a key still in flight: its request failed in a way worth retrying.
    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM kit_idempotency WHERE scope = $1 AND key = $2 AND status IS NULL";
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query(SQL).bind(&claim.0.scope).bind(&claim.0.key).execute(pool).await.map(drop)?;
            }
            Db::Postgres(pool) => {
                sqlx::query(SQL).bind(&claim.0.scope).bind(&claim.0.key).execute(pool).await.map(drop)?;
            }
        }
        Ok(())
    }
}

/// Stores an answer under a key in flight; the same SQL on both databases.
const COMPLETE: &str = "UPDATE kit_idempotency SET status = $3, headers = $4, body = $5 \
                        WHERE scope = $1 AND key = $2 AND status IS NULL";

/// The key a request holds while its handler runs: in the request's extensions (take it with
/// `Extension<Claim>`); [`Claim::store`] saves the answer in the handler's transaction.
#[derive(Clone, Debug)]
pub struct Claim(Arc<ClaimInner>);

#[derive(Debug)]
struct ClaimInner {
    scope: String,
    key: String,
    stored: AtomicBool,
}

impl Claim {
    /// The key.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    /// Stores the answer `status` + JSON `body` through `conn` (the handler's transaction, of
    /// either database) and returns it as the response to send once that transaction commits.
    pub fn store<'a, C>(
        &'a self,
        conn: &'a mut C,
        status: StatusCode,
        body: &'a impl Serialize,
        headers: &'a [(HeaderName, HeaderValue)],
    ) -> BoxFuture<'a, Result<Response, StoreError>>
    where
        C: StoreAnswer + ?Sized,
    {
        // Serialized before the future, which then holds no `&impl Serialize` (not `Sync`).
        let bytes = serde_json::to_vec(body).map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())));
        Box::pin(async move {
            let bytes = bytes?;
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            let kept = kept_headers(response.headers());
            conn.store_answer(&self.0.scope, &self.0.key, status.as_u16(), &kept, &bytes).await?;
            self.0.stored.store(true, Ordering::Release);
            Ok(response)
        })
    }
}

/// A connection that can store an idempotent answer: both backends' connections.
pub trait StoreAnswer: Send {
    /// Stores the answer under `scope`/`key` if it is still in flight.
    fn store_answer<'a>(
        &'a mut self,
        scope: &'a str,
        key: &'a str,
        status: u16,
        headers: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

macro_rules! store_answer {
    ($conn:ty) => {
        impl StoreAnswer for $conn {
            fn store_answer<'a>(
                &'a mut self,
                scope: &'a str,
                key: &'a str,
                status: u16,
                headers: &'a str,
                body: &'a [u8],
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(COMPLETE)
                        .bind(scope)
                        .bind(key)
                        .bind(i64::from(status))
                        .bind(headers)
                        .bind(body)
                        .execute(&mut *self)
                        .await
                        .map(drop)
                })
            }
        }
    };
}

store_answer!(sqlx::SqliteConnection);
store_answer!(sqlx::PgConnection);

/// The middleware: `route.route_layer(axum::middleware::from_fn_with_state(idempotency, kit::idempotency::layer))`.
///
/// Only `POST` needs a key: any other method passes through untouched (an idempotent
/// method needs none, and one the route does not serve gets its 405).
pub async fn layer(State(this): State<Idempotency>, request: Request, next: Next) -> Response {
    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    match guarded(&this, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn guarded(this: &Idempotency, request: Request, next: Next) -> Result<Response, Response> {
    let (mut parts, body) = request.into_parts();
    // Who first: a request without credentials is a 401 whatever its key.
    let caller =
        Principal::from_request_parts(&mut parts, &()).await.map_err(IntoResponse::into_response)?.scope();
    let key = key_of(&parts.headers).map_err(IntoResponse::into_response)?;
    let bytes = axum::body::to_bytes(body, this.body_limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail(format!("the request body is larger than {} bytes", this.body_limit))
            .into_response()
    })?;
    let fingerprint = fingerprint(&parts, &bytes);
    let found =
        this.claim(&caller, &key, &fingerprint).await.map_err(|e| ApiError::from(e).into_response())?;
    match found {
        Found::Claimed => {}
        Found::Done(response) => return Ok(response),
        Found::InFlight => {
            return Err(ApiError::new(StatusCode::CONFLICT)
                .with_type("https://palisade.dev/problems/idempotency-key-in-flight", "Request in progress")
                .with_detail("a request with this Idempotency-Key is still being processed; retry later")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                .into_response());
        }
        Found::Reused => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("https://palisade.dev/problems/idempotency-key-reused", "Idempotency-Key reused")
                .with_detail("this Idempotency-Key was used with a different request (method, path or body)")
                .into_response());
        }
    }
    let claim = Claim(Arc::new(ClaimInner { scope: caller, key, stored: AtomicBool::new(false) }));
    parts.extensions.insert(claim.clone());
    let mut unsettled = Unsettled { this: this.clone(), claim: claim.clone(), armed: true };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let response = settle(this, &claim, response).await;
    unsettled.armed = false;
    Ok(response)
}

/// Frees the key of a request dropped before it settled — the client hung up, or a timeout cut the
/// handler — so that a retry runs it again at once instead of meeting 409 until the lock lapses.
/// An answer already stored in the handler's transaction ([`Claim::store`]) is kept: the release
/// only deletes a key still in flight.
struct Unsettled {
    this: Idempotency,
    claim: Claim,
    armed: bool,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (this, claim) = (self.this.clone(), self.claim.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = this.release(&claim).await {
                    tracing::warn!(error = %err, "cannot free the key of a dropped request; it is freed when its lock lapses");
                }
            });
        }
    }
}

/// After the handler: keeps its answer for replays, or frees the key for a retry.
async fn settle(this: &Idempotency, claim: &Claim, response: Response) -> Response {
    let status = response.status();
    let storable =
        (status.is_success() || status.is_client_error()) && !matches!(status.as_u16(), 408 | 425 | 429);
    if !storable {
        if let Err(err) = this.release(claim).await {
            tracing::warn!(error = %err, "cannot free an idempotency key; it is freed when its lock lapses");
        }
        return response;
    }
    if claim.0.stored.load(Ordering::Acquire) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_STORED_BODY).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let _ = this.release(claim).await;
            return ApiError::internal(format!(
                "answer too large to keep for Idempotency-Key replays: {err}"
            ))
            .into_response();
        }
    };
    if let Err(err) = this.complete(claim, parts.status, &parts.headers, &bytes).await {
        // The change is made; only its replay is lost: a retry with this key runs again once the
        // lock lapses. Worth a WARN, not a failed answer.
        tracing::warn!(error = %err, "cannot store the answer of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn key_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(IDEMPOTENCY_KEY).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST)
            .with_type("https://palisade.dev/problems/idempotency-key-missing", "Idempotency-Key missing")
            .with_detail("this operation requires an Idempotency-Key header (a unique value per operation, e.g. a UUID)")
    })?;
    let invalid = || {
        ApiError::new(StatusCode::BAD_REQUEST)
            .with_type("https://palisade.dev/problems/idempotency-key-invalid", "Idempotency-Key invalid")
            .with_detail(format!("the Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"))
    };
    // A structured-field string in the draft; a bare token is accepted too, quotes stripped.
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if text.is_empty() || text.len() > MAX_KEY_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(text.to_owned())
}

fn fingerprint(parts: &http::request::Parts, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str().as_bytes());
    hash.update([0]);
    hash.update(parts.uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    hash.update([0]);
    hash.update(body);
    hash.finalize().iter().fold(String::with_capacity(64), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn kept_headers(headers: &HeaderMap) -> String {
    let kept: Vec<(&str, &str)> = KEPT_HEADERS
        .iter()
        .filter_map(|name| Some((name.as_str(), headers.get(name)?.to_str().ok()?)))
        .collect();
    serde_json::to_string(&kept).unwrap_or_default()
}

fn replay(status: i64, headers: Option<String>, body: Option<Vec<u8>>) -> Response {
    let status =
        u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let mut response = (status, body.unwrap_or_default()).into_response();
    let headers: Vec<(String, String)> =
        headers.and_then(|h| serde_json::from_str(&h).ok()).unwrap_or_default();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests;
