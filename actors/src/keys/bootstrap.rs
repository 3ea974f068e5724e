//! Getting the first keys: the operator's key files (read, or generated and written once), the
//! keys stored sealed in the database, and the start-up load that builds the first snapshot.

use super::material::SigningKey;
use super::{KeyError, KeySet};
use crate::crypto::{CryptoError, Sealer};
use crate::fs::write_private;
use crate::store::{KeyStore, StoredKey};
use crate::Clock;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

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
pub(super) async fn load_keys<S: KeyStore>(
    store: &S,
    sealer: &Sealer,
) -> Result<Vec<SigningKey>, KeyError> {
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

/// The database row of a key: its private part sealed, the kid as associated data.
pub(super) fn stored(
    key: &SigningKey,
    der: &[u8],
    sealer: &Sealer,
    now: i64,
) -> Result<StoredKey, KeyError> {
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
