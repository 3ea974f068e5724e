//! Mailed links on the JSON API: `/auth/email` (change), `/auth/email/verify`,
//! `/auth/email/verify/resend`, `/auth/password/forgot`, `/auth/password/reset`; the flows are `app::email`. The hosted
//! pages the links open (`pages::email`) call the same flows.

use super::bearer::Auth;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Body};
use super::reply::{json, metered, no_content, private_json};
use crate::app::{Client, SharedApp};
use edge_idp_actors::SecretString;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;

/// `POST /auth/email/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The `token` of the link in the verification mail.
    #[schema(value_type = String)]
    pub token: SecretString,
}

/// `200` of `POST /auth/email/verify`.
#[derive(Serialize, ToSchema)]
pub struct VerifyEmailResponse {
    user_id: Uuid,
    email: String,
    /// Always true.
    email_verified: bool,
}

/// `202` of `POST /auth/email/verify/resend`.
#[derive(Serialize, ToSchema)]
pub struct ResendResponse {
    /// The address the new link was sent to.
    email: String,
}

/// `POST /auth/email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    /// The address to change to; trimmed and lower-cased.
    #[schema(example = "ada@example.org", format = Email)]
    pub new_email: String,
    /// The current password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// `202` of `POST /auth/email`.
#[derive(Serialize, ToSchema)]
pub struct ChangeEmailResponse {
    /// The address the confirmation link went to; the account's address changes when it is
    /// used.
    pending_email: String,
}

/// `POST /auth/password/forgot`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    /// The account's address; trimmed and lower-cased.
    #[schema(example = "ada@example.com", format = Email)]
    pub email: String,
}

/// `202` of `POST /auth/password/forgot`: the same for every address.
#[derive(Serialize, ToSchema)]
pub struct ForgotPasswordResponse {
    /// Says what happens, without saying whether the address has an account.
    message: &'static str,
}

/// The one answer of `POST /auth/password/forgot`.
pub const FORGOT_MESSAGE: &str =
    "If an account has this address, a link to reset its password is on its way to it.";

/// `POST /auth/password/reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The `token` of the link in the reset mail.
    #[schema(value_type = String)]
    pub token: SecretString,
    /// The new password; checked against the policy.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    pub new_password: SecretString,
}

/// `POST /auth/email/verify`: proves the address the link was mailed to.
#[utoipa::path(post, path = "/auth/email/verify", tag = "email", request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The address is verified: `email_verified` is true in `/auth/me`, userinfo and ID tokens from now on", body = VerifyEmailResponse),
        (status = 400, description = "`invalid_email_token`: unknown, expired (24 hours), used, or for an address the account no longer has", body = Problem),
        (status = 409, description = "`email_taken`: an email-change link whose address another account has taken meanwhile", body = Problem),
        (status = 429, description = "`rate_limited`: every use of a link counts against `RATE_LIMIT_LOGIN` per client IP", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn verify(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: VerifyEmailRequest = extract::parse(body)?;
    let v = app.verify_email(&client, &req.token).await?;
    Ok(private_json(&VerifyEmailResponse {
        user_id: v.user_id,
        email: v.email,
        email_verified: true,
    }))
}

/// `POST /auth/email`: asks to change the caller's address. The new address gets a link
/// (24 hours) that makes the change (`POST /auth/email/verify`); the old one gets a notice.
#[utoipa::path(post, path = "/auth/email", tag = "email", security(("bearer" = [])),
    request_body = ChangeEmailRequest,
    responses(
        (status = 202, description = "The confirmation is queued for the new address; nothing changes until it is used", body = ChangeEmailResponse),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = Problem),
        (status = 409, description = "`email_taken`: another account has the address (or it is the caller's already)", body = Problem),
        (status = 429, description = "`rate_limited` (the login limits for the password, `RATE_LIMIT_EMAIL` per new address), with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn change(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: ChangeEmailRequest = extract::parse(body)?;
    let email =
        extract::email("new_email", &req.new_email).map_err(|e| ApiError::Validation(vec![e]))?;
    let m = app
        .request_email_change(&caller, email, req.password)
        .await?;
    Ok(metered(m, |pending_email| {
        json(StatusCode::ACCEPTED, &ChangeEmailResponse { pending_email })
    }))
}

/// `POST /auth/email/verify/resend`: a new verification link to the caller's address.
#[utoipa::path(post, path = "/auth/email/verify/resend", tag = "email", security(("bearer" = [])),
    responses(
        (status = 202, description = "A new link is queued for the caller's address; earlier links keep working until they expire", body = ResendResponse),
        (status = 409, description = "`email_already_verified`", body = Problem),
        (status = 429, description = "`rate_limited` (`RATE_LIMIT_EMAIL` per address), with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn resend(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let m = app.resend_verification(&caller).await?;
    Ok(metered(m, |email| {
        json(StatusCode::ACCEPTED, &ResendResponse { email })
    }))
}

/// `POST /auth/password/forgot`: mails a reset link if an account has the address. The answer
/// is the same, after the same work, whether or not one does.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "email", request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Always the same: a link valid 30 minutes is queued if an account has the address", body = ForgotPasswordResponse),
        (status = 429, description = "`rate_limited` (`RATE_LIMIT_EMAIL` per client IP and per address, known or not), with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn forgot(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: ForgotPasswordRequest = extract::parse(body)?;
    let email = extract::email("email", &req.email).map_err(|e| ApiError::Validation(vec![e]))?;
    let m = app.forgot_password(&client, email).await?;
    Ok(metered(m, |()| {
        json(
            StatusCode::ACCEPTED,
            &ForgotPasswordResponse {
                message: FORGOT_MESSAGE,
            },
        )
    }))
}

/// `POST /auth/password/reset`: a new password through the mailed link.
#[utoipa::path(post, path = "/auth/password/reset", tag = "email", request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Set: every session of the user is revoked, the address counts as verified, a notice is mailed; a second factor is still asked at the next sign-in"),
        (status = 400, description = "`invalid_email_token`: unknown, expired, used, or for an address the account no longer has", body = Problem),
        (status = 422, description = "`validation_failed` or `weak_password` (the link still works)", body = Problem),
        (status = 429, description = "`rate_limited`: every use of a link counts against `RATE_LIMIT_LOGIN` per client IP", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn reset(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: ResetPasswordRequest = extract::parse(body)?;
    if req.new_password.expose().contains('\0') {
        return Err(ApiError::Validation(vec![FieldError::new(
            "new_password",
            "must not contain NUL characters",
        )]));
    }
    app.reset_password(&client, &req.token, req.new_password)
        .await?;
    Ok(no_content())
}
