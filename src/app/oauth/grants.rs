//! What a user has granted applications: the consents the hosted consent page records, listed
//! and withdrawn by the user on the JSON API.
//!
//! Withdrawing a grant also ends every session the client holds for the user (its refresh
//! tokens stop working, its access tokens at once here), as a careful provider does: a grant
//! the user took back must not live on in an offline token. The next authorization asks for
//! consent again.

use crate::app::{App, AppError, Caller};
use crate::db::Consent;
use crate::ops::audit::AuditEvent;

impl App {
    /// The caller's grants to clients, newest first.
    pub async fn consents(&self, caller: &Caller) -> Result<Vec<Consent>, AppError> {
        Ok(self.db.consents_of(caller.user_id).await?)
    }

    /// Withdraws the caller's grant to `client_id` and ends that client's sessions of the
    /// caller; [`AppError::NotFound`] when there is no such grant.
    pub async fn withdraw_consent(&self, caller: &Caller, client_id: &str) -> Result<(), AppError> {
        if client_id.is_empty() || client_id.len() > 64 {
            return Err(AppError::NotFound);
        }
        let ended = self
            .db
            .withdraw_consent(caller.user_id, client_id.to_owned(), self.clock.now())
            .await?
            .ok_or(AppError::NotFound)?;
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            detail: Some(format!("client {client_id}: {} sessions", ended.len())),
            ..caller.client.event("consent_withdrawn")
        });
        self.revocations.revoke(ended);
        Ok(())
    }
}
