//! Bearer authentication for the endpoints that need a logged-in caller.
//!
//! The token is verified against the key snapshot (signature, `typ`, `iss`, `aud`, `exp`,
//! `nbf`), then its session is checked: a token whose session was revoked (logout, password
//! change, refresh-token reuse) is refused with `session_revoked` before it expires.

use super::error::ApiError;
use crate::security::tokens::AccessClaims;
use crate::state::SharedState;
use std::convert::Infallible;
use uuid::Uuid;
use warp::Filter;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub`.
    pub user_id: Uuid,
    /// `sid`.
    pub session_id: Uuid,
    /// All claims.
    pub claims: std::sync::Arc<AccessClaims>,
    /// The session's active organization (as of at most `LIVE_TTL` ago; it may differ from
    /// `org_id` in a token minted before a switch).
    pub active_org_id: Uuid,
    /// Where the request came from.
    pub client: super::extract::Client,
}

/// The token of an `Authorization` value of the `Bearer` scheme (any case), trimmed.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Extracts the caller, or the 401 to answer.
pub fn bearer(
    state: SharedState,
) -> impl Filter<Extract = (Result<Caller, ApiError>,), Error = Infallible> + Clone {
    super::extract::client(state.clone())
        .and(warp::header::headers_cloned())
        .then(
            move |client: super::extract::Client, h: warp::http::HeaderMap| {
                let state = state.clone();
                async move {
                    let token = h
                        .get(warp::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(bearer_token)
                        .ok_or(ApiError::InvalidToken)?;
                    let claims = state.tokens.verify(token).ok_or(ApiError::InvalidToken)?;
                    let user_id =
                        Uuid::parse_str(&claims.sub).map_err(|_| ApiError::InvalidToken)?;
                    let session_id =
                        Uuid::parse_str(&claims.sid).map_err(|_| ApiError::InvalidToken)?;
                    let active_org_id = state
                        .revocations
                        .live_org(&state.db, session_id, state.clock.now())
                        .await?
                        .ok_or(ApiError::SessionRevoked)?;
                    Ok(Caller {
                        user_id,
                        session_id,
                        claims,
                        active_org_id,
                        client,
                    })
                }
            },
        )
}
