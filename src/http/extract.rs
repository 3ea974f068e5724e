//! Request extraction: bodies, client IP, user agent, and field validation.
//!
//! Body rules of API.md are applied in one order for every endpoint: media type (415), size
//! (413, counted by the server edge while it reads the body, so a body without
//! `Content-Length` cannot exceed it either),
//! JSON syntax (400), then shape (422 with the offending field).

use super::error::{ApiError, FieldError};
use crate::app::{Client, SharedApp};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use warp::Filter;

/// A handler's raw JSON body, or the 413/415 reading it produced.
pub type Body = Result<Bytes, ApiError>;

/// A path segment that should be a UUID; `None` for anything else (never parsed when long).
pub fn token_shaped_uuid(s: &str) -> Option<uuid::Uuid> {
    if s.len() > 64 {
        return None;
    }
    uuid::Uuid::parse_str(s).ok()
}

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Marks a request whose body the server edge stopped reading at [`BODY_LIMIT`].
#[derive(Debug, Clone, Copy)]
pub struct BodyTooLarge;

/// The TCP peer, put into request extensions by the server edge.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Injects the shared state.
pub fn with_state(
    state: SharedApp,
) -> impl Filter<Extract = (SharedApp,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Extracts the [`Client`]: the configured header's value when it parses as an IP address,
/// else the TCP peer.
pub fn client(
    state: SharedApp,
) -> impl Filter<Extract = (Client,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::headers_cloned())
        .map(
            move |peer: Option<PeerAddr>, headers: warp::http::HeaderMap| {
                let policy = &state.settings.client_ip;
                let from_header = policy
                    .header
                    .as_ref()
                    .and_then(|name| header_list(&headers, name))
                    .and_then(|v| parse_client_ip(&v, policy.trusted_hops));
                let ip = from_header
                    .or(peer.map(|p| p.0.ip()))
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
                let user_agent = headers
                    .get(warp::http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(512).collect());
                let request_id = headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Client {
                    ip,
                    user_agent,
                    request_id,
                }
            },
        )
}

/// Every line of header `name` joined into one comma list, as RFC 9110 §5.3 makes them
/// equivalent: a proxy may add its own line instead of appending to the client's, and the
/// right-most entries must still be the proxies'. `None` when absent or when any line is not
/// text (then no position in the list can be trusted).
fn header_list(headers: &warp::http::HeaderMap, name: &warp::http::HeaderName) -> Option<String> {
    let lines: Option<Vec<&str>> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    let lines = lines?;
    (!lines.is_empty()).then(|| lines.join(","))
}

/// Parses a client-IP header value: an IP address, or of a comma list (`X-Forwarded-For`) the
/// `hops`-th entry from the right. Each proxy appends the address it saw, so the right-most
/// entries are written by the proxies we trust and the left-most by the client, who can write
/// anything there.
pub fn parse_client_ip(value: &str, hops: usize) -> Option<IpAddr> {
    let entry = value.rsplit(',').nth(hops.max(1) - 1)?.trim();
    if entry.len() > 64 {
        return None;
    }
    entry.parse().ok()
}

/// Extracts the raw JSON body, or the 413/415 that reading it produced.
pub fn json_body(
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::ext::optional::<BodyTooLarge>())
        .and(warp::body::stream())
        .then(
            |ct: Option<String>, too_large: Option<BodyTooLarge>, body| {
                read_body(ct, "application/json", too_large.is_some(), body)
            },
        )
}

/// Extracts the raw body of an HTML form or an OAuth request
/// (`application/x-www-form-urlencoded`), or the 413/415 that reading it produced.
pub fn form_body(
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::ext::optional::<BodyTooLarge>())
        .and(warp::body::stream())
        .then(
            |ct: Option<String>, too_large: Option<BodyTooLarge>, body| {
                read_body(
                    ct,
                    "application/x-www-form-urlencoded",
                    too_large.is_some(),
                    body,
                )
            },
        )
}

async fn read_body<B: Buf>(
    content_type: Option<String>,
    media_type: &'static str,
    too_large: bool,
    body: impl Stream<Item = Result<B, warp::Error>>,
) -> Result<Bytes, ApiError> {
    let expected = content_type.as_deref().is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case(media_type)
    });
    if !expected {
        return Err(ApiError::UnsupportedMediaType);
    }
    // The server edge has read the body already, stopping at the limit.
    if too_large {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut buf = BytesMut::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::InvalidJson(format!("body could not be read: {e}")))?;
        if buf.len() + chunk.remaining() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            buf.extend_from_slice(c);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Parses a JSON body into `T` (which denies unknown fields): syntax errors are 400, shape
/// errors 422 naming the field.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, ApiError>) -> Result<T, ApiError> {
    let body = body?;
    // Syntax first, over the whole body, so that `{"x":1} trailing` is 400 rather than a 422
    // about `x`; then shape, with the path of the offending field.
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    serde_path_to_error::deserialize(json).map_err(shape_error)
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let msg = e.into_inner().to_string();
    let field = backticked(&msg, "unknown field `")
        .or_else(|| backticked(&msg, "missing field `"))
        .unwrap_or_else(|| if path == "." { "body".into() } else { path });
    ApiError::Validation(vec![FieldError::new(field, msg)])
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

/// Normalises an email as API.md asks (trimmed, lower-cased) and checks its syntax.
pub fn email(field: &str, raw: &str) -> Result<String, FieldError> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if e.len() > 254 {
        return Err(FieldError::new(field, "must be at most 254 characters"));
    }
    if e.chars().any(|c| c.is_control() || c.is_whitespace())
        || !email_address::EmailAddress::is_valid(&e)
    {
        return Err(FieldError::new(field, "must be a valid email address"));
    }
    Ok(e)
}

/// An optional display text: trimmed, 1 to `max` characters, no control characters.
pub fn text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    let Some(raw) = raw else { return Ok(None) };
    let t = raw.trim();
    if t.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(t.to_owned()))
}

/// Collects field errors into a 422.
pub fn validate(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        n: Option<u32>,
    }

    fn code(r: Result<Body, ApiError>) -> (&'static str, Option<String>) {
        let e = r.unwrap_err();
        let field = match &e {
            ApiError::Validation(v) => Some(v[0].field.clone()),
            _ => None,
        };
        (e.parts().1, field)
    }

    #[test]
    fn body_errors_are_classified() {
        let p = |s: &str| parse::<Body>(Ok(Bytes::from(s.to_owned())));
        assert_eq!(code(p("")), ("invalid_json", None));
        assert_eq!(code(p("{")), ("invalid_json", None));
        assert_eq!(code(p(r#"{"email":"a"} x"#)), ("invalid_json", None));
        assert_eq!(code(p("{}")), ("validation_failed", Some("email".into())));
        assert_eq!(
            code(p(r#"{"email":"a","x":1}"#)),
            ("validation_failed", Some("x".into()))
        );
        assert_eq!(
            code(p(r#"{"email":1}"#)),
            ("validation_failed", Some("email".into()))
        );
        assert_eq!(
            code(p(r#"{"email":"a","n":"1"}"#)),
            ("validation_failed", Some("n".into()))
        );
        assert_eq!(code(p("[]")), ("validation_failed", Some("body".into())));
        assert!(p(r#"{"email":"a"}"#).is_ok());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            email("email", "  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(email("email", "").is_err());
        assert!(email("email", "no-at-sign").is_err());
        assert!(email("email", "a\0b@example.com").is_err());
        assert!(email("email", &format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn client_ip_header_values_are_read_from_the_right() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(parse_client_ip("203.0.113.7", 1), ip("203.0.113.7"));
        // The client wrote the left-most entry; the trusted proxy appended the right-most.
        assert_eq!(
            parse_client_ip("6.6.6.6, 203.0.113.7", 1),
            ip("203.0.113.7")
        );
        assert_eq!(
            parse_client_ip("6.6.6.6, 2001:db8::1, 10.0.0.1", 2),
            ip("2001:db8::1")
        );
        assert_eq!(
            parse_client_ip("203.0.113.7", 2),
            None,
            "fewer entries than hops"
        );
        assert_eq!(parse_client_ip("1.1.1.1, not-an-ip", 1), None);
        assert_eq!(parse_client_ip("not-an-ip", 1), None);
        assert_eq!(parse_client_ip("", 1), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |s: &str| crate::app::caller::ip_rate_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    }
}
