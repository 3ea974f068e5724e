//! How handlers answer: JSON with the right status, `no-store` for secrets and personal data,
//! the `RateLimit-*` headers of a metered flow, and errors as problem responses.

use super::error::{rate_limit_headers, ApiError};
use crate::app::{AppError, Metered};
use crate::security::ratelimit::Decision;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

/// RFC 3339 UTC for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `body` as JSON with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// `body` as JSON, 200, marked as carrying a secret or personal data.
pub fn private_json<T: Serialize>(body: &T) -> Response {
    no_store(json(StatusCode::OK, body))
}

/// 204 with no body.
pub fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// Marks a response as carrying a secret: no cache may keep it.
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Adds the `RateLimit-*` headers of `d`.
pub fn with_limits(mut resp: Response, d: &Decision) -> Response {
    rate_limit_headers(&mut resp, d);
    resp
}

/// Renders a handler's error as its problem response.
pub fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(ApiError::into_response)
}

/// Renders a metered flow: its success with `ok`, or its error; the limit's headers on both,
/// except on a refusal inside the flow (a lockout, the second-factor cap), which carries the
/// headers of what refused it.
pub fn metered<T>(m: Metered<T>, ok: impl FnOnce(T) -> Response) -> Response {
    match m.outcome {
        Ok(v) => with_limits(ok(v), &m.decision),
        Err(e @ AppError::RateLimited(_)) => ApiError::from(e).into_response(),
        Err(e) => with_limits(ApiError::from(e).into_response(), &m.decision),
    }
}
