//! The OpenAPI 3.1 document, generated from the handlers: each handler's `#[utoipa::path]`
//! says its path, parameters, bodies and responses, and `routes/mod.rs` registers it once for
//! routing and the document (`utoipa_axum::routes!`). What is shared between handlers lives
//! here: the document's frame (info, servers, the `bearer` scheme), the error response sets
//! every handler lists by what it can fail with, the parameters of the shared extractors
//! (`Idempotency-Key`, consistency token and wait), and the lag headers `read(...)` adds.
//!
//! Rule: a route without its OpenAPI entry is a bug; `serving/tests/openapi.rs` checks the
//! document against the live router.

use std::collections::BTreeMap;

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem, Paths};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi as _};

use crate::idempotency::{self, Write};
use crate::lag::{FRONTIER_HEADER, LAG_MS_HEADER, LAG_RECORDS_HEADER};
use crate::token::{ReadConsistency, TOKEN_HEADER, WAIT_HEADER};

/// Where the document is served (itself a documented route).
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// The name of the security scheme of authenticated routes.
pub const BEARER: &str = "bearer";
/// The component name of the error body every error response carries.
pub const ERROR_SCHEMA: &str = "ErrorBody";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "shopflow API",
        description = "The shopflow e-commerce API. Writes are events on the log, answered \
            `202` with a consistency token (`X-Consistency-Token`); reads answer from the \
            materialized views and wait, bounded, for a token when given one. Every error \
            body is `{\"error\":{\"code\",\"message\",\"field\"?}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "This server")),
    components(schemas(crate::error::ErrorBody, crate::write::Accepted)),
    modifiers(&BearerScheme),
    tags(
        (name = "system", description = "Health, readiness, metrics and this document"),
        (name = "catalog", description = "Products, categories, brands and suppliers"),
        (name = "stock", description = "Warehouses and stock movements"),
        (name = "interactions", description = "What shoppers do besides buying"),
        (name = "accounts", description = "Registration, sessions, profiles and addresses"),
        (name = "recommendations", description = "Recommendations and rankings"),
        (name = "cart", description = "The signed-in user's cart"),
        (name = "orders", description = "Placing, following, cancelling and shipping orders"),
        (name = "payments", description = "Payment methods, payments and refunds"),
        (name = "stats", description = "Figures for admins"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("`Authorization: Bearer <token>`. Admin routes need an admin token."))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document's frame, before the routes add their paths.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0))
}

fn header(description: &str, schema: ObjectBuilder) -> Header {
    HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()
}

/// An error response: the error body, plus `Retry-After` or `WWW-Authenticate` when the
/// error carries them (`error.rs` decides which do).
fn error(description: &str, extra: Option<(&str, &str)>) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(ERROR_SCHEMA))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content);
    if let Some((name, text)) = extra {
        response = response.header(name, header(text, string_schema()));
    }
    RefOr::T(response.build())
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before retrying");

fn responses(list: Vec<(&str, RefOr<Response>)>) -> BTreeMap<String, RefOr<Response>> {
    list.into_iter().map(|(status, response)| (status.to_owned(), response)).collect()
}

/// `202` with the entity id, event id and consistency token (body and header).
impl IntoResponses for crate::write::Accepted {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Accepted"))).build();
        let response = ResponseBuilder::new()
            .description("Accepted: the event is in the log; reads see it once the views pass the token")
            .content("application/json", content)
            .header(TOKEN_HEADER, header("The consistency token (as in the body)", string_schema()));
        responses(vec![("202", RefOr::T(response.build()))])
    }
}

/// Errors of a view read: a bad query or consistency token, or a token the views did not
/// pass in time (or too many reads waiting for theirs).
pub struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![
            ("400", error("`invalid_query`, `invalid_cursor`, `invalid_id`, `invalid_consistency_token`", None)),
            ("503", error("`consistency_timeout` or `too_many_waiters`: retry shortly", Some(RETRY_AFTER))),
        ])
    }
}

/// `404 not_found`: the entity named in the path is not in the view.
pub struct NotFound;

impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![("404", error("`not_found`", None))])
    }
}

/// `409`: the order's status (as the view has it) does not allow what was asked.
pub struct Conflict;

impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![(
            "409",
            error("`not_cancellable`, `not_payable`, `not_refundable` or `invalid_status_transition`", None),
        )])
    }
}

/// Errors of a write with a JSON body.
pub struct WriteErrors;

impl IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = BodylessWriteErrors::responses();
        all.extend(responses(vec![
            ("413", error("`payload_too_large`", None)),
            ("415", error("`unsupported_media_type`: send `Content-Type: application/json`", None)),
            (
                "422",
                error("`invalid_body` (shape), `validation_failed` (rules, with `field`) or `idempotency_key_reused`", None),
            ),
        ]));
        all.insert("400".into(), error("`malformed_json`, `invalid_id` or `invalid_idempotency_key`", None));
        all
    }
}

/// Errors of a write without a body (`DELETE`).
pub struct BodylessWriteErrors;

impl IntoResponses for BodylessWriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![
            ("400", error("`invalid_id` or `invalid_idempotency_key`", None)),
            ("422", error("`idempotency_key_reused`: the key was used for a different request", None)),
            (
                "503",
                error("`log_unavailable` or `idempotency_pending`: retry (with the same key)", Some(RETRY_AFTER)),
            ),
        ])
    }
}

/// Routes that take the `User` extractor: no, a malformed, expired or revoked token.
pub struct UserErrors;

impl IntoResponses for UserErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![(
            "401",
            error(
                "`unauthorized`, `invalid_token`, `token_expired` or `token_revoked`",
                Some(("WWW-Authenticate", "`Bearer`")),
            ),
        )])
    }
}

/// Routes that take the `Admin` extractor: no or a malformed credential, or not an admin.
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![
            ("401", error("`unauthorized`: no usable bearer token", Some(("WWW-Authenticate", "`Bearer`")))),
            ("403", error("`forbidden`: the token is not an admin's", None)),
        ])
    }
}

fn parameter(name: &str, location: ParameterIn, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// `X-Consistency-Token`/`?consistency_token=` and `X-Consistency-Wait-Ms`/`?wait_ms=`.
impl IntoParams for ReadConsistency {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let token = || {
            string_schema()
                .pattern(Some(r"^[a-z_]+:[0-9]+:[0-9]+(,[a-z_]+:[0-9]+:[0-9]+)*$"))
                .max_length(Some(4096))
                .examples(["catalog:3:1042"])
        };
        let wait = || integer_schema().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )));
        let token_text = "Wait until the views have passed this token (from a write's answer)";
        let wait_text = "The longest to wait for the token, in ms (capped by the server)";
        vec![
            parameter(TOKEN_HEADER, ParameterIn::Header, token_text, token()),
            parameter("consistency_token", ParameterIn::Query, token_text, token()),
            parameter(WAIT_HEADER, ParameterIn::Header, wait_text, wait()),
            parameter("wait_ms", ParameterIn::Query, wait_text, wait()),
        ]
    }
}

/// `Idempotency-Key`: every write accepts one (see `idempotency.rs`).
impl IntoParams for Write {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "Idempotency-Key",
            ParameterIn::Header,
            "Makes the write idempotent: a repeat with the same key and request gets the first answer",
            string_schema()
                .min_length(Some(1))
                .max_length(Some(idempotency::MAX_KEY_LEN))
                .pattern(Some("^[!-~]{1,255}$")),
        )]
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Adds the lag headers to every response of every operation in `paths`: what the
/// `view_headers` middleware that `read(...)` puts on the same routes does at run time.
pub fn add_lag_headers(paths: &mut Paths) {
    for item in paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else { continue };
                let mut add = |name: &str, text: &str| {
                    response.headers.insert(name.into(), RefOr::T(header(text, integer_schema())));
                };
                add(FRONTIER_HEADER, "Epoch ms below which the views are complete");
                add(LAG_MS_HEADER, "Now minus the frontier, in ms");
                add(LAG_RECORDS_HEADER, "Records of the source topics not yet in the views (once known)");
            }
        }
    }
}

/// What the gateway layers (`crate::gateway`, `crate::auth::authenticate`) may answer on any
/// route, before or instead of its handler: `401` for a bearer token that is given but not
/// valid, `429` over the rate limit, `503` when the request timed out. Added to every
/// operation that does not document the status already.
pub fn add_gateway_responses(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let responses = &mut operation.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                error("`invalid_token`, `token_expired` or `token_revoked`: a bearer token was sent and is not valid", None)
            });
            responses
                .entry("429".into())
                .or_insert_with(|| error("`rate_limited` or `too_many_failed_logins`", Some(RETRY_AFTER)));
            responses
                .entry("503".into())
                .or_insert_with(|| error("`request_timeout`: the request took too long; retry", Some(RETRY_AFTER)));
        }
    }
}

/// Closes the variants of a `oneOf` schema to unknown properties. The derive drops
/// `#[serde(deny_unknown_fields)]` of an internally tagged enum (`Interaction`), which would
/// document bodies with extra properties as valid while the server refuses them with 422.
pub fn close_variants(doc: &mut OpenApi, schema: &str) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = doc.components.as_mut() else { return };
    let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(schema) else { return };
    for variant in &mut one_of.items {
        if let RefOr::T(Schema::Object(object)) = variant {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}
