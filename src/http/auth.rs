//! `/auth/*` handlers: signup, login, refresh, logout.
//!
//! The login path, route to row: [`login`] parses and validates the body, checks the rate
//! limits, reads the account (`db::store`, `user_by_email`), verifies the password on the
//! blocking pool (`passwords`), records the outcome through the Users actor, starts a session
//! through a RefreshFamilies shard (`refresh_tokens` row), and signs the access token
//! (`tokens`).

use super::error::{rate_limit_headers, ApiError, FieldError, Problem};
use super::extract::{self, Client};
use crate::ops::audit::AuditEvent;
use crate::security::passwords::{check_policy, context_words, PolicyError};
use crate::security::ratelimit::{account_key, Decision, Policy};
use crate::state::SharedState;
use bytes::Bytes;
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::{new_challenge_token, CHALLENGE_TTL};
use edge_idp_actors::refresh::{token_hash, Issued, RefreshMsg, Rotated, StartSession};
use edge_idp_actors::store::{
    Membership, MfaStore, NewUser, Principal, Role, SessionStore, UserStore,
};
use edge_idp_actors::users::UsersMsg;
use edge_idp_actors::{ask, SecretString};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

type Body = Result<Bytes, ApiError>;

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

/// A user as API responses show it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    id: Uuid,
    email: String,
    name: Option<String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    created_at: String,
    mfa_enabled: bool,
}

impl From<&crate::db::Profile> for UserView {
    fn from(u: &crate::db::Profile) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            created_at: rfc3339(u.created_at),
            mfa_enabled: u.mfa_enabled,
        }
    }
}

impl From<Membership> for OrgView {
    fn from(m: Membership) -> Self {
        Self {
            id: m.org_id,
            name: m.org_name,
            role: m.role,
        }
    }
}

/// A path segment that should be a UUID.
pub fn token_shaped_uuid(s: &str) -> Option<Uuid> {
    if s.len() > 64 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// An organization with the caller's role.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Organization)]
pub struct OrgView {
    id: Uuid,
    name: String,
    role: Role,
}

/// The token response of login, MFA verify and refresh; switch-org leaves out the two refresh
/// fields.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse<'a> {
    /// RS256 JWT (`typ: at+jwt`), verifiable with the JWKS alone.
    access_token: &'a str,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// Opaque rotating refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Seconds until the refresh token expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<i64>,
}

impl<'a> TokenResponse<'a> {
    /// An access token alone (switch-org).
    pub fn access_only(access_token: &'a str, expires_in: i64) -> Self {
        Self {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: None,
            refresh_expires_in: None,
        }
    }
}

/// `201` of signup.
#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    user: UserView,
    /// The personal organization, owned by the new user.
    organization: OrgView,
}

/// `200` of a login whose account has MFA on: no tokens until `/auth/mfa/verify`.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge<'a> {
    /// Always `true`.
    mfa_required: bool,
    /// Single-use challenge for `/auth/mfa/verify`.
    mfa_token: &'a str,
    /// Seconds until the challenge expires.
    expires_in: i64,
}

/// `200` of login: tokens, or an MFA challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse<'a> {
    /// MFA is off: the token response.
    Tokens(TokenResponse<'a>),
    /// MFA is on: a challenge.
    Challenge(MfaChallenge<'a>),
}

/// RFC 3339 UTC for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Marks a response as carrying a secret.
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn token_response(state: &SharedState, access: &str, refresh: Option<&Issued>) -> Response {
    let now = state.clock.now();
    let body = TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.ttl(),
        refresh_token: refresh.map(|r| r.refresh_token.expose()),
        refresh_expires_in: refresh.map(|r| (r.expires_at - now).max(0)),
    };
    no_store(warp::reply::json(&body).into_response())
}

pub(super) async fn limited(
    state: &SharedState,
    checks: &[(Policy, &str)],
) -> Result<Decision, ApiError> {
    let d = state.limiter.check(checks).await;
    if d.allowed {
        Ok(d)
    } else {
        if let Some((policy, _)) = checks.first() {
            state
                .metrics
                .rate_limited
                .with_label_values(&[policy.group(), state.limiter.backend()])
                .inc();
        }
        tracing::info!(
            policy = checks.first().map(|c| c.0.name()).unwrap_or(""),
            "rate limited"
        );
        Err(ApiError::RateLimited(d))
    }
}

/// The login limits of API.md (per client IP and per account), applied to every endpoint that
/// checks a password or a second factor, so that none is a free oracle beside `/auth/login`.
pub(super) async fn login_limits(
    state: &SharedState,
    client: &Client,
    email: &str,
) -> Result<Decision, ApiError> {
    let ip = client.rate_key();
    limited(
        state,
        &[
            (Policy::LoginIp, &ip),
            (Policy::LoginAccount, &account_key(email)),
        ],
    )
    .await
}

pub(super) fn with_limits(mut resp: Response, d: &Decision) -> Response {
    rate_limit_headers(&mut resp, d);
    resp
}

/// Renders a handler's error as its problem response.
pub fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(ApiError::into_response)
}

fn weak(e: PolicyError) -> ApiError {
    ApiError::WeakPassword(e.to_string())
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
pub async fn signup(state: SharedState, client: Client, body: Body) -> Result<Response, ApiError> {
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
    let email = email.ok_or_else(|| ApiError::Internal("validated email missing".into()))?;
    check_policy(
        req.password.expose(),
        &context_words(&state.settings.mfa_issuer, &email),
    )
    .map_err(weak)?;
    let ip = client.rate_key();
    let decision = limited(&state, &[(Policy::SignupIp, &ip)]).await?;

    let password_hash = state.passwords.hash(req.password).await?;
    let now = state.clock.now();
    let new = NewUser {
        id: Uuid::now_v7(),
        email: email.clone(),
        name: name.clone(),
        password_hash,
        org_id: Uuid::now_v7(),
        org_name: org_name.unwrap_or_else(|| "Personal".to_owned()),
        created_at: now,
    };
    let (user_id, org_id, org_name) = (new.id, new.org_id, new.org_name.clone());
    ask(
        state.actors.users.pick(email.as_bytes()),
        |r| UsersMsg::Signup(new, r),
        state.settings.ask_timeout,
    )
    .await?;
    state.audit.record(AuditEvent {
        user_id: Some(user_id),
        org_id: Some(org_id),
        ..client.event("signup")
    });

    let body = SignupResponse {
        user: UserView {
            id: user_id,
            email,
            name,
            created_at: rfc3339(now),
            mfa_enabled: false,
        },
        organization: OrgView {
            id: org_id,
            name: org_name,
            role: Role::Owner,
        },
    };
    let resp =
        warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response();
    Ok(with_limits(resp, &decision))
}

/// `POST /auth/login`: password check, then a new session and its tokens.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens; or, when MFA is on, a challenge and no tokens", body = LoginResponse),
        (status = 401, description = "`invalid_credentials`, for a wrong password and an unknown email alike", body = Problem),
        (status = 403, description = "`not_a_member` of the requested organization", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn login(state: SharedState, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: LoginRequest = extract::parse(body)?;
    let email = extract::email("email", &req.email).map_err(|e| ApiError::Validation(vec![e]))?;
    let decision = match login_limits(&state, &client, &email).await {
        Ok(d) => d,
        Err(e) => {
            state.metrics.login("rate_limited");
            return Err(e);
        }
    };
    let mut mfa_required = false;

    let result = async {
        // The lockout is kept per account key, for unknown emails as for known ones, so that
        // neither the lock nor the write a failure takes tells them apart.
        let lock_key = sha256(email.as_bytes());
        let now = state.clock.now();
        let counted = state.db.lockout(lock_key).await?;
        if let Some(until) = counted.map(|f| f.locked_until).filter(|&t| t > now) {
            return Err(ApiError::RateLimited(Decision {
                allowed: false,
                limit: decision.limit,
                remaining: 0,
                reset_secs: (until - now).max(1) as u64,
            }));
        }
        // A password no account can have (over the policy's maximum) is refused before hashing.
        if req.password.expose().chars().count() > 128 {
            return Err(ApiError::InvalidCredentials);
        }
        let user = state.db.user_by_email(&email).await?;
        let verified = state
            .passwords
            .verify(req.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let timeout = state.settings.ask_timeout;
        let user = match user {
            Some(u) if verified.ok => u,
            other => {
                let failure = state
                    .db
                    .record_password_failure(lock_key, now, state.settings.guards.lockout)
                    .await?;
                let user_id = other.as_ref().map(|u| u.id);
                state.audit.record(AuditEvent {
                    user_id,
                    detail: Some(
                        if user_id.is_some() {
                            "wrong password"
                        } else {
                            "unknown account"
                        }
                        .into(),
                    ),
                    ..client.event("login_failed")
                });
                if failure.locked_until > now {
                    state.audit.record(AuditEvent {
                        user_id,
                        detail: Some(format!(
                            "{} consecutive failures; locked for {} s",
                            failure.failures,
                            failure.locked_until - now
                        )),
                        ..client.event("account_locked")
                    });
                }
                return Err(ApiError::InvalidCredentials);
            }
        };
        if counted.is_some() {
            state.db.clear_password_failures(lock_key).await?;
        }
        let membership =
            membership_for_login(&state, user.id, req.org_id.as_deref(), user.default_org_id)
                .await?;
        let rehash = verified.rehash.map(|new| (user.password_hash.clone(), new));
        ask(
            state.actors.users.pick(email.as_bytes()),
            |r| UsersMsg::LoginSucceeded(user.id, rehash, r),
            timeout,
        )
        .await?;
        if user.mfa_enabled {
            // The password was right; the second factor decides. The requested organization
            // travels with the challenge.
            let (token, hash) = new_challenge_token()?;
            let now = state.clock.now();
            let org = req.org_id.as_ref().map(|_| membership.org_id.to_string());
            state
                .db
                .create_challenge(hash, user.id, org, now, now + CHALLENGE_TTL)
                .await?;
            state.audit.record(AuditEvent {
                user_id: Some(user.id),
                ..client.event("mfa_challenge")
            });
            let body = MfaChallenge {
                mfa_required: true,
                mfa_token: token.expose(),
                expires_in: CHALLENGE_TTL,
            };
            mfa_required = true;
            return Ok(no_store(warp::reply::json(&body).into_response()));
        }
        issue_session(
            &state,
            &client,
            user.id,
            user.email,
            membership,
            vec!["pwd".to_owned()],
        )
        .await
    }
    .await;
    state.metrics.login(match &result {
        Ok(_) if mfa_required => "mfa_required",
        Ok(_) => "success",
        Err(ApiError::InvalidCredentials) => "invalid_credentials",
        Err(ApiError::NotAMember) => "not_a_member",
        Err(_) => "error",
    });
    Ok(with_limits(respond(result), &decision))
}

/// Starts a session (token family) and answers the token response.
pub(super) async fn issue_session(
    state: &SharedState,
    client: &Client,
    user_id: Uuid,
    email: String,
    membership: Membership,
    amr: Vec<String>,
) -> Result<Response, ApiError> {
    let start = StartSession {
        user_id,
        org_id: membership.org_id,
        amr: amr.clone(),
        user_agent: client.user_agent.clone(),
        ip: Some(client.ip.to_string()),
    };
    let shard = state.actors.refresh.pick(user_id.as_bytes());
    let issued = ask(
        shard,
        |r| RefreshMsg::Start(start, r),
        state.settings.ask_timeout,
    )
    .await?;
    let principal = Principal {
        user_id,
        email,
        membership,
        amr,
        auth_time: state.clock.now(),
    };
    let access = state.tokens.issue(&principal, issued.session_id).await?;
    state.audit.record(AuditEvent {
        user_id: Some(user_id),
        session_id: Some(issued.session_id),
        org_id: Some(principal.membership.org_id),
        detail: Some(format!("amr={}", principal.amr.join("+"))),
        ..client.event("login")
    });
    Ok(token_response(state, &access, Some(&issued)))
}

pub(super) async fn membership_for_login(
    state: &SharedState,
    user_id: Uuid,
    requested: Option<&str>,
    default_org: Uuid,
) -> Result<Membership, ApiError> {
    match requested {
        Some(org) => state
            .db
            .membership(user_id, org.trim())
            .await?
            .ok_or(ApiError::NotAMember),
        None => state
            .db
            .membership(user_id, &default_org.to_string())
            .await?
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "user {user_id} has no membership in its default organization"
                ))
            }),
    }
}

/// Whether a string has the shape of a refresh token we issue (43 base64url characters); other
/// strings are refused without touching the database.
pub fn token_shaped(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `POST /auth/refresh`: rotation with grace replay and reuse detection.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "Tokens with a new refresh token", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token` (unknown, expired, revoked) or `refresh_token_reused` (the family is now revoked)", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn refresh(state: SharedState, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: RefreshRequest = extract::parse(body)?;
    let ip = client.rate_key();
    let decision = match limited(&state, &[(Policy::RefreshIp, &ip)]).await {
        Ok(d) => d,
        Err(e) => {
            state.metrics.refresh("rate_limited");
            return Err(e);
        }
    };
    let result = async {
        if !token_shaped(req.refresh_token.expose()) {
            return Err(ApiError::InvalidRefreshToken);
        }
        let hash = token_hash(req.refresh_token.expose());
        // Sharded by the token, not its family: the family is known only once the row is read,
        // and that read is the rotation's own transaction.
        let shard = state.actors.refresh.pick(&hash);
        let (issued, principal) = match ask(
            shard,
            |r| RefreshMsg::Rotate(hash, r),
            state.settings.ask_timeout,
        )
        .await?
        {
            Rotated::Issued(issued, principal) => (issued, principal),
            Rotated::Reused {
                session_id,
                user_id,
            } => {
                // The family is revoked: its access tokens stop working here at once.
                state.revocations.revoke([session_id]);
                state.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    session_id: Some(session_id),
                    detail: Some("family revoked".into()),
                    ..client.event("refresh_token_reused")
                });
                return Err(ApiError::RefreshTokenReused);
            }
        };
        let session_id = issued.session_id;
        let access = state.tokens.issue(&principal, session_id).await?;
        state.metrics.refresh(if issued.replayed {
            "replayed"
        } else {
            "rotated"
        });
        Ok(token_response(&state, &access, Some(&issued)))
    }
    .await;
    match &result {
        Err(ApiError::RefreshTokenReused) => state.metrics.refresh("reused"),
        Err(ApiError::InvalidRefreshToken) => state.metrics.refresh("invalid"),
        Err(_) => state.metrics.refresh("error"),
        Ok(_) => {}
    }
    Ok(with_limits(respond(result), &decision))
}

/// `POST /auth/logout`: revokes the token's session, or all the user's sessions. Always 204,
/// so the answer is no oracle for which tokens exist.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "Revoked; also the answer for an unknown token")))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn logout(state: SharedState, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: LogoutRequest = extract::parse(body)?;
    if token_shaped(req.refresh_token.expose()) {
        let hash = token_hash(req.refresh_token.expose());
        if let Some((session_id, user_id)) = state.db.session_of_token(hash).await? {
            let timeout = state.settings.ask_timeout;
            if req.all {
                let ids = ask(
                    state.actors.refresh.pick(user_id.as_bytes()),
                    |r| RefreshMsg::RevokeAll(user_id, None, "logout_all", r),
                    timeout,
                )
                .await?;
                state.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    detail: Some(format!("all: {} sessions", ids.len())),
                    ..client.event("logout")
                });
                state.revocations.revoke(ids);
            } else {
                ask(
                    state.actors.refresh.pick(session_id.as_bytes()),
                    |r| RefreshMsg::Revoke(session_id, "logout", r),
                    timeout,
                )
                .await?;
                state.revocations.revoke([session_id]);
                state.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    session_id: Some(session_id),
                    ..client.event("logout")
                });
            }
        }
    }
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
