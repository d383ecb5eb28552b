//! `Json`, `Path` and `Query` whose rejections are problem documents.
//!
//! | rejection | status |
//! |---|---|
//! | body without `Content-Type: application/json` | 415 |
//! | body that is not JSON | 400 |
//! | JSON of the wrong shape (missing field, wrong type, array for object) | 422, with the field's pointer |
//! | body over the limit | 413 |
//! | path segment that does not parse | 400 |
//! | path extractor that does not fit its route (wrong number of parameters, unsupported type, no route parameters at all) | 500, logged at ERROR: a server bug |
//! | query string that does not parse | 400, with the parameter's name |
//!
//! [`ClientIp`] gives the client's address (for per-address rate limits; see [`crate::client_ip`])
//! and [`IfNoneMatch`] the `If-None-Match` header; [`Preconditions`] the `If-Match` and
//! `If-None-Match` of a write (RFC 9110 §13), with the 428 and 412 problems every conditional
//! write answers ([`Preconditions::required`], [`Preconditions::failed`]). None of them rejects.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ApiError, FieldError};

mod strict;

/// A JSON request body or response; see the [module docs](self) for rejections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("expected a body with `Content-Type: application/json`"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|err: BytesRejection| {
            ApiError::new(err.status()).with_detail(match err.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    "the request body is larger than the server accepts".to_owned()
                }
                _ => err.body_text(),
            })
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Deserializes `bytes`: syntax errors are 400, shape errors 422 with the field's JSON pointer.
///
/// Structs, at any depth, are read only from JSON objects: serde's derived `Deserialize` would also
/// take an array of the fields in order, which no documented schema allows.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(strict::Strict(&mut de)).map_err(|err| {
        let inner = err.inner();
        if inner.is_data() {
            ApiError::validation(vec![FieldError::new(
                pointer(err.path()),
                strip_position(&inner.to_string()),
            )])
        } else {
            ApiError::bad_request(format!("the request body is not valid JSON: {inner}"))
        }
    })?;
    de.end().map_err(|err| ApiError::bad_request(format!("the request body is not valid JSON: {err}")))?;
    Ok(value)
}

/// `#` and the JSON pointer (RFC 6901) of `path`: `#/lines/1/sku`, with `~` and `/` in keys escaped.
fn pointer(path: &serde_path_to_error::Path) -> String {
    let mut pointer = String::from("#");
    for segment in path {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            // Only non-string map keys, which JSON does not have.
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a segment that does not parse is a 400 problem, an extractor that does not
/// fit its route a 500 (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|err| path_rejection::<T>(&err))
    }
}

/// 400 for what the client sent; 500 (logged) when the route and the extracted type disagree,
/// which no request can fix.
fn path_rejection<T>(err: &PathRejection) -> ApiError {
    let server_bug = match err {
        PathRejection::FailedToDeserializePathParams(inner) => matches!(
            inner.kind(),
            ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. }
        ),
        PathRejection::MissingPathParams(_) => true,
        // `PathRejection` is non-exhaustive: trust axum's own status for what it may add.
        other => other.status().is_server_error(),
    };
    if server_bug {
        ApiError::internal(format!(
            "the path extractor `Path<{}>` does not fit its route: {}",
            std::any::type_name::<T>(),
            err.body_text()
        ))
    } else {
        ApiError::bad_request(format!("invalid path parameter: {}", err.body_text()))
    }
}

/// Query parameters; a query string that does not parse is a 400 problem naming the parameter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded_de(query);
        serde_path_to_error::deserialize(de).map(Query).map_err(|err| {
            let name = err.path().to_string();
            let message = err.inner().to_string();
            ApiError::invalid_params(vec![FieldError::new(name, message)])
        })
    }
}

fn serde_urlencoded_de(query: &str) -> serde_urlencoded::Deserializer<'_> {
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

pub use crate::client_ip::ClientIp;

/// The `If-None-Match` header of a request, for conditional `GET`s. Unlike extracting the whole
/// `HeaderMap` (which clones every header), it copies only this header's values, and nothing when
/// the header is absent.
#[derive(Clone, Debug, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl IfNoneMatch {
    /// Whether the header lists `etag` (a quoted entity tag) or `*`; weak comparison, as RFC 9110
    /// §13.1.2 requires.
    pub fn matches(&self, etag: &str) -> bool {
        self.0.iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get_all(header::IF_NONE_MATCH).iter().cloned().collect()))
    }
}

/// The preconditions of a write: `If-Match` (strong comparison) and `If-None-Match` (weak), as
/// RFC 9110 §13.2.2 evaluates them for a state-changing method. The handler (or its store, inside
/// the transaction that writes) checks them against the resource's current `ETag` with
/// [`Preconditions::hold`]: `false` is a 412. [`Preconditions::is_empty`] tells a blind write
/// (what a 428 refuses, RFC 6585 §3).
///
/// ```
/// use kit::extract::Preconditions;
///
/// let update = Preconditions::new(Some("\"3\""), None);
/// assert!(update.hold(Some("\"3\"")) && !update.hold(Some("\"4\"")) && !update.hold(None));
/// let create = Preconditions::new(None, Some("*"));
/// assert!(create.hold(None) && !create.hold(Some("\"1\"")));
/// assert!(Preconditions::default().is_empty() && Preconditions::default().hold(Some("\"1\"")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
}

/// Whether the comma-separated entity tags `list` (or `*`) name `current`; `weak` allows `W/`.
fn lists(list: &str, current: &str, weak: bool) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        if candidate == "*" {
            return true;
        }
        match candidate.strip_prefix("W/") {
            Some(tag) => weak && tag == current.strip_prefix("W/").unwrap_or(current),
            None => candidate == current,
        }
    })
}

/// The problem type of a 412 ([`Preconditions::failed`]).
pub const PRECONDITION_FAILED: &str = "https://palisade.dev/problems/precondition-failed";
/// The problem type of a 428 ([`Preconditions::required`]).
pub const PRECONDITION_REQUIRED: &str = "https://palisade.dev/problems/precondition-required";

impl Preconditions {
    /// From the two headers' values (several header lines joined with `,`).
    pub fn new(if_match: Option<&str>, if_none_match: Option<&str>) -> Self {
        Self { if_match: if_match.map(str::to_owned), if_none_match: if_none_match.map(str::to_owned) }
    }

    /// Neither header was sent.
    pub const fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// A 428 `precondition-required` (`detail` says which header to send) when neither header was
    /// sent: for writes that must not be blind, because others change the resource concurrently.
    pub fn required(&self, detail: impl Into<String>) -> Result<(), ApiError> {
        if self.is_empty() { Err(precondition_required(detail)) } else { Ok(()) }
    }

    /// Like [`required`](Self::required), but only `If-Match` will do: for writes of a resource
    /// that must already exist (`If-None-Match` alone would let a blind write through).
    pub fn if_match_required(&self, detail: impl Into<String>) -> Result<(), ApiError> {
        if self.if_match.is_none() { Err(precondition_required(detail)) } else { Ok(()) }
    }

    /// The 412 `precondition-failed` of a write whose preconditions do not [hold](Self::hold),
    /// with the resource's `current` `ETag` in the `ETag` header when it exists, so the client can
    /// read again or retry knowingly.
    pub fn failed(detail: impl Into<String>, current: Option<&str>) -> ApiError {
        let err = ApiError::new(StatusCode::PRECONDITION_FAILED)
            .with_type(PRECONDITION_FAILED, "Precondition failed")
            .with_detail(detail);
        match current.and_then(|etag| HeaderValue::from_str(etag).ok()) {
            Some(etag) => err.with_header(header::ETAG, etag),
            None => err,
        }
    }

    /// Whether they hold for a resource whose current strong `ETag` is `current` (`None`: it does
    /// not exist). `If-Match: *` needs the resource to exist, `If-None-Match: *` needs it absent.
    pub fn hold(&self, current: Option<&str>) -> bool {
        let if_match = self.if_match.as_deref().is_none_or(|list| {
            current.is_some_and(|etag| !etag.starts_with("W/") && lists(list, etag, false))
        });
        let if_none_match = self
            .if_none_match
            .as_deref()
            .is_none_or(|list| current.is_none_or(|etag| !lists(list, etag, true)));
        if_match && if_none_match
    }
}

fn precondition_required(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_REQUIRED)
        .with_type(PRECONDITION_REQUIRED, "Precondition required")
        .with_detail(detail)
}

fn joined(parts: &Parts, name: &header::HeaderName) -> Option<String> {
    let values: Vec<&str> =
        parts.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("\u{0}")).collect();
    (!values.is_empty()).then(|| values.join(","))
}

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            if_match: joined(parts, &header::IF_MATCH),
            if_none_match: joined(parts, &header::IF_NONE_MATCH),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::StatusCode;
    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use super::parse_json;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        id: String,
        price: Money,
        #[serde(default)]
        gift: Option<Money>,
        lines: Vec<Line>,
        delivery: Delivery,
        #[serde(default)]
        tags: BTreeMap<String, Money>,
        #[serde(default)]
        extra: serde_json::Value,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Money {
        amount: i64,
        currency: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Line {
        sku: String,
        quantity: u32,
        window: Option<(u8, u8)>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Delivery {
        Pickup,
        Courier(Money),
        Express { days: u8, fee: Money },
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // only rejections are asserted
    struct Patch {
        name: Option<String>,
        note: Option<String>,
    }

    /// The status and `(pointer, detail)` pairs of the problem `body` is rejected with.
    fn rejection<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (StatusCode, Vec<(String, String)>) {
        let err = parse_json::<T>(body.as_bytes()).unwrap_err();
        let errors = err.problem().errors.iter().map(|e| (e.pointer.clone(), e.detail.clone())).collect();
        (err.status(), errors)
    }

    fn order(price: &str, lines: &str, delivery: &str) -> String {
        format!(r#"{{"id":"o-1","price":{price},"lines":{lines},"delivery":{delivery}}}"#)
    }

    const PRICE: &str = r#"{"amount":100,"currency":"EUR"}"#;
    const LINES: &str = r#"[{"sku":"A-1","quantity":2,"window":[9,17]},{"sku":"B-2","quantity":1}]"#;

    #[test]
    fn objects_still_deserialize_at_every_depth() {
        let body = r#"{"id":"o-1","price":{"amount":100,"currency":"EUR"},"gift":null,
            "lines":[{"sku":"A-1","quantity":2,"window":[9,17]},{"sku":"B-2","quantity":1,"window":null}],
            "delivery":{"express":{"days":1,"fee":{"amount":5,"currency":"EUR"}}},
            "tags":{"promo":{"amount":-10,"currency":"EUR"}},"extra":[1,[2],{"k":[3]}]}"#;
        let order: Order = parse_json(body.as_bytes()).unwrap();
        let eur = |amount| Money { amount, currency: "EUR".to_owned() };
        assert_eq!(
            order,
            Order {
                id: "o-1".to_owned(),
                price: eur(100),
                gift: None,
                lines: vec![
                    Line { sku: "A-1".to_owned(), quantity: 2, window: Some((9, 17)) },
                    Line { sku: "B-2".to_owned(), quantity: 1, window: None },
                ],
                delivery: Delivery::Express { days: 1, fee: eur(5) },
                tags: BTreeMap::from([("promo".to_owned(), eur(-10))]),
                extra: serde_json::json!([1, [2], {"k": [3]}]),
            }
        );
        let order: Order = parse_json(order_with_gift(r#""pickup""#).as_bytes()).unwrap();
        assert_eq!((order.gift, order.delivery), (Some(eur(7)), Delivery::Pickup));
        let order: Order =
            parse_json(order_with_gift(&format!(r#"{{"courier":{PRICE}}}"#)).as_bytes()).unwrap();
        assert_eq!(order.delivery, Delivery::Courier(eur(100)));
        // Bare sequences are still sequences.
        assert_eq!(parse_json::<Vec<u8>>(b"[1,2]").unwrap(), [1, 2]);
    }

    fn order_with_gift(delivery: &str) -> String {
        let gift = r#"{"amount":7,"currency":"EUR"}"#;
        format!(r#"{{"id":"o-1","price":{PRICE},"gift":{gift},"lines":[],"delivery":{delivery}}}"#)
    }

    #[test]
    fn a_top_level_array_for_an_object_is_422_at_the_root() {
        let body = format!(r#"["o-1",{PRICE},null,[],"pickup",{{}},null]"#);
        let (status, errors) = rejection::<Order>(&body);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(errors, [("#".to_owned(), "invalid type: sequence, expected struct Order".to_owned())]);
        // All-optional fields: `[null, null]` matched them before.
        assert_eq!(rejection::<Patch>("[null,null]").0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(rejection::<Patch>("[]").1[0].0, "#");
    }

    #[test]
    fn a_nested_array_for_an_object_is_422_at_its_pointer() {
        let money = r#"[100,"EUR"]"#;
        let cases = [
            (order(money, LINES, r#""pickup""#), "#/price", "struct Money"),
            (
                order(PRICE, r#"[{"sku":"A-1","quantity":1},["B-2",1,null]]"#, r#""pickup""#),
                "#/lines/1",
                "struct Line",
            ),
            (order(PRICE, LINES, &format!(r#"{{"courier":{money}}}"#)), "#/delivery/courier", "struct Money"),
            (
                order(PRICE, LINES, &format!(r#"{{"express":[1,{PRICE}]}}"#)),
                "#/delivery/express",
                "struct variant Delivery::Express",
            ),
            (
                order(PRICE, LINES, &format!(r#"{{"express":{{"days":1,"fee":{money}}}}}"#)),
                "#/delivery/express/fee",
                "struct Money",
            ),
            (
                order_with_gift(r#""pickup""#).replace(r#"{"amount":7,"currency":"EUR"}"#, money),
                "#/gift",
                "struct Money",
            ),
        ];
        for (body, pointer, expected) in cases {
            let (status, errors) = rejection::<Order>(&body);
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(
                errors,
                [(pointer.to_owned(), format!("invalid type: sequence, expected {expected}"))],
                "{body}"
            );
        }
        let tags = format!(
            r#"{{"id":"o-1","price":{PRICE},"lines":[],"delivery":"pickup","tags":{{"a/b~c":{money}}}}}"#
        );
        assert_eq!(rejection::<Order>(&tags).1[0].0, "#/tags/a~1b~0c");
    }

    #[test]
    fn other_shape_errors_keep_their_pointers_and_syntax_errors_are_400() {
        let (status, errors) =
            rejection::<Order>(&order(r#"{"amount":"100","currency":"EUR"}"#, LINES, r#""pickup""#));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(errors[0].0, "#/price/amount");
        assert_eq!(
            rejection::<Order>(&order(PRICE, "[{}]", r#""pickup""#)).1[0],
            ("#/lines/0".to_owned(), "missing field `sku`".to_owned())
        );
        assert_eq!(rejection::<Order>(&order(PRICE, LINES, r#""drone""#)).1[0].0, "#/delivery");
        for body in
            [r#"{"id":"#, r#"{"id":"o-1",}"#, &format!("{} trailing", order(PRICE, LINES, r#""pickup""#))]
        {
            let (status, errors) = rejection::<Order>(body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(errors.is_empty(), "{body}");
        }
    }

    #[tokio::test]
    async fn if_none_match_compares_weakly_across_lists_and_headers() {
        use axum::extract::FromRequestParts;

        let (mut parts, ()) = http::Request::get("/")
            .header(http::header::IF_NONE_MATCH, "\"a\", W/\"b\"")
            .header(http::header::IF_NONE_MATCH, "\"c\"")
            .body(())
            .unwrap()
            .into_parts();
        let header = super::IfNoneMatch::from_request_parts(&mut parts, &()).await.unwrap();
        for etag in ["\"a\"", "\"b\"", "\"c\""] {
            assert!(header.matches(etag), "{etag}");
        }
        assert!(!header.matches("\"d\""));

        let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let absent = super::IfNoneMatch::from_request_parts(&mut parts, &()).await.unwrap();
        assert!(!absent.matches("\"a\""));
        let star = super::IfNoneMatch(vec![http::HeaderValue::from_static("*")]);
        assert!(star.matches("\"anything\""));
    }

    #[tokio::test]
    async fn preconditions_compare_if_match_strongly_and_if_none_match_weakly() {
        use axum::extract::FromRequestParts;

        let (mut parts, ()) = http::Request::put("/")
            .header(http::header::IF_MATCH, "\"1\", W/\"2\"")
            .header(http::header::IF_MATCH, "\"3\"")
            .body(())
            .unwrap()
            .into_parts();
        let pre = super::Preconditions::from_request_parts(&mut parts, &()).await.unwrap();
        assert!(!pre.is_empty());
        assert!(pre.hold(Some("\"1\"")) && pre.hold(Some("\"3\"")));
        assert!(!pre.hold(Some("\"2\"")), "a weak tag never matches If-Match");
        assert!(!pre.hold(None), "If-Match needs the resource");
        let star = super::Preconditions::new(Some("*"), None);
        assert!(star.hold(Some("\"9\"")) && !star.hold(None));
        let not_this = super::Preconditions::new(None, Some("W/\"5\""));
        assert!(!not_this.hold(Some("\"5\"")) && not_this.hold(Some("\"6\"")) && not_this.hold(None));
        let (mut parts, ()) = http::Request::put("/").body(()).unwrap().into_parts();
        assert!(super::Preconditions::from_request_parts(&mut parts, &()).await.unwrap().is_empty());
    }

    #[test]
    fn precondition_problems_are_428_without_headers_and_412_with_the_current_etag() {
        use axum::response::IntoResponse as _;

        use super::{PRECONDITION_FAILED, PRECONDITION_REQUIRED, Preconditions};

        let blind = Preconditions::default().required("send If-Match").unwrap_err();
        assert_eq!(blind.status(), StatusCode::PRECONDITION_REQUIRED);
        assert_eq!(blind.problem().type_uri, PRECONDITION_REQUIRED);
        assert!(Preconditions::new(Some("\"1\""), None).required("send If-Match").is_ok());
        assert!(Preconditions::new(None, Some("*")).required("send a precondition").is_ok());
        let only_none_match = Preconditions::new(None, Some("\"9\"")).if_match_required("send If-Match");
        assert_eq!(only_none_match.unwrap_err().status(), StatusCode::PRECONDITION_REQUIRED);
        assert!(Preconditions::new(Some("*"), None).if_match_required("send If-Match").is_ok());
        let stale = Preconditions::failed("changed", Some("\"2\"")).into_response();
        assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(stale.headers()[http::header::ETAG], "\"2\"");
        let gone = Preconditions::failed("absent", None);
        assert_eq!(gone.problem().type_uri, PRECONDITION_FAILED);
        assert!(gone.into_response().headers().get(http::header::ETAG).is_none());
    }

    /// The status, `Content-Type` and body of `GET uri` on `router`.
    async fn get_status(router: axum::Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let res =
            router.oneshot(http::Request::get(uri).body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let content_type =
            res.headers().get(http::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, content_type.unwrap_or_default(), serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_mis_declared_path_is_a_500_and_a_bad_segment_a_400() {
        use axum::routing::get;
        use uuid::Uuid;

        use super::Path;

        let router = axum::Router::new()
            // Mis-declared: two parameters extracted, one in the route.
            .route("/pairs/{id}", get(|Path(_): Path<(Uuid, Uuid)>| async {}))
            // Mis-declared: a type path parameters cannot deserialize into.
            .route("/nested/{id}", get(|Path(_): Path<Vec<Vec<String>>>| async {}))
            // Mis-declared: a parameter extracted, none in the route.
            .route("/none", get(|Path(_): Path<Uuid>| async {}))
            .route("/things/{id}", get(|Path(_): Path<Uuid>| async {}));
        for uri in ["/pairs/6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11", "/nested/a", "/none"] {
            let (status, content_type, body) = get_status(router.clone(), uri).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {body}");
            assert_eq!(content_type, crate::error::PROBLEM_JSON);
            // The server's mistake is logged, not explained to the client.
            assert_eq!(body["detail"], "the server failed to handle the request", "{uri}");
        }
        let (status, content_type, body) = get_status(router.clone(), "/things/not-a-uuid").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::BAD_REQUEST, crate::error::PROBLEM_JSON));
        assert!(body["detail"].as_str().unwrap().starts_with("invalid path parameter"), "{body}");
        let (status, _, _) = get_status(router, "/things/6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn path_without_route_parameters_is_a_500() {
        use axum::extract::FromRequestParts;

        // No router ran: axum's path parameters are missing altogether (`MissingPathParams`).
        let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let err = super::Path::<String>::from_request_parts(&mut parts, &()).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let line: Line = parse_json(br#"{"sku": "A", "quantity": 3143.0, "window": [1.0, 2]}"#).unwrap();
        assert_eq!((line.quantity, line.window), (3143, Some((1, 2))));
        let money: Money = parse_json(br#"{"amount": -5e2, "currency": "EUR"}"#).unwrap();
        assert_eq!(money.amount, -500);
        for bad in [
            r#"{"sku": "A", "quantity": 2.5}"#,
            r#"{"sku": "A", "quantity": -1.0}"#,
            r#"{"sku": "A", "quantity": 1e300}"#,
        ] {
            let err = parse_json::<Line>(bad.as_bytes()).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(err.problem().errors[0].pointer, "#/quantity", "{bad}");
        }
        // A float field keeps its float.
        let value: f64 = parse_json(b"2.0").unwrap();
        assert!((value - 2.0).abs() < f64::EPSILON);
    }
}
