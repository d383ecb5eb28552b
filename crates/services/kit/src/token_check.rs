//! [`UsersTokenCheck`]: a service other than users asks users whether a token is still current.
//!
//! It calls `GET /v1/users/me` with the caller's own token (users answers 401 for a revoked token:
//! its own [`TokenCheck`] compares the token version with the account's) and compares the role users
//! reports with the token's, through the kit's [`Downstream`] (palisade client stack: deadline,
//! retry, breaker). Answers are cached per token for `ttl` (default 5 s), so a burst of admin calls
//! costs one lookup, and a demotion takes effect within `ttl`. When users cannot answer, the request
//! is refused with 503 and `Retry-After` (fail closed: an unverifiable admin token grants nothing).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Method, StatusCode};
use lru::LruCache;
use serde::Deserialize;
use tokio::time::Instant;

use crate::auth::{Claims, Role, TokenCheck, revoked};
use crate::client::Downstream;
use crate::config::DownstreamConfig;
use crate::error::ApiError;

/// Tokens remembered at most (the least recently used goes).
const CACHED_TOKENS: usize = 10_000;

/// Asks users whether a token is current; see the [module docs](self).
#[derive(Debug)]
pub struct UsersTokenCheck {
    users: Downstream,
    ttl: Duration,
    cache: Mutex<LruCache<String, (Instant, bool)>>,
}

#[derive(Deserialize)]
struct Me {
    id: String,
    role: Role,
}

impl UsersTokenCheck {
    /// A check against users at `config.url`, caching answers for `ttl`.
    pub fn new(config: &DownstreamConfig, ttl: Duration) -> Result<Self, palisade::InvalidConfig> {
        let cache = LruCache::new(NonZeroUsize::new(CACHED_TOKENS).unwrap_or(NonZeroUsize::MIN));
        Ok(Self {
            users: Downstream::from_setting(crate::ops::LOCKOUT_BREAKER, crate::auth::TOKEN_ISSUER, config)?,
            ttl,
            cache: Mutex::new(cache),
        })
    }

    fn cached(&self, token: &str) -> Option<bool> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(token) {
            Some(&(at, current)) if at.elapsed() < self.ttl => Some(current),
            _ => None,
        }
    }

    async fn ask(&self, token: &str, claims: &Claims) -> Result<bool, ApiError> {
        let authorization = format!("Bearer {token}");
        let answer = self
            .users
            .send::<(), Me>(Method::GET, "/v1/users/me", None, &[("authorization", &authorization)])
            .await;
        match answer {
            Ok(me) => Ok(me.id == claims.sub && me.role == claims.role),
            Err(err) if matches!(err.status(), Some(StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND)) => {
                Ok(false)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot check a token with the users service");
                Err(ApiError::unavailable(
                    Duration::from_secs(1),
                    "the token cannot be checked with the users service right now",
                ))
            }
        }
    }
}

impl TokenCheck for UsersTokenCheck {
    fn check<'a>(&'a self, token: &'a str, claims: &'a Claims) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let current = if let Some(current) = self.cached(token) {
                current
            } else {
                let current = self.ask(token, claims).await?;
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .put(token.to_owned(), (Instant::now(), current));
                current
            };
            if current { Ok(()) } else { Err(revoked()) }
        })
    }
}
