//! The caller's own account: its profile, switching organization, changing the password.

use super::{App, AppError, Caller, Metered, Profile, Tokens};
use crate::ops::audit::AuditEvent;
use crate::security::passwords::{check_policy, context_words};
use edge_idp_actors::store::{Grant, Principal, UserStore};
use edge_idp_actors::SecretString;
use std::sync::Arc;
use uuid::Uuid;

/// The caller's profile and the organization its next access token will be for.
pub struct Me {
    /// Account and memberships (cached briefly per user).
    pub profile: Arc<Profile>,
    /// The session's organization while the user is a member there, else the default one.
    pub active_org_id: Option<Uuid>,
}

impl App {
    /// The caller, its organizations and the active one.
    pub async fn me(&self, caller: &Caller) -> Result<Me, AppError> {
        let profile = self
            .profiles
            .get(&self.db, caller.user_id)
            .await?
            .ok_or(AppError::InvalidToken)?;
        let member = |org: Uuid| profile.memberships.iter().any(|m| m.org_id == org);
        let active_org_id = [caller.active_org_id, profile.default_org_id]
            .into_iter()
            .find(|&org| member(org));
        Ok(Me {
            profile,
            active_org_id,
        })
    }

    /// A new access token for another organization of the caller, same session.
    pub async fn switch_org(&self, caller: &Caller, org: &str) -> Result<Tokens, AppError> {
        let membership = self
            .db
            .membership(caller.user_id, org.trim())
            .await?
            .ok_or(AppError::NotAMember)?;
        let sid = caller.session_id;
        let org = membership.org_id;
        if !self.families.switch_org(sid, org).await? {
            return Err(AppError::SessionRevoked);
        }
        self.revocations.switched(sid, org);
        let principal = Principal {
            user_id: caller.user_id,
            email: caller.claims.email.clone(),
            membership,
            amr: caller.claims.amr.clone(),
            auth_time: caller.claims.auth_time,
            grant: caller.claims.client_id.clone().map(|client_id| Grant {
                client_id,
                scope: caller.claims.scope.clone().unwrap_or_default(),
                browser_session_id: None,
            }),
        };
        let access = self.tokens.issue(&principal, sid).await?;
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            session_id: Some(sid),
            org_id: Some(org),
            ..caller.client.event("switch_org")
        });
        Ok(self.tokens_for(access, None))
    }

    /// Checks the current password, applies the policy to the new one, replaces the hash and
    /// ends every other session. Counted against the login limits: it is a password check.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: SecretString,
        new: SecretString,
    ) -> Result<Metered<()>, AppError> {
        let user = self
            .db
            .user_by_id(caller.user_id)
            .await?
            .ok_or(AppError::InvalidToken)?;
        check_policy(
            new.expose(),
            &context_words(&self.settings.mfa_issuer, &user.email),
        )
        .map_err(|e| AppError::WeakPassword(e.to_string()))?;
        let decision = self.login_limits(&caller.client, &user.email).await?;
        let outcome = async {
            if current.expose().chars().count() > super::login::MAX_PASSWORD_CHARS {
                return Err(AppError::InvalidCredentials);
            }
            let verified = self
                .passwords
                .verify(current, Some(user.password_hash.clone()))
                .await?;
            if !verified.ok {
                self.audit.record(AuditEvent {
                    user_id: Some(user.id),
                    session_id: Some(caller.session_id),
                    ..caller.client.event("password_change_failed")
                });
                return Err(AppError::InvalidCredentials);
            }
            let new_hash = self.passwords.hash(new).await?;
            let replaced = self
                .db
                .replace_password(
                    user.id,
                    user.password_hash.clone(),
                    new_hash,
                    self.clock.now(),
                )
                .await?;
            if !replaced {
                // Someone changed it between our read and our write: our check is stale.
                return Err(AppError::InvalidCredentials);
            }
            let keep = caller.session_id;
            let ended = self
                .end_other_sessions(user.id, Some(keep), "password_changed")
                .await?;
            self.audit.record(AuditEvent {
                user_id: Some(user.id),
                session_id: Some(keep),
                detail: Some(format!("{ended} other sessions revoked")),
                ..caller.client.event("password_changed")
            });
            self.end_pending_challenges(user.id).await?;
            self.db
                .end_password_links(user.id, self.clock.now())
                .await?;
            self.notify(
                crate::mail::Letter::PasswordChanged { how: "changed" },
                &user.email,
            )
            .await;
            Ok(())
        }
        .await;
        Ok(Metered { decision, outcome })
    }
}
