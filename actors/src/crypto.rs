//! Small cryptographic building blocks shared by the actors and the binary.
//!
//! One master secret (`MFA_ENCRYPTION_KEY`) protects everything sealed at rest. Each purpose
//! (signing keys, refresh-token successors, TOTP secrets) gets its own AES-256-GCM key derived
//! with HKDF-SHA256, so a ciphertext of one purpose can never be opened as another, and the
//! associated data binds each ciphertext to its row.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::{digest, hkdf, hmac, rand};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use std::fmt;
use zeroize::Zeroizing;

/// The version byte written in front of every sealed blob; bumped when the master key rotates.
pub const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a master key or a sealed blob was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The master key is not 32 bytes of URL-safe base64.
    #[error("must be 32 bytes encoded as URL-safe base64 (43 characters without padding)")]
    BadMasterKey,
    /// The blob was not sealed by this key, for this row, or was tampered with.
    #[error("sealed data cannot be opened with this key")]
    OpenFailed,
    /// The system random source failed.
    #[error("random source failed")]
    Random,
}

/// The 32-byte master secret. Zeroized on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// Parses URL-safe base64, with or without padding.
    pub fn parse(encoded: &str) -> Result<Self, CryptoError> {
        let encoded = encoded.trim();
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(encoded)
                .or_else(|_| URL_SAFE.decode(encoded))
                .map_err(|_| CryptoError::BadMasterKey)?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// A fresh random key (development mode writes it to the data folder once).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::fill(&mut k[..]).map_err(|_| CryptoError::Random)?;
        Ok(Self(k))
    }

    /// The URL-safe base64 form, for writing the generated key to disk.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(&self.0[..]))
    }

    /// Derives the 32-byte key of one purpose with HKDF-SHA256.
    fn derive(&self, purpose: &'static [u8]) -> Zeroizing<[u8; 32]> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"edge-idp/v1");
        let prk = salt.extract(&self.0[..]);
        let info = [purpose];
        let mut key = Zeroizing::new([0u8; 32]);
        // HKDF-SHA256 expanding to 32 bytes cannot fail; fall back to an all-zero key is never reached.
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut key[..]);
        }
        key
    }

    /// Derives the sealer of one purpose (`b"signing-keys"`, `b"refresh-successor"`, …).
    pub fn sealer(&self, purpose: &'static [u8]) -> Sealer {
        let key = self.derive(purpose);
        Sealer {
            cipher: Aes256Gcm::new((&*key).into()),
        }
    }

    /// Derives the keyed hash of one purpose (`b"recovery-codes"`).
    pub fn keyed_hash(&self, purpose: &'static [u8]) -> KeyedHash {
        let key = self.derive(purpose);
        KeyedHash(hmac::Key::new(hmac::HMAC_SHA256, &key[..]))
    }
}

/// HMAC-SHA256 under a key derived from the master key: a stored digest of a short secret
/// (a recovery code) that cannot be brute-forced offline from a copy of the database alone.
#[derive(Clone)]
pub struct KeyedHash(hmac::Key);

impl KeyedHash {
    /// The digest of `data`.
    pub fn digest(&self, data: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.0, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }
}

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHash(<redacted>)")
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// AES-256-GCM for one purpose: `version || nonce || ciphertext+tag`, with caller-chosen
/// associated data binding the blob to its row.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// Seals `plaintext` under a fresh random 96-bit nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob sealed by [`Sealer::seal`] with the same associated data.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != SEAL_VERSION {
            return Err(CryptoError::OpenFailed);
        }
        let (nonce, ct) = blob[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::OpenFailed)
    }
}

/// `n` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    rand::fill(&mut b).map_err(|_| CryptoError::Random)?;
    Ok(b)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Unpadded URL-safe base64, the encoding of every token and JWK member.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes unpadded URL-safe base64.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Equality of secrets in constant time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blob_opens_only_with_same_key_purpose_and_aad() {
        let mk = MasterKey::generate().unwrap();
        let s = mk.sealer(b"a");
        let blob = s.seal(b"secret", b"row-1").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(&s.open(&blob, b"row-1").unwrap()[..], b"secret");
        assert_eq!(s.open(&blob, b"row-2"), Err(CryptoError::OpenFailed));
        assert_eq!(
            mk.sealer(b"b").open(&blob, b"row-1"),
            Err(CryptoError::OpenFailed)
        );
        let other = MasterKey::generate().unwrap().sealer(b"a");
        assert_eq!(other.open(&blob, b"row-1"), Err(CryptoError::OpenFailed));
    }

    #[test]
    fn master_key_parses_only_32_bytes() {
        let mk = MasterKey::generate().unwrap();
        assert!(MasterKey::parse(&mk.encode()).is_ok());
        assert_eq!(
            MasterKey::parse("short").unwrap_err(),
            CryptoError::BadMasterKey
        );
        assert_eq!(
            MasterKey::parse(&b64url(&[0u8; 31])).unwrap_err(),
            CryptoError::BadMasterKey
        );
    }
}
