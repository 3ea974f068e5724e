//! Signup: the account, its personal organization, the owner membership, and the verification
//! link with the mail that carries it, in one write.

use super::{App, AppError, Client, Metered};
use crate::ops::audit::AuditEvent;
use crate::security::passwords::{check_policy, context_words};
use crate::security::ratelimit::Policy;
use edge_idp_actors::store::{Membership, NewUser, Role};
use edge_idp_actors::{SecretString, StoreError};
use uuid::Uuid;

/// A parsed signup request.
pub struct Signup {
    /// Normalised email.
    pub email: String,
    /// The chosen password.
    pub password: SecretString,
    /// Display name.
    pub name: Option<String>,
    /// Name of the personal organization; "Personal" when absent.
    pub org_name: Option<String>,
}

/// The new account.
pub struct SignedUp {
    /// User id.
    pub user_id: Uuid,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Unix time of creation.
    pub created_at: i64,
    /// The personal organization, owned by the new user.
    pub organization: Membership,
}

impl App {
    /// Creates an account. The password policy is checked before the rate limit (a refused
    /// password costs the client nothing), the hash after it.
    pub async fn signup(
        &self,
        client: &Client,
        req: Signup,
    ) -> Result<Metered<SignedUp>, AppError> {
        check_policy(
            req.password.expose(),
            &context_words(&self.settings.mfa_issuer, &req.email),
        )
        .map_err(|e| AppError::WeakPassword(e.to_string()))?;
        let decision = self
            .limited(&[(Policy::SignupIp, &client.rate_key())])
            .await?;
        let outcome = self.create_account(client, req).await;
        Ok(Metered { decision, outcome })
    }

    async fn create_account(&self, client: &Client, req: Signup) -> Result<SignedUp, AppError> {
        let password_hash = self.passwords.hash(req.password).await?;
        let now = self.clock.now();
        let new = NewUser {
            id: Uuid::now_v7(),
            email: req.email.clone(),
            name: req.name.clone(),
            password_hash,
            org_id: Uuid::now_v7(),
            org_name: req.org_name.unwrap_or_else(|| "Personal".to_owned()),
            created_at: now,
        };
        let (user_id, org_id, org_name) = (new.id, new.org_id, new.org_name.clone());
        let (link, mail) = self.verification(user_id, &req.email)?;
        // Emails are unique across every instance by the database's unique index.
        self.db
            .create_user_with_link(new, link, mail)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("email") => AppError::EmailTaken,
                other => other.into(),
            })?;
        self.mail_queued();
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            org_id: Some(org_id),
            ..client.event("signup")
        });
        Ok(SignedUp {
            user_id,
            email: req.email,
            name: req.name,
            created_at: now,
            organization: Membership {
                org_id,
                org_name,
                role: Role::Owner,
            },
        })
    }
}
