//! The caller's own account: `/auth/me`, `/auth/switch-org`, `/auth/sessions`, `/auth/password`.

use super::auth::{
    no_store, rfc3339, token_shaped_uuid, with_limits, OrgView, TokenResponse, UserView,
};
use super::bearer::Caller;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, Client};
use crate::ops::audit::AuditEvent;
use crate::security::passwords::{check_policy, context_words};
use crate::state::SharedState;
use bytes::Bytes;
use edge_idp_actors::refresh::RefreshMsg;
use edge_idp_actors::store::{Principal, UserStore};
use edge_idp_actors::users::UsersMsg;
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

/// `POST /auth/switch-org`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchOrgRequest {
    /// The organization to work in.
    pub org_id: String,
}

/// `POST /auth/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The password in force.
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// The new password; checked against the policy.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    pub new_password: SecretString,
}

/// A live session (refresh-token family) of the caller.
#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionView {
    id: Uuid,
    /// RFC 3339, UTC: the login.
    #[schema(format = DateTime)]
    created_at: String,
    /// RFC 3339, UTC: the last refresh.
    #[schema(format = DateTime)]
    last_used_at: String,
    /// `User-Agent` of the login.
    user_agent: Option<String>,
    /// Client IP of the login.
    ip: Option<String>,
    /// Whether this is the session of the calling token.
    current: bool,
}

/// `200` of `GET /auth/sessions`.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionView>,
}

/// `200` of `GET /auth/me`.
#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    user: UserView,
    /// Every organization the caller belongs to, with its role there.
    organizations: Vec<OrgView>,
    /// The session's active organization.
    active_org_id: Option<Uuid>,
}

fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// `GET /auth/me`.
#[utoipa::path(get, path = "/auth/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, description = "The caller, its organizations and the active one", body = MeResponse)))]
#[instrument(skip_all)]
pub async fn me(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let profile = state
        .profiles
        .get(&state.db, caller.user_id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    // The session's organization while the user is a member there, else the default one: the
    // organization its next access token will be for.
    let member = |org: Uuid| profile.memberships.iter().any(|m| m.org_id == org);
    let active = [caller.active_org_id, profile.default_org_id]
        .into_iter()
        .find(|&org| member(org));
    let body = MeResponse {
        user: UserView::from(&*profile),
        organizations: profile
            .memberships
            .iter()
            .cloned()
            .map(OrgView::from)
            .collect(),
        active_org_id: active,
    };
    // Personal data (email, memberships): no shared cache may keep it.
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// `POST /auth/switch-org`: a new access token for another organization, same session.
#[utoipa::path(post, path = "/auth/switch-org", tag = "account", security(("bearer" = [])),
    request_body = SwitchOrgRequest,
    responses(
        (status = 200, description = "An access token for that organization; no refresh fields", body = TokenResponse),
        (status = 403, description = "`not_a_member` (also for an unknown organization)", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn switch_org(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: SwitchOrgRequest = extract::parse(body)?;
    let membership = state
        .db
        .membership(caller.user_id, req.org_id.trim())
        .await?
        .ok_or(ApiError::NotAMember)?;
    let sid = caller.session_id;
    let org = membership.org_id;
    if !ask(
        state.actors.refresh.pick(sid.as_bytes()),
        |r| RefreshMsg::SwitchOrg(sid, org, r),
        state.settings.ask_timeout,
    )
    .await?
    {
        return Err(ApiError::SessionRevoked);
    }
    state.revocations.switched(sid, org);
    let principal = Principal {
        user_id: caller.user_id,
        email: caller.claims.email.clone(),
        membership,
        amr: caller.claims.amr.clone(),
        auth_time: caller.claims.auth_time,
    };
    let access = state.tokens.issue(&principal, sid).await?;
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        session_id: Some(sid),
        org_id: Some(org),
        ..caller.client.event("switch_org")
    });
    let body = TokenResponse::access_only(&access, state.tokens.ttl());
    Ok(no_store(warp::reply::json(&body).into_response()))
}

/// `GET /auth/sessions`: the caller's live sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "account", security(("bearer" = [])),
    responses((status = 200, description = "Live sessions only", body = SessionList)))]
#[instrument(skip_all)]
pub async fn sessions(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let rows = state
        .db
        .sessions_of(caller.user_id, state.clock.now())
        .await?;
    let list: Vec<SessionView> = rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == caller.session_id,
            id: s.id,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    // IP addresses and user agents: no shared cache may keep them.
    Ok(no_store(
        warp::reply::json(&SessionList { sessions: list }).into_response(),
    ))
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions; another user's is a 404.
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "account", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id (UUID)")),
    responses(
        (status = 204, description = "That session's refresh tokens stop working"),
        (status = 404, description = "`not_found`, also for another user's session", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn delete_session(
    state: SharedState,
    auth: Auth,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let sid = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    if state.db.session_owner(sid).await? != Some(caller.user_id) {
        return Err(ApiError::NotFound);
    }
    if !ask(
        state.actors.refresh.pick(sid.as_bytes()),
        |r| RefreshMsg::Revoke(sid, "session_deleted", r),
        state.settings.ask_timeout,
    )
    .await?
    {
        return Err(ApiError::NotFound);
    }
    state.revocations.revoke([sid]);
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        session_id: Some(sid),
        ..caller.client.event("session_deleted")
    });
    Ok(no_content())
}

/// `POST /auth/password`: checks the current password, applies the policy, revokes every other
/// session. Counted against the login rate limits, since it is a password check.
#[utoipa::path(post, path = "/auth/password", tag = "account", security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Changed; every other session is revoked"),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = Problem),
        (status = 422, description = "`validation_failed` or `weak_password`", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn change_password(
    state: SharedState,
    auth: Auth,
    client: Client,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: PasswordRequest = extract::parse(body)?;
    if req.new_password.expose().contains('\0') {
        return Err(ApiError::Validation(vec![FieldError::new(
            "new_password",
            "must not contain NUL characters",
        )]));
    }
    let user = state
        .db
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    check_policy(
        req.new_password.expose(),
        &context_words(&state.settings.mfa_issuer, &user.email),
    )
    .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let decision = super::auth::login_limits(&state, &client, &user.email).await?;
    let result = async {
        if req.current_password.expose().chars().count() > 128 {
            return Err(ApiError::InvalidCredentials);
        }
        let verified = state
            .passwords
            .verify(req.current_password, Some(user.password_hash.clone()))
            .await?;
        if !verified.ok {
            state.audit.record(AuditEvent {
                user_id: Some(user.id),
                session_id: Some(caller.session_id),
                ..client.event("password_change_failed")
            });
            return Err(ApiError::InvalidCredentials);
        }
        let new_hash = state.passwords.hash(req.new_password).await?;
        let timeout = state.settings.ask_timeout;
        let (id, old) = (user.id, user.password_hash.clone());
        if !ask(
            state.actors.users.pick(user.email.as_bytes()),
            |r| UsersMsg::ChangePassword(id, old, new_hash, r),
            timeout,
        )
        .await?
        {
            // Someone changed it between our read and our write: the check we made is stale.
            return Err(ApiError::InvalidCredentials);
        }
        let keep = caller.session_id;
        let revoked = ask(
            state.actors.refresh.pick(id.as_bytes()),
            |r| RefreshMsg::RevokeAll(id, Some(keep), "password_changed", r),
            timeout,
        )
        .await?;
        state.audit.record(AuditEvent {
            user_id: Some(id),
            session_id: Some(keep),
            detail: Some(format!("{} other sessions revoked", revoked.len())),
            ..client.event("password_changed")
        });
        state.revocations.revoke(revoked);
        // A login that passed the old password and waits for its second factor ends too.
        state.db.revoke_challenges(id).await?;
        Ok(no_content())
    }
    .await;
    Ok(with_limits(
        result.unwrap_or_else(ApiError::into_response),
        &decision,
    ))
}
