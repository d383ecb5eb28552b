//! Service-to-service credentials (decision 007): each service signs its own short-lived tokens with
//! its own Ed25519 key ([`ServiceSigner`]); a callee accepts them only from keys it trusts, only when
//! addressed to it, and only with the scopes it allows that caller ([`ServiceVerifier`]).
//!
//! A token is a JWT signed with EdDSA, its header naming the key (`kid`), its claims `iss` (the
//! calling service), `aud` (the one callee), `scope` (space-separated, `inventory:reserve`), `iat`
//! and `exp` (60 s). What it cannot do:
//!
//! - be forged by another service: only the holder of the private key signs with it; callees hold
//!   public keys only (decision 004's shared HS256 secret let any service mint admin anywhere);
//! - be replayed against another service: `aud` must be the callee's name (a token minted for catalog
//!   is refused by inventory);
//! - grant more than the callee allows: the scopes a key may carry are the callee's configuration
//!   (`trusted_keys.<kid>.scopes`), so a stolen catalog key cannot reserve stock.
//!
//! Keys rotate by id: a callee trusts several `kid`s at once; the caller signs with the newest.
//!
//! [`Caller`] is the extractor of routes open to services and admins: an admin's user token, or a
//! service token, which [`Caller::require`] checks for a scope; a customer's token is a 403.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header;
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::BoxError;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::secret::Secret;

/// How long a service token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// The claims of a service token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// The calling service.
    pub iss: String,
    /// The callee.
    pub aud: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at.
    pub exp: u64,
}

/// A key a callee trusts (`<service>.trusted_keys.<kid>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustedKey {
    /// The service that holds the private key.
    pub issuer: String,
    /// Its Ed25519 public key, base64url (as `shop keygen` prints it).
    pub public_key: String,
    /// The scopes tokens signed with it may use here; others are ignored.
    pub scopes: Vec<String>,
}

/// An Ed25519 key pair from a 32-byte seed.
#[derive(Clone)]
pub struct KeyPair {
    seed: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair (from the operating system's random source).
    pub fn generate() -> Result<Self, BoxError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no random source for a key: {e}"))?;
        Ok(Self { seed })
    }

    /// The key pair of a base64url seed (`signing_key`).
    pub fn from_seed(seed: &str) -> Result<Self, String> {
        let bytes =
            URL_SAFE_NO_PAD.decode(seed.trim()).map_err(|_| "signing_key is not base64url".to_owned())?;
        let seed = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            "signing_key must be a 32-byte Ed25519 seed (base64url, 43 characters)".to_owned()
        })?;
        Ok(Self { seed })
    }

    /// The seed, base64url: the secret to configure as `signing_key`.
    pub fn seed(&self) -> Secret<String> {
        Secret::new(URL_SAFE_NO_PAD.encode(self.seed))
    }

    /// The public key, base64url: what callees configure as `trusted_keys.<kid>.public_key`.
    pub fn public_key(&self) -> String {
        let signing = ed25519_dalek::SigningKey::from_bytes(&self.seed);
        URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes())
    }

    fn encoding_key(&self) -> EncodingKey {
        // PKCS#8 v1 of an Ed25519 private key (RFC 8410 §7): a fixed prefix, then the seed.
        const PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        EncodingKey::from_ed_der(&der)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs this service's tokens; cheap to clone. Tokens are cached per audience and scopes until a
/// quarter of their lifetime is left.
#[derive(Clone)]
pub struct ServiceSigner(Arc<SignerInner>);

struct SignerInner {
    issuer: String,
    kid: String,
    key: EncodingKey,
    cache: Mutex<HashMap<(String, String), (u64, String)>>,
}

impl std::fmt::Debug for ServiceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSigner")
            .field("issuer", &self.0.issuer)
            .field("kid", &self.0.kid)
            .finish_non_exhaustive()
    }
}

impl ServiceSigner {
    /// `issuer`'s signer with key `kid`.
    pub fn new(issuer: &str, kid: &str, pair: &KeyPair) -> Self {
        Self(Arc::new(SignerInner {
            issuer: issuer.to_owned(),
            kid: kid.to_owned(),
            key: pair.encoding_key(),
            cache: Mutex::default(),
        }))
    }

    /// The signing service.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// A token for calls to `audience` with `scopes`.
    pub fn token(&self, audience: &str, scopes: &[&str]) -> Result<String, BoxError> {
        let scope = scopes.join(" ");
        let now = now_secs();
        let cache_key = (audience.to_owned(), scope);
        let mut cache = self.0.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((exp, token)) = cache.get(&cache_key)
            && *exp > now + TOKEN_TTL.as_secs() / 4
        {
            return Ok(token.clone());
        }
        let claims = ServiceClaims {
            iss: self.0.issuer.clone(),
            aud: audience.to_owned(),
            scope: cache_key.1.clone(),
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.0.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.0.key)?;
        cache.insert(cache_key, (claims.exp, token.clone()));
        Ok(token)
    }
}

/// Checks service tokens addressed to this service; see the [module docs](self).
#[derive(Clone)]
pub struct ServiceVerifier(Arc<VerifierInner>);

struct VerifierInner {
    audience: String,
    keys: HashMap<String, (TrustedKey, DecodingKey)>,
}

impl std::fmt::Debug for ServiceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&String> = self.0.keys.keys().collect();
        f.debug_struct("ServiceVerifier").field("audience", &self.0.audience).field("kids", &kids).finish()
    }
}

/// A verified service caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCaller {
    /// The calling service.
    pub name: String,
    /// The scopes it has here: what it asked for and this service allows its key.
    pub scopes: Vec<String>,
}

impl ServiceVerifier {
    /// A verifier for tokens addressed to `audience` signed with one of `trusted` (by `kid`).
    pub fn new(audience: &str, trusted: &BTreeMap<String, TrustedKey>) -> Result<Self, String> {
        let keys = trusted
            .iter()
            .map(|(kid, key)| {
                let decoding = DecodingKey::from_ed_components(&key.public_key).map_err(|_| {
                    format!("trusted_keys.{kid}.public_key is not an Ed25519 public key (base64url)")
                })?;
                if key.issuer.is_empty() {
                    return Err(format!("trusted_keys.{kid}.issuer must name the service holding the key"));
                }
                Ok((kid.clone(), (key.clone(), decoding)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self(Arc::new(VerifierInner { audience: audience.to_owned(), keys })))
    }

    /// The caller a service token names, if the token is valid here.
    pub fn verify(&self, token: &str) -> Result<ServiceCaller, ApiError> {
        let invalid = || ApiError::unauthorized("the service token is invalid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let kid = header.kid.ok_or_else(invalid)?;
        let (trusted, key) = self
            .0
            .keys
            .get(&kid)
            .ok_or_else(|| ApiError::unauthorized("the service token's key is not trusted here"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[&self.0.audience]);
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<ServiceClaims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("the service token has expired")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    ApiError::unauthorized("the service token is meant for another service")
                }
                _ => invalid(),
            })?
            .claims;
        let scopes = claims
            .scope
            .split(' ')
            .filter(|s| trusted.scopes.iter().any(|t| t == s))
            .map(str::to_owned)
            .collect();
        Ok(ServiceCaller { name: claims.iss, scopes })
    }
}

/// Who calls a route open to services and admins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An admin, with a user token.
    Admin(AuthUser),
    /// A service, with a service token.
    Service(ServiceCaller),
}

impl Caller {
    /// Admins may do anything; a service needs `scope` (else 403).
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        match self {
            Self::Admin(_) => Ok(()),
            Self::Service(service) if service.scopes.iter().any(|s| s == scope) => Ok(()),
            Self::Service(service) => Err(ApiError::forbidden(format!(
                "the {} service's token lacks the scope {scope}",
                service.name
            ))),
        }
    }

    /// The actor to record in an audit entry: the admin's id or `service:<name>`.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin(user) => user.id.clone(),
            Self::Service(service) => format!("service:{}", service.name),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::Service(service) => Ok(Self::Service(service)),
            Principal::User(user) if user.role == Role::Admin => Ok(Self::Admin(user)),
            Principal::User(_) => Err(ApiError::forbidden("this operation is for other services and admins")),
        }
    }
}

/// Whoever is authenticated: a user (any role) or a service. For routes open to both, such as
/// idempotent POSTs whose keys belong to the caller ([`Principal::scope`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user token.
    User(AuthUser),
    /// A service token.
    Service(ServiceCaller),
}

impl Principal {
    /// A name unique per caller: the user's id, or `service:<name>`.
    pub fn scope(&self) -> String {
        match self {
            Self::User(user) => user.id.clone(),
            Self::Service(service) => format!("service:{}", service.name),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| crate::auth::bearer_token(v).ok())
            .map(str::to_owned);
        // Service tokens are EdDSA; user tokens are HS256 (decision 007).
        let is_service = token
            .as_deref()
            .and_then(|t| jsonwebtoken::decode_header(t).ok())
            .is_some_and(|h| h.alg == Algorithm::EdDSA);
        if let (true, Some(token)) = (is_service, token) {
            let verifier = parts
                .extensions
                .get::<ServiceVerifier>()
                .ok_or_else(|| ApiError::unauthorized("this service accepts no service tokens"))?;
            return verifier.verify(&token).map(Self::Service);
        }
        AuthUser::from_request_parts(parts, state).await.map(Self::User)
    }
}

#[cfg(test)]
mod tests;
