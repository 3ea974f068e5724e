//! Discovery and operations: JWKS, OpenID configuration, liveness and readiness.
//!
//! JWKS is served from the pre-rendered snapshot of the KeyManager: no database, no mailbox.

use super::error::{ApiError, Problem};
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

/// OpenID Provider metadata (OpenID Connect Discovery 1.0), advertising only what exists.
///
/// There is no OAuth authorization or token endpoint yet (the JSON login and refresh are not
/// OAuth grants), so no `token_endpoint`, no `grant_types_supported`, and empty lists of
/// response types and token-endpoint authentication methods: a client library reading this
/// learns the issuer and the keys to verify its tokens with, and is not sent to endpoints that
/// would not answer it.
#[derive(Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    /// `ISSUER`.
    issuer: String,
    /// Absolute URL of the JWKS.
    jwks_uri: String,
    /// Empty: no token endpoint yet.
    token_endpoint_auth_methods_supported: [&'static str; 0],
    /// Empty: no authorization endpoint yet.
    response_types_supported: [&'static str; 0],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
    /// Claims of the access tokens.
    claims_supported: [&'static str; 13],
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
    responses((status = 200, description = "OIDC discovery metadata", body = OpenIdConfiguration)))]
pub async fn openid_configuration(state: SharedApp) -> Response {
    let iss = &state.settings.issuer;
    let body = OpenIdConfiguration {
        issuer: iss.clone(),
        jwks_uri: format!("{iss}/.well-known/jwks.json"),
        token_endpoint_auth_methods_supported: [],
        response_types_supported: [],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        claims_supported: [
            "iss",
            "aud",
            "sub",
            "exp",
            "iat",
            "nbf",
            "jti",
            "sid",
            "org_id",
            "role",
            "email",
            "amr",
            "auth_time",
        ],
    };
    let mut resp = warp::reply::json(&body).into_response();
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
