//! Key material: RSA-2048 signing keys generated or parsed once, their RS256 signatures, and
//! their public form (RFC 7638 thumbprint, JWK, JWKS).

use super::KeyError;
use crate::crypto::{b64url, sha256};
use crate::error::DomainError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use zeroize::Zeroizing;

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
    /// `base64url({"alg":"RS256","typ":"JWT","kid":…})`: the header of an ID token, which
    /// must not claim to be an access token (and OpenID Connect clients accept only `JWT`).
    id_header_b64: String,
    pub(super) n: String,
    pub(super) e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub(super) fn from_pair(pair: KeyPair, activates_at: i64, retires_at: Option<i64>) -> Self {
        let public = pair.public_key();
        let n = b64url(public.modulus().big_endian_without_leading_zero());
        let e = b64url(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&n, &e);
        let header = format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#);
        let id_header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
        Self {
            header_b64: b64url(header.as_bytes()),
            id_header_b64: b64url(id_header.as_bytes()),
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
        self.sign_with(&self.header_b64, claims)
    }

    /// Signs `claims` as an OpenID Connect ID token (`typ` `JWT`), with the same key.
    pub fn sign_id_token(&self, claims: &[u8]) -> Result<String, DomainError> {
        self.sign_with(&self.id_header_b64, claims)
    }

    fn sign_with(&self, header_b64: &str, claims: &[u8]) -> Result<String, DomainError> {
        let mut out = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 350);
        out.push_str(header_b64);
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

    pub(super) fn spki_der(&self) -> Result<Vec<u8>, KeyError> {
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
}
