//! Access tokens: RS256 JWTs that any service verifies with the JWKS alone.
//!
//! Signing reads the KeyManager's published snapshot (no mailbox) and runs on the blocking pool:
//! an RSA-2048 signature is a quarter of a millisecond of CPU, too long for a runtime worker.
//!
//! Verification is cheaper (tens of microseconds) but happens on every Bearer request, mostly
//! for the same few tokens again and again. A token that verified once is remembered by its
//! SHA-256 with its claims: the same bytes carry the same signature, so the answer cannot
//! change, except by time, and `exp`/`nbf` are checked again on every use. Tokens that fail are
//! not remembered (garbage would only fill the cache). A remembered token signed by a key that
//! has since left the JWKS would still pass, but keys leave the JWKS only after every token they
//! signed has expired.

use edge_idp_actors::store::Principal;
use edge_idp_actors::{Clock, DomainError, KeyHandle};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Tokens remembered as verified, and for how long at most. An entry is about 0.7 KiB (claims,
/// key, the cache's own bookkeeping), so this is at most ~7 MiB; a token beyond it is verified
/// again (tens of microseconds), which matters only when more than this many distinct tokens
/// are in use within minutes.
const VERIFIED_MAX: u64 = 10_000;
const VERIFIED_TTL: Duration = Duration::from_secs(300);

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
    /// When the user signed in to start the session (OpenID Connect's `auth_time`): a refresh
    /// keeps it. Step-up checks read it; a token minted before the claim existed reads as 0,
    /// that is, as a sign-in long ago.
    #[serde(default)]
    pub auth_time: i64,
    /// The OAuth client the token was issued to (RFC 9068 §2.2); absent for the first-party
    /// API's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Scopes granted to that client, space-separated; absent for the first-party API's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The claims of an OpenID Connect ID token (Core 1.0 §2): who signed in, when and how, for
/// which client; profile claims by scope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// The client (Core §2: the party the token was issued to).
    pub azp: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The authorization request's nonce, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Authentication methods (RFC 8176 values).
    pub amr: Vec<String>,
    /// The browser session at the provider (RP-initiated logout names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Left half of SHA-256 of the access token, base64url (Core §3.1.3.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// With the `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// With the `email` scope: whether the address was proven by the link mailed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// With the `profile` scope, when the user has a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The claims of an access token a client gets for itself (`client_credentials`): no user, no
/// session, no organization, so no user endpoint accepts it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The client itself.
    pub sub: String,
    /// The client (RFC 9068 §2.2).
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
}

/// `at_hash` of an access token: the left half of its SHA-256, base64url (OpenID Connect Core
/// §3.1.3.6 for RS256).
pub fn at_hash(access_token: &str) -> String {
    let digest = edge_idp_actors::crypto::sha256(access_token.as_bytes());
    edge_idp_actors::crypto::b64url(&digest[..16])
}

/// Mints access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    keys: KeyHandle,
    issuer: String,
    audience: String,
    ttl: i64,
    clock: Clock,
    verified: Cache<[u8; 32], Arc<AccessClaims>>,
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
            verified: Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// Lifetime of a token, seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Verifies a Bearer token: RS256 with a published `kid`, `typ` `at+jwt`, `iss`, `aud`, and
    /// `exp`/`nbf` against this issuer's clock (60 s of skew allowed on `nbf` only). `None` for
    /// anything else; the reason is not the caller's business.
    pub fn verify(&self, token: &str) -> Option<Arc<AccessClaims>> {
        if token.len() > 8192 {
            return None;
        }
        let digest = edge_idp_actors::crypto::sha256(token.as_bytes());
        let claims = match self.verified.get(&digest) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signed(token)?);
                self.verified.insert(digest, claims.clone());
                claims
            }
        };
        let now = self.clock.now();
        (claims.exp > now && claims.nbf <= now + 60).then_some(claims)
    }

    /// The claims of a token whose signature, header, issuer and audience check out; time is
    /// the caller's to check.
    fn verify_signed(&self, token: &str) -> Option<AccessClaims> {
        self.decode_signed(token)
    }

    /// Claims of type `T` of an access-token-shaped JWT (RS256, a published `kid`, `typ`
    /// `at+jwt`, this issuer and audience); `exp`/`nbf` are the caller's to check.
    fn decode_signed<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        self.decode_typed(token, "at+jwt", v)
    }

    /// Claims of a JWT this issuer signed with `typ` `typ`, checked by `v` (plus RS256, a
    /// published `kid` and this issuer; never `exp`/`nbf`).
    fn decode_typed<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        mut v: jsonwebtoken::Validation,
    ) -> Option<T> {
        use jsonwebtoken::Algorithm;
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 || header.typ.as_deref() != Some(typ) {
            return None;
        }
        let keys = self.keys.load();
        let key = keys.decoding_key(header.kid.as_deref()?)?;
        v.algorithms = vec![Algorithm::RS256];
        v.set_issuer(&[&self.issuer]);
        v.validate_exp = false;
        v.validate_nbf = false;
        jsonwebtoken::decode::<T>(token, key, &v)
            .ok()
            .map(|d| d.claims)
    }

    /// The claims of an ID token this issuer signed (for any client), expired or not: an
    /// `id_token_hint` (OpenID Connect Core §3.1.2.1, RP-Initiated Logout §2), which names a
    /// user and a session but grants nothing.
    pub fn verify_id_token_hint(&self, token: &str) -> Option<IdClaims> {
        if token.len() > 8192 {
            return None;
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        // The audience is the client that got it; the caller compares it with the request's.
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        self.decode_typed(token, "JWT", v)
    }

    /// Issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an ID token (`typ` `JWT`) with the current key.
    pub async fn sign_id_token(&self, claims: &IdClaims) -> Result<String, DomainError> {
        let json = serde_json::to_vec(claims).map_err(|e| DomainError::Internal(e.to_string()))?;
        let key = self.keys.load().signing_key(self.clock.now()).clone();
        tokio::task::spawn_blocking(move || key.sign_id_token(&json))
            .await
            .map_err(|e| DomainError::Internal(format!("signing task: {e}")))?
    }

    /// Signs an access token for the client `client_id` itself (`client_credentials`).
    pub async fn issue_for_client(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<String, DomainError> {
        let now = self.clock.now();
        let claims = ClientClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: client_id.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            exp: now + self.ttl,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7().to_string(),
        };
        let json = serde_json::to_vec(&claims).map_err(|e| DomainError::Internal(e.to_string()))?;
        let key = self.keys.load().signing_key(now).clone();
        tokio::task::spawn_blocking(move || key.sign_jwt(&json))
            .await
            .map_err(|e| DomainError::Internal(format!("signing task: {e}")))?
    }

    /// The claims of a client's own access token, if `token` is one and is valid now.
    pub fn verify_client_token(&self, token: &str) -> Option<ClientClaims> {
        if token.len() > 8192 {
            return None;
        }
        let claims: ClientClaims = self.decode_signed(token)?;
        let now = self.clock.now();
        // A user's token issued to a client has `client_id` and `scope` too, but its subject is
        // the user.
        (claims.sub == claims.client_id && claims.exp > now && claims.nbf <= now + 60)
            .then_some(claims)
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
            auth_time: principal.auth_time,
            client_id: principal.grant.as_ref().map(|g| g.client_id.clone()),
            scope: principal.grant.as_ref().map(|g| g.scope.clone()),
        };
        let json = serde_json::to_vec(&claims).map_err(|e| DomainError::Internal(e.to_string()))?;
        let key = self.keys.load().signing_key(now).clone();
        tokio::task::spawn_blocking(move || key.sign_jwt(&json))
            .await
            .map_err(|e| DomainError::Internal(format!("signing task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_idp_actors::keys::SigningKey;
    use edge_idp_actors::store::{Membership, Role};
    use edge_idp_actors::KeySet;

    const NOW: i64 = 1_800_000_000;

    fn keys(now: i64) -> KeyHandle {
        let (key, _) = SigningKey::generate(now - 3600).unwrap();
        Arc::new(arc_swap::ArcSwap::from_pointee(
            KeySet::build(vec![key], now).unwrap(),
        ))
    }

    fn principal() -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            membership: Membership {
                org_id: Uuid::now_v7(),
                org_name: "Personal".into(),
                role: Role::Owner,
            },
            amr: vec!["pwd".into()],
            auth_time: NOW - 10,
            grant: None,
        }
    }

    #[tokio::test]
    async fn an_issued_token_verifies_with_its_claims_until_it_expires_even_when_remembered() {
        let clock = Clock::manual(NOW);
        let issuer = TokenIssuer::new(
            keys(NOW),
            "https://id.example".into(),
            "edge-idp".into(),
            900,
            clock.clone(),
        );
        let p = principal();
        let sid = Uuid::now_v7();
        let token = issuer.issue(&p, sid).await.unwrap();
        let claims = issuer.verify(&token).expect("verifies");
        assert_eq!(claims.sub, p.user_id.to_string());
        assert_eq!(claims.sid, sid.to_string());
        assert_eq!(claims.org_id, p.membership.org_id.to_string());
        assert_eq!(claims.role, "owner");
        assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, NOW, NOW + 900));
        assert_eq!(claims.auth_time, NOW - 10);
        // Remembered now: the cache must not outlive the expiry.
        clock.advance(899);
        assert!(issuer.verify(&token).is_some());
        clock.advance(1);
        assert!(
            issuer.verify(&token).is_none(),
            "expired, though remembered"
        );
    }

    #[tokio::test]
    async fn another_issuer_audience_or_key_set_refuses_the_token() {
        let clock = Clock::manual(NOW);
        let shared = keys(NOW);
        let issuer = |iss: &str, aud: &str, keys: KeyHandle| {
            TokenIssuer::new(keys, iss.into(), aud.into(), 900, clock.clone())
        };
        let ours = issuer("https://id.example", "edge-idp", shared.clone());
        let token = ours.issue(&principal(), Uuid::now_v7()).await.unwrap();
        assert!(ours.verify(&token).is_some());
        let other_iss = issuer("https://other.example", "edge-idp", shared.clone());
        assert!(other_iss.verify(&token).is_none(), "issuer");
        let other_aud = issuer("https://id.example", "another-api", shared);
        assert!(other_aud.verify(&token).is_none(), "audience");
        let other_keys = issuer("https://id.example", "edge-idp", keys(NOW));
        assert!(other_keys.verify(&token).is_none(), "key set");
        assert!(ours.verify(&format!("{token}x")).is_none(), "signature");
        assert!(ours.verify(&"a".repeat(9000)).is_none(), "length");
    }

    #[tokio::test]
    async fn an_id_token_hint_is_an_id_token_of_this_issuer_expired_or_not_and_nothing_else() {
        let clock = Clock::manual(NOW);
        let shared = keys(NOW);
        let ours = TokenIssuer::new(
            shared.clone(),
            "https://id.example".into(),
            "edge-idp".into(),
            900,
            clock.clone(),
        );
        let claims = IdClaims {
            iss: "https://id.example".into(),
            sub: Uuid::now_v7().to_string(),
            aud: "some-client".into(),
            azp: "some-client".into(),
            exp: NOW + 900,
            iat: NOW,
            auth_time: NOW,
            nonce: None,
            amr: vec!["pwd".into()],
            sid: Some(Uuid::now_v7().to_string()),
            at_hash: None,
            email: None,
            email_verified: None,
            name: None,
        };
        let id_token = ours.sign_id_token(&claims).await.unwrap();
        clock.advance(86_400);
        assert_eq!(
            ours.verify_id_token_hint(&id_token),
            Some(claims.clone()),
            "a day after expiry it still names the user and session"
        );
        assert!(ours.verify(&id_token).is_none(), "never an access token");
        let access = ours.issue(&principal(), Uuid::now_v7()).await.unwrap();
        assert!(
            ours.verify_id_token_hint(&access).is_none(),
            "an access token is no ID token"
        );
        let other_iss = TokenIssuer::new(
            shared,
            "https://other.example".into(),
            "edge-idp".into(),
            900,
            clock.clone(),
        );
        assert!(
            other_iss.verify_id_token_hint(&id_token).is_none(),
            "issuer"
        );
        let other_keys = TokenIssuer::new(
            keys(NOW),
            "https://id.example".into(),
            "edge-idp".into(),
            900,
            clock,
        );
        assert!(
            other_keys.verify_id_token_hint(&id_token).is_none(),
            "key set"
        );
        // One signature character changed, well inside it (the last carries padding bits).
        let at = id_token.len() - 20;
        let was = &id_token[at..at + 1];
        let forged = format!(
            "{}{}{}",
            &id_token[..at],
            if was == "A" { "B" } else { "A" },
            &id_token[at + 1..]
        );
        assert!(ours.verify_id_token_hint(&forged).is_none(), "signature");
    }
}
