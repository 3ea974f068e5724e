//! `/auth/mfa/*` handlers: enrollment and confirmation, the login challenge, disabling.

use super::auth::{
    issue_session, limited, membership_for_login, no_store, respond, token_shaped, with_limits,
};
use super::bearer::Caller;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Client};
use crate::audit::AuditEvent;
use crate::ratelimit::{account_key, Policy};
use crate::state::SharedState;
use bytes::Bytes;
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::MAX_ATTEMPTS;
use edge_idp_actors::store::MfaStore;
use edge_idp_actors::users::UsersMsg;
use edge_idp_actors::{ask, DomainError, SecretString};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

type Body = Result<Bytes, ApiError>;
type Auth = Result<Caller, ApiError>;

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
    if code.expose().chars().count() > 64 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "code",
            "must be at most 64 characters",
        )]));
    }
    Ok(())
}

fn email_shard(caller: &Caller) -> Vec<u8> {
    caller.claims.email.as_bytes().to_vec()
}

/// `POST /auth/mfa/enroll`: a fresh secret, pending until confirmed.
#[utoipa::path(post, path = "/auth/mfa/enroll", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret, pending until confirmed", body = Enrollment),
        (status = 409, description = "`mfa_already_enabled`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn enroll(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let (id, email) = (caller.user_id, caller.claims.email.clone());
    let e = ask(
        state.actors.users.pick(&email_shard(&caller)),
        |r| UsersMsg::MfaEnroll(id, email, r),
        state.settings.ask_timeout,
    )
    .await?;
    state.audit.record(AuditEvent {
        user_id: Some(id),
        ..caller.client.event("mfa_enroll")
    });
    let body = Enrollment {
        secret: e.secret.expose(),
        otpauth_uri: e.otpauth_uri.expose(),
    };
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// `POST /auth/mfa/confirm`: a valid code turns MFA on and answers the recovery codes, once.
#[utoipa::path(post, path = "/auth/mfa/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "MFA is on; the recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "`invalid_mfa_code`", body = Problem),
        (status = 409, description = "`mfa_not_pending`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn confirm(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let id = caller.user_id;
    let codes = ask(
        state.actors.users.pick(&email_shard(&caller)),
        |r| UsersMsg::MfaConfirm(id, req.code, r),
        state.settings.ask_timeout,
    )
    .await?;
    state.profiles.forget([id]);
    state.audit.record(AuditEvent {
        user_id: Some(id),
        ..caller.client.event("mfa_enabled")
    });
    let codes: Vec<&str> = codes.iter().map(SecretString::expose).collect();
    Ok(no_store(
        warp::reply::json(&RecoveryCodes {
            recovery_codes: codes,
        })
        .into_response(),
    ))
}

/// `POST /auth/mfa/disable`: a valid TOTP or recovery code turns MFA off.
#[utoipa::path(post, path = "/auth/mfa/disable", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 204, description = "MFA is off"),
        (status = 401, description = "`invalid_mfa_code`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn disable(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let id = caller.user_id;
    ask(
        state.actors.users.pick(&email_shard(&caller)),
        |r| UsersMsg::MfaDisable(id, req.code, r),
        state.settings.ask_timeout,
    )
    .await?;
    state.profiles.forget([id]);
    state.audit.record(AuditEvent {
        user_id: Some(id),
        ..caller.client.event("mfa_disabled")
    });
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// `POST /auth/mfa/verify`: the second step of a login with MFA.
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "mfa", request_body = VerifyRequest,
    responses(
        (status = 200, description = "Tokens, `amr` `[\"pwd\",\"otp\"]`", body = super::auth::TokenResponse),
        (status = 401, description = "`invalid_mfa_code` (wrong, or a step already used) or `invalid_mfa_token` (unknown, expired, used, burned)", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn verify(state: SharedState, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: VerifyRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    if !token_shaped(req.mfa_token.expose()) {
        return Err(ApiError::InvalidMfaToken);
    }
    let hash = sha256(req.mfa_token.expose().as_bytes());
    let now = state.clock.now();
    let ch = state
        .db
        .challenge(hash)
        .await?
        .ok_or(ApiError::InvalidMfaToken)?;
    if ch.used || ch.attempts >= MAX_ATTEMPTS || now >= ch.expires_at {
        return Err(ApiError::InvalidMfaToken);
    }
    // Counted against the login limits of the challenge's account; a 429 changes nothing.
    let ip = client.ip.to_string();
    let decision = limited(
        &state,
        &[
            (Policy::LoginIp, &ip),
            (Policy::LoginAccount, &account_key(&ch.email)),
        ],
    )
    .await?;
    let result = async {
        let shard = state.actors.users.pick(ch.email.as_bytes());
        match ask(
            shard,
            |r| UsersMsg::MfaCheck(ch.user_id, req.code, r),
            state.settings.ask_timeout,
        )
        .await
        {
            Err(DomainError::InvalidMfaCode) => {
                state.db.fail_challenge(hash).await?;
                state.audit.record(AuditEvent {
                    user_id: Some(ch.user_id),
                    ..client.event("mfa_failed")
                });
                return Err(ApiError::InvalidMfaCode);
            }
            other => other?,
        }
        if !state.db.consume_challenge(hash, now, MAX_ATTEMPTS).await? {
            return Err(ApiError::InvalidMfaToken);
        }
        let membership =
            membership_for_login(&state, ch.user_id, ch.org_id.as_deref(), ch.default_org_id)
                .await?;
        issue_session(
            &state,
            &client,
            ch.user_id,
            ch.email.clone(),
            membership,
            vec!["pwd".to_owned(), "otp".to_owned()],
        )
        .await
    }
    .await;
    Ok(with_limits(respond(result), &decision))
}
