//! Sessions: refresh-token rotation (with grace replay and reuse detection), logout, and the
//! caller's list of sessions.
//!
//! A session is a refresh-token family. Its one-use guarantees are decided at the database's
//! primary (`refresh::Families`, one conditional batch per presentation), so they hold across
//! instances; the revocation cache only makes a revoked session's access tokens stop working
//! here at once instead of at their next cache refresh.

use super::{App, AppError, Caller, Client, Metered, SessionRow, Tokens};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Policy;
use edge_idp_actors::refresh::{token_hash, Rotated};
use edge_idp_actors::store::SessionStore;
use edge_idp_actors::SecretString;
use uuid::Uuid;

/// Whether a string has the shape of a refresh token (or `mfa_token`) we issue: 43 base64url
/// characters. Other strings are refused without touching the database.
pub fn token_shaped(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl App {
    /// Presents a refresh token: its successor and a new access token, the same successor again
    /// within the grace window, or reuse (the family is revoked).
    pub async fn refresh(
        &self,
        client: &Client,
        refresh_token: SecretString,
    ) -> Result<Metered<Tokens>, AppError> {
        let decision = match self
            .limited(&[(Policy::RefreshIp, &client.rate_key())])
            .await
        {
            Ok(d) => d,
            Err(e) => {
                self.metrics.refresh("rate_limited");
                return Err(e);
            }
        };
        let outcome = self.rotate(client, refresh_token).await;
        match &outcome {
            Ok(_) => {}
            Err(AppError::RefreshTokenReused) => self.metrics.refresh("reused"),
            Err(AppError::InvalidRefreshToken) => self.metrics.refresh("invalid"),
            Err(_) => self.metrics.refresh("error"),
        }
        Ok(Metered { decision, outcome })
    }

    async fn rotate(&self, client: &Client, token: SecretString) -> Result<Tokens, AppError> {
        if !token_shaped(token.expose()) {
            return Err(AppError::InvalidRefreshToken);
        }
        let (issued, principal) = match self.families.rotate(token_hash(token.expose())).await? {
            Rotated::Issued(issued, principal) => (issued, principal),
            Rotated::Reused {
                session_id,
                user_id,
            } => {
                // The family is revoked: its access tokens stop working here at once.
                self.revocations.revoke([session_id]);
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    session_id: Some(session_id),
                    detail: Some("family revoked".into()),
                    ..client.event("refresh_token_reused")
                });
                return Err(AppError::RefreshTokenReused);
            }
        };
        let access = self.tokens.issue(&principal, issued.session_id).await?;
        self.metrics.refresh(if issued.replayed {
            "replayed"
        } else {
            "rotated"
        });
        Ok(self.tokens_for(access, Some(issued)))
    }

    /// Revokes the session of `refresh_token` (any token of it, used or current), or with
    /// `all` every session of its user. An unknown token changes nothing and is no error, so
    /// the answer is no oracle for which tokens exist.
    pub async fn logout(
        &self,
        client: &Client,
        refresh_token: SecretString,
        all: bool,
    ) -> Result<(), AppError> {
        if !token_shaped(refresh_token.expose()) {
            return Ok(());
        }
        let hash = token_hash(refresh_token.expose());
        let Some((session_id, user_id)) = self.db.session_of_token(hash).await? else {
            return Ok(());
        };
        if all {
            // Browser sessions first: a code they issued stops redeeming before the sessions
            // are swept, so none can start a session the sweep misses.
            self.db
                .end_user_browser_sessions(user_id, self.clock.now())
                .await?;
            let ids = self
                .families
                .revoke_all(user_id, None, "logout_all")
                .await?;
            self.audit.record(AuditEvent {
                user_id: Some(user_id),
                detail: Some(format!("all: {} sessions", ids.len())),
                ..client.event("logout")
            });
            self.revocations.revoke(ids);
        } else {
            self.families.revoke(session_id, "logout").await?;
            self.revocations.revoke([session_id]);
            self.audit.record(AuditEvent {
                user_id: Some(user_id),
                session_id: Some(session_id),
                ..client.event("logout")
            });
        }
        Ok(())
    }

    /// The caller's live sessions.
    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<SessionRow>, AppError> {
        Ok(self
            .db
            .sessions_of(caller.user_id, self.clock.now())
            .await?)
    }

    /// Ends one of the caller's sessions; another user's is [`AppError::NotFound`].
    pub async fn end_session(&self, caller: &Caller, session_id: Uuid) -> Result<(), AppError> {
        if self.db.session_owner(session_id).await? != Some(caller.user_id) {
            return Err(AppError::NotFound);
        }
        if !self.families.revoke(session_id, "session_deleted").await? {
            return Err(AppError::NotFound);
        }
        self.revocations.revoke([session_id]);
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            session_id: Some(session_id),
            ..caller.client.event("session_deleted")
        });
        Ok(())
    }

    /// Revokes every session of `user_id` but `keep` (all of them without one): after a
    /// password or second factor changes, what was signed in under the old one ends. The
    /// number of sessions ended.
    pub(super) async fn end_other_sessions(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        reason: &'static str,
    ) -> Result<usize, AppError> {
        // The hosted pages' single sign-on ends with them: a new password or second factor
        // must be used to sign in there again. First, so that a code those browser sessions
        // issued stops redeeming before the sessions are swept (none starts one the sweep
        // misses).
        self.db
            .end_user_browser_sessions(user_id, self.clock.now())
            .await?;
        let revoked = self.families.revoke_all(user_id, keep, reason).await?;
        let n = revoked.len();
        self.revocations.revoke(revoked);
        Ok(n)
    }

    /// Ends every pending `mfa_token` of `user_id`: a login that passed the old password or
    /// second factor and waits for the next step ends too.
    pub(super) async fn end_pending_challenges(&self, user_id: Uuid) -> Result<(), AppError> {
        Ok(self.db.revoke_challenges(user_id).await?)
    }
}
