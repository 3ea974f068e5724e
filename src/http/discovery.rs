//! Discovery and operations: JWKS, OpenID configuration, liveness and readiness.
//!
//! JWKS is served from the pre-rendered snapshot of the KeyManager: no database, no mailbox.

use super::error::ApiError;
use crate::state::SharedState;
use std::time::Duration;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Reply;

/// `Cache-Control` max-age of JWKS, seconds. A key is published before it signs by at least this
/// long (key rotation keeps that promise), so a cached JWKS never misses a `kid`.
pub const JWKS_MAX_AGE: u64 = 300;

/// `GET /.well-known/jwks.json`.
pub async fn jwks(state: SharedState) -> Response {
    let body = state.keys.load().jwks_json.clone();
    let mut resp = warp::http::Response::new(body.to_string().into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE}"))
            .unwrap_or(HeaderValue::from_static("public")),
    );
    resp
}

/// `GET /.well-known/openid-configuration`.
pub async fn openid_configuration(state: SharedState) -> Response {
    let iss = &state.settings.issuer;
    let body = serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/auth/login"),
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "sid", "org_id", "role", "email", "amr"],
    });
    let mut resp = warp::reply::json(&body).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    warp::reply::json(&serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the database answers and signing keys are loaded.
pub async fn readyz(state: SharedState) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await;
    let keys_loaded = !state.keys.load().published.is_empty();
    match db {
        Ok(Ok(())) if keys_loaded => {
            warp::reply::json(&serde_json::json!({"status": "ready"})).into_response()
        }
        Ok(Err(e)) => ApiError::Unavailable(format!("database: {e}")).into_response(),
        _ => ApiError::Unavailable("not ready".into()).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: SharedState) -> Response {
    let body = state
        .metrics
        .render(&state.actors, state.limiter.backend_switches());
    let mut resp = warp::http::Response::new(body.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
