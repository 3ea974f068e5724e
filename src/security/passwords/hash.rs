//! The Argon2id computations themselves, in working memory the caller lends: a new PHC string,
//! the dummy hash, and a constant-time check of a password against a stored hash.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use edge_idp_actors::DomainError;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

pub(super) fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn internal(context: &str) -> impl Fn(argon2::password_hash::Error) -> DomainError + '_ {
    move |e| DomainError::Internal(format!("{context}: {e}"))
}

/// A new PHC string for `password`, computed in `memory` (grown once to the cost's size).
pub(super) fn hash_in(
    memory: &mut Vec<Block>,
    params: &Params,
    password: &str,
) -> Result<String, DomainError> {
    let salt_bytes = edge_idp_actors::crypto::random_bytes::<16>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    fill(memory, params.block_count());
    hasher(params)
        .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut out, &mut memory[..])
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))?;
    phc_string(params, &salt_bytes, &out)
}

/// The dummy hash unknown emails are verified against: a PHC string with the current costs, a
/// random salt and a random output. Verifying against it costs one full hash, like a real one,
/// and matches no password; making it costs no hash, so it is off the path to listening.
pub(super) fn dummy_hash(params: &Params) -> Result<String, DomainError> {
    let salt = edge_idp_actors::crypto::random_bytes::<16>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let out = edge_idp_actors::crypto::random_bytes::<{ Params::DEFAULT_OUTPUT_LEN }>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    phc_string(params, &salt, &out)
}

fn phc_string(params: &Params, salt_bytes: &[u8], out: &[u8]) -> Result<String, DomainError> {
    let salt = SaltString::encode_b64(salt_bytes).map_err(internal("salt"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(internal("params"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out).map_err(internal("output"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the parsed PHC hash, computed in `memory` with the hash's own
/// algorithm, version and costs; the comparison is constant-time.
pub(super) fn matches_in(
    memory: &mut Vec<Block>,
    parsed: &PasswordHash<'_>,
    password: &str,
) -> Result<bool, DomainError> {
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(internal("stored hash"))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| DomainError::Internal(format!("stored hash: {e}")))?
        .unwrap_or_default();
    let params = Params::try_from(parsed).map_err(internal("stored hash"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(DomainError::Internal(
            "stored hash without salt or output".into(),
        ));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buf)
        .map_err(internal("stored salt"))?;
    let mut out = vec![0u8; expected.len()];
    fill(memory, params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))?;
    let ok = bool::from(out.as_slice().ct_eq(expected.as_bytes()));
    out.zeroize();
    Ok(ok)
}

fn fill(memory: &mut Vec<Block>, blocks: usize) {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
}
