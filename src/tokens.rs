//! Access tokens: RS256 JWTs that any service verifies with the JWKS alone.
//!
//! Signing reads the KeyManager's published snapshot (no mailbox) and runs on the blocking pool:
//! an RSA-2048 signature is a quarter of a millisecond of CPU, too long for a runtime worker.

use edge_idp_actors::store::Principal;
use edge_idp_actors::{Clock, DomainError, KeyHandle};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The claims of an access token (API.md, "Access token").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Session (refresh-token family) id.
    pub sid: String,
    /// Organization the token is for.
    pub org_id: String,
    /// Role in that organization.
    pub role: String,
    /// The user's email.
    pub email: String,
    /// Authentication methods.
    pub amr: Vec<String>,
}

/// Mints access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    keys: KeyHandle,
    issuer: String,
    audience: String,
    ttl: i64,
    clock: Clock,
}

impl TokenIssuer {
    /// An issuer signing with the current key of `keys`.
    pub fn new(keys: KeyHandle, issuer: String, audience: String, ttl: i64, clock: Clock) -> Self {
        Self {
            keys,
            issuer,
            audience,
            ttl,
            clock,
        }
    }

    /// Lifetime of a token, seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Verifies a Bearer token: RS256 with a published `kid`, `typ` `at+jwt`, `iss`, `aud`, and
    /// `exp`/`nbf` against this issuer's clock (60 s of skew allowed on `nbf` only). `None` for
    /// anything else; the reason is not the caller's business.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        use jsonwebtoken::{Algorithm, Validation};
        if token.len() > 8192 {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 || header.typ.as_deref() != Some("at+jwt") {
            return None;
        }
        let keys = self.keys.load();
        let key = keys.decoding_key(header.kid.as_deref()?)?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &v)
            .ok()?
            .claims;
        let now = self.clock.now();
        (claims.exp > now && claims.nbf <= now + 60).then_some(claims)
    }

    /// Signs an access token for `principal` in session `sid`.
    pub async fn issue(&self, principal: &Principal, sid: Uuid) -> Result<String, DomainError> {
        let now = self.clock.now();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: principal.user_id.to_string(),
            exp: now + self.ttl,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
            sid: sid.to_string(),
            org_id: principal.membership.org_id.to_string(),
            role: principal.membership.role.as_str().to_owned(),
            email: principal.email.clone(),
            amr: principal.amr.clone(),
        };
        let json = serde_json::to_vec(&claims).map_err(|e| DomainError::Internal(e.to_string()))?;
        let key = self.keys.load().signing_key(now).clone();
        tokio::task::spawn_blocking(move || key.sign_jwt(&json))
            .await
            .map_err(|e| DomainError::Internal(format!("signing task: {e}")))?
    }
}
