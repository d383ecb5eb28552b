//! What every service's OpenAPI document shares: the `bearer` security scheme its admin and
//! authenticated routes name (`security(("bearer" = []))`), their `401`/`403` responses
//! ([`AuthErrors`], [`NotAdmin`]), and how the document is assembled.
//!
//! [`document`] also gives every operation under `/v1` the answers the server stack
//! ([`crate::server`]) can give on any route, so no route lists them: `500` (a handler or
//! extractor failed), `503` with `Retry-After` (the load shedder refused it, or the database stayed
//! contended: [`crate::db::StoreError::Busy`]) and `504` (the timeout
//! or the caller's deadline ran out), each a reference to a shared response component
//! ([`STACK_ERRORS`]) whose body is a [`Problem`]. An operation that documents one of these
//! statuses itself keeps its own.
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

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::ArrayItems;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema, Type};
use utoipa::{Modify, PartialSchema, ToSchema};

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

/// A service's document: `doc` (info, components, tags) with the router's `paths` merged in,
/// `info.version` set to `version` (the service crate's `CARGO_PKG_VERSION`), and the
/// [`STACK_ERRORS`] added to every operation under `/v1` that does not document them itself.
pub fn document(mut doc: OpenApi, paths: OpenApi, version: &str) -> OpenApi {
    doc.merge(paths);
    version.clone_into(&mut doc.info.version);
    add_stack_errors(&mut doc);
    if let Some(components) = doc.components.as_mut() {
        for schema in components.schemas.values_mut() {
            expand_text_patterns(schema);
        }
    }
    doc
}

/// The component schema `schema` of `doc`, or its property `property`: where a service states what
/// utoipa cannot derive (an `enum` computed at start, `dependentRequired`, `not`). `None` when absent
/// or a reference.
pub fn object_mut<'a>(
    doc: &'a mut OpenApi,
    schema: &str,
    property: Option<&str>,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    let RefOr::T(Schema::Object(object)) = doc.components.as_mut()?.schemas.get_mut(schema)? else {
        return None;
    };
    match property {
        None => Some(object),
        Some(property) => match object.properties.get_mut(property)? {
            RefOr::T(Schema::Object(property)) => Some(property),
            _ => None,
        },
    }
}

/// Adds the JSON Schema keyword `keyword` (`dependentRequired`, `not`, …) to `object`: utoipa's
/// extensions map serialises flat into the schema, and it is the only way to write one it lacks.
pub fn add_keyword(object: &mut utoipa::openapi::schema::Object, keyword: &str, value: serde_json::Value) {
    object.extensions.get_or_insert_with(Default::default).insert(keyword.to_owned(), value);
}

/// The [`crate::text`] convention: every `pattern: \S` (a not-blank text field) becomes
/// [`crate::text::PATTERN`], what `text::check` accepts.
fn expand_text_patterns(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(object) => {
            if object.pattern.as_deref() == Some("\\S") {
                object.pattern = Some(crate::text::PATTERN.clone());
            }
            for property in object.properties.values_mut() {
                expand_text_patterns(property);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                expand_text_patterns(items);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(expand_text_patterns),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(expand_text_patterns),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(expand_text_patterns),
        _ => {}
    }
}

/// The answers of the server stack on any `/v1` route: status and response component name.
pub const STACK_ERRORS: [(&str, &str); 3] =
    [("500", "InternalServerError"), ("503", "ServiceUnavailable"), ("504", "GatewayTimeout")];

pub(crate) fn add_stack_errors(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(Problem::name().into_owned(), Problem::schema())];
    Problem::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    let problem =
        || ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name().into_owned()))).build();
    let internal = ResponseBuilder::new()
        .description(
            "The server failed to handle the request; its logs have the cause under the problem's `trace_id`",
        )
        .content(crate::error::PROBLEM_JSON, problem());
    let overloaded = ResponseBuilder::new()
        .description(
            "Overloaded: the server is at its limit of requests in flight, or the data is contended (a row \
             stayed locked past the database's lock timeout, or the transaction kept losing to concurrent \
             ones, retried already); nothing was changed. Retry after `Retry-After`",
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                .description(Some("Seconds to wait before retrying (jittered)"))
                .build(),
        )
        .content(crate::error::PROBLEM_JSON, problem());
    let timeout = ResponseBuilder::new()
        .description(
            "The request ran out of time: the server's request timeout, or the deadline the caller sent \
             in `x-request-timeout-ms`",
        )
        .content(crate::error::PROBLEM_JSON, problem());
    for ((_, name), response) in STACK_ERRORS.iter().zip([internal, overloaded, timeout]) {
        components.responses.entry((*name).to_owned()).or_insert_with(|| response.build().into());
    }
    for (path, item) in &mut doc.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            add_responses(operation);
            describe_idempotency_key(operation);
        }
    }
}

/// The `Idempotency-Key` header as [`crate::idempotency`] accepts it, wherever an operation takes
/// one: a schema that says so keeps generated clients (and fuzzers) from sending a key that is 400.
fn describe_idempotency_key(operation: &mut Operation) {
    let header = crate::idempotency::IDEMPOTENCY_KEY;
    let name = header.as_str();
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else { continue };
        if parameter.name.eq_ignore_ascii_case(name)
            && parameter.parameter_in == utoipa::openapi::path::ParameterIn::Header
        {
            parameter.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                    .pattern(Some("^[!-~]+$"))
                    .into(),
            );
        }
    }
}

fn add_responses(operation: &mut Operation) {
    for (status, name) in STACK_ERRORS {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
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

    #[test]
    fn document_adds_the_stack_errors_to_every_v1_operation_once() {
        use utoipa::openapi::ResponseBuilder;

        let own_500 = ResponseBuilder::new().description("custom").build();
        let paths = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(
                        "/v1/things",
                        PathItem::new(HttpMethod::Get, OperationBuilder::new().response("500", own_500)),
                    )
                    .path("/v1/things/{id}", PathItem::new(HttpMethod::Delete, OperationBuilder::new()))
                    .path("/livez", PathItem::new(HttpMethod::Get, OperationBuilder::new())),
            )
            .build();
        let doc = serde_json::to_value(document(OpenApiBuilder::new().build(), paths, "1")).unwrap();
        let responses = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
        let reference = |name: &str| serde_json::json!({ "$ref": format!("#/components/responses/{name}") });

        // An operation's own answer stays; the others are added, by reference.
        assert_eq!(responses("/v1/things", "get")["500"]["description"], "custom");
        assert_eq!(responses("/v1/things", "get")["503"], reference("ServiceUnavailable"));
        let delete = responses("/v1/things/{id}", "delete");
        assert_eq!(delete["500"], reference("InternalServerError"));
        assert_eq!(delete["503"], reference("ServiceUnavailable"));
        assert_eq!(delete["504"], reference("GatewayTimeout"));
        assert!(responses("/livez", "get").get("503").is_none(), "only /v1 operations");

        let components = &doc["components"];
        for name in ["InternalServerError", "ServiceUnavailable", "GatewayTimeout"] {
            let schema = &components["responses"][name]["content"]["application/problem+json"]["schema"];
            assert_eq!(schema["$ref"], "#/components/schemas/Problem", "{name}");
        }
        let retry_after = &components["responses"]["ServiceUnavailable"]["headers"]["Retry-After"];
        assert_eq!(retry_after["schema"]["type"], "integer", "{retry_after}");
        assert!(
            components["schemas"]["Problem"].is_object() && components["schemas"]["FieldError"].is_object()
        );
    }
}
