//! The caller's own account: `/auth/me`, `/auth/switch-org`, `/auth/sessions`, `/auth/password`;
//! the flows are `app::account` and `app::sessions`.

use super::bearer::Auth;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, token_shaped_uuid, Body};
use super::reply::{metered, no_content, private_json, rfc3339};
use super::views::{OrgView, TokenResponse, UserView};
use crate::app::SharedApp;
use edge_idp_actors::SecretString;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::reply::Response;

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

/// An application the caller has granted scopes to.
#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    /// The client.
    client_id: String,
    /// Its registered name.
    #[schema(example = "Example App")]
    client_name: String,
    /// The granted scopes, space-separated.
    #[schema(example = "openid email offline_access")]
    scope: String,
    /// When last granted, RFC 3339.
    granted_at: String,
}

/// `200` of `GET /auth/consents`.
#[derive(Serialize, ToSchema)]
pub struct ConsentList {
    consents: Vec<ConsentView>,
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

/// `GET /auth/me`.
#[utoipa::path(get, path = "/auth/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, description = "The caller, its organizations and the active one", body = MeResponse)))]
#[instrument(skip_all)]
pub async fn me(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let me = app.me(&caller).await?;
    let body = MeResponse {
        user: UserView::from(&*me.profile),
        organizations: me
            .profile
            .memberships
            .iter()
            .cloned()
            .map(OrgView::from)
            .collect(),
        active_org_id: me.active_org_id,
    };
    // Personal data (email, memberships): no shared cache may keep it.
    Ok(private_json(&body))
}

/// `POST /auth/switch-org`: a new access token for another organization, same session.
#[utoipa::path(post, path = "/auth/switch-org", tag = "account", security(("bearer" = [])),
    request_body = SwitchOrgRequest,
    responses(
        (status = 200, description = "An access token for that organization; no refresh fields", body = TokenResponse),
        (status = 403, description = "`not_a_member` (also for an unknown organization)", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn switch_org(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: SwitchOrgRequest = extract::parse(body)?;
    let tokens = app.switch_org(&caller, &req.org_id).await?;
    Ok(private_json(&TokenResponse::from(&tokens)))
}

/// `GET /auth/sessions`: the caller's live sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "account", security(("bearer" = [])),
    responses((status = 200, description = "Live sessions only", body = SessionList)))]
#[instrument(skip_all)]
pub async fn sessions(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let sessions = app
        .sessions(&caller)
        .await?
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
    Ok(private_json(&SessionList { sessions }))
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions; another user's is a 404.
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "account", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id (UUID)")),
    responses(
        (status = 204, description = "That session's refresh tokens stop working"),
        (status = 404, description = "`not_found`, also for another user's session", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn delete_session(app: SharedApp, auth: Auth, id: String) -> Result<Response, ApiError> {
    let caller = auth?;
    let sid = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    app.end_session(&caller, sid).await?;
    Ok(no_content())
}

/// `GET /auth/consents`: the applications the caller has granted scopes to on the consent
/// page (first-party clients ask for none, so they are not listed).
#[utoipa::path(get, path = "/auth/consents", tag = "account", security(("bearer" = [])),
    responses((status = 200, description = "The caller's grants, newest first", body = ConsentList)))]
#[instrument(skip_all)]
pub async fn consents(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let consents = app
        .consents(&caller)
        .await?
        .into_iter()
        .map(|c| ConsentView {
            client_id: c.client_id,
            client_name: c.client_name,
            scope: c.scope,
            granted_at: rfc3339(c.granted_at),
        })
        .collect();
    Ok(private_json(&ConsentList { consents }))
}

/// `DELETE /auth/consents/{client_id}`: withdraws the grant and ends that client's sessions.
#[utoipa::path(delete, path = "/auth/consents/{client_id}", tag = "account", security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 204, description = "Withdrawn: the client's refresh and access tokens for the caller stop working, and its next authorization asks for consent again"),
        (status = 404, description = "`not_found`: the caller has granted that client nothing", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn withdraw_consent(
    app: SharedApp,
    auth: Auth,
    client_id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    app.withdraw_consent(&caller, &client_id).await?;
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
#[instrument(skip_all)]
pub async fn change_password(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: PasswordRequest = extract::parse(body)?;
    if req.new_password.expose().contains('\0') {
        return Err(ApiError::Validation(vec![FieldError::new(
            "new_password",
            "must not contain NUL characters",
        )]));
    }
    let m = app
        .change_password(&caller, req.current_password, req.new_password)
        .await?;
    Ok(metered(m, |()| no_content()))
}
