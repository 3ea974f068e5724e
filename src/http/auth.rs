//! `/auth/*` handlers: signup, login, refresh, logout. Each parses its body, calls one flow of
//! the application layer (`app::signup`, `app::login`, `app::sessions`) and renders its answer.

use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Body};
use super::reply::{json, metered, no_content, private_json};
use super::views::{LoginResponse, MfaChallenge, OrgView, SignupResponse, TokenResponse, UserView};
use crate::app::login::{Login, LoginOutcome};
use crate::app::signup::Signup;
use crate::app::{Client, SharedApp};
use edge_idp_actors::SecretString;
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

/// `POST /auth/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Email; trimmed and lower-cased.
    #[schema(example = "ada@example.com", format = Email)]
    pub email: String,
    /// Password; checked against the policy (8 to 128 characters, not a common password).
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    pub password: SecretString,
    /// Display name.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Name of the personal organization; default "Personal".
    #[schema(max_length = 100)]
    pub organization_name: Option<String>,
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    #[schema(example = "ada@example.com", format = Email)]
    pub email: String,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Organization to log into; default the personal one.
    pub org_id: Option<String>,
}

/// `POST /auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token.
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

/// `POST /auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Any refresh token of the session (used or current).
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
    /// Revoke every session of the user.
    #[serde(default)]
    pub all: bool,
}

/// `POST /auth/signup`: account, personal organization, owner membership.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, description = "Account and personal organization created", body = SignupResponse),
        (status = 409, description = "`email_taken`", body = Problem),
        (status = 422, description = "`validation_failed`, or `weak_password`: shorter than 8, longer than 128 characters, or common", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn signup(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: SignupRequest = extract::parse(body)?;
    let mut errors = Vec::new();
    let email = extract::email("email", &req.email)
        .map_err(|e| errors.push(e))
        .ok();
    let name = extract::text("name", req.name.as_deref(), 100)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let org_name = extract::text("organization_name", req.organization_name.as_deref(), 100)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if req.password.expose().contains('\0') {
        errors.push(FieldError::new(
            "password",
            "must not contain NUL characters",
        ));
    }
    extract::validate(errors)?;
    let email = email.ok_or_else(|| ApiError::internal("validated email missing"))?;
    let signup = Signup {
        email,
        password: req.password,
        name,
        org_name,
    };
    let m = app.signup(&client, signup).await?;
    Ok(metered(m, |u| {
        let body = SignupResponse {
            user: UserView::new(u.user_id, u.email, u.name, u.created_at, false, false),
            organization: OrgView::from(u.organization),
        };
        json(StatusCode::CREATED, &body)
    }))
}

/// `POST /auth/login`: password check, then a new session and its tokens.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens; or, when MFA is on, a challenge and no tokens", body = LoginResponse),
        (status = 401, description = "`invalid_credentials`, for a wrong password and an unknown email alike", body = Problem),
        (status = 403, description = "`not_a_member` of the requested organization; `email_not_verified` with `REQUIRE_VERIFIED_EMAIL` (both only after the right password)", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn login(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: LoginRequest = extract::parse(body)?;
    let email = extract::email("email", &req.email).map_err(|e| ApiError::Validation(vec![e]))?;
    let login = Login {
        email,
        password: req.password,
        org_id: req.org_id,
    };
    let m = app.login(&client, login).await?;
    Ok(metered(m, |outcome| match outcome {
        LoginOutcome::Tokens(t) => private_json(&LoginResponse::Tokens(TokenResponse::from(&t))),
        LoginOutcome::MfaRequired {
            token,
            expires_in,
            passkey,
        } => private_json(&LoginResponse::Challenge(MfaChallenge {
            mfa_required: true,
            mfa_token: token.expose(),
            expires_in,
            mfa_methods: if passkey {
                vec!["totp", "passkey"]
            } else {
                vec!["totp"]
            },
        })),
    }))
}

/// `POST /auth/refresh`: rotation with grace replay and reuse detection.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "Tokens with a new refresh token", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token` (unknown, expired, revoked) or `refresh_token_reused` (the family is now revoked)", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn refresh(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: RefreshRequest = extract::parse(body)?;
    let m = app.refresh(&client, req.refresh_token).await?;
    Ok(metered(m, |t| private_json(&TokenResponse::from(&t))))
}

/// `POST /auth/logout`: revokes the token's session, or all the user's sessions. Always 204,
/// so the answer is no oracle for which tokens exist.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "Revoked; also the answer for an unknown token")))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn logout(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: LogoutRequest = extract::parse(body)?;
    app.logout(&client, req.refresh_token, req.all).await?;
    Ok(no_content())
}
