//! The Redis backend: one sorted set, member the `jti`, score its `exp`,
//! shared by every replica using the server. Redis cannot expire a member
//! of a set, so expired members are removed at each revocation and listing.

use std::time::Duration;

use redis::{AsyncCommands as _, aio::ConnectionManager, aio::ConnectionManagerConfig};

use super::RevocationError;

/// The sorted set holding the revocations.
pub const REDIS_KEY: &str = "heist:oauth:revoked";

/// How long connecting, and waiting for one answer, may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The revocation list in a Redis sorted set; reconnects by itself.
#[derive(Debug)]
pub(super) struct RedisRevocations {
    connection: ConnectionManager,
    /// `redis HOST:PORT/DB`, for errors and logs.
    store: String,
}

impl RedisRevocations {
    /// Connects to `url` (which must accept the password) and checks it answers.
    pub(super) async fn connect(url: &str, store: &str) -> Result<Self, RevocationError> {
        let client = redis::Client::open(url).map_err(|error| RevocationError::BadLocation {
            value: store.to_owned(),
            reason: format!("not a Redis URL: {error}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| unavailable(store, error))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|error| unavailable(store, error))?;
        Ok(Self {
            connection,
            store: store.to_owned(),
        })
    }

    /// `redis HOST:PORT/DB`.
    pub(super) fn describe(&self) -> &str {
        &self.store
    }

    /// Drops expired members, then revokes `jti` until `exp` (one atomic
    /// transaction); false when it was revoked already.
    pub(super) async fn revoke(
        &self,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, RevocationError> {
        let mut connection = self.connection.clone();
        let (added,): (u64,) = redis::pipe()
            .atomic()
            .zrembyscore(REDIS_KEY, "-inf", now)
            .ignore()
            .cmd("ZADD")
            .arg(REDIS_KEY)
            .arg("NX")
            .arg(exp)
            .arg(jti)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(added == 1)
    }

    /// True when `jti` is revoked and not expired at `now`.
    pub(super) async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, RevocationError> {
        let mut connection = self.connection.clone();
        let exp: Option<f64> = connection
            .zscore(REDIS_KEY, jti)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(exp.is_some_and(|exp| exp > now as f64))
    }

    /// Drops expired members, then lists the others, sorted by ID.
    pub(super) async fn active(&self, now: u64) -> Result<Vec<(String, u64)>, RevocationError> {
        let mut connection = self.connection.clone();
        let (members,): (Vec<(String, f64)>,) = redis::pipe()
            .atomic()
            .zrembyscore(REDIS_KEY, "-inf", now)
            .ignore()
            .cmd("ZRANGE")
            .arg(REDIS_KEY)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        let mut list: Vec<(String, u64)> = members
            .into_iter()
            .map(|(jti, exp)| (jti, exp as u64))
            .collect();
        list.sort();
        Ok(list)
    }

    fn failed(&self, error: redis::RedisError) -> RevocationError {
        unavailable(&self.store, error)
    }
}

fn unavailable(store: &str, error: redis::RedisError) -> RevocationError {
    RevocationError::Unavailable {
        store: store.to_owned(),
        reason: heist_plumbing::status::error_chain(&error),
    }
}
