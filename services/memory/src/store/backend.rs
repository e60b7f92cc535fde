//! The store the service runs on, chosen at start: in this process ([`MemoryStore`]) or
//! on Redis ([`RedisStore`]), behind one set of async operations with one contract.

use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use super::{
    Compressed, Limits, MemoryError, MemoryStore, RedisStore, Stats, StoreOutcome,
    on_redis::redacted,
};

/// Where the turns are kept: `--store memory` or `--store redis://...`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreConfig {
    /// In this process; lost when it stops.
    #[default]
    Memory,
    /// On the Redis at this URL, shared by every replica using it.
    Redis(String),
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for StoreConfig {
    /// `memory`, or the Redis URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(&redacted(url)),
        }
    }
}

impl std::str::FromStr for StoreConfig {
    type Err = MemoryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "memory" {
            return Ok(Self::Memory);
        }
        if value.starts_with("redis://") || value.starts_with("rediss://") {
            return Ok(Self::Redis(value.to_owned()));
        }
        Err(MemoryError::BadStoreUrl {
            value: heist_plumbing::quote(&redacted(value)).to_string(),
            reason: "expected `memory` or a URL `redis://[:password@]host:port[/db]`".to_owned(),
        })
    }
}

/// The store behind the service: a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In this process, behind a mutex held only briefly (never across an await).
    Memory {
        /// The store.
        store: Arc<Mutex<MemoryStore>>,
        /// This process's run, as the instance ID.
        instance: Arc<str>,
    },
    /// On Redis.
    Redis(RedisStore),
}

impl Backend {
    /// An empty in-process store bounded by `limits`, which must pass [`Limits::validate`].
    pub fn in_memory(limits: Limits) -> Result<Self, MemoryError> {
        Ok(Self::Memory {
            store: Arc::new(Mutex::new(MemoryStore::new(limits)?)),
            instance: new_instance_id().into(),
        })
    }

    /// The store `config` names, bounded by `limits`; for Redis, connected (and the
    /// password checked) before it returns.
    pub async fn open(config: &StoreConfig, limits: Limits) -> Result<Self, MemoryError> {
        match config {
            StoreConfig::Memory => Self::in_memory(limits),
            StoreConfig::Redis(url) => Ok(Self::Redis(RedisStore::connect(url, limits).await?)),
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> Limits {
        match self {
            Self::Memory { store, .. } => lock(store).limits().clone(),
            Self::Redis(redis) => redis.limits().clone(),
        }
    }

    /// The store's instance ID (`StoreMemoryResponse.instance_id`): it changes when the
    /// store loses its turns (a restart in memory; Redis emptied), never otherwise.
    pub fn instance_id(&self) -> Arc<str> {
        match self {
            Self::Memory { instance, .. } => instance.clone(),
            Self::Redis(redis) => redis.instance_id(),
        }
    }

    /// Stores one turn at `now`, idempotently (see [`MemoryStore::store`]).
    pub async fn store(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: i64,
        message: &str,
        now: Timestamp,
    ) -> Result<StoreOutcome, MemoryError> {
        match self {
            Self::Memory { store, .. } => {
                lock(store).store(agent_id, session_id, turn_id, message, now)
            }
            Self::Redis(redis) => {
                redis
                    .store(agent_id, session_id, turn_id, message, now)
                    .await
            }
        }
    }

    /// The compressed memory of (agent, session) (see [`MemoryStore::compressed`]).
    pub async fn compressed(
        &self,
        agent_id: &str,
        session_id: &str,
        recent_count: i64,
        max_chars: i64,
    ) -> Result<Compressed, MemoryError> {
        match self {
            Self::Memory { store, .. } => {
                lock(store).compressed(agent_id, session_id, recent_count, max_chars)
            }
            Self::Redis(redis) => {
                redis
                    .compressed(agent_id, session_id, recent_count, max_chars)
                    .await
            }
        }
    }

    /// The turn IDs kept for (agent, session), ascending.
    pub async fn turn_ids(
        &self,
        agent_id: &str,
        session_id: &str,
    ) -> Result<Vec<i64>, MemoryError> {
        match self {
            Self::Memory { store, .. } => lock(store).turn_ids(agent_id, session_id),
            Self::Redis(redis) => redis.turn_ids(agent_id, session_id).await,
        }
    }

    /// Counts and limits.
    pub async fn stats(&self) -> Result<Stats, MemoryError> {
        match self {
            Self::Memory { store, .. } => Ok(lock(store).stats()),
            Self::Redis(redis) => redis.stats().await,
        }
    }

    /// Deletes turns (see [`MemoryStore::clear`]) and answers how many.
    pub async fn clear(
        &self,
        agent_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<u64, MemoryError> {
        match self {
            Self::Memory { store, .. } => lock(store).clear(agent_id, session_id),
            Self::Redis(redis) => redis.clear(agent_id, session_id).await,
        }
    }

    /// Evicts the sessions past their TTL at `now`, and answers how many.
    pub async fn sweep(&self, now: Timestamp) -> Result<u64, MemoryError> {
        match self {
            Self::Memory { store, .. } => Ok(lock(store).sweep(now)),
            Self::Redis(redis) => redis.sweep(now).await,
        }
    }

    /// Whether the store can serve now (always, in memory; Redis answering, on Redis).
    pub async fn is_reachable(&self) -> bool {
        match self {
            Self::Memory { .. } => true,
            Self::Redis(redis) => redis.ping().await,
        }
    }
}

/// The store, its lock taken over if a panic poisoned it (no operation leaves the store
/// half-updated in a way later calls can see).
fn lock(store: &Mutex<MemoryStore>) -> MutexGuard<'_, MemoryStore> {
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh instance ID: 16 hex digits from the clock, the process ID and the standard
/// library's per-process random keys.
pub(super) fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
