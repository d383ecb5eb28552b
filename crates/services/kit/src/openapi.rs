//! What every service's OpenAPI document shares: the `bearer` security scheme its admin and
//! authenticated routes name (`security(("bearer" = []))`), their `401`/`403` responses
//! ([`AuthErrors`], [`NotAdmin`]), and how the document is assembled.
//!
//! ```ignore
//! #[derive(utoipa::OpenApi)]
//! #[openapi(info(title = "Palisade Shop catalog"), modifiers(&kit::openapi::BearerAuth))]
//! struct ApiDoc;
//!
//! pub fn openapi() -> utoipa::openapi::OpenApi {
//!     let (_, paths) = api::router().split_for_parts();
//!     kit::openapi::document(ApiDoc::openapi(), paths, env!("CARGO_PKG_VERSION"))
//! }
//! ```

use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::Problem;

/// Adds the `bearer` security scheme: `Authorization: Bearer <JWT>`, as issued by the users service.
#[derive(Clone, Copy, Debug, Default)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// A service's document: `doc` (info, components, tags) with the router's `paths` merged in and
/// `info.version` set to `version` (the service crate's `CARGO_PKG_VERSION`).
pub fn document(mut doc: OpenApi, paths: OpenApi, version: &str) -> OpenApi {
    doc.merge(paths);
    version.clone_into(&mut doc.info.version);
    doc
}

/// The error response of an endpoint that needs any valid token: `401` with the bearer challenge.
#[derive(Debug, utoipa::IntoResponses)]
pub enum AuthErrors {
    /// No usable token.
    #[response(
        status = 401,
        description = "Missing, invalid or expired token",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "Bearer challenge"))
    )]
    Unauthorized(Problem),
}

/// The error response of an endpoint that needs an admin token, besides [`AuthErrors`]: `403` for a
/// valid token without the admin role (list both: `responses(..., AuthErrors, NotAdmin)`).
#[derive(Debug, utoipa::IntoResponses)]
pub enum NotAdmin {
    /// A token without the admin role.
    #[response(status = 403, description = "Not an admin", content_type = "application/problem+json")]
    Forbidden(Problem),
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::OpenApiBuilder;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};

    use super::*;

    #[test]
    fn bearer_auth_adds_the_bearer_jwt_scheme() {
        let mut doc = OpenApiBuilder::new().build();
        BearerAuth.modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
    }

    #[test]
    fn document_merges_paths_and_sets_the_version() {
        let paths = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path("/v1/things", PathItem::new(HttpMethod::Get, OperationBuilder::new())),
            )
            .build();
        let doc = document(OpenApiBuilder::new().build(), paths, "1.2.3");
        assert_eq!(doc.info.version, "1.2.3");
        assert!(doc.paths.paths.contains_key("/v1/things"));
    }
}
