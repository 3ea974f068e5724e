//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6), the ID token (OpenID Connect Core
//! §2, §3.1.3) and userinfo (Core §5.3).
//!
//! - `authorization_code`: the client authenticates (or is public), names the redirect URI the
//!   code was sent to, and proves PKCE when the code was issued with a challenge (and presents
//!   no verifier when it was not: RFC 9700 §2.1.1). The code is redeemed and its session
//!   started in one conditional batch; a second use is refused and revokes that session.
//! - `refresh_token`: the existing rotating families (grace replay, reuse detection), bound to
//!   the client in the rotation's own conditional write.
//! - `client_credentials`: an access token for the client itself, no user, no refresh token.
//!
//! Client secrets are compared as SHA-256 digests in constant time.

use super::{has_scope, scope_list, OAuthError};
use crate::app::{App, AppError, Caller, Client, Metered};
use crate::db::{ClientRecord, CodeGrant, CodeState, Profile};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Policy;
use crate::security::tokens::{at_hash, IdClaims};
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::refresh::{token_hash, Rotated, StartSession};
use edge_idp_actors::store::{Grant, Principal};
use edge_idp_actors::SecretString;
use uuid::Uuid;

/// How the client authenticated (RFC 6749 §2.3.1).
pub struct ClientAuth {
    /// `client_id`.
    pub client_id: String,
    /// The secret, if one was sent.
    pub secret: Option<SecretString>,
    /// Sent with HTTP Basic.
    pub basic: bool,
}

/// A token request by grant type.
pub enum TokenRequest {
    /// RFC 6749 §4.1.3.
    AuthorizationCode {
        /// The code.
        code: SecretString,
        /// Must be the one the code was sent to.
        redirect_uri: Option<String>,
        /// PKCE.
        code_verifier: Option<SecretString>,
    },
    /// RFC 6749 §6.
    RefreshToken {
        /// The refresh token.
        refresh_token: SecretString,
        /// A narrower scope is not offered: must be within the granted one if present.
        scope: Option<String>,
    },
    /// RFC 6749 §4.4.
    ClientCredentials {
        /// Scopes asked for; the client's own (non-OpenID) scopes when absent.
        scope: Option<String>,
    },
}

/// A successful token response (RFC 6749 §5.1).
pub struct TokenResponse {
    /// The access token (RS256 JWT).
    pub access_token: String,
    /// Its lifetime, seconds.
    pub expires_in: i64,
    /// Issued with `offline_access` to a client with the refresh grant.
    pub refresh_token: Option<SecretString>,
    /// With the `openid` scope.
    pub id_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

/// What userinfo answers (Core §5.3.2), by scope.
pub struct UserInfo {
    /// The user.
    pub sub: String,
    /// With `email`.
    pub email: Option<String>,
    /// With `email`.
    pub email_verified: Option<bool>,
    /// With `profile`, when the user has one.
    pub name: Option<String>,
}

/// Scopes that only make sense for a user; never granted to a client for itself.
const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

fn invalid_grant(why: &str) -> AppError {
    OAuthError::InvalidGrant(why.to_owned()).into()
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, for a verifier of 43 to 128
/// unreserved characters.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !shaped {
        return false;
    }
    let computed = edge_idp_actors::crypto::b64url(&sha256(verifier.as_bytes()));
    subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes()).into()
}

impl App {
    /// The token endpoint: authenticates the client, then runs its grant.
    pub async fn token(
        &self,
        client: &Client,
        auth: ClientAuth,
        req: TokenRequest,
    ) -> Result<Metered<TokenResponse>, AppError> {
        let decision = self
            .limited(&[(Policy::RefreshIp, &client.rate_key())])
            .await?;
        let outcome = async {
            let rp = self.authenticate_client(&auth).await?;
            match req {
                TokenRequest::AuthorizationCode {
                    code,
                    redirect_uri,
                    code_verifier,
                } => {
                    self.exchange_code(client, &rp, code, redirect_uri, code_verifier)
                        .await
                }
                TokenRequest::RefreshToken {
                    refresh_token,
                    scope,
                } => self.refresh_for(client, &rp, refresh_token, scope).await,
                TokenRequest::ClientCredentials { scope } => {
                    self.client_credentials(client, &rp, scope).await
                }
            }
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// The registered client `auth` names, if it proves to be it.
    pub(super) async fn authenticate_client(
        &self,
        auth: &ClientAuth,
    ) -> Result<ClientRecord, AppError> {
        let refused = || AppError::from(OAuthError::InvalidClient { basic: auth.basic });
        if auth.client_id.is_empty() || auth.client_id.len() > 64 {
            return Err(refused());
        }
        let rp = self
            .db
            .client(auth.client_id.clone())
            .await?
            .ok_or_else(refused)?;
        match (&rp.secret_hash, &auth.secret) {
            (None, None) => Ok(rp),
            (Some(stored), Some(given)) => {
                let same: bool = subtle::ConstantTimeEq::ct_eq(
                    stored.as_slice(),
                    sha256(given.expose().as_bytes()).as_slice(),
                )
                .into();
                if same {
                    Ok(rp)
                } else {
                    Err(refused())
                }
            }
            // A confidential client without its secret, or a public one with a secret.
            _ => Err(refused()),
        }
    }

    fn may_use(rp: &ClientRecord, grant: &str) -> Result<(), AppError> {
        if rp.grant_types.iter().any(|g| g == grant) {
            Ok(())
        } else {
            Err(OAuthError::UnauthorizedClient(format!(
                "this client is not registered for the {grant} grant"
            ))
            .into())
        }
    }

    async fn exchange_code(
        &self,
        client: &Client,
        rp: &ClientRecord,
        code: SecretString,
        redirect_uri: Option<String>,
        code_verifier: Option<SecretString>,
    ) -> Result<TokenResponse, AppError> {
        Self::may_use(rp, "authorization_code")?;
        if !crate::app::sessions::token_shaped(code.expose()) {
            return Err(invalid_grant("the code is invalid, expired or used"));
        }
        let hash = sha256(code.expose().as_bytes());
        let now = self.clock.now();
        let grant = match self.db.code(hash, now).await? {
            CodeState::Fresh(g) => g,
            CodeState::Used(session) => {
                self.code_reused(client, rp, session).await?;
                return Err(invalid_grant(
                    "the code was used before; what it issued is revoked",
                ));
            }
            CodeState::Invalid => {
                return Err(invalid_grant("the code is invalid, expired or used"))
            }
        };
        // The checks that bind the code (RFC 6749 §4.1.3, RFC 7636 §4.6). A failed one does
        // not burn the code: the client it belongs to may still redeem it.
        if grant.client_id != rp.client_id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return Err(invalid_grant(
                "redirect_uri must be the one the code was sent to",
            ));
        }
        match (&grant.code_challenge, &code_verifier) {
            (Some(challenge), Some(verifier)) if pkce_matches(verifier.expose(), challenge) => {}
            (Some(_), _) => return Err(invalid_grant("the PKCE code_verifier does not match")),
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "a code_verifier for a code issued without code_challenge",
                ))
            }
            (None, None) => {}
        }
        let user = self
            .db
            .profile(grant.user_id)
            .await?
            .ok_or_else(|| invalid_grant("the user no longer exists"))?;
        let membership = self
            .membership_for_login(user.id, None, user.default_org_id)
            .await?;
        let session_grant = Grant {
            client_id: rp.client_id.clone(),
            scope: grant.scope.clone(),
            browser_session_id: Some(grant.browser_session_id),
        };
        let (session, issued) = self.families.prepare(StartSession {
            user_id: user.id,
            org_id: membership.org_id,
            amr: grant.amr.clone(),
            user_agent: client.user_agent.clone(),
            ip: Some(client.ip.to_string()),
            grant: Some(session_grant.clone()),
        })?;
        if let Some(lost) = self.db.redeem_code(hash, session, now).await? {
            // Another exchange of this code won the race: this one is a second use.
            if let CodeState::Used(session) = lost {
                self.code_reused(client, rp, session).await?;
            }
            return Err(invalid_grant("the code is invalid, expired or used"));
        }
        let principal = Principal {
            user_id: user.id,
            email: user.email.clone(),
            membership,
            amr: grant.amr.clone(),
            auth_time: grant.auth_time,
            grant: Some(session_grant),
        };
        let access_token = self.tokens.issue(&principal, issued.session_id).await?;
        let id_token = self
            .id_token(rp, &principal, &grant, &access_token, Some(&user))
            .await?;
        self.audit.record(AuditEvent {
            user_id: Some(user.id),
            session_id: Some(issued.session_id),
            org_id: Some(principal.membership.org_id),
            detail: Some(format!("client {} scope {}", rp.client_id, grant.scope)),
            ..client.event("token_issued")
        });
        let offline = rp.grant_types.iter().any(|g| g == "refresh_token")
            && has_scope(&grant.scope, "offline_access");
        Ok(TokenResponse {
            access_token,
            expires_in: self.tokens.ttl(),
            refresh_token: offline.then_some(issued.refresh_token),
            id_token,
            scope: grant.scope,
        })
    }

    /// A code presented again: the session its first exchange started is revoked (RFC 6749
    /// §4.1.2), and the attempt audited.
    async fn code_reused(
        &self,
        client: &Client,
        rp: &ClientRecord,
        session: Option<Uuid>,
    ) -> Result<(), AppError> {
        if let Some(sid) = session {
            self.families
                .revoke(sid, "authorization_code_reused")
                .await?;
            self.revocations.revoke([sid]);
        }
        self.audit.record(AuditEvent {
            session_id: session,
            detail: Some(format!("client {}; session revoked", rp.client_id)),
            ..client.event("authorization_code_reused")
        });
        Ok(())
    }

    /// The ID token of a code exchange or a refresh, with the `openid` scope; `profile` (read
    /// with the `profile` or `email` scope) gives `name` and `email_verified`.
    async fn id_token(
        &self,
        rp: &ClientRecord,
        principal: &Principal,
        grant: &CodeGrant,
        access_token: &str,
        profile: Option<&Profile>,
    ) -> Result<Option<String>, AppError> {
        if !has_scope(&grant.scope, "openid") {
            return Ok(None);
        }
        let now = self.clock.now();
        let email = has_scope(&grant.scope, "email");
        let claims = IdClaims {
            iss: self.settings.issuer.clone(),
            sub: principal.user_id.to_string(),
            aud: rp.client_id.clone(),
            azp: rp.client_id.clone(),
            exp: now + self.tokens.ttl(),
            iat: now,
            auth_time: grant.auth_time,
            nonce: grant.nonce.clone(),
            amr: principal.amr.clone(),
            sid: Some(grant.browser_session_id.to_string()),
            at_hash: Some(at_hash(access_token)),
            email: email.then(|| principal.email.clone()),
            email_verified: email.then(|| profile.is_some_and(|p| p.email_verified)),
            name: if has_scope(&grant.scope, "profile") {
                profile.and_then(|p| p.name.clone())
            } else {
                None
            },
        };
        Ok(Some(self.tokens.sign_id_token(&claims).await?))
    }

    async fn refresh_for(
        &self,
        client: &Client,
        rp: &ClientRecord,
        refresh_token: SecretString,
        scope: Option<String>,
    ) -> Result<TokenResponse, AppError> {
        Self::may_use(rp, "refresh_token")?;
        if !crate::app::sessions::token_shaped(refresh_token.expose()) {
            return Err(invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
        let rotated = self
            .families
            .rotate_for(
                token_hash(refresh_token.expose()),
                Some(rp.client_id.clone()),
            )
            .await;
        let (issued, principal) = match rotated {
            Ok(Rotated::Issued(issued, principal)) => (issued, principal),
            Ok(Rotated::Reused {
                session_id,
                user_id,
            }) => {
                self.revocations.revoke([session_id]);
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    session_id: Some(session_id),
                    detail: Some(format!("client {}; family revoked", rp.client_id)),
                    ..client.event("refresh_token_reused")
                });
                self.metrics.refresh("reused");
                return Err(invalid_grant(
                    "the refresh token was used before; session revoked",
                ));
            }
            Err(edge_idp_actors::DomainError::InvalidRefreshToken) => {
                self.metrics.refresh("invalid");
                return Err(invalid_grant(
                    "the refresh token is invalid, expired or revoked",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let granted = principal
            .grant
            .as_ref()
            .map(|g| g.scope.clone())
            .unwrap_or_default();
        if let Some(asked) = scope {
            if !scope_list(&asked).iter().all(|s| has_scope(&granted, s)) {
                return Err(OAuthError::InvalidScope(
                    "a refresh cannot add scopes to the grant".into(),
                )
                .into());
            }
        }
        let access_token = self.tokens.issue(&principal, issued.session_id).await?;
        self.metrics.refresh(if issued.replayed {
            "replayed"
        } else {
            "rotated"
        });
        let profile = if has_scope(&granted, "profile") || has_scope(&granted, "email") {
            self.db.profile(principal.user_id).await?
        } else {
            None
        };
        let code_like = CodeGrant {
            client_id: rp.client_id.clone(),
            redirect_uri: String::new(),
            user_id: principal.user_id,
            browser_session_id: principal
                .grant
                .as_ref()
                .and_then(|g| g.browser_session_id)
                .unwrap_or(issued.session_id),
            scope: granted.clone(),
            nonce: None,
            code_challenge: None,
            auth_time: principal.auth_time,
            amr: principal.amr.clone(),
            expires_at: 0,
        };
        let id_token = self
            .id_token(rp, &principal, &code_like, &access_token, profile.as_ref())
            .await?;
        Ok(TokenResponse {
            access_token,
            expires_in: self.tokens.ttl(),
            refresh_token: Some(issued.refresh_token),
            id_token,
            scope: granted,
        })
    }

    async fn client_credentials(
        &self,
        client: &Client,
        rp: &ClientRecord,
        scope: Option<String>,
    ) -> Result<TokenResponse, AppError> {
        Self::may_use(rp, "client_credentials")?;
        if rp.secret_hash.is_none() {
            return Err(OAuthError::UnauthorizedClient(
                "a public client cannot use client_credentials".into(),
            )
            .into());
        }
        let own: Vec<String> = rp
            .scopes
            .iter()
            .filter(|s| !USER_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect();
        let scopes = match scope {
            None => own,
            Some(asked) => {
                let asked = scope_list(&asked);
                if let Some(bad) = asked.iter().find(|s| !own.contains(s)) {
                    return Err(OAuthError::InvalidScope(format!(
                        "{bad} is not a scope this client may have for itself"
                    ))
                    .into());
                }
                asked
            }
        };
        let scope = scopes.join(" ");
        let access_token = self.tokens.issue_for_client(&rp.client_id, &scope).await?;
        self.audit.record(AuditEvent {
            detail: Some(format!("client {} scope {scope}", rp.client_id)),
            ..client.event("client_token_issued")
        });
        Ok(TokenResponse {
            access_token,
            expires_in: self.tokens.ttl(),
            refresh_token: None,
            id_token: None,
            scope,
        })
    }

    /// Userinfo for the caller's access token: `sub`, and the claims its scopes allow. A
    /// first-party token (no client, no scope) gets `sub` and `email`, which it carries anyway.
    pub async fn userinfo(&self, caller: &Caller) -> Result<UserInfo, AppError> {
        let scope = caller.claims.scope.clone();
        if let Some(s) = &scope {
            if !has_scope(s, "openid") {
                return Err(OAuthError::InsufficientScope("openid").into());
            }
        }
        let allows = |s: &str| scope.as_deref().is_none_or(|granted| has_scope(granted, s));
        let email = allows("email");
        let profile = if allows("profile") || email {
            self.db.profile(caller.user_id).await?
        } else {
            None
        };
        let name = if allows("profile") {
            profile.as_ref().and_then(|p| p.name.clone())
        } else {
            None
        };
        // The address and its proof from the same read: a token's `email` claim may predate
        // an address change, and must not be vouched for by the new address's proof.
        Ok(UserInfo {
            sub: caller.user_id.to_string(),
            email: email.then(|| {
                profile
                    .as_ref()
                    .map_or_else(|| caller.claims.email.clone(), |p| p.email.clone())
            }),
            email_verified: email.then(|| profile.as_ref().is_some_and(|p| p.email_verified)),
            name,
        })
    }
}
