//! `/orgs` and `/auth/invitations`: organizations, their members and invitations. The rules
//! (who may invite, remove, leave; what each refusal reveals) are the flows' in `app::orgs`.

use super::bearer::Auth;
use super::error::{ApiError, FieldError, Problem};
use super::extract::{self, token_shaped_uuid, Body};
use super::reply::{json, metered, no_content, no_store, private_json, rfc3339};
use super::views::OrgView;
use crate::app::SharedApp;
use edge_idp_actors::store::Role;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;

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
pub async fn create(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: CreateOrgRequest = extract::parse(body)?;
    let name = extract::text("name", Some(&req.name), 100)
        .map_err(|e| ApiError::Validation(vec![e]))?
        .unwrap_or_default();
    let org = app.create_org(&caller, name).await?;
    Ok(json(StatusCode::CREATED, &OrgView::from(org)))
}

/// `GET /orgs`.
#[utoipa::path(get, path = "/orgs", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "The caller's organizations", body = OrgList)))]
#[instrument(skip_all)]
pub async fn list(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let organizations = app
        .orgs(&caller)
        .await?
        .into_iter()
        .map(OrgView::from)
        .collect();
    Ok(json(StatusCode::OK, &OrgList { organizations }))
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
    app: SharedApp,
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
        return Err(ApiError::internal("validated fields missing"));
    };
    let m = app.invite(&caller, &org, email, role).await?;
    Ok(metered(m, |inv| {
        let body = InvitationView {
            id: inv.id,
            org_id: inv.org_id,
            email: inv.email,
            role: inv.role,
            expires_at: rfc3339(inv.expires_at),
        };
        no_store(json(StatusCode::ACCEPTED, &body))
    }))
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
    app: SharedApp,
    auth: Auth,
    org: String,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    app.revoke_invitation(&caller, &org, token_shaped_uuid(&id))
        .await?;
    Ok(no_content())
}

/// `GET /auth/invitations`: the pending, unexpired invitations for the caller's email.
#[utoipa::path(get, path = "/auth/invitations", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "Pending, unexpired invitations for the caller's email, oldest first", body = InvitationList)))]
#[instrument(skip_all)]
pub async fn invitations(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let invitations = app
        .invitations(&caller)
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
    Ok(private_json(&InvitationList { invitations }))
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
    app: SharedApp,
    auth: Auth,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let id = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    let (org_id, role) = app.accept_invitation(&caller, id).await?;
    let body = InvitationAccepted {
        user_id: caller.user_id,
        org_id,
        role,
    };
    Ok(json(StatusCode::CREATED, &body))
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
    app: SharedApp,
    auth: Auth,
    id: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let id = token_shaped_uuid(&id).ok_or(ApiError::NotFound)?;
    app.decline_invitation(&caller, id).await?;
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
    app: SharedApp,
    auth: Auth,
    org: String,
    member: String,
) -> Result<Response, ApiError> {
    let caller = auth?;
    app.remove_member(&caller, &org, token_shaped_uuid(&member))
        .await?;
    Ok(no_content())
}
