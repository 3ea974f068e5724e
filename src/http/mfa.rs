//! `/auth/mfa/*` handlers: enrollment and confirmation, the login challenge, disabling.

use super::auth::{
    issue_session, limited, login_limits, membership_for_login, no_store, respond, token_shaped,
    with_limits,
};
use super::bearer::Caller;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Client};
use crate::db::Attempt;
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::{account_key, Decision, Policy};
use crate::state::SharedState;
use bytes::Bytes;
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::MAX_ATTEMPTS;
use edge_idp_actors::refresh::RefreshMsg;
use edge_idp_actors::store::MfaStore;
use edge_idp_actors::users::{Reply as UsersReply, UsersMsg};
use edge_idp_actors::{ask, SecretString};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
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

/// Step-up: MFA enrollment and confirmation change how the account is protected, so they need
/// a sign-in from the last `STEP_UP_MAX_AGE_SECS`, not merely a valid access token (which a
/// refresh keeps minting for up to 90 days). A stolen token cannot enroll the thief's
/// authenticator and keep the recovery codes.
fn require_recent_sign_in(state: &SharedState, caller: &Caller) -> Result<(), ApiError> {
    let max_age = state.settings.guards.step_up_max_age;
    if state.clock.now() - caller.claims.auth_time > max_age {
        return Err(ApiError::StepUpRequired(max_age));
    }
    Ok(())
}

/// Runs one second-factor check of `user_id` under the cross-endpoint cap
/// (`MFA_FAILURE_LIMIT`): the attempt is counted before the check (refused with 429 once the
/// window's cap is reached), a right answer clears the count, and the wrong answer that
/// reaches the cap writes an `mfa_locked` audit event.
async fn guarded<T>(
    state: &SharedState,
    client: &Client,
    user_id: Uuid,
    check: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let cap = state.settings.guards.mfa_failures;
    let now = state.clock.now();
    let attempt = match state.db.claim_mfa_attempt(user_id, now, cap).await? {
        Attempt::Counted(n) => n,
        Attempt::Refused(wait) => {
            state.audit.record(AuditEvent {
                user_id: Some(user_id),
                detail: Some("second-factor attempt refused: too many wrong answers".into()),
                ..client.event("mfa_attempt_refused")
            });
            return Err(ApiError::RateLimited(Decision {
                allowed: false,
                limit: cap.count,
                remaining: 0,
                reset_secs: wait.max(1) as u64,
            }));
        }
    };
    match check.await {
        Ok(v) => {
            state.db.clear_mfa_failures(user_id).await?;
            Ok(v)
        }
        Err(ApiError::InvalidMfaCode) => {
            state.audit.record(AuditEvent {
                user_id: Some(user_id),
                ..client.event("mfa_failed")
            });
            if attempt >= i64::from(cap.count) {
                state.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    detail: Some(format!(
                        "{attempt} wrong second-factor answers; refused for {} s",
                        cap.period_secs
                    )),
                    ..client.event("mfa_locked")
                });
            }
            Err(ApiError::InvalidMfaCode)
        }
        Err(e) => Err(e),
    }
}

/// Turns the caller's second factor on or off through the Users actor (`msg`), under the
/// second-factor cap; then ends the user's other sessions and pending `mfa_token`s and records
/// `event` (also the revocation reason).
async fn change_second_factor<T: Send + 'static>(
    state: &SharedState,
    caller: &Caller,
    event: &'static str,
    msg: impl FnOnce(UsersReply<T>) -> UsersMsg,
) -> Result<T, ApiError> {
    let id = caller.user_id;
    let shard = state.actors.users.pick(&email_shard(caller));
    let timeout = state.settings.ask_timeout;
    let out = guarded(state, &caller.client, id, async {
        Ok(ask(shard, msg, timeout).await?)
    })
    .await?;
    state.profiles.forget([id]);
    let ended = end_other_sessions(state, caller, event).await?;
    state.audit.record(AuditEvent {
        user_id: Some(id),
        detail: Some(format!("{ended} other sessions revoked")),
        ..caller.client.event(event)
    });
    Ok(out)
}

/// Revokes every session of the user but the caller's, and every pending `mfa_token`: after
/// the second factor changes, what was signed in or half signed in under the old one ends.
async fn end_other_sessions(
    state: &SharedState,
    caller: &Caller,
    reason: &'static str,
) -> Result<usize, ApiError> {
    let (id, keep) = (caller.user_id, caller.session_id);
    let revoked = ask(
        state.actors.refresh.pick(id.as_bytes()),
        |r| RefreshMsg::RevokeAll(id, Some(keep), reason, r),
        state.settings.ask_timeout,
    )
    .await?;
    let n = revoked.len();
    state.revocations.revoke(revoked);
    state.db.revoke_challenges(id).await?;
    Ok(n)
}

/// `POST /auth/mfa/enroll`: a fresh secret, pending until confirmed.
#[utoipa::path(post, path = "/auth/mfa/enroll", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret, pending until confirmed", body = Enrollment),
        (status = 401, description = "`insufficient_user_authentication`: the sign-in behind the token is older than `STEP_UP_MAX_AGE_SECS`; sign in again", body = Problem),
        (status = 409, description = "`mfa_already_enabled`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn enroll(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    require_recent_sign_in(&state, &caller)?;
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
        (status = 200, description = "MFA is on; the recovery codes, shown once; every other session and pending `mfa_token` is revoked", body = RecoveryCodes),
        (status = 401, description = "`invalid_mfa_code`; or `insufficient_user_authentication`: sign in again first", body = Problem),
        (status = 409, description = "`mfa_not_pending`", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits, or too many wrong second-factor answers", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn confirm(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    require_recent_sign_in(&state, &caller)?;
    let decision = login_limits(&state, &caller.client, &caller.claims.email).await?;
    let id = caller.user_id;
    let result = async {
        let codes = change_second_factor(&state, &caller, "mfa_enabled", |r| {
            UsersMsg::MfaConfirm(id, req.code, r)
        })
        .await?;
        let codes: Vec<&str> = codes.iter().map(SecretString::expose).collect();
        Ok(no_store(
            warp::reply::json(&RecoveryCodes {
                recovery_codes: codes,
            })
            .into_response(),
        ))
    }
    .await;
    Ok(with_limits(respond(result), &decision))
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
pub async fn disable(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CodeRequest = extract::parse(body)?;
    check_code_length(&req.code)?;
    let decision = login_limits(&state, &caller.client, &caller.claims.email).await?;
    let id = caller.user_id;
    let result = async {
        change_second_factor(&state, &caller, "mfa_disabled", |r| {
            UsersMsg::MfaDisable(id, req.code, r)
        })
        .await?;
        Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
    }
    .await;
    Ok(with_limits(respond(result), &decision))
}

/// `POST /auth/mfa/verify`: the second step of a login with MFA.
///
/// Every call counts against the login limit of its client IP before the token is looked up
/// (so unknown and forged tokens are counted too), and against its account's once it resolves.
/// The attempt is then counted against the challenge in the conditional write that refuses a
/// burned one, before the code is checked.
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
    let ip = client.rate_key();
    let ip_decision = limited(&state, &[(Policy::LoginIp, &ip)]).await?;
    let result = async {
        if !token_shaped(req.mfa_token.expose()) {
            return Err(ApiError::InvalidMfaToken);
        }
        let hash = sha256(req.mfa_token.expose().as_bytes());
        let now = state.clock.now();
        let ch = state
            .db
            .challenge(hash)
            .await?
            .filter(|ch| !ch.used && ch.attempts < MAX_ATTEMPTS && now < ch.expires_at)
            .ok_or(ApiError::InvalidMfaToken)?;
        // Counted against the challenge's account; a 429 here changes nothing further.
        let decision = limited(&state, &[(Policy::LoginAccount, &account_key(&ch.email))]).await?;
        let inner = async {
            // The user's cap first, then the challenge's: a 429 from the cap leaves the
            // challenge's attempts untouched.
            guarded(&state, &client, ch.user_id, async {
                if !state
                    .db
                    .claim_challenge_attempt(hash, now, MAX_ATTEMPTS)
                    .await?
                {
                    return Err(ApiError::InvalidMfaToken);
                }
                Ok(ask(
                    state.actors.users.pick(ch.email.as_bytes()),
                    |r| UsersMsg::MfaCheck(ch.user_id, req.code, r),
                    state.settings.ask_timeout,
                )
                .await?)
            })
            .await?;
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
        Ok(with_limits(respond(inner), &decision))
    }
    .await;
    // The account's headers, where it was checked, are the tighter ones: keep them.
    let resp = respond(result);
    if resp.headers().contains_key("ratelimit-limit") {
        Ok(resp)
    } else {
        Ok(with_limits(resp, &ip_decision))
    }
}
