//! Token introspection (RFC 7662) and revocation (RFC 7009).
//!
//! - **Introspection** is for resource servers: any confidential client that authenticates may
//!   ask about any token of this issuer (as the resource servers of other clients must), public
//!   clients may not. An access token is active while it verifies and its session is live (a
//!   revoked session's tokens are inactive at once); a refresh token while it is unused,
//!   unexpired and its session live; a client's own token while it verifies. Anything else is
//!   `{"active": false}` and nothing more.
//! - **Revocation** is for a client's own tokens: a refresh token revokes its whole family, an
//!   access token its session. A token that is unknown, invalid, or another client's answers
//!   200 and changes nothing, so the endpoint tells no one which tokens exist (RFC 7009 §2.2).

use super::token::ClientAuth;
use super::OAuthError;
use crate::app::sessions::token_shaped;
use crate::app::{App, AppError, Client, Metered};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Policy;
use edge_idp_actors::refresh::token_hash;
use edge_idp_actors::SecretString;

/// What introspection answers (RFC 7662 §2.2).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Introspection {
    /// Whether the token is usable now.
    pub active: bool,
    /// The client it was issued to (absent for the first-party API's tokens).
    pub client_id: Option<String>,
    /// The user (or, for a client's own token, the client).
    pub sub: Option<String>,
    /// Granted scopes.
    pub scope: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Issued at.
    pub iat: Option<i64>,
    /// This issuer.
    pub iss: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    pub token_type: Option<&'static str>,
}

impl App {
    /// `POST /oauth2/introspect`.
    pub async fn introspect(
        &self,
        client: &Client,
        auth: ClientAuth,
        token: SecretString,
    ) -> Result<Metered<Introspection>, AppError> {
        let decision = self
            .limited(&[(Policy::RefreshIp, &client.rate_key())])
            .await?;
        let outcome = async {
            let rp = self.authenticate_client(&auth).await?;
            if rp.secret_hash.is_none() {
                return Err(OAuthError::InvalidClient { basic: auth.basic }.into());
            }
            self.inspect(client, token).await
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    async fn inspect(
        &self,
        client: &Client,
        token: SecretString,
    ) -> Result<Introspection, AppError> {
        let iss = Some(self.settings.issuer.clone());
        let t = token.expose();
        if token_shaped(t) {
            let Some(info) = self
                .db
                .refresh_token_info(token_hash(t), self.clock.now())
                .await?
            else {
                return Ok(Introspection::default());
            };
            if !info.active {
                return Ok(Introspection::default());
            }
            return Ok(Introspection {
                active: true,
                client_id: info.client_id,
                sub: Some(info.user_id.to_string()),
                scope: info.scope,
                exp: Some(info.expires_at),
                iat: Some(info.issued_at),
                iss,
                token_type: Some("refresh_token"),
            });
        }
        if let Some(c) = self.tokens.verify_client_token(t) {
            return Ok(Introspection {
                active: true,
                client_id: Some(c.client_id),
                sub: Some(c.sub),
                scope: Some(c.scope),
                exp: Some(c.exp),
                iat: Some(c.iat),
                iss,
                token_type: Some("Bearer"),
            });
        }
        match self.authenticate(t, client.clone()).await {
            Ok(caller) => Ok(Introspection {
                active: true,
                client_id: caller.claims.client_id.clone(),
                sub: Some(caller.claims.sub.clone()),
                scope: caller.claims.scope.clone(),
                exp: Some(caller.claims.exp),
                iat: Some(caller.claims.iat),
                iss,
                token_type: Some("Bearer"),
            }),
            Err(AppError::InvalidToken | AppError::SessionRevoked) => Ok(Introspection::default()),
            Err(e) => Err(e),
        }
    }

    /// `POST /oauth2/revoke`.
    pub async fn revoke_token(
        &self,
        client: &Client,
        auth: ClientAuth,
        token: SecretString,
    ) -> Result<Metered<()>, AppError> {
        let decision = self
            .limited(&[(Policy::RefreshIp, &client.rate_key())])
            .await?;
        let outcome = async {
            let rp = self.authenticate_client(&auth).await?;
            let t = token.expose();
            let session = if token_shaped(t) {
                self.db
                    .refresh_token_info(token_hash(t), self.clock.now())
                    .await?
                    .filter(|i| i.client_id.as_deref() == Some(rp.client_id.as_str()))
                    .map(|i| (i.session_id, i.user_id))
            } else {
                match self.authenticate(t, client.clone()).await {
                    Ok(c) if c.claims.client_id.as_deref() == Some(rp.client_id.as_str()) => {
                        Some((c.session_id, c.user_id))
                    }
                    Ok(_) | Err(AppError::InvalidToken | AppError::SessionRevoked) => None,
                    Err(e) => return Err(e),
                }
            };
            if let Some((sid, user_id)) = session {
                self.families.revoke(sid, "revoked_by_client").await?;
                self.revocations.revoke([sid]);
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    session_id: Some(sid),
                    detail: Some(format!("client {}", rp.client_id)),
                    ..client.event("token_revoked")
                });
            }
            Ok(())
        }
        .await;
        Ok(Metered { decision, outcome })
    }
}
