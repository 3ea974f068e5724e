//! `/auth/mfa/*` handlers: enrollment and confirmation, the login challenge, disabling; the
//! flows are `app::mfa`.

use super::bearer::Auth;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Body};
use super::reply::{metered, no_content, private_json};
use super::views::TokenResponse;
use crate::app::mfa::MAX_CODE_CHARS;
use crate::app::{Client, SharedApp};
use edge_idp_actors::SecretString;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use warp::reply::Response;

/// `{"code"}` of confirm and disable.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A TOTP code, or (disable only) a recovery code.
    #[schema(value_type = String, example = "123456")]
    pub code: SecretString,
}

/// `POST /auth/mfa/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The challenge from login.
    #[schema(value_type = String)]
    pub mfa_token: SecretString,
    /// A TOTP code or an unused recovery code.
    #[schema(value_type = String, example = "123456")]
    pub code: SecretString,
}

/// `200` of enroll: the new secret, pending until confirmed.
#[derive(Serialize, ToSchema)]
pub struct Enrollment<'a> {
    /// The TOTP secret, base32 (SHA1, 6 digits, 30 s).
    secret: &'a str,
    /// The same secret as an `otpauth://totp/` URI for authenticator apps.
    otpauth_uri: &'a str,
}

/// `200` of confirm: MFA is on.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes<'a> {
    /// Ten single-use recovery codes, shown once.
    recovery_codes: Vec<&'a str>,
}

fn check_code_length(code: &SecretString) -> Result<(), ApiError> {
    if code.expose().chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "must be at most 64 characters",
        )]));
    }
    Ok(())
}

/// `POST /auth/mfa/enroll`: a fresh secret, pending until confirmed.
#[utoipa::path(post, path = "/auth/mfa/enroll", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret, pending until confirmed", body = Enrollment),
        (status = 401, description = "`insufficient_user_authentication`: the sign-in behind the token is older than `STEP_UP_MAX_AGE_SECS`; sign in again", body = Problem),
        (status = 409, description = "`mfa_already_enabled`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn enroll(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let e = app.mfa_enroll(&caller).await?;
    Ok(private_json(&Enrollment {
        secret: e.secret.expose(),
        otpauth_uri: e.otpauth_uri.expose(),
    }))
}

/// `POST /auth/mfa/confirm`: a valid code turns MFA on and answers the recovery codes, once.
#[utoipa::path(post, path = "/auth/mfa/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "MFA is on; the recovery codes, shown once; every other session and pending `mfa_token` is revoked", body = RecoveryCodes),
        (status = 401, description = "`invalid_mfa_code`; or `insufficient_user_authentication`: sign in again first", body = Problem),
        (status = 409, description = "`mfa_not_pending`", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits, or too many wrong second-factor answers", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn confirm(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let m = app.mfa_confirm(&caller, req.code).await?;
    Ok(metered(m, |codes| {
        private_json(&RecoveryCodes {
            recovery_codes: codes.iter().map(SecretString::expose).collect(),
        })
    }))
}

/// `POST /auth/mfa/disable`: a valid TOTP or recovery code turns MFA off. The code is the
/// step-up: it proves the second factor, which a stolen access token alone does not.
#[utoipa::path(post, path = "/auth/mfa/disable", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 204, description = "MFA is off; every other session and pending `mfa_token` is revoked"),
        (status = 401, description = "`invalid_mfa_code`", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits, or too many wrong second-factor answers", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn disable(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let m = app.mfa_disable(&caller, req.code).await?;
    Ok(metered(m, |()| no_content()))
}

/// `POST /auth/mfa/verify`: the second step of a login with MFA.
///
/// Counted against the login limit of the client IP before the token is looked up, and against
/// its account's once it resolves (`app::mfa`).
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "mfa", request_body = VerifyRequest,
    responses(
        (status = 200, description = "Tokens, `amr` `[\"pwd\",\"otp\"]`", body = TokenResponse),
        (status = 401, description = "`invalid_mfa_code` (wrong, or a step already used) or `invalid_mfa_token` (unknown, expired, used, burned)", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn verify(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: VerifyRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let m = app.mfa_verify(&client, req.mfa_token, req.code).await?;
    Ok(metered(m, |t| private_json(&TokenResponse::from(&t))))
}
