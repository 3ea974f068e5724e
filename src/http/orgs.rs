//! `/orgs` and `/auth/invitations`: organizations, their members and invitations.
//!
//! Nobody is put into an organization by someone else: owners and admins invite an email, and
//! the account with that email accepts (or declines) the invitation. Inviting answers the same
//! whether or not an account has the email, and never reads the account. Owners remove anyone,
//! admins remove members and admins, and anyone may leave. An unknown organization and one the
//! caller is not in are both 403 `forbidden`, so the answer does not reveal which organizations
//! exist; an invitation that is not the caller's to use is 404 `not_found` whatever the reason.

use super::auth::{limited, no_store, rfc3339, token_shaped_uuid, with_limits, OrgView};
use super::bearer::Caller;
use super::error::{ApiError, FieldError, Problem};
use super::extract;
use crate::db::{Acceptance, Invitation, Removal};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Policy;
use crate::state::SharedState;
use bytes::Bytes;
use edge_idp_actors::store::{Membership, Role, UserStore};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

type Body = Result<Bytes, ApiError>;
type Auth = Result<Caller, ApiError>;

/// How long an invitation can be accepted: 7 days.
pub const INVITATION_TTL: i64 = 7 * 24 * 3600;

/// `POST /orgs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    /// Display name, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

/// `POST /orgs/{org_id}/invitations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The email to invite; whether an account has it yet does not matter.
    #[schema(format = Email)]
    pub email: String,
    /// `admin` or `member`.
    #[schema(example = "member", pattern = "^(admin|member)$")]
    pub role: String,
}

/// `200` of `GET /orgs`.
#[derive(Serialize, ToSchema)]
pub struct OrgList {
    organizations: Vec<OrgView>,
}

/// `202` of `POST /orgs/{org_id}/invitations`: the invitation, the same whether or not an
/// account has the email.
#[derive(Serialize, ToSchema)]
#[schema(as = Invitation)]
pub struct InvitationView {
    id: Uuid,
    org_id: Uuid,
    /// The normalised email it is bound to.
    #[schema(format = Email)]
    email: String,
    /// The role it grants: `admin` or `member`.
    role: Role,
    /// RFC 3339, UTC: from then on it can no longer be accepted.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A pending invitation of the caller.
#[derive(Serialize, ToSchema)]
#[schema(as = PendingInvitation)]
pub struct PendingInvitationView {
    id: Uuid,
    org_id: Uuid,
    /// The organization's display name.
    org_name: String,
    /// The role it grants: `admin` or `member`.
    role: Role,
    /// RFC 3339, UTC: from then on it can no longer be accepted.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// `200` of `GET /auth/invitations`.
#[derive(Serialize, ToSchema)]
pub struct InvitationList {
    invitations: Vec<PendingInvitationView>,
}

/// `201` of accepting an invitation: the caller's new membership.
#[derive(Serialize, ToSchema)]
pub struct InvitationAccepted {
    user_id: Uuid,
    org_id: Uuid,
    role: Role,
}

/// `POST /orgs`: the caller becomes its owner.
#[utoipa::path(post, path = "/orgs", tag = "orgs", security(("bearer" = [])),
    request_body = CreateOrgRequest,
    responses((status = 201, description = "Created; the caller is its owner", body = OrgView)))]
#[instrument(skip_all)]
pub async fn create(state: SharedState, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CreateOrgRequest = extract::parse(body)?;
    let name = extract::text("name", Some(&req.name), 100)
        .map_err(|e| ApiError::Validation(vec![e]))?
        .unwrap_or_default();
    let id = Uuid::now_v7();
    state
        .db
        .create_org(id, name.clone(), caller.user_id, state.clock.now())
        .await?;
    state.profiles.forget([caller.user_id]);
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        org_id: Some(id),
        ..caller.client.event("org_created")
    });
    let view = OrgView::from(Membership {
        org_id: id,
        org_name: name,
        role: Role::Owner,
    });
    Ok(warp::reply::with_status(warp::reply::json(&view), StatusCode::CREATED).into_response())
}

/// `GET /orgs`.
#[utoipa::path(get, path = "/orgs", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "The caller's organizations", body = OrgList)))]
#[instrument(skip_all)]
pub async fn list(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let orgs: Vec<OrgView> = state
        .db
        .memberships_of(caller.user_id)
        .await?
        .into_iter()
        .map(OrgView::from)
        .collect();
    Ok(warp::reply::json(&OrgList {
        organizations: orgs,
    })
    .into_response())
}

/// The caller's role in `org`, or 403.
async fn caller_role(
    state: &SharedState,
    caller: &Caller,
    org: &str,
) -> Result<(Uuid, Role), ApiError> {
    let m = state
        .db
        .membership(caller.user_id, org)
        .await?
        .ok_or(ApiError::Forbidden)?;
    Ok((m.org_id, m.role))
}

fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// `POST /orgs/{org_id}/invitations`: owners and admins invite an email as admin or member.
/// Counted against `RATE_LIMIT_INVITE` per inviting user.
#[utoipa::path(post, path = "/orgs/{org_id}/invitations", tag = "orgs", security(("bearer" = [])),
    params(("org_id" = String, Path, description = "Organization id (UUID)")),
    request_body = InviteRequest,
    responses(
        (status = 202, description = "Invited for 7 days; the same answer whether or not an account has that email", body = InvitationView),
        (status = 403, description = "`forbidden`: the caller is not owner or admin there (or the organization is unknown)", body = Problem),
        (status = 409, description = "`already_member`: the email belongs to a member of that organization", body = Problem),
        (status = 422, description = "`validation_failed`: a malformed email, or a role other than `admin` or `member`", body = Problem),
        (status = 429, description = "`rate_limited`, with `Retry-After` and `RateLimit-*`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn invite(
    state: SharedState,
    auth: Auth,
    org: String,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: InviteRequest = extract::parse(body)?;
    let mut errors = Vec::new();
    let email = extract::email("email", &req.email)
        .map_err(|e| errors.push(e))
        .ok();
    let role = match req.role.as_str() {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => {
            errors.push(FieldError::new("role", "must be admin or member"));
            None
        }
    };
    extract::validate(errors)?;
    let (Some(email), Some(role)) = (email, role) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let (org_id, my_role) = caller_role(&state, &caller, &org).await?;
    if my_role == Role::Member {
        return Err(ApiError::Forbidden);
    }
    let key = caller.user_id.to_string();
    let decision = limited(&state, &[(Policy::InviteUser, &key)]).await?;
    let result: Result<Response, ApiError> = async {
        let now = state.clock.now();
        let inv = Invitation {
            id: Uuid::now_v7(),
            org_id,
            email,
            role,
            expires_at: now + INVITATION_TTL,
        };
        if !state
            .db
            .create_invitation(inv.clone(), caller.user_id, now)
            .await?
        {
            return Err(ApiError::AlreadyMember);
        }
        // No email in the trail: it may name someone without an account here.
        state.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            org_id: Some(org_id),
            subject_id: Some(inv.id),
            detail: Some(role.as_str().to_owned()),
            ..caller.client.event("org_invitation_created")
        });
        let body = InvitationView {
            id: inv.id,
            org_id,
            email: inv.email,
            role,
            expires_at: rfc3339(inv.expires_at),
        };
        Ok(no_store(
            warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                .into_response(),
        ))
    }
    .await;
    Ok(with_limits(
        result.unwrap_or_else(ApiError::into_response),
        &decision,
    ))
}

/// `DELETE /orgs/{org_id}/invitations/{id}`: owners and admins withdraw a pending invitation.
#[utoipa::path(delete, path = "/orgs/{org_id}/invitations/{id}", tag = "orgs", security(("bearer" = [])),
    params(
        ("org_id" = String, Path, description = "Organization id (UUID)"),
        ("id" = String, Path, description = "Invitation id (UUID)"),
    ),
    responses(
        (status = 204, description = "Revoked; it can no longer be accepted"),
        (status = 403, description = "`forbidden`: the caller is not owner or admin there (or the organization is unknown)", body = Problem),
        (status = 404, description = "`not_found`: no pending invitation of that organization with that id (unknown, expired, or already accepted, declined or revoked)", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn revoke_invitation(
    state: SharedState,
    auth: Auth,
    org: String,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let (org_id, my_role) = caller_role(&state, &caller, &org).await?;
    if my_role == Role::Member {
        return Err(ApiError::Forbidden);
    }
    let id = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    if !state
        .db
        .revoke_invitation(org_id, id, state.clock.now())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        org_id: Some(org_id),
        subject_id: Some(id),
        ..caller.client.event("org_invitation_revoked")
    });
    Ok(no_content())
}

/// `GET /auth/invitations`: the pending, unexpired invitations for the caller's email.
#[utoipa::path(get, path = "/auth/invitations", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "Pending, unexpired invitations for the caller's email, oldest first", body = InvitationList)))]
#[instrument(skip_all)]
pub async fn invitations(state: SharedState, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let list: Vec<PendingInvitationView> = state
        .db
        .invitations_for(caller.claims.email.clone(), state.clock.now())
        .await?
        .into_iter()
        .map(|i| PendingInvitationView {
            id: i.id,
            org_id: i.org_id,
            org_name: i.org_name,
            role: i.role,
            expires_at: rfc3339(i.expires_at),
        })
        .collect();
    // Personal data: no shared cache may keep it.
    Ok(no_store(
        warp::reply::json(&InvitationList { invitations: list }).into_response(),
    ))
}

/// `POST /auth/invitations/{id}/accept`: the caller joins the organization with the invited role.
#[utoipa::path(post, path = "/auth/invitations/{id}/accept", tag = "orgs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Invitation id (UUID)")),
    responses(
        (status = 201, description = "The caller is now a member", body = InvitationAccepted),
        (status = 404, description = "`not_found`: unknown, expired, revoked, used, declined, or for another email", body = Problem),
        (status = 409, description = "`already_member`: the caller is a member there already; the invitation stays pending", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn accept_invitation(
    state: SharedState,
    auth: Auth,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let id = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    let (org_id, role) = match state
        .db
        .accept_invitation(
            id,
            caller.claims.email.clone(),
            caller.user_id,
            state.clock.now(),
        )
        .await?
    {
        Acceptance::Accepted { org_id, role } => (org_id, role),
        Acceptance::NotPending => return Err(ApiError::NotFound),
        Acceptance::AlreadyMember => return Err(ApiError::AlreadyMember),
    };
    state.profiles.forget([caller.user_id]);
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        org_id: Some(org_id),
        subject_id: Some(id),
        detail: Some(role.as_str().to_owned()),
        ..caller.client.event("org_invitation_accepted")
    });
    let body = InvitationAccepted {
        user_id: caller.user_id,
        org_id,
        role,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

/// `POST /auth/invitations/{id}/decline`: the caller turns an invitation down; it is used up.
#[utoipa::path(post, path = "/auth/invitations/{id}/decline", tag = "orgs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Invitation id (UUID)")),
    responses(
        (status = 204, description = "Declined; it can no longer be accepted"),
        (status = 404, description = "`not_found`: unknown, expired, revoked, used, declined, or for another email", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn decline_invitation(
    state: SharedState,
    auth: Auth,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let id = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    if !state
        .db
        .decline_invitation(id, caller.claims.email.clone(), state.clock.now())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        subject_id: Some(id),
        ..caller.client.event("org_invitation_declined")
    });
    Ok(no_content())
}

/// `DELETE /orgs/{org_id}/members/{user_id}`.
#[utoipa::path(delete, path = "/orgs/{org_id}/members/{user_id}", tag = "orgs", security(("bearer" = [])),
    params(
        ("org_id" = String, Path, description = "Organization id (UUID)"),
        ("user_id" = String, Path, description = "User id (UUID)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`", body = Problem),
        (status = 404, description = "`not_found`", body = Problem),
        (status = 409, description = "`last_owner`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn remove_member(
    state: SharedState,
    auth: Auth,
    org: String,
    member: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let (org_id, my_role) = caller_role(&state, &caller, &org).await?;
    let target = token_shaped_uuid(&member);
    let is_self = target == Some(caller.user_id);
    if !is_self {
        match my_role {
            Role::Owner => {}
            Role::Admin => {
                // Admins remove members and admins, never owners.
                if let Some(t) = target {
                    if let Some(m) = state.db.membership(t, &org_id.to_string()).await? {
                        if m.role == Role::Owner {
                            return Err(ApiError::Forbidden);
                        }
                    }
                }
            }
            Role::Member => return Err(ApiError::Forbidden),
        }
    }
    let target = target.ok_or(ApiError::NotFound)?;
    match state.db.remove_member(org_id, target).await? {
        Removal::Removed => {}
        Removal::NotMember => return Err(ApiError::NotFound),
        Removal::LastOwner => return Err(ApiError::LastOwner),
    }
    state.profiles.forget([target]);
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        org_id: Some(org_id),
        subject_id: Some(target),
        ..caller.client.event("member_removed")
    });
    Ok(no_content())
}
