//! Signing keys: the KeyManager actor and the immutable key-set snapshot handlers read.
//!
//! Signing is the refresh path's whole cost, so it must run on every core at once: handlers
//! load the current [`KeySet`] from an [`ArcSwap`] (no mailbox, no lock) and sign with a key
//! pair parsed once. The actor only does what must happen in order: (re)loading keys from the
//! database and publishing a new snapshot. Private keys are stored as PKCS#8 DER sealed with
//! AES-256-GCM, the kid as associated data.
//!
//! The parts: `material` (RSA keys, signatures, JWKS), `bootstrap` (operator key files, the
//! stored keys, the start-up load), `manager` (the KeyManager actor and rotation), and here the
//! [`KeySet`] snapshot with its [`KeyHandle`]. Every item is re-exported here, so paths stay
//! `edge_idp_actors::keys::X`.

mod bootstrap;
mod manager;
mod material;

pub use self::bootstrap::{bootstrap, KeyImport};
pub use self::manager::{
    rotate, KeyManager, KeyManagerArgs, KeyManagerMsg, OnRotate, RotationPolicy,
};
pub use self::material::{thumbprint, JwkSet, PublicJwk, SigningKey};
use crate::error::StoreError;
use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Shared handle to the current key set, swapped whole by the KeyManager.
pub type KeyHandle = Arc<ArcSwap<KeySet>>;

/// Why keys could not be loaded; each is a start-up failure with one clear line.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key cannot open a stored private key.
    #[error("MFA_ENCRYPTION_KEY cannot open the signing keys stored in the database (was the database created with another key?)")]
    WrongMasterKey,
    /// A key file could not be read, written or parsed.
    #[error("{path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation or parsing failed.
    #[error("key material: {0}")]
    Crypto(String),
}

/// The keys in force: every one that still verifies, among them the one that signs now.
///
/// Which key signs is decided at signing time from the keys' activation times, so every
/// instance holding the same keys switches to a rotated key at the same moment, whenever it
/// happened to load it.
pub struct KeySet {
    /// Every key whose tokens may still be valid, for JWKS and verification; a rotated key is
    /// here before it signs (pre-publication).
    pub published: Vec<Arc<SigningKey>>,
    /// Verification keys by kid.
    decoding: HashMap<String, DecodingKey>,
    /// The JWKS document, rendered once.
    pub jwks_json: Arc<str>,
}

impl KeySet {
    /// Builds the snapshot for `now` from parsed keys; retired keys are left out.
    pub fn build(keys: Vec<SigningKey>, now: i64) -> Result<Self, KeyError> {
        let mut published: Vec<Arc<SigningKey>> = keys
            .into_iter()
            .filter(|k| k.retires_at.is_none_or(|r| r > now))
            .map(Arc::new)
            .collect();
        if published.is_empty() {
            return Err(KeyError::Crypto("no signing key available".into()));
        }
        published.sort_by(|a, b| {
            a.activates_at
                .cmp(&b.activates_at)
                .then_with(|| a.kid.cmp(&b.kid))
        });
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        for k in &published {
            let dk = DecodingKey::from_rsa_components(&k.n, &k.e)
                .map_err(|e| KeyError::Crypto(e.to_string()))?;
            decoding.insert(k.kid.clone(), dk);
            jwks.push(PublicJwk {
                kty: "RSA",
                key_use: "sig",
                alg: "RS256",
                kid: k.kid.clone(),
                n: k.n.clone(),
                e: k.e.clone(),
            });
        }
        let jwks_json: Arc<str> = serde_json::to_string(&JwkSet { keys: jwks })
            .map_err(|e| KeyError::Crypto(e.to_string()))?
            .into();
        Ok(Self {
            published,
            decoding,
            jwks_json,
        })
    }

    /// The key that signs at `now`: the most recently activated one whose activation time has
    /// come (the oldest if none has, which only a clock set far back can cause).
    pub fn signing_key(&self, now: i64) -> &Arc<SigningKey> {
        self.published
            .iter()
            .rev()
            .find(|k| k.activates_at <= now)
            .unwrap_or(&self.published[0])
    }

    /// The most recently activated (or pre-published) key.
    pub fn newest(&self) -> &Arc<SigningKey> {
        &self.published[self.published.len() - 1]
    }

    /// The verification key for `kid`, if it is published.
    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_jsonwebtoken_from_the_jwks_alone() {
        let (key, der) = SigningKey::generate(0).unwrap();
        let reparsed = SigningKey::from_pkcs8(&der, 0, None).unwrap();
        assert_eq!(reparsed.kid, key.kid);
        let set = KeySet::build(vec![key], 10).unwrap();
        let jwt = set
            .signing_key(10)
            .sign_jwt(br#"{"sub":"u","exp":99999999999}"#)
            .unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&set.jwks_json).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "u");
    }

    #[test]
    fn retired_keys_leave_the_set_and_the_newest_activated_key_signs() {
        let (a, _) = SigningKey::generate(0).unwrap();
        let (mut b, _) = SigningKey::generate(100).unwrap();
        let (c, _) = SigningKey::generate(1_000).unwrap();
        b.retires_at = None;
        let (akid, bkid) = (a.kid.clone(), b.kid.clone());
        let set = KeySet::build(vec![a, b, c], 500).unwrap();
        assert_eq!(set.signing_key(500).kid, bkid);
        assert_eq!(
            set.signing_key(1_000).kid,
            set.newest().kid,
            "the pre-published key signs once active"
        );
        assert_eq!(
            set.published.len(),
            3,
            "a pre-published key is in JWKS before it signs"
        );
        assert!(set.decoding_key(&akid).is_some());
    }
}
