//! `Json`, `Path` and `Query` whose rejections are problem documents.
//!
//! | rejection | status |
//! |---|---|
//! | body without `Content-Type: application/json` | 415 |
//! | body that is not JSON | 400 |
//! | JSON of the wrong shape (missing field, wrong type) | 422, with the field's pointer |
//! | body over the limit | 413 |
//! | path segment that does not parse | 400 |
//! | query string that does not parse | 400, with the parameter's name |
//!
//! [`ClientIp`] gives the peer address (for per-address rate limits) and never rejects.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

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
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let inner = err.inner();
        if inner.is_data() {
            let path = err.path().to_string();
            let pointer = if path == "." { "#".to_owned() } else { format!("#/{}", path.replace('.', "/")) };
            ApiError::validation(vec![FieldError::new(pointer, strip_position(&inner.to_string()))])
        } else {
            ApiError::bad_request(format!("the request body is not valid JSON: {inner}"))
        }
    })?;
    de.end().map_err(|err| ApiError::bad_request(format!("the request body is not valid JSON: {err}")))?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a segment that does not parse is a 400 problem.
#[derive(Clone, Copy, Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Path(p.0)).map_err(
            |err: PathRejection| {
                ApiError::bad_request(format!("invalid path parameter: {}", err.body_text()))
            },
        )
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

/// The TCP peer's IP address, when served by [`crate::server::Server`] (`None` in `oneshot` tests).
///
/// Forwarding headers (`X-Forwarded-For`) are not trusted: behind a proxy every client would share
/// the proxy's address; configure the proxy to limit per client instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(info.map(|info| info.0.ip())))
    }
}
