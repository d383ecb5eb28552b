//! HS256 JWTs: [`JwtKeys::issue`] (users signs tokens at login) and the extractors every service uses
//! to verify them: [`AuthUser`] (any role) and [`AdminUser`] (role `admin`).
//!
//! A request without a bearer token (no `Authorization` header, or another scheme) is a 401 problem
//! with `WWW-Authenticate: Bearer realm="shop"` and no error code (RFC 6750 §3.1); a malformed,
//! badly signed or expired token adds `error="invalid_token"` and an `error_description`. A valid
//! token of the wrong role is a 403. The keys reach the extractors through request extensions
//! ([`crate::server`] installs them), so any handler state works.
//!
//! **Revocation.** A token carries the account's token version (`ver`), which users bumps on every
//! password or role change. A valid signature is not enough when a [`TokenChecker`] is in the
//! request's extensions: the extractors ask it whether the token is still current, and a revoked one
//! is a 401. Users checks its own database; the other services ask users (through
//! [`crate::token_check::UsersTokenCheck`], cached for a few seconds), so a demoted admin loses admin
//! power everywhere within that cache time, not at the token's expiry.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Buys things.
    Customer,
    /// Manages the catalog, stock and users.
    Admin,
}

/// The claims of a shop token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// The user's role.
    pub role: Role,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// The account's token version when issued (0 for tokens issued before versions existed).
    #[serde(default)]
    pub ver: i64,
}

/// The service that issues tokens and answers whether one is still current.
pub const TOKEN_ISSUER: &str = "users";

/// Whether a verified token is still current (not revoked by a password or role change).
pub trait TokenCheck: Send + Sync + 'static {
    /// `Ok` when `claims` (verified, from `token`) are current; else the rejection (401 revoked, 503
    /// when it cannot be told right now).
    fn check<'a>(&'a self, token: &'a str, claims: &'a Claims) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// A [`TokenCheck`] in request extensions, consulted by [`AuthUser`] and [`AdminUser`].
#[derive(Clone)]
pub struct TokenChecker(Arc<dyn TokenCheck>);

impl TokenChecker {
    /// Wraps `check`.
    pub fn new(check: impl TokenCheck) -> Self {
        Self(Arc::new(check))
    }
}

impl fmt::Debug for TokenChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenChecker")
    }
}

/// The 401 for a token whose account changed password or role since it was issued.
pub fn revoked() -> ApiError {
    ApiError::unauthorized("the token was revoked (password or role changed): log in again")
}

/// Signing and verifying keys for one secret; cheap to clone.
#[derive(Clone)]
pub struct JwtKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys").field("secret", &"[redacted]").field("ttl", &self.0.ttl).finish()
    }
}

impl JwtKeys {
    /// Keys for `secret`; issued tokens live `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }))
    }

    /// Signs a token for user `sub` at token version 0, valid for the keys' TTL.
    pub fn issue(&self, sub: &str, email: &str, role: Role) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_versioned(sub, email, role, 0)
    }

    /// Signs a token for user `sub` whose account is at token version `ver`.
    pub fn issue_versioned(
        &self,
        sub: &str,
        email: &str,
        role: Role,
        ver: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            email: email.to_owned(),
            role,
            iat: now,
            exp: now + self.0.ttl.as_secs(),
            ver,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0.encoding)
    }

    /// Verifies `token`: signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized("the token has expired"),
                _ => ApiError::unauthorized("the token is invalid"),
            })
    }
}

/// An authenticated caller (any role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The user id (`sub`).
    pub id: String,
    /// The user's email.
    pub email: String,
    /// The user's role.
    pub role: Role,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let keys = parts.extensions.get::<JwtKeys>().ok_or_else(|| {
            ApiError::internal("JwtKeys missing from request extensions (not served by kit::server)")
        })?;
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| no_credentials("an Authorization: Bearer token is required"))?;
        let token = bearer_token(value)?;
        let claims = keys.verify(token)?;
        if let Some(TokenChecker(check)) = parts.extensions.get::<TokenChecker>().cloned() {
            check.check(token, &claims).await?;
        }
        Ok(Self { id: claims.sub, email: claims.email, role: claims.role })
    }
}

const NOT_BEARER: &str = "the Authorization header must be `Bearer <token>`";

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer_token(value: &HeaderValue) -> Result<&str, ApiError> {
    let value = value.to_str().map_err(|_| no_credentials(NOT_BEARER))?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, …) carries no bearer credentials.
        return Err(no_credentials(NOT_BEARER));
    }
    match token.trim() {
        "" => Err(ApiError::unauthorized(NOT_BEARER)),
        token => Ok(token),
    }
}

/// 401 for a request that carries no bearer token: the challenge has no error code (RFC 6750 §3.1).
fn no_credentials(detail: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED)
        .with_detail(detail)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"shop\""))
}

/// An authenticated caller with role `admin` (else 403).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.role == Role::Admin {
            Ok(Self(user))
        } else {
            Err(ApiError::forbidden("this operation needs the admin role"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    use http::{Request, StatusCode, header};

    use super::{AdminUser, AuthUser, Claims, JwtKeys, Role};

    /// The extracted admin, or the rejection's status and `WWW-Authenticate` header.
    async fn extract_admin(
        keys: &JwtKeys,
        auth: Option<&str>,
    ) -> Result<AdminUser, (StatusCode, Option<String>)> {
        let mut req = Request::builder().uri("/");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(keys.clone());
        AdminUser::from_request_parts(&mut parts, &()).await.map_err(|e| {
            if e.status() == StatusCode::UNAUTHORIZED {
                assert!(e.problem().detail.is_some());
            }
            let res = e.into_response();
            let challenge =
                res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
            (res.status(), challenge)
        })
    }

    const NO_CREDENTIALS: &str = r#"Bearer realm="shop""#;

    fn invalid_token(description: &str) -> (StatusCode, Option<String>) {
        let challenge =
            format!(r#"Bearer realm="shop", error="invalid_token", error_description="{description}""#);
        (StatusCode::UNAUTHORIZED, Some(challenge))
    }

    #[tokio::test]
    async fn issue_verify_and_roles() {
        let keys = JwtKeys::new(b"secret", Duration::from_secs(60));
        let admin = keys.issue("u1", "a@example.com", Role::Admin).unwrap();
        let customer = keys.issue("u2", "c@example.com", Role::Customer).unwrap();
        let user = extract_admin(&keys, Some(&format!("Bearer {admin}"))).await.unwrap();
        assert_eq!(user.0, AuthUser { id: "u1".into(), email: "a@example.com".into(), role: Role::Admin });
        assert_eq!(extract_admin(&keys, Some(&format!("bEARER  {admin} "))).await.unwrap(), user);
        assert_eq!(
            extract_admin(&keys, Some(&format!("Bearer {customer}"))).await,
            Err((StatusCode::FORBIDDEN, None))
        );
        let expired = keys
            .sign(&Claims {
                sub: "u1".into(),
                email: "a@example.com".into(),
                role: Role::Admin,
                iat: 1,
                exp: 2,
                ver: 0,
            })
            .unwrap();
        let err = keys.verify(&expired).unwrap_err();
        assert_eq!(err.problem().detail.as_deref(), Some("the token has expired"));
    }

    #[tokio::test]
    async fn a_request_without_a_bearer_token_gets_a_challenge_without_an_error_code() {
        let keys = JwtKeys::new(b"secret", Duration::from_secs(60));
        let admin = keys.issue("u1", "a@example.com", Role::Admin).unwrap();
        let unauthorized = Err((StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS.to_owned())));
        for auth in [None, Some("Basic dXNlcjpwYXNz"), Some(admin.as_str()), Some("Bearertoken")] {
            assert_eq!(extract_admin(&keys, auth).await, unauthorized, "{auth:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_or_expired_token_gets_invalid_token() {
        let keys = JwtKeys::new(b"secret", Duration::from_secs(60));
        let other = JwtKeys::new(b"other", Duration::from_secs(60))
            .issue("u1", "a@example.com", Role::Admin)
            .unwrap();
        let expired = keys
            .sign(&Claims {
                sub: "u1".into(),
                email: "a@example.com".into(),
                role: Role::Admin,
                iat: 1,
                exp: 2,
                ver: 0,
            })
            .unwrap();
        let cases = [
            (format!("Bearer {other}"), "the token is invalid"),
            ("Bearer not.a.token".to_owned(), "the token is invalid"),
            (format!("Bearer {expired}"), "the token has expired"),
            ("Bearer ".to_owned(), "the Authorization header must be `Bearer <token>`"),
        ];
        for (auth, description) in cases {
            assert_eq!(extract_admin(&keys, Some(&auth)).await, Err(invalid_token(description)), "{auth}");
        }
    }
}
