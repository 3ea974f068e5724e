//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP contract.
//!
//! Integrators generate clients from it and we fuzz the server with it, so it has to be the
//! code, not a description of the code: the operations come from the handlers' own
//! `#[utoipa::path]` attributes and the schemas from the request and response types the handlers
//! parse and serialize. The error responses that every endpoint shares follow from the same
//! rules the runtime applies, so they are added here, in one place ([`SharedProblems`]):
//!
//! - an endpoint with a body can answer 400 `invalid_json`, 413, 415 and 422
//!   `validation_failed` (the extractor in `extract` runs before any handler); a hosted page's
//!   form (a form body answered with HTML) answers 413 and 415 with the error page instead;
//! - a Bearer endpoint can answer 401 `invalid_token` or `session_revoked` (`bearer`);
//! - any endpoint can answer 503 (the database is unavailable, password hashing is saturated, or
//!   the server is at its in-flight bound) and 500;
//! - every 4xx and 5xx body is `application/problem+json` with the `Problem` schema.
//!
//! Tests compare the document's paths and methods with [`super::ROUTES`], the table the router's
//! guard answers 404 and 405 from, and request each documented operation on a live server.

use super::error::{FieldError, Problem};
use super::{account, auth, discovery, email, mfa, oauth, orgs, pages, passkeys};
use std::sync::OnceLock;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Response, Type};
use utoipa::{Modify, OpenApi};

/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document: every operation of the router and the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "edge-idp",
        description = "Identity provider: signup, password and TOTP login, RS256 access tokens \
                       verifiable with the JWKS alone, rotating refresh tokens with reuse \
                       detection, organizations. Errors are RFC 9457 problem details whose \
                       `code` is stable."
    ),
    paths(
        auth::signup,
        auth::login,
        auth::refresh,
        auth::logout,
        mfa::enroll,
        mfa::confirm,
        mfa::verify,
        mfa::disable,
        passkeys::register_begin,
        passkeys::register_finish,
        passkeys::login_begin,
        passkeys::login_finish,
        passkeys::list,
        passkeys::rename,
        passkeys::delete,
        account::switch_org,
        account::me,
        account::sessions,
        account::delete_session,
        account::consents,
        account::withdraw_consent,
        account::change_password,
        email::change,
        email::verify,
        email::resend,
        email::forgot,
        email::reset,
        orgs::create,
        orgs::list,
        orgs::invite,
        orgs::revoke_invitation,
        orgs::remove_member,
        orgs::invitations,
        orgs::accept_invitation,
        orgs::decline_invitation,
        discovery::jwks,
        discovery::openid_configuration,
        discovery::authorization_server_metadata,
        oauth::token,
        oauth::userinfo,
        oauth::userinfo_post,
        oauth::introspect,
        oauth::revoke,
        pages::authorize_get,
        pages::authorize_post,
        pages::sign_in,
        pages::sign_up,
        pages::sign_in_mfa,
        pages::sign_in_passkey,
        pages::account_get,
        pages::account_add,
        pages::account_begin,
        pages::account_rename,
        pages::account_delete,
        pages::script,
        pages::consent,
        pages::verify_get,
        pages::verify_post,
        pages::forgot_get,
        pages::forgot_post,
        pages::reset_get,
        pages::reset_post,
        pages::end_session_get,
        pages::end_session_post,
        pages::stylesheet,
        pages::favicon,
        discovery::healthz,
        discovery::readyz,
        discovery::metrics,
        openapi_json,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SharedProblems),
)]
pub struct ApiDoc;

/// The rendered document, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // Serializing these plain structures cannot fail; an empty object would fail the tests.
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    })
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "discovery",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value)))]
pub async fn openapi_json() -> warp::reply::Response {
    discovery::public_json(document().to_owned(), 3600)
}

/// Adds the Bearer scheme and the error responses every endpoint shares (see the module docs).
pub struct SharedProblems;

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| problem(description));
}

impl Modify for SharedProblems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from login, MFA verify, refresh or switch-org",
                    ))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                shared_problems(op);
            }
        }
    }
}

/// Whether `op` is one of the OpenID Connect provider's (tag `oauth`): its errors are the
/// standards' own (RFC 6749 JSON, redirects to the client, HTML error pages), declared by each
/// handler; only the shared 5xx answers are problem documents.
fn is_oauth(op: &Operation) -> bool {
    op.tags
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| t == "oauth"))
}

/// The media type of the hosted pages' forms.
const FORM: &str = "application/x-www-form-urlencoded";

/// Whether `op` is a hosted page's form: a form body answered with HTML. Such a form that
/// cannot be read (too large, not a form) is answered with the error page.
fn is_page_form(op: &Operation) -> bool {
    let form = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key(FORM));
    let html = op.responses.responses.values().any(|r| match r {
        RefOr::T(r) => r.content.contains_key("text/html"),
        RefOr::Ref(_) => false,
    });
    form && html
}

fn error_page(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "text/html",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build()
        .into()
}

fn shared_problems(op: &mut Operation) {
    if is_oauth(op) {
        if is_page_form(op) {
            for (status, description) in [
                ("413", "An error page: the form is too large"),
                ("415", "An error page: not a form"),
            ] {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_page(description));
            }
        }
        add(op, "413", "`payload_too_large`: the body exceeds 16 KiB");
        add(
            op,
            "503",
            "`unavailable`: a dependency is unavailable or the server is at capacity; retry shortly",
        );
        add(
            op,
            "500",
            "`internal`: an unexpected error; no internals are shown",
        );
        return;
    }
    // Errors the handlers declare are problem documents too.
    for (status, resp) in op.responses.responses.iter_mut() {
        if let (false, RefOr::T(resp)) = (status.starts_with('2'), resp) {
            if let Some(content) = resp.content.shift_remove("application/json") {
                resp.content.insert(PROBLEM_JSON.to_owned(), content);
            }
        }
    }
    if op.request_body.is_some() {
        add(
            op,
            "400",
            "`invalid_json`: the body is not JSON (an empty body included)",
        );
        add(op, "413", "`payload_too_large`: the body exceeds 16 KiB");
        add(
            op,
            "415",
            "`unsupported_media_type`: the body is not `application/json`",
        );
        add(
            op,
            "422",
            "`validation_failed`: unknown, missing or ill-typed fields, or invalid values; \
             `errors` names them",
        );
    }
    let bearer = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if bearer {
        const BAD_TOKEN: &str =
            "`invalid_token` (missing, malformed, badly signed or expired Bearer \
                                 token) or `session_revoked`";
        let www_authenticate = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "`Bearer error=\"invalid_token\"` with `invalid_token`",
            ))
            .build();
        let entry = op
            .responses
            .responses
            .entry("401".to_owned())
            .or_insert_with(|| problem(""));
        if let RefOr::T(resp) = entry {
            resp.description = if resp.description.is_empty() {
                BAD_TOKEN.to_owned()
            } else {
                format!("{}; {BAD_TOKEN}", resp.description)
            };
            resp.headers
                .insert("WWW-Authenticate".to_owned(), www_authenticate);
        }
    }
    add(
        op,
        "503",
        "`unavailable`: a dependency is unavailable or the server is at capacity; retry shortly",
    );
    add(
        op,
        "500",
        "`internal`: an unexpected error; no internals are shown",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn operations() -> BTreeSet<(String, String)> {
        let doc = ApiDoc::openapi();
        let mut ops = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    ops.insert((path.clone(), method.to_owned()));
                }
            }
        }
        ops
    }

    #[test]
    fn the_document_has_exactly_the_routers_routes_and_methods() {
        let routes: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .split(", ")
                    .map(|m| ((*path).to_owned(), m.to_owned()))
            })
            .collect();
        assert_eq!(operations(), routes);
    }

    #[test]
    fn it_is_openapi_3_1_and_every_error_is_a_problem_document() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} documents no success"
                );
                assert!(responses.contains_key("503"), "{method} {path}: no 503");
                let oauth = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "oauth"));
                for (status, resp) in responses {
                    if oauth && !status.starts_with('5') {
                        // The standards' own errors: described, with their media type.
                        assert!(
                            status.starts_with('2')
                                || status.starts_with('3')
                                || resp["content"].is_object(),
                            "{method} {path} {status}: no content documented"
                        );
                        continue;
                    }
                    if !status.starts_with('2') {
                        assert_eq!(
                            resp["content"][PROBLEM_JSON]["schema"]["$ref"],
                            "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                    }
                }
                if op.get("requestBody").is_some() && !oauth {
                    for s in ["400", "413", "415", "422"] {
                        assert!(responses.contains_key(s), "{method} {path}: no {s}");
                    }
                }
                if op.get("security").is_some() {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
            }
        }
    }

    #[test]
    fn request_schemas_refuse_unknown_fields_like_the_server_does() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let login = &doc["components"]["schemas"]["LoginRequest"];
        assert_eq!(login["additionalProperties"], false, "{login}");
        let required: Vec<&str> = login["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(required, ["email", "password"]);
    }
}
