//! The revocation list: token IDs revoked before they expire, where every
//! OAuth replica reads and writes them.
//!
//! - [`RevocationBackend`]: where the list lives, parsed from `--revocations`:
//!   a file (one process: `file`), PostgreSQL (`postgres`) or Redis (`redis`),
//!   the last two shared by every replica pointed at them.
//! - [`RevocationStore`]: the list itself, one face over the three backends.
//!   Every call is bounded by [`STORE_TIMEOUT`]; an engine that is down or
//!   slow is [`RevocationError::Unavailable`], never a silent success.
//!
//! Entries past their expiry are never answered, and are dropped: at load
//! (file), at each revocation (PostgreSQL, Redis) and at each listing (Redis).

mod backend;
mod file;
mod postgres;
mod redis;
#[cfg(test)]
mod tests;

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

pub use backend::RevocationBackend;
pub use file::FileRevocations;
pub use redis::REDIS_KEY;

/// How long one call to a shared store may take before it counts as down.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the revocation list cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The `--revocations` value names no backend this service knows.
    #[error("--revocations {value:?}: {reason}")]
    BadLocation {
        /// The value given (any password in it replaced by `***`).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The revocation file cannot be read or written.
    #[error("revocation list {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shared store is down, refused us or failed.
    #[error("revocation store {store} unavailable: {reason}")]
    Unavailable {
        /// The store, without its password (e.g. `postgres 127.0.0.1:5432/heist`).
        store: String,
        /// What went wrong.
        reason: String,
    },
}

/// The revoked, not yet expired, token IDs; a cheap handle shared by the handlers.
#[derive(Clone, Debug)]
pub struct RevocationStore {
    backend: Arc<Backend>,
}

#[derive(Debug)]
enum Backend {
    File(FileRevocations),
    Postgres(postgres::PostgresRevocations),
    Redis(redis::RedisRevocations),
}

impl RevocationStore {
    /// Opens the list at `backend`: loads the file (created if missing), or
    /// connects to the engine and prepares its table or key. Fails when the
    /// engine is unreachable or refuses the credentials.
    pub async fn open(backend: &RevocationBackend, now: u64) -> Result<Self, RevocationError> {
        let backend = match backend {
            RevocationBackend::File(path) => {
                let path = path.clone();
                let list = tokio::task::spawn_blocking(move || FileRevocations::open(&path, now))
                    .await
                    .map_err(|error| RevocationError::Unavailable {
                        store: "file".into(),
                        reason: error.to_string(),
                    })??;
                Backend::File(list)
            }
            RevocationBackend::Postgres(url) => {
                let store = backend.to_string();
                Backend::Postgres(
                    bounded(
                        &store,
                        postgres::PostgresRevocations::connect(url, &store, now),
                    )
                    .await?,
                )
            }
            RevocationBackend::Redis(url) => {
                let store = backend.to_string();
                Backend::Redis(
                    bounded(&store, redis::RedisRevocations::connect(url, &store)).await?,
                )
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// A list kept in memory only (tests).
    pub fn in_memory() -> Self {
        Self {
            backend: Arc::new(Backend::File(FileRevocations::in_memory())),
        }
    }

    /// The store, without secrets, for logs: `file PATH`, `postgres HOST:PORT/DB`, `redis HOST:PORT/DB`.
    pub fn describe(&self) -> String {
        match &*self.backend {
            Backend::File(list) => list.describe(),
            Backend::Postgres(store) => store.describe().to_owned(),
            Backend::Redis(store) => store.describe().to_owned(),
        }
    }

    /// Revokes `jti` until `exp`; false when it was revoked already. The
    /// revocation is stored (on disk, or acknowledged by the engine) before
    /// this returns.
    pub async fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<bool, RevocationError> {
        match &*self.backend {
            Backend::File(list) => {
                let list = list.clone();
                let jti = jti.to_owned();
                // fsync per revocation: off the async workers.
                tokio::task::spawn_blocking(move || list.revoke(&jti, exp, now))
                    .await
                    .map_err(|error| RevocationError::Unavailable {
                        store: self.describe(),
                        reason: error.to_string(),
                    })?
            }
            Backend::Postgres(store) => {
                bounded(store.describe(), store.revoke(jti, exp, now)).await
            }
            Backend::Redis(store) => bounded(store.describe(), store.revoke(jti, exp, now)).await,
        }
    }

    /// True when `jti` is revoked and its entry not expired at `now`.
    pub async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, RevocationError> {
        match &*self.backend {
            Backend::File(list) => Ok(list.contains(jti, now)),
            Backend::Postgres(store) => bounded(store.describe(), store.is_revoked(jti, now)).await,
            Backend::Redis(store) => bounded(store.describe(), store.is_revoked(jti, now)).await,
        }
    }

    /// The revoked IDs not expired at `now`, with their expiry, sorted by ID.
    pub async fn active(&self, now: u64) -> Result<Vec<(String, u64)>, RevocationError> {
        match &*self.backend {
            Backend::File(list) => Ok(list.active(now)),
            Backend::Postgres(store) => bounded(store.describe(), store.active(now)).await,
            Backend::Redis(store) => bounded(store.describe(), store.active(now)).await,
        }
    }
}

/// `operation`, or [`RevocationError::Unavailable`] if it takes longer than [`STORE_TIMEOUT`].
async fn bounded<T>(
    store: &str,
    operation: impl Future<Output = Result<T, RevocationError>>,
) -> Result<T, RevocationError> {
    tokio::time::timeout(STORE_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(RevocationError::Unavailable {
                store: store.to_owned(),
                reason: format!("no answer within {} s", STORE_TIMEOUT.as_secs()),
            })
        })
}
