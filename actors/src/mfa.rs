//! TOTP multi-factor authentication: enrollment, confirmation, code checks, recovery codes.
//!
//! What must hold when requests race, in one process or across processes sharing the database
//! (a TOTP step accepted once, a recovery code used once, MFA turned on by one confirmation) is
//! a conditional update in the store, not an in-process order. The secret is generated here (160 bits), shown once at
//! enrollment, and otherwise only ever stored sealed: AES-256-GCM under a key derived from
//! `MFA_ENCRYPTION_KEY`, a fresh nonce per seal, the user id as associated data (so a sealed
//! secret copied into another user's row does not open), and a version byte for key rotation.

use crate::crypto::{b64url, random_bytes, sha256, KeyedHash, Sealer, SEAL_VERSION};
use crate::error::DomainError;
use crate::secret::SecretString;
use crate::store::{MfaStatus, MfaStore};
use crate::Clock;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use totp_rs::{Builder, Secret, Totp};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Recovery codes issued at confirmation.
pub const RECOVERY_CODES: usize = 10;
/// Wrong codes after which an `mfa_token` is burned.
pub const MAX_ATTEMPTS: i64 = 5;
/// Lifetime of an `mfa_token`, seconds.
pub const CHALLENGE_TTL: i64 = 300;

/// What MFA needs besides storage.
#[derive(Clone)]
pub struct MfaConfig {
    /// Seals TOTP secrets.
    pub sealer: Sealer,
    /// Hashes recovery codes for storage.
    pub recovery: KeyedHash,
    /// The issuer name shown by authenticator apps.
    pub issuer: String,
}

/// What enrollment shows the user, once.
#[derive(Debug)]
pub struct Enrollment {
    /// Base32 secret for manual entry.
    pub secret: SecretString,
    /// `otpauth://totp/…` for QR codes and app import.
    pub otpauth_uri: SecretString,
}

const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// The key URI authenticator apps import (SHA1, 6 digits, 30 s).
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let i = utf8_percent_encode(issuer, LABEL);
    let a = utf8_percent_encode(account, LABEL);
    format!(
        "otpauth://totp/{i}:{a}?secret={secret_b32}&issuer={i}&algorithm=SHA1&digits=6&period=30"
    )
}

fn totp(secret: &[u8]) -> Result<Totp, DomainError> {
    Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|e| DomainError::Internal(format!("totp: {e:?}")))
}

/// A submitted code, classified by shape.
enum Code {
    /// Six digits.
    Totp(Zeroizing<String>),
    /// A recovery code, normalised and hashed as stored.
    Recovery([u8; 32]),
    /// Neither: always wrong.
    Malformed,
}

/// Characters of a recovery code: 16 of base32, 80 bits (`xxxx-xxxx-xxxx-xxxx`).
const RECOVERY_LEN: usize = 16;
/// Characters of the recovery codes issued before they were lengthened (50 bits), stored as
/// plain SHA-256: still accepted until the user next confirms MFA.
const LEGACY_RECOVERY_LEN: usize = 10;

const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Normalises a recovery code: lower-case, without `-` and spaces; `None` if it cannot be one.
fn normalise_recovery(code: &str) -> Option<Zeroizing<String>> {
    let n: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| *c != '-' && *c != ' ')
            .flat_map(char::to_lowercase)
            .collect(),
    );
    (matches!(n.len(), RECOVERY_LEN | LEGACY_RECOVERY_LEN)
        && n.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
    .then_some(n)
}

fn classify(code: &str, keyed: &KeyedHash) -> Code {
    let t = code.trim();
    if t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Code::Totp(Zeroizing::new(t.to_owned()));
    }
    match normalise_recovery(t) {
        Some(n) if n.len() == RECOVERY_LEN => Code::Recovery(keyed.digest(n.as_bytes())),
        Some(n) => Code::Recovery(sha256(n.as_bytes())),
        None => Code::Malformed,
    }
}

/// Fresh recovery codes (80 bits each, `xxxx-xxxx-xxxx-xxxx`) and their keyed hashes.
fn new_recovery_codes(
    keyed: &KeyedHash,
) -> Result<(Vec<SecretString>, Vec<[u8; 32]>), DomainError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw =
            random_bytes::<RECOVERY_LEN>().map_err(|e| DomainError::Internal(e.to_string()))?;
        let s: Zeroizing<String> = Zeroizing::new(
            raw.iter()
                .map(|b| RECOVERY_ALPHABET[(b & 31) as usize] as char)
                .collect(),
        );
        hashes.push(keyed.digest(s.as_bytes()));
        codes.push(SecretString::new(format!(
            "{}-{}-{}-{}",
            &s[..4],
            &s[4..8],
            &s[8..12],
            &s[12..]
        )));
    }
    Ok((codes, hashes))
}

/// The MFA operations of one account.
pub struct Mfa<'a, S> {
    /// Storage.
    pub store: &'a S,
    /// Sealer and issuer.
    pub config: &'a MfaConfig,
    /// Now.
    pub clock: &'a Clock,
}

impl<S: MfaStore> Mfa<'_, S> {
    /// Opens the user's secret. A secret that does not open (copied from another user's row,
    /// tampered with) can verify no code: logged as an integrity error, answered as a wrong code.
    fn open_secret(&self, user_id: Uuid, sealed: &[u8]) -> Result<Totp, DomainError> {
        let secret = self.config.sealer.open(sealed, user_id.as_bytes()).map_err(|_| {
            tracing::error!(user_id = %user_id, "stored TOTP secret does not open for this user; refusing every code");
            DomainError::InvalidMfaCode
        })?;
        totp(&secret)
    }

    /// Starts (or restarts) enrollment with a fresh secret.
    pub async fn enroll(&self, user_id: Uuid, email: &str) -> Result<Enrollment, DomainError> {
        let raw =
            Zeroizing::new(random_bytes::<20>().map_err(|e| DomainError::Internal(e.to_string()))?);
        let b32 = Zeroizing::new(Secret::from(&raw[..]).to_base32());
        let sealed = self
            .config
            .sealer
            .seal(&raw[..], user_id.as_bytes())
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        if !self
            .store
            .set_pending_mfa(user_id, sealed, i64::from(SEAL_VERSION), self.clock.now())
            .await?
        {
            return Err(DomainError::MfaAlreadyEnabled);
        }
        let uri = otpauth_uri(&self.config.issuer, email, &b32);
        Ok(Enrollment {
            secret: SecretString::new(b32.to_string()),
            otpauth_uri: SecretString::new(uri),
        })
    }

    /// Confirms a pending enrollment with a TOTP code; returns the recovery codes, shown once.
    pub async fn confirm(
        &self,
        user_id: Uuid,
        code: &SecretString,
    ) -> Result<Vec<SecretString>, DomainError> {
        let rec = match self.store.mfa(user_id).await? {
            Some(r) if r.status == MfaStatus::Pending => r,
            _ => return Err(DomainError::MfaNotPending),
        };
        let Code::Totp(code) = classify(code.expose(), &self.config.recovery) else {
            return Err(DomainError::InvalidMfaCode);
        };
        let totp = self.open_secret(user_id, &rec.secret_sealed)?;
        let step = totp
            .check(&code, self.clock.now().max(0) as u64)
            .ok_or(DomainError::InvalidMfaCode)?;
        let (codes, hashes) = new_recovery_codes(&self.config.recovery)?;
        if !self
            .store
            .enable_mfa(
                user_id,
                rec.secret_sealed,
                step as i64,
                hashes,
                self.clock.now(),
            )
            .await?
        {
            return Err(DomainError::InvalidMfaCode);
        }
        Ok(codes)
    }

    /// Checks a second factor of a user with MFA on: a TOTP code (current step ±1, each step
    /// once) or an unused recovery code (then used up).
    pub async fn check(&self, user_id: Uuid, code: &SecretString) -> Result<(), DomainError> {
        let rec = match self.store.mfa(user_id).await? {
            Some(r) if r.status == MfaStatus::Enabled => r,
            _ => return Err(DomainError::InvalidMfaCode),
        };
        let ok = match classify(code.expose(), &self.config.recovery) {
            Code::Totp(code) => {
                let totp = self.open_secret(user_id, &rec.secret_sealed)?;
                match totp.check(&code, self.clock.now().max(0) as u64) {
                    Some(step) => self.store.accept_totp_step(user_id, step as i64).await?,
                    None => false,
                }
            }
            Code::Recovery(hash) => {
                self.store
                    .use_recovery_code(user_id, hash, self.clock.now())
                    .await?
            }
            Code::Malformed => false,
        };
        if ok {
            Ok(())
        } else {
            Err(DomainError::InvalidMfaCode)
        }
    }

    /// Turns MFA off after a valid code.
    pub async fn disable(&self, user_id: Uuid, code: &SecretString) -> Result<(), DomainError> {
        self.check(user_id, code).await?;
        self.store.disable_mfa(user_id).await?;
        Ok(())
    }
}

/// A fresh opaque `mfa_token` and its hash.
pub fn new_challenge_token() -> Result<(SecretString, [u8; 32]), DomainError> {
    let t = b64url(&random_bytes::<32>().map_err(|e| DomainError::Internal(e.to_string()))?);
    let h = sha256(t.as_bytes());
    Ok((SecretString::new(t), h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> KeyedHash {
        crate::crypto::MasterKey::generate()
            .unwrap()
            .keyed_hash(b"recovery-codes")
    }

    #[test]
    fn codes_are_classified_by_shape() {
        let k = keyed();
        let classify = |c: &str| classify(c, &k);
        assert!(matches!(classify("123456"), Code::Totp(_)));
        assert!(matches!(classify(" 123456 "), Code::Totp(_)));
        assert!(matches!(classify("12345"), Code::Malformed));
        assert!(matches!(classify("12a456"), Code::Malformed));
        assert!(matches!(classify(&"1".repeat(1000)), Code::Malformed));
        assert!(
            matches!(classify("ABCDE-FGH23"), Code::Recovery(_)),
            "legacy shape"
        );
        assert!(matches!(classify("ABCD-EFGH-2345-67AB"), Code::Recovery(_)));
        let (codes, hashes) = new_recovery_codes(&k).unwrap();
        assert_eq!(codes.len(), 10);
        for (c, h) in codes.iter().zip(&hashes) {
            assert_eq!(c.expose().len(), 19, "16 characters in four groups");
            match classify(&c.expose().to_uppercase()) {
                Code::Recovery(x) => assert_eq!(&x, h),
                _ => panic!("recovery code not recognised"),
            }
        }
    }

    #[test]
    fn recovery_codes_carry_80_bits_and_are_stored_under_a_key() {
        let k = keyed();
        let (codes, hashes) = new_recovery_codes(&k).unwrap();
        let raw: String = codes[0].expose().replace('-', "");
        // 16 characters of a 32-letter alphabet: 80 bits.
        assert_eq!(raw.len() * 5, 80);
        assert_ne!(
            hashes[0],
            sha256(raw.as_bytes()),
            "a plain SHA-256 can be brute-forced offline"
        );
        assert_ne!(
            keyed().digest(raw.as_bytes()),
            hashes[0],
            "another master key, another digest"
        );
    }

    #[test]
    fn codes_match_rfc6238_sha1_vectors_at_fixed_times_within_one_step() {
        // RFC 6238 appendix B, SHA1 secret, last six digits of the eight-digit values.
        let t = totp(b"12345678901234567890").unwrap();
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(t.generate(time).to_string(), code);
            assert_eq!(t.check(code, time), Some(time / 30), "current step");
            assert_eq!(t.check(code, time + 30), Some(time / 30), "one step later");
            assert_eq!(
                t.check(code, time - 30),
                Some(time / 30),
                "one step earlier"
            );
            assert_eq!(t.check(code, time + 60), None, "two steps later");
        }
    }

    #[test]
    fn otpauth_uri_carries_issuer_account_and_parameters() {
        let u = otpauth_uri("edge-idp", "a+b@example.com", "JBSWY3DPEHPK3PXP");
        assert_eq!(u, "otpauth://totp/edge-idp:a%2Bb@example.com?secret=JBSWY3DPEHPK3PXP&issuer=edge-idp&algorithm=SHA1&digits=6&period=30");
    }
}
