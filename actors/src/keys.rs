//! Signing keys: the KeyManager actor and the immutable key-set snapshot handlers read.
//!
//! Signing is the refresh path's whole cost, so it must run on every core at once: handlers
//! load the current [`KeySet`] from an [`ArcSwap`] (no mailbox, no lock) and sign with a key
//! pair parsed once. The actor only does what must happen in order: (re)loading keys from the
//! database and publishing a new snapshot. Private keys are stored as PKCS#8 DER sealed with
//! AES-256-GCM, the kid as associated data.

use crate::crypto::{b64url, sha256, CryptoError, Sealer};
use crate::error::{DomainError, StoreError};
use crate::fs::write_private;
use crate::store::{KeyStore, StoredKey};
use crate::Clock;
use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use jsonwebtoken::DecodingKey;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Shared handle to the current key set, swapped whole by the KeyManager.
pub type KeyHandle = Arc<ArcSwap<KeySet>>;

/// Called with the new kid after this instance stored a rotation (the audit trail).
pub type OnRotate = Arc<dyn Fn(&str) + Send + Sync>;

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

/// One RSA-2048 signing key, parsed once.
pub struct SigningKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// When it starts signing.
    pub activates_at: i64,
    /// When it leaves JWKS, if decided.
    pub retires_at: Option<i64>,
    pair: KeyPair,
    /// `base64url({"alg":"RS256","typ":"at+jwt","kid":…})`, computed once.
    header_b64: String,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_pair(pair: KeyPair, activates_at: i64, retires_at: Option<i64>) -> Self {
        let public = pair.public_key();
        let n = b64url(public.modulus().big_endian_without_leading_zero());
        let e = b64url(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&n, &e);
        let header = format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#);
        Self {
            header_b64: b64url(header.as_bytes()),
            kid,
            activates_at,
            retires_at,
            pair,
            n,
            e,
        }
    }

    /// Parses PKCS#8 DER.
    pub fn from_pkcs8(
        der: &[u8],
        activates_at: i64,
        retires_at: Option<i64>,
    ) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Self::from_pair(pair, activates_at, retires_at))
    }

    /// Generates a fresh RSA-2048 key; returns it with its PKCS#8 DER for storage.
    /// CPU-heavy (tens to hundreds of ms): call from a blocking thread.
    pub fn generate(now: i64) -> Result<(Self, Zeroizing<Vec<u8>>), KeyError> {
        let pair =
            KeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Crypto(e.to_string()))?;
        let der = pair.as_der().map_err(|e| KeyError::Crypto(e.to_string()))?;
        let der = Zeroizing::new(der.as_ref().to_vec());
        Ok((Self::from_pair(pair, now, None), der))
    }

    /// The public JWK members `n` and `e`.
    pub fn public_components(&self) -> (&str, &str) {
        (&self.n, &self.e)
    }

    /// Signs `claims` (a JSON object) as a compact RS256 JWT. CPU work: about a quarter of a
    /// millisecond; callers run it on the blocking pool.
    pub fn sign_jwt(&self, claims: &[u8]) -> Result<String, DomainError> {
        let mut out = String::with_capacity(self.header_b64.len() + claims.len() * 4 / 3 + 350);
        out.push_str(&self.header_b64);
        out.push('.');
        out.push_str(&b64url(claims));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                out.as_bytes(),
                &mut sig,
            )
            .map_err(|_| DomainError::Internal("RSA signing failed".into()))?;
        out.push('.');
        out.push_str(&b64url(&sig));
        Ok(out)
    }

    fn spki_der(&self) -> Result<Vec<u8>, KeyError> {
        self.pair
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| KeyError::Crypto(e.to_string()))
    }
}

/// RFC 7638 JWK thumbprint of an RSA key: SHA-256 over the canonical `{"e","kty","n"}` JSON.
pub fn thumbprint(n: &str, e: &str) -> String {
    b64url(&sha256(
        format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes(),
    ))
}

/// One public key as JWKS publishes it (RFC 7517): RSA, for signatures, RS256.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PublicJwk {
    /// Always `RSA`.
    #[schema(example = "RSA")]
    pub kty: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub key_use: &'static str,
    /// Always `RS256`.
    #[schema(example = "RS256")]
    pub alg: &'static str,
    /// RFC 7638 thumbprint of the key; the `kid` of the tokens it signs.
    pub kid: String,
    /// Modulus, base64url.
    pub n: String,
    /// Public exponent, base64url.
    pub e: String,
}

/// The JWKS document: every key whose tokens may still be valid, and the next one.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    /// Published keys, oldest activation first.
    pub keys: Vec<PublicJwk>,
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

/// Where an operator-supplied key pair lives (`PRIVATE_KEY_PATH`, `PUBLIC_KEY_PATH`).
#[derive(Debug, Clone)]
pub struct KeyImport {
    /// PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub private_path: PathBuf,
    /// PEM public key (SPKI `PUBLIC KEY`), checked against the private key.
    pub public_path: PathBuf,
}

fn file_err(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::KeyFile {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads the operator's key pair, generating and writing it when both files are missing.
fn load_or_create_import(
    import: &KeyImport,
    now: i64,
) -> Result<(SigningKey, Zeroizing<Vec<u8>>), KeyError> {
    if !import.private_path.exists() && !import.public_path.exists() {
        let (key, der) = SigningKey::generate(now)?;
        let private_pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())));
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", key.spki_der()?));
        write_private(&import.private_path, private_pem.as_bytes())
            .map_err(|e| file_err(&import.private_path, e))?;
        std::fs::write(&import.public_path, public_pem)
            .map_err(|e| file_err(&import.public_path, e))?;
        return Ok((key, der));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&import.private_path)
            .map_err(|e| file_err(&import.private_path, e))?,
    );
    let block = pem::parse(text.as_bytes()).map_err(|e| file_err(&import.private_path, e))?;
    let pair = match block.tag() {
        "PRIVATE KEY" => KeyPair::from_pkcs8(block.contents()),
        "RSA PRIVATE KEY" => KeyPair::from_der(block.contents()),
        other => {
            return Err(file_err(
                &import.private_path,
                format!("unsupported PEM block {other:?}"),
            ))
        }
    }
    .map_err(|e| file_err(&import.private_path, format!("not an RSA private key: {e}")))?;
    let der = Zeroizing::new(
        pair.as_der()
            .map_err(|e| KeyError::Crypto(e.to_string()))?
            .as_ref()
            .to_vec(),
    );
    let key = SigningKey::from_pair(pair, now, None);
    let public_text = std::fs::read_to_string(&import.public_path)
        .map_err(|e| file_err(&import.public_path, e))?;
    let public =
        pem::parse(public_text.as_bytes()).map_err(|e| file_err(&import.public_path, e))?;
    if public.contents() != key.spki_der()?.as_slice() {
        return Err(file_err(
            &import.public_path,
            "does not match PRIVATE_KEY_PATH",
        ));
    }
    Ok((key, der))
}

/// Loads every stored key, opening each private part.
async fn load_keys<S: KeyStore>(store: &S, sealer: &Sealer) -> Result<Vec<SigningKey>, KeyError> {
    let stored = store.keys().await?;
    let sealer = sealer.clone();
    tokio::task::spawn_blocking(move || {
        stored
            .iter()
            .map(|k| {
                let der =
                    sealer
                        .open(&k.private_sealed, k.kid.as_bytes())
                        .map_err(|e| match e {
                            CryptoError::OpenFailed => KeyError::WrongMasterKey,
                            other => KeyError::Crypto(other.to_string()),
                        })?;
                SigningKey::from_pkcs8(&der, k.activates_at, k.retires_at)
            })
            .collect()
    })
    .await
    .map_err(|e| KeyError::Crypto(e.to_string()))?
}

fn stored(key: &SigningKey, der: &[u8], sealer: &Sealer, now: i64) -> Result<StoredKey, KeyError> {
    Ok(StoredKey {
        kid: key.kid.clone(),
        private_sealed: sealer
            .seal(der, key.kid.as_bytes())
            .map_err(|e| KeyError::Crypto(e.to_string()))?,
        created_at: now,
        activates_at: key.activates_at,
        retires_at: None,
    })
}

/// First load at start-up: imports the operator's key if configured, generates the first key if
/// the database has none (exactly one instance wins that race), and builds the snapshot.
pub async fn bootstrap<S: KeyStore>(
    store: &S,
    sealer: &Sealer,
    import: Option<&KeyImport>,
    clock: &Clock,
) -> Result<KeySet, KeyError> {
    let now = clock.now();
    if let Some(import) = import {
        let import = import.clone();
        let (key, der) = tokio::task::spawn_blocking(move || load_or_create_import(&import, now))
            .await
            .map_err(|e| KeyError::Crypto(e.to_string()))??;
        let existing = store.keys().await?;
        if !existing.iter().any(|k| k.kid == key.kid) {
            store.insert_key(stored(&key, &der, sealer, now)?).await?;
            tracing::info!(kid = %key.kid, "imported signing key from PRIVATE_KEY_PATH");
        }
    }
    let mut keys = load_keys(store, sealer).await?;
    if keys.is_empty() {
        let (key, der) = tokio::task::spawn_blocking(move || SigningKey::generate(now))
            .await
            .map_err(|e| KeyError::Crypto(e.to_string()))??;
        if store
            .insert_first_key(stored(&key, &der, sealer, now)?)
            .await?
        {
            tracing::info!(kid = %key.kid, "generated the first signing key");
        }
        keys = load_keys(store, sealer).await?;
    }
    KeySet::build(keys, now)
}

/// When keys rotate.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// How long a key signs before the next one takes over (`KEY_ROTATION_DAYS`); `None` is off.
    pub period: Option<i64>,
    /// How long a new key is in JWKS before it signs: at least the JWKS `max-age`, so a cached
    /// JWKS never meets an unknown `kid`.
    pub prepublish: i64,
    /// How long a key stays published after it stops signing: the access-token lifetime plus a
    /// clock-skew margin, so every token it signed verifies until it expires.
    pub retire_after: i64,
    /// How often every instance reloads keys (picking up another instance's rotation) and checks
    /// whether a rotation is due.
    pub check_every: std::time::Duration,
}

/// Messages of the KeyManager.
pub enum KeyManagerMsg {
    /// Re-reads the keys from the database and publishes a new snapshot.
    Reload(RpcReplyPort<Result<(), DomainError>>),
    /// Rotates if due, then reloads; sent on a timer (and by tests, with a reply).
    Tick(Option<RpcReplyPort<Result<(), DomainError>>>),
    /// Rotates now (pre-publishing the new key), whatever the schedule; answers the new kid, or
    /// `None` when another instance had just rotated.
    Rotate(RpcReplyPort<Result<Option<String>, DomainError>>),
    /// Test hook: a panic or a stall, to exercise supervision and timeouts.
    Fault(crate::Fault),
}

/// Start-up arguments of the KeyManager (kept by the supervisor for restarts).
#[derive(Clone)]
pub struct KeyManagerArgs<S> {
    /// Where keys live.
    pub store: S,
    /// The signing-keys sealer.
    pub sealer: Sealer,
    /// The published snapshot.
    pub handle: KeyHandle,
    /// Now.
    pub clock: Clock,
    /// Rotation schedule.
    pub rotation: RotationPolicy,
    /// Told about each rotation this instance stores.
    pub on_rotate: Option<OnRotate>,
}

/// Generates and stores a key that starts signing `policy.prepublish` seconds from `now`, and
/// schedules the retirement of the keys it replaces. Only one instance wins when several try at
/// once: the insert is conditional on no key newer than `newest_seen` existing.
pub async fn rotate<S: KeyStore>(
    store: &S,
    sealer: &Sealer,
    policy: &RotationPolicy,
    newest_seen: i64,
    now: i64,
    on_rotate: Option<&OnRotate>,
) -> Result<Option<String>, KeyError> {
    let activates_at = now + policy.prepublish;
    let (key, der) = tokio::task::spawn_blocking(move || SigningKey::generate(activates_at))
        .await
        .map_err(|e| KeyError::Crypto(e.to_string()))??;
    let mut row = stored(&key, &der, sealer, now)?;
    row.activates_at = activates_at;
    let retire_at = activates_at + policy.retire_after;
    if store
        .insert_rotated_key(row, newest_seen, retire_at)
        .await?
    {
        tracing::info!(kid = %key.kid, activates_at, retire_previous_at = retire_at, "signing key rotated");
        if let Some(f) = on_rotate {
            f(&key.kid);
        }
        Ok(Some(key.kid.clone()))
    } else {
        Ok(None)
    }
}

impl<S: KeyStore> KeyManagerArgs<S> {
    async fn reload(&self) -> Result<Arc<KeySet>, DomainError> {
        let keys = load_keys(&self.store, &self.sealer)
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let set = Arc::new(
            KeySet::build(keys, self.clock.now())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
        );
        self.handle.store(set.clone());
        Ok(set)
    }

    async fn rotate_now(&self, newest_seen: i64) -> Result<Option<String>, DomainError> {
        let kid = rotate(
            &self.store,
            &self.sealer,
            &self.rotation,
            newest_seen,
            self.clock.now(),
            self.on_rotate.as_ref(),
        )
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?;
        self.reload().await?;
        Ok(kid)
    }

    /// Reloads, and rotates when the newest key has signed (or will have, by the time its
    /// successor is published) for a whole period.
    async fn tick(&self) -> Result<(), DomainError> {
        let set = self.reload().await?;
        if let Some(period) = self.rotation.period {
            let newest = set.newest().activates_at;
            if self.clock.now() + self.rotation.prepublish >= newest + period {
                self.rotate_now(newest).await?;
            }
        }
        Ok(())
    }
}

/// Owns the key set's changes; never on the signing path.
pub struct KeyManager<S>(std::marker::PhantomData<S>);

impl<S> Default for KeyManager<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: KeyStore> Actor for KeyManager<S> {
    type Msg = KeyManagerMsg;
    type State = KeyManagerArgs<S>;
    type Arguments = KeyManagerArgs<S>;

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        me.send_interval(args.rotation.check_every, || KeyManagerMsg::Tick(None));
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KeyManagerMsg::Reload(reply) => {
                let _ = reply.send(st.reload().await.map(|_| ()));
            }
            KeyManagerMsg::Tick(reply) => {
                let r = st.tick().await;
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "key check failed; will retry");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            KeyManagerMsg::Rotate(reply) => {
                let newest = st.handle.load().newest().activates_at;
                let _ = reply.send(st.rotate_now(newest).await);
            }
            KeyManagerMsg::Fault(f) => f.strike("KeyManager").await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

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
