//! `heist-audit verify`: checking the chains of an Audit SQLite file
//! offline, straight from the file, with Audit's public keys, and nothing
//! but the file and the keys: no service, no network.

use std::path::{Path, PathBuf};

use heist_proto::v1 as pb;
use heist_tokens::{Jwk, KeyRing, KeySet};
use serde::Deserialize;

use crate::convert;
use crate::store::{Rules, StoreError, verify_sqlite_file};

/// Why an offline check could not run (not a verdict: a tampered session
/// is a [`pb::SessionVerification`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The keys file cannot be read.
    #[error("cannot read the public keys {}: {source}", path.display())]
    ReadKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The keys file is not a JWKS with Ed25519 keys.
    #[error("the public keys {} are not usable: {reason}", path.display())]
    BadKeys {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signing key ring cannot be loaded.
    #[error("{0}")]
    KeyRing(#[from] heist_tokens::KeyError),
    /// The database cannot be read as an Audit store.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A JWKS file: `GetCheckpointKeys` as grpcurl prints it, or any
/// `{"keys": [...]}` of Ed25519 JWKs; `checkpointEvery` is read when present.
#[derive(Deserialize)]
struct KeysFile {
    keys: Vec<Jwk>,
    #[serde(default, alias = "checkpointEvery")]
    checkpoint_every: Option<serde_json::Value>,
}

/// The trusted keys of a JWKS file and the interval it states, if any.
pub fn read_public_keys(path: &Path) -> Result<(KeySet, Option<u64>), OfflineError> {
    let bad = |reason: String| OfflineError::BadKeys {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| OfflineError::ReadKeys {
        path: path.to_owned(),
        source,
    })?;
    let file: KeysFile = serde_json::from_str(&text)
        .map_err(|error| bad(format!("expected {{\"keys\": [JWK, ...]}}: {error}")))?;
    if file.keys.is_empty() {
        return Err(bad("it holds no key".to_owned()));
    }
    let keys = KeySet::from_jwks(&file.keys).map_err(|error| bad(error.to_string()))?;
    let every = match file.checkpoint_every {
        None => None,
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Ok((keys, every))
}

/// Every key of the signing key ring at `path` (Audit's `--key-file`).
pub fn read_key_ring(path: &Path) -> Result<KeySet, OfflineError> {
    let ring = KeyRing::read(path)?.ok_or_else(|| OfflineError::ReadKeys {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such key file"),
    })?;
    Ok(crate::store::ring_keys(&ring))
}

/// Verifies `session` (or every session, oldest first) of the SQLite file
/// `db` under `rules`, opening it read-only.
pub fn verify_file(
    db: &Path,
    session: Option<&str>,
    rules: &Rules,
) -> Result<Vec<pb::SessionVerification>, OfflineError> {
    let found = verify_sqlite_file(db, session, rules)?;
    Ok(found
        .into_iter()
        .map(|(session_id, found)| convert::verification(&session_id, found))
        .collect())
}
