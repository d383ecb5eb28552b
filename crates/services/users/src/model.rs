//! The users service's types: what the API sends and receives, and their validation.
//!
//! Types that carry a password hold it in a [`Secret`], so their `Debug` output never shows it.
//!
//! Lengths are counted in characters of the value as the client sent it, before trimming, so that
//! the spec's `maxLength` is exactly what is checked; `email` and `display_name` are then stored
//! trimmed (a display name must not be blank).

use kit::auth::Role;
use kit::error::FieldError;
use kit::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in characters (argon2 hashes anything; this bounds the work per request).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Longest accepted email address (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest display name, in characters as sent.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

const EMAIL_TOO_LONG: &str = "must be at most 254 characters";

/// An account as the API shows it (never with its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    /// Identifier (the `sub` of the user's tokens).
    pub id: Uuid,
    /// Email address, lowercase.
    #[schema(format = Email, example = "alice@example.com")]
    pub email: String,
    /// Name to show, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Alice")]
    pub display_name: Option<String>,
    /// `customer` or `admin`.
    pub role: Role,
    /// When the account was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the account was last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The data of a `user.registered` event (subject: the account's id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The new account.
    pub user_id: Uuid,
    /// Its email, lowercase.
    pub email: String,
    /// Its display name (`null` when none was given).
    pub name: Option<String>,
}

/// The event type of [`UserRegistered`].
pub const USER_REGISTERED: &str = "user.registered";

/// The body of `POST /v1/users`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address, at most 254 characters as sent; stored trimmed and lowercase, unique.
    #[schema(format = Email, example = "alice@example.com", max_length = 254)]
    pub email: String,
    /// 12–256 characters.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 256,
        example = "correct horse battery staple")]
    pub password: Secret<String>,
    /// Name to show: 1–100 characters as sent (surrounding whitespace counts), not blank; stored
    /// trimmed.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "Alice")]
    pub display_name: Option<String>,
}

impl RegisterRequest {
    /// Checks every field and returns the normalised email and display name.
    pub fn validate(&self) -> Result<(String, Option<String>), Vec<FieldError>> {
        let mut errors = Vec::new();
        let email = normalize_email(&self.email);
        let email_check = if self.email.chars().count() > MAX_EMAIL_CHARS {
            Err(EMAIL_TOO_LONG) // counted as sent, like the spec's maxLength
        } else {
            check_email(&email)
        };
        if let Err(detail) = email_check {
            errors.push(FieldError::new("#/email", detail));
        }
        if let Err(detail) = check_password(self.password.expose()) {
            errors.push(FieldError::new("#/password", detail));
        }
        let display_name = self.display_name.as_deref();
        if let Some(Err(detail)) = display_name.map(check_display_name) {
            errors.push(FieldError::new("#/display_name", detail));
        }
        let display_name = display_name.map(|name| name.trim().to_owned());
        if errors.is_empty() { Ok((email, display_name)) } else { Err(errors) }
    }
}

/// The body of `POST /v1/sessions`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address (case-insensitive).
    #[schema(format = Email, example = "alice@example.com", max_length = 254)]
    pub email: String,
    /// The account's password.
    #[schema(value_type = String, format = Password, example = "correct horse battery staple", max_length = 256)]
    pub password: Secret<String>,
}

impl LoginRequest {
    /// Refuses what no account can have (longer than registration allows) before any hashing: a
    /// 64 KiB password would otherwise be hashed in full.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.email.chars().count() > MAX_EMAIL_CHARS {
            errors.push(FieldError::new("#/email", "must be at most 254 characters"));
        }
        if self.password.expose().chars().count() > MAX_PASSWORD_CHARS {
            errors.push(FieldError::new("#/password", "must be at most 256 characters"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// The answer to a successful login (RFC 6749 §5.1 field names).
#[derive(Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (HS256) to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The body of `PATCH /v1/users/me`: absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// New display name (1–100 characters as sent, not blank; stored trimmed), or `null` to remove
    /// it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "\\S", example = "Alice B.")]
    pub display_name: Option<Option<String>>,
    /// New password (12–256 characters); needs `current_password` (and the other way round: the
    /// spec's `dependentRequired`).
    #[serde(default, deserialize_with = "some_secret")]
    #[schema(value_type = String, required = false, format = Password, min_length = 12, max_length = 256)]
    pub password: Option<Secret<String>>,
    /// The current password, required to change it, and accepted only with `password`.
    #[serde(default, deserialize_with = "some_secret")]
    #[schema(value_type = String, required = false, format = Password)]
    pub current_password: Option<Secret<String>>,
}

/// The body of `PATCH /v1/users/{id}` (admin): absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The new role.
    #[serde(default)]
    pub role: Option<Role>,
}

/// A validated `PATCH /v1/users/me`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateMe {
    /// `Some(None)` removes the display name; `None` keeps it.
    pub display_name: Option<Option<String>>,
    /// The new password and the current one, when changing it.
    pub password_change: Option<(Secret<String>, Secret<String>)>,
}

impl UpdateMeRequest {
    /// Checks every field.
    pub fn validate(self) -> Result<UpdateMe, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(Some(name)) = &self.display_name
            && let Err(detail) = check_display_name(name)
        {
            errors.push(FieldError::new("#/display_name", detail));
        }
        let display_name = self.display_name.map(|name| name.map(|n| n.trim().to_owned()));
        if let Some(password) = &self.password
            && let Err(detail) = check_password(password.expose())
        {
            errors.push(FieldError::new("#/password", detail));
        }
        let password_change = match (self.password, self.current_password) {
            (Some(new), Some(current)) => Some((new, current)),
            (Some(_), None) => {
                errors.push(FieldError::new("#/current_password", "is required to change the password"));
                None
            }
            (None, Some(_)) => {
                errors.push(FieldError::new("#/current_password", "is only accepted with a new password"));
                None
            }
            (None, None) => None,
        };
        if errors.is_empty() { Ok(UpdateMe { display_name, password_change }) } else { Err(errors) }
    }
}

/// A present secret must be a string (`null` is refused, as the spec's `type: string` says); absent is
/// `None` (by `#[serde(default)]`).
fn some_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret<String>>, D::Error> {
    String::deserialize(deserializer).map(|value| Some(Secret::new(value)))
}

/// JSON Schema for "both or neither" of `password` and `current_password`, which utoipa cannot
/// derive: `dependentRequired` on `UpdateMeRequest`.
pub fn require_password_pair(doc: &mut utoipa::openapi::OpenApi) {
    if let Some(object) = kit::openapi::object_mut(doc, "UpdateMeRequest", None) {
        let pair = serde_json::json!({ "password": ["current_password"], "current_password": ["password"] });
        kit::openapi::add_keyword(object, "dependentRequired", pair);
    }
}

/// Distinguishes an absent field (`None`, by `#[serde(default)]`) from `null` (`Some(None)`).
#[allow(clippy::option_option)] // absent, null and a value mean three different things
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `email` trimmed, in Unicode NFC and lowercased: the form the store keeps and the rate limiter
/// keys on, so `é` typed precomposed or as `e` + combining accent is one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().nfc().collect::<String>().to_lowercase()
}

const INVISIBLE: &str = kit::text::Refused::Invisible.detail();

/// A pragmatic address check (not the whole of RFC 5322): one `@`, a local part of 1–64 printable
/// characters without spaces, and a domain of at least two dot-separated labels of letters, digits
/// and inner hyphens.
fn check_email(email: &str) -> Result<(), &'static str> {
    const INVALID: &str = "must be an email address like name@example.com";
    if email.chars().any(kit::text::is_invisible) {
        return Err(INVISIBLE);
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(EMAIL_TOO_LONG);
    }
    let Some((local, domain)) = email.split_once('@') else { return Err(INVALID) };
    let local_ok = (1..=64).contains(&local.len())
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if local_ok && domain_ok { Ok(()) } else { Err(INVALID) }
}

fn check_password(password: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Err("must be at least 12 characters")
    } else if chars > MAX_PASSWORD_CHARS {
        Err("must be at most 256 characters")
    } else {
        Ok(())
    }
}

/// `name` as sent: its length counts surrounding whitespace; what is stored (trimmed) must be
/// non-empty and free of control characters.
/// [`kit::text::check`] (the schema's pattern says the same) and at most 100 characters as sent.
fn check_display_name(name: &str) -> Result<(), &'static str> {
    kit::text::check(name).map_err(kit::text::Refused::detail)?;
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS { Err("must be at most 100 characters") } else { Ok(()) }
}

pub use kit::paging::{DEFAULT_LIMIT, MAX_LIMIT};

/// Query parameters of `GET /v1/users`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

impl ListQuery {
    /// The validated `(limit, offset)`.
    pub fn validate(&self) -> Result<(u32, u64), Vec<FieldError>> {
        let mut errors = Vec::new();
        let page = kit::paging::check(self.limit, self.offset, &mut errors);
        if errors.is_empty() { Ok(page) } else { Err(errors) }
    }
}

/// One page of `GET /v1/users`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// The accounts, oldest first.
    pub items: Vec<User>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The `offset` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::{LoginRequest, RegisterRequest, UpdateMeRequest, check_email, normalize_email};

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org", "x_y-z@b-c.io", "üser@exämple.de"] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@@b.co", "a b@c.co", "a@-b.co", "a@b..co", ".a@b.co",
            "a@b_c.co",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_email(&format!("{}@b.co", "a".repeat(65))).is_err());
        assert_eq!(normalize_email("  Alice@Example.COM "), "alice@example.com");
    }

    #[test]
    fn emails_are_nfc_and_invisible_characters_are_refused() {
        // "é" precomposed and as "e" + U+0301: one account.
        assert_eq!(normalize_email("Ren\u{e9}@example.com"), normalize_email("Rene\u{301}@example.com"));
        assert_eq!(normalize_email("Rene\u{301}@example.com"), "ren\u{e9}@example.com");
        for sneaky in ["ad\u{200B}min@example.com", "admin\u{202E}@example.com", "\u{FEFF}a@example.com"] {
            let email = normalize_email(sneaky);
            assert_eq!(check_email(&email), Err(super::INVISIBLE), "{sneaky:?}");
        }
        for name in ["Ad\u{200D}min", "\u{2067}nimdA", "Ali\u{00AD}ce"] {
            assert_eq!(super::check_display_name(name), Err(super::INVISIBLE), "{name:?}");
        }
        assert_eq!(super::check_display_name("Zoë ∂ 山田"), Ok(()));
    }

    #[test]
    fn register_validation_names_every_field() {
        let req: RegisterRequest =
            serde_json::from_str(r#"{"email":"nope","password":"short","display_name":"  "}"#).unwrap();
        let pointers: Vec<_> = req.validate().unwrap_err().into_iter().map(|e| e.pointer).collect();
        assert_eq!(pointers, ["#/email", "#/password", "#/display_name"]);
        let req: RegisterRequest = serde_json::from_str(
            r#"{"email":" Bob@Example.com","password":"twelve chars","display_name":" Bob "}"#,
        )
        .unwrap();
        assert_eq!(req.validate().unwrap(), ("bob@example.com".to_owned(), Some("Bob".to_owned())));
        let long = format!(r#"{{"email":"a@b.co","password":"{}"}}"#, "p".repeat(257));
        let req: RegisterRequest = serde_json::from_str(&long).unwrap();
        assert_eq!(req.validate().unwrap_err()[0].pointer, "#/password");
    }

    #[test]
    fn lengths_count_what_the_client_sent() {
        // The spec's maxLength is on the value as sent: trimming must not let one more character in.
        let email = format!("{}@{}.{}.{}", "a".repeat(64), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(email.chars().count(), 254);
        let name = "n".repeat(100);
        let register = |email: &str, name: &str| {
            serde_json::from_value::<RegisterRequest>(serde_json::json!({
                "email": email, "password": "twelve chars", "display_name": name
            }))
            .unwrap()
            .validate()
        };
        let pointers: Vec<_> = register(&format!(" {email}"), &format!("{name} "))
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(pointers, ["#/email", "#/display_name"]);
        assert_eq!(
            register(&email, &format!(" {}", &name[1..])).unwrap(),
            (email, Some(name[1..].to_owned()))
        );
        let update = UpdateMeRequest { display_name: Some(Some(format!("{name}\t"))), ..Default::default() };
        assert_eq!(update.validate().unwrap_err()[0].pointer, "#/display_name");
    }

    #[test]
    fn update_distinguishes_absent_null_and_value() {
        let absent: UpdateMeRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.validate().unwrap().display_name, None);
        let null: UpdateMeRequest = serde_json::from_str(r#"{"display_name":null}"#).unwrap();
        assert_eq!(null.validate().unwrap().display_name, Some(None));
        let set: UpdateMeRequest = serde_json::from_str(r#"{"display_name":" Al "}"#).unwrap();
        assert_eq!(set.validate().unwrap().display_name, Some(Some("Al".to_owned())));
        let no_current: UpdateMeRequest =
            serde_json::from_str(r#"{"password":"a new long password"}"#).unwrap();
        assert_eq!(no_current.validate().unwrap_err()[0].pointer, "#/current_password");
        // The spec types both passwords as strings: null is refused, not read as absent.
        for null in [r#"{"password":null}"#, r#"{"current_password":null,"password":"a new long password"}"#]
        {
            assert!(serde_json::from_str::<UpdateMeRequest>(null).is_err(), "{null}");
        }
    }

    #[test]
    fn debug_never_shows_passwords() {
        let register: RegisterRequest =
            serde_json::from_str(r#"{"email":"a@b.co","password":"hunter2-hunter2"}"#).unwrap();
        let login: LoginRequest =
            serde_json::from_str(r#"{"email":"a@b.co","password":"hunter2-hunter2"}"#).unwrap();
        let update: UpdateMeRequest = serde_json::from_str(
            r#"{"password":"new-secret-password","current_password":"hunter2-hunter2"}"#,
        )
        .unwrap();
        let printed = format!("{register:?} {login:?} {update:?} {:?}", update.clone().validate().unwrap());
        assert!(printed.contains("a@b.co"), "{printed}");
        assert!(!printed.contains("hunter2") && !printed.contains("new-secret"), "{printed}");
    }
}
