//! The OpenAPI 3.1 document, generated from the route definitions: every route is registered
//! through `utoipa_axum::routes!`, which takes its method, path, parameters, bodies and answers
//! from the handler's `#[utoipa::path]`, so a route and its documentation are one declaration.
//! Served at `GET /api/openapi.json`, with Swagger UI at `/api/docs` (its files are compiled in).
//!
//! What every route shares is added here once, by [`Conventions`], instead of on each handler:
//! the bearer scheme and its 401/403 on every operation that is not public, 400 on every
//! operation that reads input, 413 on those with a body, and 500/503 everywhere.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, ToResponse, ToSchema};

/// The name of the security scheme admin routes use.
pub const ADMIN: &str = "adminToken";

/// Tags, in the order the documentation lists them.
pub const TAGS: &[(&str, &str)] = &[
    ("health", "Liveness and readiness probes."),
    ("servers", "Hosting servers, their enrolment and commands."),
    ("agents", "The agents' sessions and heartbeats."),
    ("catalogue", "Products and customers."),
    ("services", "Hosting services and their lifecycle."),
    ("backups", "Backups of a service's account."),
    ("provisioning", "The provisioning queue."),
    (
        "billing",
        "Checkout, invoices, payments and Stripe's webhooks.",
    ),
    ("cron", "Scheduled jobs and their runs."),
    (
        "tokens",
        "Admin tokens, admin sign-in sessions and the audit log.",
    ),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "mpanel controller API",
        description = "The admin API of the mpanel controller. Errors are answered with the \
            `ErrorBody` shape; admin routes take `Authorization: Bearer <admin token>`.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    components(
        schemas(ErrorBody, ErrorObject),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Unprocessable,
            PayloadTooLarge,
            Internal
        )
    ),
    modifiers(&Conventions),
)]
pub struct ApiDoc;

/// The contract's error body: `{"error": {"code", "message", "field", …}}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorObject,
}

/// What went wrong. Some conflicts add the ids a client needs to carry on (`serviceId`,
/// `jobId`) beside these three.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorObject {
    /// A stable, machine-readable code (`invalid_body`, `not_found`, `conflict`, …).
    code: String,
    /// A sentence for people, naming the field when there is one.
    message: String,
    /// The request field at fault (`domain`, `prices[0].amount`), when there is one.
    field: Option<String>,
}

// The error answers, each the error body under its own name: a handler lists the ones it
// gives as `(status = 404, response = NotFound)`.

/// No such record; `field` names the parameter that pointed at it.
#[derive(Debug, ToResponse)]
#[response(description = "No such record; `field` names the parameter that pointed at it.")]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// The record's state forbids this, or it would duplicate another.
#[derive(Debug, ToResponse)]
#[response(description = "The record's state forbids this, or it would duplicate another.")]
#[allow(dead_code)]
pub struct Conflict(ErrorBody);

/// Well-formed, but refused by a rule about the record it names.
#[derive(Debug, ToResponse)]
#[response(description = "Well-formed, but refused by a rule about the record it names.")]
#[allow(dead_code)]
pub struct Unprocessable(ErrorBody);

/// The input is malformed.
#[derive(Debug, ToResponse)]
#[response(description = "The input is malformed; `field` names the parameter or body member.")]
#[allow(dead_code)]
pub struct BadRequest(ErrorBody);

/// No admin token, or one that is unknown, revoked or expired.
#[derive(Debug, ToResponse)]
#[response(description = "No admin token, or one that is unknown, revoked or expired.")]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// The token lacks the scope this route needs.
#[derive(Debug, ToResponse)]
#[response(description = "The token lacks the scope this route needs.")]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// The request body is above 64 KiB.
#[derive(Debug, ToResponse)]
#[response(description = "The request body is above 64 KiB.")]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// An internal error; the body carries no internals.
#[derive(Debug, ToResponse)]
#[response(description = "An internal error; the body carries no internals.")]
#[allow(dead_code)]
pub struct Internal(ErrorBody);

/// The shared answers and the security scheme (see the module's introduction).
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin token (`mpa_…`), made with `mpanel-controller token create` or `POST /api/tokens`."))
                    .build(),
            ),
        );
        components.responses.insert(
            "Unavailable".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "The request took longer than the API's 60 s limit (no body), or the \
                         database is unreachable.",
                    )
                    .build(),
            ),
        );
        openapi.tags = Some(
            TAGS.iter()
                .map(|(name, description)| {
                    utoipa::openapi::tag::TagBuilder::new()
                        .name(*name)
                        .description(Some(*description))
                        .build()
                })
                .collect(),
        );
    }
}

/// Adds the shared answers to every operation. Run on the whole document, after the routes
/// have put their operations in.
fn add_shared_answers(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for op in operations(item) {
            let public = op.security.as_ref().is_some_and(|s| {
                s.iter().all(|r| {
                    serde_json::to_value(r)
                        .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                })
            });
            if !public {
                op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
                    &str,
                    [&str; 0],
                    &str,
                >(ADMIN, [])]);
                shared(op, "401", "Unauthorized");
                shared(op, "403", "Forbidden");
            }
            for param in op.parameters.iter_mut().flatten() {
                if let RefOr::T(param) = param {
                    empty_is_absent(param);
                }
            }
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if has_params || op.request_body.is_some() {
                shared(op, "400", "BadRequest");
            }
            if let Some(body) = op.request_body.as_mut() {
                if let RefOr::T(body) = body {
                    optional_body(body);
                }
                shared(op, "413", "PayloadTooLarge");
            }
            shared(op, "500", "Internal");
            shared(op, "503", "Unavailable");
        }
    }
}

/// The routes read an optional query parameter given empty (`?status=`, as a form sends it)
/// as not given, so the document lets each be empty beside its own schema.
fn empty_is_absent(param: &mut utoipa::openapi::path::Parameter) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    if param.parameter_in != ParameterIn::Query || param.required == Required::True {
        return;
    }
    if let Some(schema) = param.schema.take() {
        let empty = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(0));
        param.schema = Some(RefOr::T(utoipa::openapi::schema::Schema::AnyOf(
            AnyOfBuilder::new().item(schema).item(empty).build(),
        )));
    }
}

/// `request_body(content = Option<T>)` is how a handler says its body may be left out; utoipa
/// writes that as "T or null", but a JSON `null` is no object and is refused. The document says
/// what the route does: the body is T, and not required.
fn optional_body(body: &mut utoipa::openapi::request_body::RequestBody) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::{Required, Type};
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else {
            continue;
        };
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let is_null = |s: &RefOr<Schema>| {
            matches!(s, RefOr::T(Schema::Object(o))
                if o.schema_type == utoipa::openapi::schema::SchemaType::Type(Type::Null))
        };
        if one_of.items.len() == 2 && one_of.items.iter().any(is_null) {
            let inner = one_of.items.iter().find(|s| !is_null(s)).cloned();
            content.schema = inner;
            body.required = Some(Required::False);
        }
    }
}

fn shared(op: &mut Operation, status: &str, response: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(response)));
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
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
    .filter_map(Option::as_mut)
}

/// The finished document: [`ApiDoc`] with the routes' operations and the shared answers.
pub fn document(routes: OpenApi) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    add_shared_answers(&mut doc);
    doc
}

/// `GET /api/openapi.json` and the documentation page at `/api/docs`, both public.
pub fn docs_router<S: Clone + Send + Sync + 'static>(doc: OpenApi) -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .url("/api/openapi.json", doc)
        .into()
}
