//! Organizations, their members and invitations.
//!
//! Nobody is put into an organization by someone else: owners and admins invite an email, and
//! the account with that email accepts (or declines) the invitation. Inviting answers the same
//! whether or not an account has the email, and never reads the account. Owners remove anyone,
//! admins remove members and admins, and anyone may leave. An unknown organization and one the
//! caller is not in are both [`AppError::Forbidden`], so the answer does not reveal which
//! organizations exist; an invitation that is not the caller's to use is
//! [`AppError::NotFound`] whatever the reason.

use super::PendingInvitation;
use super::{App, AppError, Caller, Invitation, Metered};
use crate::db::{Acceptance, Removal};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Policy;
use edge_idp_actors::store::{Membership, Role, UserStore};
use uuid::Uuid;

/// How long an invitation can be accepted: 7 days.
pub const INVITATION_TTL: i64 = 7 * 24 * 3600;

impl App {
    /// Creates an organization; the caller becomes its owner.
    pub async fn create_org(&self, caller: &Caller, name: String) -> Result<Membership, AppError> {
        let id = Uuid::now_v7();
        self.db
            .create_org(id, name.clone(), caller.user_id, self.clock.now())
            .await?;
        self.profiles.forget([caller.user_id]);
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            org_id: Some(id),
            ..caller.client.event("org_created")
        });
        Ok(Membership {
            org_id: id,
            org_name: name,
            role: Role::Owner,
        })
    }

    /// The caller's organizations, with its role in each.
    pub async fn orgs(&self, caller: &Caller) -> Result<Vec<Membership>, AppError> {
        Ok(self.db.memberships_of(caller.user_id).await?)
    }

    /// The caller's membership in `org` when it may manage it (owner or admin).
    async fn managed(&self, caller: &Caller, org: &str) -> Result<Uuid, AppError> {
        let (org_id, role) = self.caller_role(caller, org).await?;
        if role == Role::Member {
            return Err(AppError::Forbidden);
        }
        Ok(org_id)
    }

    /// The caller's role in `org`, or [`AppError::Forbidden`].
    async fn caller_role(&self, caller: &Caller, org: &str) -> Result<(Uuid, Role), AppError> {
        let m = self
            .db
            .membership(caller.user_id, org)
            .await?
            .ok_or(AppError::Forbidden)?;
        Ok((m.org_id, m.role))
    }

    /// Invites `email` into `org` as `role`; counted against `RATE_LIMIT_INVITE` per inviting
    /// user.
    pub async fn invite(
        &self,
        caller: &Caller,
        org: &str,
        email: String,
        role: Role,
    ) -> Result<Metered<Invitation>, AppError> {
        let org_id = self.managed(caller, org).await?;
        let key = caller.user_id.to_string();
        let decision = self.limited(&[(Policy::InviteUser, &key)]).await?;
        let outcome = async {
            let now = self.clock.now();
            let inv = Invitation {
                id: Uuid::now_v7(),
                org_id,
                email,
                role,
                expires_at: now + INVITATION_TTL,
            };
            if !self
                .db
                .create_invitation(inv.clone(), caller.user_id, now)
                .await?
            {
                return Err(AppError::AlreadyMember);
            }
            // No email in the trail: it may name someone without an account here.
            self.audit.record(AuditEvent {
                user_id: Some(caller.user_id),
                org_id: Some(org_id),
                subject_id: Some(inv.id),
                detail: Some(role.as_str().to_owned()),
                ..caller.client.event("org_invitation_created")
            });
            Ok(inv)
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// Withdraws a pending invitation of `org` (`id` is `None` when the path held no UUID).
    pub async fn revoke_invitation(
        &self,
        caller: &Caller,
        org: &str,
        id: Option<Uuid>,
    ) -> Result<(), AppError> {
        let org_id = self.managed(caller, org).await?;
        let id = id.ok_or(AppError::NotFound)?;
        if !self
            .db
            .revoke_invitation(org_id, id, self.clock.now())
            .await?
        {
            return Err(AppError::NotFound);
        }
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            org_id: Some(org_id),
            subject_id: Some(id),
            ..caller.client.event("org_invitation_revoked")
        });
        Ok(())
    }

    /// The pending, unexpired invitations for the caller's email, oldest first.
    pub async fn invitations(&self, caller: &Caller) -> Result<Vec<PendingInvitation>, AppError> {
        Ok(self
            .db
            .invitations_for(caller.claims.email.clone(), self.clock.now())
            .await?)
    }

    /// The caller joins the invitation's organization with the invited role.
    pub async fn accept_invitation(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Uuid, Role), AppError> {
        let (org_id, role) = match self
            .db
            .accept_invitation(
                id,
                caller.claims.email.clone(),
                caller.user_id,
                self.clock.now(),
            )
            .await?
        {
            Acceptance::Accepted { org_id, role } => (org_id, role),
            Acceptance::NotPending => return Err(AppError::NotFound),
            Acceptance::AlreadyMember => return Err(AppError::AlreadyMember),
        };
        self.profiles.forget([caller.user_id]);
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            org_id: Some(org_id),
            subject_id: Some(id),
            detail: Some(role.as_str().to_owned()),
            ..caller.client.event("org_invitation_accepted")
        });
        Ok((org_id, role))
    }

    /// The caller turns an invitation down; it is used up.
    pub async fn decline_invitation(&self, caller: &Caller, id: Uuid) -> Result<(), AppError> {
        if !self
            .db
            .decline_invitation(id, caller.claims.email.clone(), self.clock.now())
            .await?
        {
            return Err(AppError::NotFound);
        }
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            subject_id: Some(id),
            ..caller.client.event("org_invitation_declined")
        });
        Ok(())
    }

    /// Removes `target` from `org` (`None` when the path held no UUID): owners remove anyone,
    /// admins members and admins, anyone themself; never the last owner.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        org: &str,
        target: Option<Uuid>,
    ) -> Result<(), AppError> {
        let (org_id, my_role) = self.caller_role(caller, org).await?;
        let is_self = target == Some(caller.user_id);
        if !is_self {
            match my_role {
                Role::Owner => {}
                Role::Admin => {
                    // Admins remove members and admins, never owners.
                    if let Some(t) = target {
                        if let Some(m) = self.db.membership(t, &org_id.to_string()).await? {
                            if m.role == Role::Owner {
                                return Err(AppError::Forbidden);
                            }
                        }
                    }
                }
                Role::Member => return Err(AppError::Forbidden),
            }
        }
        let target = target.ok_or(AppError::NotFound)?;
        match self.db.remove_member(org_id, target).await? {
            Removal::Removed => {}
            Removal::NotMember => return Err(AppError::NotFound),
            Removal::LastOwner => return Err(AppError::LastOwner),
        }
        self.profiles.forget([target]);
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            org_id: Some(org_id),
            subject_id: Some(target),
            ..caller.client.event("member_removed")
        });
        Ok(())
    }
}
