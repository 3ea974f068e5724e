//! Refresh-token families: rotation, grace replay and reuse detection.
//!
//! Refresh-token reuse is the attack this service exists to catch, and several tabs refreshing
//! at once is what its users do most; both must be right. The guarantee, in one process and
//! across processes sharing the database, comes from [`SessionStore::present`]: the token is
//! read and rotated in one immediate transaction at the primary, under its write lock, so
//! exactly one presentation rotates it and every other one reads it used, which is a grace
//! replay or reuse. No actor orders a family: an in-process queue would order only this
//! instance's presentations, and the database already orders everyone's. That one transaction
//! is also the whole database cost of a rotation: it returns the access token's principal with
//! it.
//!
//! - **Rotation**: an unused, unexpired token becomes used; a successor is issued.
//! - **Grace replay**: within `grace` seconds after its rotation, presenting the token again
//!   returns the *same* successor (kept sealed for the window only), provided the successor has
//!   not been rotated itself.
//! - **Reuse**: any other presentation of a used token revokes the whole family.

use crate::crypto::{b64url, random_bytes, sha256, Sealer};
use crate::error::DomainError;
use crate::secret::SecretString;
use crate::store::{Grant, NewSession, Presentation, Principal, SessionStore};
use crate::Clock;
use uuid::Uuid;

/// The revocation reason recorded when reuse is detected.
pub const REUSE: &str = "refresh_token_reused";

/// Lifetimes that govern a family.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Lifetime of each refresh token from its issue (`REFRESH_TOKEN_TTL`).
    pub token_ttl: i64,
    /// Hard limit on a session's life (`SESSION_MAX_TTL`).
    pub session_max_ttl: i64,
    /// Grace replay window (`REFRESH_REUSE_GRACE_SECS`); 0 is strict.
    pub grace: i64,
}

/// What starting a session needs.
#[derive(Debug, Clone)]
pub struct StartSession {
    /// Owner.
    pub user_id: Uuid,
    /// Organization the session works in.
    pub org_id: Uuid,
    /// Authentication methods.
    pub amr: Vec<String>,
    /// `User-Agent` of the login.
    pub user_agent: Option<String>,
    /// Client IP of the login.
    pub ip: Option<String>,
    /// The OAuth client and grant, for a session the token endpoint starts.
    pub grant: Option<Grant>,
}

/// A refresh token handed to the client.
#[derive(Debug)]
pub struct Issued {
    /// The family.
    pub session_id: Uuid,
    /// The opaque token: 256 random bits, base64url.
    pub refresh_token: SecretString,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// `true` when this is a grace replay of an earlier rotation.
    pub replayed: bool,
}

/// The answer to a presented refresh token that was not simply invalid.
// Built once per presentation and matched at once: boxing the common variant would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Rotated {
    /// A successor (new, or the same one again within the grace window) and who the access token
    /// is for.
    Issued(Issued, Principal),
    /// The token was used before, outside the grace window: its family is now revoked.
    Reused {
        /// The revoked family.
        session_id: Uuid,
        /// Its owner.
        user_id: Uuid,
    },
}

/// Refresh-token families on a [`SessionStore`]: the logic of starting, rotating and revoking
/// them. Holds no state of its own beyond its configuration; any number of requests use it at
/// once, and the store's conditional writes order them.
#[derive(Clone)]
pub struct Families<S> {
    /// Session storage.
    pub store: S,
    /// Seals successors for the grace window.
    pub sealer: Sealer,
    /// Lifetimes.
    pub policy: RefreshPolicy,
    /// Now.
    pub clock: Clock,
}

/// The hash under which a refresh token is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

fn new_token() -> Result<(SecretString, [u8; 32]), DomainError> {
    let raw = random_bytes::<32>().map_err(|e| DomainError::Internal(e.to_string()))?;
    let token = b64url(&raw);
    let hash = token_hash(&token);
    Ok((SecretString::new(token), hash))
}

/// Associated data of a sealed successor: it opens only in the row of the token it succeeds
/// (the row's key is that token's hash).
fn successor_aad(predecessor: &[u8; 32]) -> &[u8] {
    predecessor
}

/// The associated data used before the sealing moved ahead of the row read; still opened, so
/// a grace replay across an upgrade keeps working.
fn legacy_successor_aad(session_id: Uuid, predecessor: &[u8; 32]) -> Vec<u8> {
    let mut aad = session_id.as_bytes().to_vec();
    aad.extend_from_slice(predecessor);
    aad
}

impl<S: SessionStore> Families<S> {
    /// Starts a family with its first token.
    pub async fn start(&self, req: StartSession) -> Result<Issued, DomainError> {
        let (session, issued) = self.prepare(req)?;
        self.store.start_session(session).await?;
        Ok(issued)
    }

    /// The rows of a new family and the token to hand out, without writing them: for a caller
    /// that must write them in its own conditional batch (an authorization code's exchange).
    pub fn prepare(&self, req: StartSession) -> Result<(NewSession, Issued), DomainError> {
        let now = self.clock.now();
        let (token, hash) = new_token()?;
        let id = Uuid::now_v7();
        let expires_at = now + self.policy.session_max_ttl;
        let token_expires_at = (now + self.policy.token_ttl).min(expires_at);
        let session = NewSession {
            id,
            user_id: req.user_id,
            active_org_id: req.org_id,
            amr: req.amr,
            user_agent: req.user_agent,
            ip: req.ip,
            created_at: now,
            expires_at,
            token_hash: hash,
            token_expires_at,
            grant: req.grant,
        };
        let issued = Issued {
            session_id: id,
            refresh_token: token,
            expires_at: token_expires_at,
            replayed: false,
        };
        Ok((session, issued))
    }

    /// Presents the token whose SHA-256 is `presented` on the first-party API: a rotation, a
    /// grace replay, or reuse (which revokes the family).
    pub async fn rotate(&self, presented: [u8; 32]) -> Result<Rotated, DomainError> {
        self.rotate_for(presented, None).await
    }

    /// Presents a token for `client_id` (`None`: the first-party API). A token of another
    /// client's session, or of a first-party session presented by a client, is not rotated: it
    /// answers as an invalid token, and as reuse if it was used before.
    pub async fn rotate_for(
        &self,
        presented: [u8; 32],
        client_id: Option<String>,
    ) -> Result<Rotated, DomainError> {
        let now = self.clock.now();
        // The successor is made (and sealed) before the store is asked, so the one transaction
        // that reads the token can also rotate it.
        let (token, hash) = new_token()?;
        let sealed = if self.policy.grace > 0 {
            Some(
                self.sealer
                    .seal(token.expose().as_bytes(), successor_aad(&presented))
                    .map_err(|e| DomainError::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        let Some(p) = self
            .store
            .present(Presentation {
                token_hash: presented,
                successor_hash: hash,
                successor_sealed: sealed,
                token_ttl: self.policy.token_ttl,
                now,
                client_id: client_id.clone(),
            })
            .await?
        else {
            return Err(DomainError::InvalidRefreshToken);
        };
        let v = p.view;
        if let Some(expires_at) = p.rotated {
            let principal = p.principal.ok_or(DomainError::InvalidRefreshToken)?;
            let issued = Issued {
                session_id: v.session_id,
                refresh_token: token,
                expires_at,
                replayed: false,
            };
            return Ok(Rotated::Issued(issued, principal));
        }
        drop(token);
        if let Some(reason) = &v.session_revoked {
            // A used token of a family revoked for reuse is still reuse (strict mode: all but
            // one of N parallel presentations); anything else of a revoked family is invalid.
            return if v.used_at.is_some() && reason == REUSE {
                Ok(Rotated::Reused {
                    session_id: v.session_id,
                    user_id: v.user_id,
                })
            } else {
                Err(DomainError::InvalidRefreshToken)
            };
        }
        if now >= v.session_expires_at {
            return Err(DomainError::InvalidRefreshToken);
        }
        let Some(used_at) = v.used_at else {
            // Unused and not rotated: expired.
            return Err(DomainError::InvalidRefreshToken);
        };
        let in_grace =
            self.policy.grace > 0 && now < used_at + self.policy.grace && !v.successor_used;
        if let (true, Some(sealed), Some(expires_at)) =
            (in_grace, &v.successor_sealed, v.successor_expires_at)
        {
            let plain = self
                .sealer
                .open(sealed, successor_aad(&presented))
                .or_else(|_| {
                    self.sealer
                        .open(sealed, &legacy_successor_aad(v.session_id, &presented))
                })
                .map_err(|e| DomainError::Internal(e.to_string()))?;
            let token = String::from_utf8(plain.to_vec())
                .map_err(|e| DomainError::Internal(e.to_string()))?;
            let principal = p.principal.ok_or(DomainError::InvalidRefreshToken)?;
            if principal.grant.as_ref().map(|g| &g.client_id) != client_id.as_ref() {
                // Another client's session: its successor is not this presenter's to have.
                return Err(DomainError::InvalidRefreshToken);
            }
            let issued = Issued {
                session_id: v.session_id,
                refresh_token: SecretString::new(token),
                expires_at,
                replayed: true,
            };
            return Ok(Rotated::Issued(issued, principal));
        }
        self.store.revoke_session(v.session_id, now, REUSE).await?;
        tracing::warn!(session_id = %v.session_id, "refresh token reuse detected; family revoked");
        Ok(Rotated::Reused {
            session_id: v.session_id,
            user_id: v.user_id,
        })
    }

    /// Revokes one family; whether it was live.
    pub async fn revoke(
        &self,
        session_id: Uuid,
        reason: &'static str,
    ) -> Result<bool, DomainError> {
        Ok(self
            .store
            .revoke_session(session_id, self.clock.now(), reason)
            .await?)
    }

    /// Revokes every family of `user_id` but `except`; the revoked ids.
    pub async fn revoke_all(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        reason: &'static str,
    ) -> Result<Vec<Uuid>, DomainError> {
        Ok(self
            .store
            .revoke_user_sessions(user_id, except, self.clock.now(), reason)
            .await?)
    }

    /// Moves a family to another organization; whether it was live.
    pub async fn switch_org(&self, session_id: Uuid, org_id: Uuid) -> Result<bool, DomainError> {
        Ok(self.store.set_active_org(session_id, org_id).await?)
    }
}
