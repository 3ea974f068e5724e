//! The one place where errors become HTTP: every [`ApiError`] variant documents its status and
//! problem `code`, and [`ApiError::into_response`] renders RFC 9457 problem details. Internal
//! causes are logged here with their whole chain and answered with an opaque body.

use crate::app::error::Cause;
use crate::app::oauth::OAuthError;
use crate::app::AppError;
use crate::ops::telemetry::chain;
use crate::security::ratelimit::Decision;
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

/// One invalid field of a 422 `validation_failed`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name in the request body.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON (an empty body included).
    InvalidJson(String),
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    UnsupportedMediaType,
    /// 413 `payload_too_large`: the body exceeds 16 KiB.
    PayloadTooLarge,
    /// 422 `validation_failed`: unknown, missing or ill-typed fields, or invalid values.
    Validation(Vec<FieldError>),
    /// 422 `weak_password`: too short, too long, or common.
    WeakPassword(String),
    /// 404 `not_found`: no such path.
    NotFound,
    /// 405 `method_not_allowed`, with the `Allow` header.
    MethodNotAllowed(&'static str),
    /// 409 `email_taken`.
    EmailTaken,
    /// 401 `invalid_credentials`: wrong password or unknown email, indistinguishably.
    InvalidCredentials,
    /// 403 `not_a_member`: not a member of the requested organization (or it does not exist).
    NotAMember,
    /// 401 `invalid_refresh_token`: unknown, expired or revoked.
    InvalidRefreshToken,
    /// 401 `refresh_token_reused`: the family has been revoked.
    RefreshTokenReused,
    /// 403 `forbidden`: the caller's role in the organization does not allow this.
    Forbidden,
    /// 409 `already_member`: the account (the invited email's, or the caller accepting) is
    /// already a member of the organization.
    AlreadyMember,
    /// 409 `last_owner`: the organization would lose its last owner.
    LastOwner,
    /// 401 `invalid_mfa_code`: wrong or malformed code, or a TOTP step already used.
    InvalidMfaCode,
    /// 401 `invalid_mfa_token`: unknown, expired, used or burned `mfa_token`.
    InvalidMfaToken,
    /// 401 `invalid_passkey`: a passkey ceremony failed its checks, or the credential is unknown.
    InvalidPasskey,
    /// 409 `passkey_exists`: that credential is registered already.
    PasskeyExists,
    /// 400 `invalid_email_token`: a mailed link's token that is unknown, expired, used, or for
    /// an address the account no longer has.
    InvalidEmailToken,
    /// 403 `email_not_verified`: `REQUIRE_VERIFIED_EMAIL` and the address is not verified.
    EmailNotVerified,
    /// 409 `email_already_verified`.
    EmailAlreadyVerified,
    /// 409 `mfa_already_enabled`.
    MfaAlreadyEnabled,
    /// 409 `mfa_not_pending`.
    MfaNotPending,
    /// 401 `invalid_token`: missing, malformed, badly signed or expired Bearer token; with
    /// `WWW-Authenticate: Bearer error="invalid_token"`.
    InvalidToken,
    /// 401 `session_revoked`: the Bearer token's session was revoked.
    SessionRevoked,
    /// 401 `insufficient_user_authentication` (RFC 9470): the login behind the Bearer token is
    /// older than the step-up window (its `max_age`, seconds); sign in again.
    StepUpRequired(i64),
    /// 408 `request_timeout`: the request body did not arrive in time.
    RequestTimeout,
    /// 429 `rate_limited`, with `Retry-After` and `RateLimit-*`.
    RateLimited(Decision),
    /// An OAuth 2.0 error of the token or userinfo endpoint, in the standards' own shape:
    /// `{"error", "error_description"}` (RFC 6749 §5.2), 400; 401 for `invalid_client` (with
    /// `WWW-Authenticate: Basic` when the client used it) and `invalid_token`; 403 for
    /// `insufficient_scope` (RFC 6750 §3.1).
    OAuth(OAuthError),
    /// 503 `unavailable`: overloaded, an actor restarting, the database busy. Retry.
    Unavailable(Cause),
    /// 500 `internal_error`: a fault of ours; the cause goes to the log only.
    Internal(Cause),
}

impl ApiError {
    /// A 500 with a message as its cause.
    pub fn internal(what: impl Into<String>) -> Self {
        ApiError::Internal(what.into().into())
    }

    /// A 503 with a message as its cause.
    pub fn unavailable(what: impl Into<String>) -> Self {
        ApiError::Unavailable(what.into().into())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::EmailTaken => ApiError::EmailTaken,
            AppError::WeakPassword(why) => ApiError::WeakPassword(why),
            AppError::InvalidCredentials => ApiError::InvalidCredentials,
            AppError::NotAMember => ApiError::NotAMember,
            AppError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            AppError::RefreshTokenReused => ApiError::RefreshTokenReused,
            AppError::InvalidMfaCode => ApiError::InvalidMfaCode,
            AppError::InvalidMfaToken => ApiError::InvalidMfaToken,
            AppError::MfaAlreadyEnabled => ApiError::MfaAlreadyEnabled,
            AppError::MfaNotPending => ApiError::MfaNotPending,
            AppError::InvalidToken => ApiError::InvalidToken,
            AppError::SessionRevoked => ApiError::SessionRevoked,
            AppError::StepUpRequired(age) => ApiError::StepUpRequired(age),
            AppError::Forbidden => ApiError::Forbidden,
            AppError::AlreadyMember => ApiError::AlreadyMember,
            AppError::LastOwner => ApiError::LastOwner,
            AppError::NotFound => ApiError::NotFound,
            AppError::InvalidPasskey => ApiError::InvalidPasskey,
            AppError::PasskeyExists => ApiError::PasskeyExists,
            AppError::InvalidEmailToken => ApiError::InvalidEmailToken,
            AppError::EmailNotVerified => ApiError::EmailNotVerified,
            AppError::EmailAlreadyVerified => ApiError::EmailAlreadyVerified,
            // Only the operator's command line registers clients today.
            AppError::InvalidClient(why) => {
                ApiError::Validation(vec![FieldError::new("client", why)])
            }
            AppError::OAuth(e) => ApiError::OAuth(e),
            AppError::RateLimited(d) => ApiError::RateLimited(d),
            AppError::Unavailable(cause) => ApiError::Unavailable(cause),
            AppError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl warp::reject::Reject for ApiError {}

/// RFC 9457 problem details, the body of every error (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    kind: String,
    /// Short human-readable summary.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What happened, for people; never internals.
    detail: String,
    /// Stable snake_case code that clients match on.
    #[schema(example = "invalid_credentials")]
    code: &'a str,
    /// The invalid fields of a 422 `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    /// Status, stable `code` and title.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            InvalidJson(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Malformed JSON body",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            WeakPassword(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "weak_password",
                "Password too weak",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "email_taken",
                "Email already registered",
            ),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            ),
            NotAMember => (
                StatusCode::FORBIDDEN,
                "not_a_member",
                "Not a member of that organization",
            ),
            InvalidRefreshToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "Invalid refresh token",
            ),
            RefreshTokenReused => (
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "Refresh token reused",
            ),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            AlreadyMember => (StatusCode::CONFLICT, "already_member", "Already a member"),
            LastOwner => (StatusCode::CONFLICT, "last_owner", "Last owner"),
            InvalidMfaCode => (
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_code",
                "Invalid MFA code",
            ),
            InvalidMfaToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_token",
                "Invalid MFA token",
            ),
            InvalidPasskey => (
                StatusCode::UNAUTHORIZED,
                "invalid_passkey",
                "Passkey refused",
            ),
            PasskeyExists => (
                StatusCode::CONFLICT,
                "passkey_exists",
                "Passkey already registered",
            ),
            InvalidEmailToken => (
                StatusCode::BAD_REQUEST,
                "invalid_email_token",
                "Invalid or expired link",
            ),
            EmailNotVerified => (
                StatusCode::FORBIDDEN,
                "email_not_verified",
                "Email not verified",
            ),
            EmailAlreadyVerified => (
                StatusCode::CONFLICT,
                "email_already_verified",
                "Email already verified",
            ),
            MfaAlreadyEnabled => (
                StatusCode::CONFLICT,
                "mfa_already_enabled",
                "MFA already enabled",
            ),
            MfaNotPending => (
                StatusCode::CONFLICT,
                "mfa_not_pending",
                "No pending MFA enrollment",
            ),
            InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid access token",
            ),
            SessionRevoked => (
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                "Session revoked",
            ),
            StepUpRequired(_) => (
                StatusCode::UNAUTHORIZED,
                "insufficient_user_authentication",
                "Recent sign-in required",
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
            ),
            RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            OAuth(e) => (
                match e {
                    OAuthError::InvalidClient { .. } | OAuthError::InvalidToken => {
                        StatusCode::UNAUTHORIZED
                    }
                    OAuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::BAD_REQUEST,
                },
                e.code(),
                "OAuth error",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service temporarily unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
        }
    }

    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            InvalidJson(m) => format!("The request body is not valid JSON: {m}"),
            UnsupportedMediaType => "Send the body as application/json.".into(),
            PayloadTooLarge => "The request body exceeds 16 KiB.".into(),
            Validation(_) => "One or more fields are invalid; see errors.".into(),
            WeakPassword(m) => format!("The password {m}."),
            NotFound => "No resource at this path.".into(),
            MethodNotAllowed(allow) => format!("Use one of: {allow}."),
            EmailTaken => "An account with this email already exists.".into(),
            InvalidCredentials => "The email or password is incorrect.".into(),
            NotAMember => "You are not a member of that organization.".into(),
            InvalidRefreshToken => "The refresh token is unknown, expired or revoked.".into(),
            RefreshTokenReused => {
                "This refresh token was already used; the session has been revoked. Log in again."
                    .into()
            }
            Forbidden => "Your role in this organization does not allow this.".into(),
            AlreadyMember => "That account is already a member of this organization.".into(),
            LastOwner => "An organization must keep at least one owner.".into(),
            InvalidMfaCode => "The code is wrong, malformed, or was already used.".into(),
            InvalidMfaToken => {
                "The MFA challenge is unknown, expired, used or burned. Log in again.".into()
            }
            InvalidPasskey => {
                "The passkey did not pass the ceremony's checks, or it is not registered here."
                    .into()
            }
            PasskeyExists => "This passkey is registered already.".into(),
            InvalidEmailToken => {
                "The link is unknown, expired or used already. Ask for a new one.".into()
            }
            EmailNotVerified => {
                "Verify your email address with the link sent to it, then sign in again.".into()
            }
            EmailAlreadyVerified => "This address is verified already.".into(),
            MfaAlreadyEnabled => "MFA is already on; disable it before enrolling again.".into(),
            MfaNotPending => "There is no pending enrollment to confirm.".into(),
            InvalidToken => {
                "Send a valid, unexpired access token as `Authorization: Bearer <token>`.".into()
            }
            SessionRevoked => {
                "The session of this access token has been revoked. Log in again.".into()
            }
            StepUpRequired(age) => format!(
                "This change needs a sign-in from the last {age} seconds. Log in again, then retry."
            ),
            RequestTimeout => "The request body did not arrive in time.".into(),
            RateLimited(d) => format!("Retry in {} seconds.", d.reset_secs.max(1)),
            OAuth(e) => e.description(),
            Unavailable(_) => "Please retry shortly.".into(),
            Internal(_) => "An unexpected error occurred.".into(),
        }
    }

    /// Renders the problem response (and logs internal causes).
    pub fn into_response(self) -> Response {
        if let ApiError::OAuth(e) = &self {
            return oauth_response(e);
        }
        let (status, code, title) = self.parts();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause = %chain(cause.as_ref()), "internal error")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %chain(cause.as_ref()), "unavailable")
            }
            _ => {}
        }
        let errors = match &self {
            ApiError::Validation(e) => Some(e.as_slice()),
            _ => None,
        };
        let body = Problem {
            kind: format!("https://edge-idp.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail: self.detail(),
            code,
            errors,
        };
        let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::MethodNotAllowed(allow) => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::RateLimited(d) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(d.reset_secs.max(1)));
                rate_limit_headers(&mut resp, d);
            }
            ApiError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::StepUpRequired(age) => {
                let v = format!(
                    r#"Bearer error="insufficient_user_authentication", error_description="a more recent authentication is required", max_age={age}"#
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::RequestTimeout => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::InvalidToken | ApiError::SessionRevoked => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            _ => {}
        }
        resp
    }
}

/// An OAuth error in the standards' shape (see [`ApiError::OAuth`]).
fn oauth_response(e: &OAuthError) -> Response {
    let (status, _, _) = ApiError::OAuth(e.clone()).parts();
    let body = serde_json::json!({"error": e.code(), "error_description": e.description()});
    let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    let challenge = match e {
        OAuthError::InvalidClient { basic: true } => Some(r#"Basic realm="edge-idp""#),
        OAuthError::InvalidToken => Some(r#"Bearer error="invalid_token""#),
        OAuthError::InsufficientScope(_) => Some(r#"Bearer error="insufficient_scope""#),
        _ => None,
    };
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    resp
}

/// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
pub fn rate_limit_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
}

/// Turns whatever warp rejected into a problem response; the only `recover` of the router.
pub async fn recover(r: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let e = if let Some(e) = r.find::<ApiError>() {
        clone_known(e)
    } else if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::UnsupportedMediaType
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::NotFound
    } else {
        ApiError::internal(format!("unhandled rejection: {r:?}"))
    };
    Ok(e.into_response())
}

/// Rejections are borrowed from warp; rebuild the variants that filters raise.
fn clone_known(e: &ApiError) -> ApiError {
    match e {
        ApiError::NotFound => ApiError::NotFound,
        ApiError::MethodNotAllowed(a) => ApiError::MethodNotAllowed(a),
        ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType => ApiError::UnsupportedMediaType,
        ApiError::InvalidJson(m) => ApiError::InvalidJson(m.clone()),
        ApiError::Validation(v) => ApiError::Validation(v.clone()),
        other => ApiError::internal(format!("unexpected rejection {other:?}")),
    }
}
