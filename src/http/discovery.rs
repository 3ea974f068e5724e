//! Discovery and operations: JWKS, OpenID Provider (and RFC 8414) metadata, liveness and
//! readiness.
//!
//! JWKS is served from the pre-rendered snapshot of the KeyManager: no database, no mailbox.

use super::error::{ApiError, Problem};
use crate::app::clients::GRANTS;
use crate::app::oauth::{CLAIMS_SUPPORTED, SCOPES_SUPPORTED};
use crate::app::SharedApp;
use edge_idp_actors::keys::JwkSet;
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Reply;

/// `Cache-Control` max-age of JWKS, seconds. A key is published before it signs by at least this
/// long (key rotation keeps that promise), so a cached JWKS never misses a `kid`.
pub const JWKS_MAX_AGE: u64 = 300;

/// OpenID Provider metadata (OpenID Connect Discovery 1.0 §3), which is also the
/// authorization server metadata of RFC 8414. Only what exists is advertised: a client library
/// reading it is never sent to an endpoint that would not answer it, nor offered a feature
/// (request objects, the `claims` parameter, implicit or hybrid flows) that is refused.
#[derive(Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    /// `ISSUER`.
    issuer: String,
    /// The hosted sign-in's entry point.
    authorization_endpoint: String,
    /// Code, refresh and client-credentials exchanges.
    token_endpoint: String,
    /// Claims of the signed-in user.
    userinfo_endpoint: String,
    /// RFC 7662, for confidential clients.
    introspection_endpoint: String,
    /// `client_secret_basic`, `client_secret_post`.
    introspection_endpoint_auth_methods_supported: [&'static str; 2],
    /// RFC 7009.
    revocation_endpoint: String,
    /// `client_secret_basic`, `client_secret_post`, `none`.
    revocation_endpoint_auth_methods_supported: [&'static str; 3],
    /// Absolute URL of the JWKS.
    jwks_uri: String,
    /// `openid profile email offline_access`.
    scopes_supported: [&'static str; 4],
    /// `code` only.
    response_types_supported: [&'static str; 1],
    /// `query` only.
    response_modes_supported: [&'static str; 1],
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    grant_types_supported: [&'static str; 3],
    /// `S256` only.
    code_challenge_methods_supported: [&'static str; 1],
    /// `client_secret_basic`, `client_secret_post`, `none` (public clients, with PKCE).
    token_endpoint_auth_methods_supported: [&'static str; 3],
    /// `public`.
    subject_types_supported: [&'static str; 1],
    /// `RS256`.
    id_token_signing_alg_values_supported: [&'static str; 1],
    /// RP-Initiated Logout 1.0.
    end_session_endpoint: String,
    /// Claims of ID tokens and userinfo.
    claims_supported: [&'static str; 14],
    /// `iss` in every authorization response (RFC 9207).
    authorization_response_iss_parameter_supported: bool,
    /// No `claims` request parameter.
    claims_parameter_supported: bool,
    /// No request objects.
    request_parameter_supported: bool,
    /// No `request_uri`.
    request_uri_parameter_supported: bool,
}

fn configuration(state: &SharedApp) -> OpenIdConfiguration {
    let iss = &state.settings.issuer;
    OpenIdConfiguration {
        issuer: iss.clone(),
        authorization_endpoint: format!("{iss}/oauth2/authorize"),
        token_endpoint: format!("{iss}/oauth2/token"),
        userinfo_endpoint: format!("{iss}/oauth2/userinfo"),
        introspection_endpoint: format!("{iss}/oauth2/introspect"),
        introspection_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
        ],
        revocation_endpoint: format!("{iss}/oauth2/revoke"),
        revocation_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        jwks_uri: format!("{iss}/.well-known/jwks.json"),
        end_session_endpoint: format!("{iss}/oauth2/end-session"),
        scopes_supported: SCOPES_SUPPORTED,
        response_types_supported: ["code"],
        response_modes_supported: ["query"],
        grant_types_supported: GRANTS,
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        claims_supported: CLAIMS_SUPPORTED,
        authorization_response_iss_parameter_supported: true,
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
    }
}

/// `{"status"}` of the health endpoints.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "Every key whose tokens may still be valid, and the next one; `Cache-Control: public, max-age=300`", body = JwkSet)))]
pub async fn jwks(state: SharedApp) -> Response {
    let body = state.keys.load().jwks_json.to_string();
    public_json(body, JWKS_MAX_AGE)
}

/// A pre-rendered JSON document that caches may keep for `max_age` seconds.
pub fn public_json(body: String, max_age: u64) -> Response {
    let mut resp = warp::http::Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .unwrap_or(HeaderValue::from_static("public")),
    );
    resp
}

/// `GET /.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID Provider metadata", body = OpenIdConfiguration)))]
pub async fn openid_configuration(state: SharedApp) -> Response {
    metadata(&state)
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414): the same document.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Authorization server metadata (RFC 8414)", body = OpenIdConfiguration)))]
pub async fn authorization_server_metadata(state: SharedApp) -> Response {
    metadata(&state)
}

fn metadata(state: &SharedApp) -> Response {
    let mut resp = warp::reply::json(&configuration(state)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz() -> Response {
    warp::reply::json(&Status { status: "ok" }).into_response()
}

/// `GET /readyz`: the database answers and signing keys are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The database answers and keys are loaded", body = Status),
        (status = 503, description = "`unavailable`: not ready", body = Problem),
    ))]
pub async fn readyz(state: SharedApp) -> Response {
    match state.ready().await {
        Ok(()) => warp::reply::json(&Status { status: "ready" }).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn metrics(state: SharedApp, authorization: Option<String>) -> Response {
    let access = &state.settings.metrics;
    if access.listen_addr.is_some() {
        // Served on the internal listener only.
        return ApiError::NotFound.into_response();
    }
    if let Some(expected) = &access.token {
        let given = authorization
            .as_deref()
            .and_then(super::bearer::bearer_token)
            .unwrap_or("");
        let same: bool = subtle::ConstantTimeEq::ct_eq(
            edge_idp_actors::crypto::sha256(given.as_bytes()).as_slice(),
            edge_idp_actors::crypto::sha256(expected.as_bytes()).as_slice(),
        )
        .into();
        if !same {
            return ApiError::InvalidToken.into_response();
        }
    }
    render_metrics(&state)
}

/// The Prometheus text of this process, whoever asked.
pub fn render_metrics(state: &SharedApp) -> Response {
    let body = state.render_metrics();
    let mut resp = warp::http::Response::new(body.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
