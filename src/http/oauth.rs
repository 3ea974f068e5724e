//! The OAuth endpoints a client calls itself: token (RFC 6749 §3.2) and userinfo (OpenID
//! Connect Core §5.3). Requests are `application/x-www-form-urlencoded`; answers are JSON in
//! the standards' shapes (`{"error", "error_description"}` for errors), never cached.

// Handlers answer early with a finished `Response` (an error page, an OAuth error): a
// `Result<_, Response>` once per request, never stored, so its size costs nothing worth a box.
#![allow(clippy::result_large_err)]

use super::error::{ApiError, Problem};
use super::reply::{metered, private_json};
use crate::app::oauth::token::{ClientAuth, TokenRequest, TokenResponse, UserInfo};
use crate::app::oauth::OAuthError;
use crate::app::{AppError, Client, SharedApp};
use base64::Engine;
use bytes::Bytes;
use edge_idp_actors::SecretString;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;
use warp::http::{header, HeaderValue};
use warp::reply::Response;

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Serialize, ToSchema)]
pub struct OAuthTokens {
    /// RS256 JWT access token (`typ` `at+jwt`), with `client_id` and `scope`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// With `offline_access`, for a client with the `refresh_token` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// With the `openid` scope: the RS256 ID token.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// Granted scopes, space-separated.
    scope: String,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_token`, `insufficient_scope`.
    #[schema(example = "invalid_grant")]
    error: String,
    /// For the client's developer.
    error_description: String,
}

/// Userinfo claims (OpenID Connect Core §5.3.2), by the token's scopes.
#[derive(Serialize, ToSchema)]
pub struct UserInfoClaims {
    /// The user's id.
    sub: String,
    /// With `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// With `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    /// With `profile`, when the user has a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The token request's form, as documented (the handler reads it field by field, refusing a
/// field sent twice).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    #[schema(example = "authorization_code")]
    grant_type: String,
    /// With `authorization_code`.
    code: Option<String>,
    /// With `authorization_code`: the one the code was sent to.
    redirect_uri: Option<String>,
    /// With `authorization_code` when the request had a `code_challenge`.
    code_verifier: Option<String>,
    /// With `refresh_token`.
    refresh_token: Option<String>,
    /// Optional with `refresh_token` (no wider than granted) and `client_credentials`.
    scope: Option<String>,
    /// `client_secret_post` and public clients.
    client_id: Option<String>,
    /// `client_secret_post`.
    client_secret: Option<String>,
}

/// Userinfo's optional form (RFC 6750 §2.2).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct UserInfoForm {
    /// The access token, instead of the `Authorization` header.
    access_token: Option<String>,
}

/// The introspection and revocation form, as documented.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct TokenOnlyForm {
    /// The token asked about.
    token: String,
    /// `access_token` or `refresh_token`: a hint only; every kind is tried.
    token_type_hint: Option<String>,
    /// `client_secret_post` and public clients.
    client_id: Option<String>,
    /// `client_secret_post`.
    client_secret: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `active`, and the rest only when it is true.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionBody {
    /// Whether the token is usable now.
    active: bool,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    /// The user, or for a client's own token the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// `Bearer` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

/// The form's fields; a field sent twice is refused (RFC 6749 §3.2).
fn fields(body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if map.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!("{k} is sent twice")));
        }
    }
    Ok(map)
}

/// One half of HTTP Basic credentials, form-urlencoded per RFC 6749 §2.3.1.
fn form_decoded(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The client's credentials: HTTP Basic, or `client_id` (and `client_secret`) in the body, not
/// both (RFC 6749 §2.3).
fn client_auth(
    authorization: Option<&str>,
    form: &mut HashMap<String, String>,
) -> Result<ClientAuth, OAuthError> {
    let body_id = form.remove("client_id").filter(|v| !v.is_empty());
    let body_secret = form.remove("client_secret").filter(|v| !v.is_empty());
    if let Some(value) = authorization {
        let (scheme, b64) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(OAuthError::InvalidClient { basic: true });
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| OAuthError::InvalidClient { basic: true })?;
        let text = String::from_utf8(raw).map_err(|_| OAuthError::InvalidClient { basic: true })?;
        let (id, secret) = text
            .split_once(':')
            .ok_or(OAuthError::InvalidClient { basic: true })?;
        let (id, secret) = (form_decoded(id), form_decoded(secret));
        if body_secret.is_some() || body_id.as_ref().is_some_and(|b| *b != id) {
            return Err(OAuthError::InvalidRequest(
                "use one client authentication method".into(),
            ));
        }
        return Ok(ClientAuth {
            client_id: id,
            secret: Some(SecretString::new(secret)),
            basic: true,
        });
    }
    let Some(client_id) = body_id else {
        return Err(OAuthError::InvalidClient { basic: false });
    };
    Ok(ClientAuth {
        client_id,
        secret: body_secret.map(SecretString::new),
        basic: false,
    })
}

fn token_request(form: &mut HashMap<String, String>) -> Result<TokenRequest, OAuthError> {
    let mut take = |k: &str| form.remove(k).filter(|v| !v.is_empty());
    let grant = take("grant_type")
        .ok_or_else(|| OAuthError::InvalidRequest("grant_type is missing".into()))?;
    match grant.as_str() {
        "authorization_code" => Ok(TokenRequest::AuthorizationCode {
            code: SecretString::new(
                take("code").ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?,
            ),
            redirect_uri: take("redirect_uri"),
            code_verifier: take("code_verifier").map(SecretString::new),
        }),
        "refresh_token" => Ok(TokenRequest::RefreshToken {
            refresh_token: SecretString::new(
                take("refresh_token")
                    .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?,
            ),
            scope: take("scope"),
        }),
        "client_credentials" => Ok(TokenRequest::ClientCredentials {
            scope: take("scope"),
        }),
        _ => Err(OAuthError::UnsupportedGrantType),
    }
}

fn oauth_error(e: OAuthError) -> Response {
    ApiError::OAuth(e).into_response()
}

fn body_or_error(body: Result<Bytes, ApiError>) -> Result<Bytes, Response> {
    body.map_err(|e| match e {
        ApiError::UnsupportedMediaType => oauth_error(OAuthError::InvalidRequest(
            "send the request as application/x-www-form-urlencoded".into(),
        )),
        other => other.into_response(),
    })
}

/// `POST /oauth2/token`.
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "`grant_type` and its fields, and the client: HTTP Basic (`client_secret_basic`), \
                       or `client_id` and `client_secret` (`client_secret_post`), or `client_id` alone \
                       for a public client"),
    responses(
        (status = 200, description = "Tokens; `Cache-Control: no-store`", body = OAuthTokens),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic` when HTTP Basic was used", body = OAuthErrorBody),
        (status = 429, description = "`rate_limited` (per client IP, the refresh limit)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn token(
    app: SharedApp,
    client: Client,
    authorization: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let body = match body_or_error(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed = fields(&body).and_then(|mut form| {
        let auth = client_auth(authorization.as_deref(), &mut form)?;
        Ok((auth, token_request(&mut form)?))
    });
    let (auth, req) = match parsed {
        Ok(x) => x,
        Err(e) => return oauth_error(e),
    };
    match app.token(&client, auth, req).await {
        Ok(m) => metered(m, render_tokens),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn render_tokens(t: TokenResponse) -> Response {
    let mut resp = private_json(&OAuthTokens {
        access_token: t.access_token,
        token_type: "Bearer",
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.map(|r| r.expose().to_owned()),
        id_token: t.id_token,
        scope: t.scope,
    });
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /oauth2/userinfo` (Bearer), `POST /oauth2/userinfo` (Bearer, or `access_token` in a
/// form body, RFC 6750 §2.2).
#[utoipa::path(get, path = "/oauth2/userinfo", tag = "oauth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Claims by the token's scopes", body = UserInfoClaims),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer error=\"invalid_token\"`", body = OAuthErrorBody),
        (status = 403, description = "`insufficient_scope`: the token was not granted `openid`", body = OAuthErrorBody),
    ))]
pub async fn userinfo(
    app: SharedApp,
    client: Client,
    authorization: Option<String>,
    body: Option<Bytes>,
) -> Response {
    let from_header = authorization
        .as_deref()
        .and_then(super::bearer::bearer_token)
        .map(str::to_owned);
    let from_body = body
        .as_ref()
        .and_then(|b| fields(b).ok())
        .and_then(|mut f| f.remove("access_token"));
    let token = match (from_header, from_body) {
        (Some(t), None) | (None, Some(t)) => t,
        (Some(_), Some(_)) => {
            return oauth_error(OAuthError::InvalidRequest(
                "send the access token once".into(),
            ))
        }
        (None, None) => return oauth_error(OAuthError::InvalidToken),
    };
    let caller = match app.authenticate(&token, client).await {
        Ok(c) => c,
        Err(AppError::InvalidToken | AppError::SessionRevoked) => {
            return oauth_error(OAuthError::InvalidToken)
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    match app.userinfo(&caller).await {
        Ok(UserInfo {
            sub,
            email,
            email_verified,
            name,
        }) => private_json(&UserInfoClaims {
            sub,
            email,
            email_verified,
            name,
        }),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/userinfo`: as `GET`.
#[utoipa::path(post, path = "/oauth2/userinfo", tag = "oauth",
    security(("bearer" = [])),
    request_body(content = UserInfoForm, content_type = "application/x-www-form-urlencoded",
        description = "Optional: `access_token` instead of the `Authorization` header"),
    responses(
        (status = 200, description = "Claims by the token's scopes", body = UserInfoClaims),
        (status = 400, description = "`invalid_request`: the token both in the header and in the body (RFC 6750 §2)", body = OAuthErrorBody),
        (status = 401, description = "`invalid_token`", body = OAuthErrorBody),
        (status = 403, description = "`insufficient_scope`", body = OAuthErrorBody),
    ))]
pub async fn userinfo_post(
    app: SharedApp,
    client: Client,
    authorization: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    userinfo(app, client, authorization, body.ok()).await
}

/// The client and the `token` of an introspection or revocation request.
fn token_and_client(
    authorization: Option<&str>,
    body: Result<Bytes, ApiError>,
) -> Result<(ClientAuth, SecretString), Response> {
    let body = body_or_error(body)?;
    let parsed = fields(&body).and_then(|mut form| {
        let auth = client_auth(authorization, &mut form)?;
        let token = form
            .remove("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest("token is missing".into()))?;
        Ok((auth, SecretString::new(token)))
    });
    parsed.map_err(oauth_error)
}

/// `POST /oauth2/introspect` (RFC 7662).
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth",
    request_body(content = TokenOnlyForm, content_type = "application/x-www-form-urlencoded",
        description = "`token`, and a confidential client's credentials (Basic or post)"),
    responses(
        (status = 200, description = "`{\"active\": false}`, or the token's claims; `no-store`", body = IntrospectionBody),
        (status = 400, description = "`invalid_request`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client` (public clients may not introspect)", body = OAuthErrorBody),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn introspect(
    app: SharedApp,
    client: Client,
    authorization: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (auth, token) = match token_and_client(authorization.as_deref(), body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app.introspect(&client, auth, token).await {
        Ok(m) => metered(m, |i| {
            private_json(&IntrospectionBody {
                active: i.active,
                client_id: i.client_id,
                sub: i.sub,
                scope: i.scope,
                exp: i.exp,
                iat: i.iat,
                iss: i.iss,
                token_type: i.token_type,
            })
        }),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /oauth2/revoke` (RFC 7009).
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = TokenOnlyForm, content_type = "application/x-www-form-urlencoded",
        description = "`token`, and the client (Basic, post, or `client_id` alone for a public client)"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (an unknown or another client's token changes nothing)"),
        (status = 400, description = "`invalid_request`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    app: SharedApp,
    client: Client,
    authorization: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (auth, token) = match token_and_client(authorization.as_deref(), body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app.revoke_token(&client, auth, token).await {
        Ok(m) => metered(m, |()| {
            let mut resp = warp::http::Response::new(Default::default());
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }),
        Err(e) => ApiError::from(e).into_response(),
    }
}
