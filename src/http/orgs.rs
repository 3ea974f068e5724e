//! `/orgs`: organizations and their members.
//!
//! Owners and admins add members; owners remove anyone, admins remove members and admins, and
//! anyone may leave. An unknown organization and one the caller is not in are both 403
//! `forbidden`, so the answer does not reveal which organizations exist.

use super::auth::{token_shaped_uuid, OrgView};
use super::bearer::Caller;
use super::error::{ApiError, FieldError, Problem};
use super::extract;
use crate::audit::AuditEvent;
use crate::db::Removal;
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

/// `POST /orgs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    /// Display name, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

/// `POST /orgs/{org_id}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The account to add.
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

/// `201` of adding a member.
#[derive(Serialize, ToSchema)]
pub struct MemberAdded {
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

/// `POST /orgs/{org_id}/members`.
#[utoipa::path(post, path = "/orgs/{org_id}/members", tag = "orgs", security(("bearer" = [])),
    params(("org_id" = String, Path, description = "Organization id (UUID)")),
    request_body = AddMemberRequest,
    responses(
        (status = 201, description = "Added", body = MemberAdded),
        (status = 403, description = "`forbidden`: the caller is not owner or admin there (or the organization is unknown)", body = Problem),
        (status = 404, description = "`user_not_found`", body = Problem),
        (status = 409, description = "`already_member`", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn add_member(
    state: SharedState,
    auth: Auth,
    org: String,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: AddMemberRequest = extract::parse(body)?;
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
    let user = state
        .db
        .user_by_email(&email)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    if !state
        .db
        .add_member(org_id, user.id, role, state.clock.now())
        .await?
    {
        return Err(ApiError::AlreadyMember);
    }
    state.profiles.forget([user.id]);
    state.audit.record(AuditEvent {
        user_id: Some(caller.user_id),
        org_id: Some(org_id),
        subject_id: Some(user.id),
        detail: Some(role.as_str().to_owned()),
        ..caller.client.event("member_added")
    });
    let body = MemberAdded {
        user_id: user.id,
        org_id,
        role,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
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
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
