//! The OpenAPI document, generated from the handlers, and the offline docs UI.
//!
//! Defends against drift between docs and reality: security requirements and the 401/403
//! answers are not written by hand per operation but derived from each route's access policy in
//! the [`SecureRouter`] table, and a test checks every mounted route is documented. The UI's
//! assets are compiled into the binary (no CDN), served under a CSP that allows only them, and
//! only mounted when docs are enabled; otherwise `/docs` is an unknown path like any other (401).

use axum::response::Response;
use axum::Router;
use http::{header, HeaderValue};
use rampart::{Access, FieldError, Problem, SecureRouter};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, PathItem, Ref, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

/// The UI runs its own bundled scripts and inline styles; nothing from elsewhere.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Paths the docs UI serves, for the route table.
pub const DOCS_PATHS: [&str; 3] = ["/docs", "/docs/{*rest}", "/openapi.json"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rampart",
        description = "A hardened API backend: default-deny access, problem+json errors, strict validation."
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Accounts, login and tokens"),
        (name = "users", description = "The caller's account"),
        (name = "sessions", description = "The caller's sessions and password"),
        (name = "items", description = "The caller's own items"),
        (name = "admin", description = "Admin only: users and the audit trail"),
    )
)]
struct ApiDoc;

/// The document for what `routes` mounts: its operations, with security derived from each
/// route's policy.
pub fn document(routes: &SecureRouter<AppState>) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes.document().clone());
    let table = routes.table();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    // Lets the docs page's Authorize button log in with a username and password.
    components.add_security_scheme(
        "password",
        SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
            "/v1/auth/login",
            Scopes::new(),
        ))])),
    );
    for (path, access) in table {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        for operation in operations(item) {
            let statuses = statuses_of(operation);
            let responses = &mut operation.responses.responses;
            if *access != Access::Public {
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("password", Vec::<String>::new()),
                ]);
                responses
                    .entry("401".into())
                    .or_insert_with(|| problem_response("Missing or invalid credentials"));
            }
            if *access == Access::Admin {
                responses
                    .entry("403".into())
                    .or_insert_with(|| problem_response("The caller is not an admin"));
            }
            for (status, description) in statuses {
                responses
                    .entry(status.into())
                    .or_insert_with(|| problem_response(description));
            }
        }
    }
    doc
}

/// Every error status an operation can answer, from what the operation takes: the hardening
/// layers can answer any request with 408, 429, 500 or 503; a JSON body adds the extractor's
/// 400, 413, 415 and 422; query parameters add 422; a path id adds 404. Listing them (rather
/// than a catch-all `default`) is what lets a contract fuzzer flag a status the document does
/// not promise.
fn statuses_of(operation: &utoipa::openapi::path::Operation) -> Vec<(&'static str, &'static str)> {
    let mut statuses = vec![
        ("408", "The request was not received in time"),
        (
            "429",
            "Over a rate limit; see Retry-After and the RateLimit headers",
        ),
        (
            "500",
            "An unexpected error; the server log has the details under the request id",
        ),
        (
            "503",
            "Overloaded or a dependency is down; retry after Retry-After",
        ),
    ];
    if operation.request_body.is_some() {
        statuses.extend([
            ("400", "The body is not well-formed JSON"),
            ("413", "The body is larger than the limit"),
            ("415", "The body is not application/json"),
            (
                "422",
                "A field is missing, unknown or invalid; `errors` names it",
            ),
        ]);
    }
    let parameters = operation.parameters.iter().flatten();
    let (mut query, mut path) = (false, false);
    for parameter in parameters {
        match parameter.parameter_in {
            ParameterIn::Query => query = true,
            ParameterIn::Path => path = true,
            _ => {}
        }
    }
    if query {
        statuses.push((
            "422",
            "A query parameter is unknown, repeated or invalid; `errors` names it",
        ));
    }
    if path {
        statuses.push(("404", "No such record, or not the caller's"));
    }
    statuses
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn problem_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            rampart::error::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Adds `/docs` and `/openapi.json` to `routes` as public.
pub fn mount(routes: SecureRouter<AppState>) -> SecureRouter<AppState> {
    let doc = document(&routes);
    let ui: Router<AppState> = Router::from(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .layer(axum::middleware::map_response(docs_csp));
    routes.merge_public(&DOCS_PATHS, ui)
}

async fn docs_csp(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    response
}
