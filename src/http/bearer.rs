//! Bearer authentication for the endpoints that need a logged-in caller: the filter takes the
//! token from `Authorization` and asks the application who it names (`App::authenticate`).

use super::error::ApiError;
use crate::app::{Caller, SharedApp};
use std::convert::Infallible;
use warp::Filter;

/// What a handler behind Bearer authentication receives: the caller, or the 401 to answer.
pub type Auth = Result<Caller, ApiError>;

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
    state: SharedApp,
) -> impl Filter<Extract = (Result<Caller, ApiError>,), Error = Infallible> + Clone {
    super::extract::client(state.clone())
        .and(warp::header::headers_cloned())
        .then(
            move |client: crate::app::Client, h: warp::http::HeaderMap| {
                let state = state.clone();
                async move {
                    let token = h
                        .get(warp::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(bearer_token)
                        .ok_or(ApiError::InvalidToken)?;
                    Ok(state.authenticate(token, client).await?)
                }
            },
        )
}
