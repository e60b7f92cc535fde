//! The PostgreSQL backend: table `revoked_tokens(jti PRIMARY KEY, exp)`,
//! created at start if missing, shared by every replica using the database.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::RevocationError;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept per replica: revocations are rare, checks short.
const POOL_SIZE: usize = 4;
/// A lock number of our own, held while the table is created, so replicas
/// starting at once do not race on `CREATE TABLE IF NOT EXISTS`.
const SCHEMA_LOCK: i64 = 0x6865_6973_745f_7276; // "heist_rv"

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS revoked_tokens (
        jti TEXT PRIMARY KEY,
        exp BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS revoked_tokens_exp ON revoked_tokens (exp)";
const PURGE: &str = "DELETE FROM revoked_tokens WHERE exp <= $1";
/// New, or replacing an expired entry of the same ID: one row; else none.
const REVOKE: &str = "INSERT INTO revoked_tokens (jti, exp) VALUES ($1, $2)
    ON CONFLICT (jti) DO UPDATE SET exp = EXCLUDED.exp WHERE revoked_tokens.exp <= $3";
const IS_REVOKED: &str = "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1 AND exp > $2)";
const ACTIVE: &str = "SELECT jti, exp FROM revoked_tokens WHERE exp > $1 ORDER BY jti";

/// The revocation list in a PostgreSQL database; a cheap handle on a pool.
#[derive(Debug)]
pub(super) struct PostgresRevocations {
    pool: Pool,
    /// `postgres HOST:PORT/DB`, for errors and logs.
    store: String,
}

impl PostgresRevocations {
    /// Connects to `url` (which must accept the credentials), creates the
    /// table if needed and drops the entries expired at `now`.
    pub(super) async fn connect(url: &str, store: &str, now: u64) -> Result<Self, RevocationError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|error| RevocationError::BadLocation {
                value: store.to_owned(),
                reason: format!("not a PostgreSQL URL: {error}"),
            })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("heist-oauth");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(super::STORE_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| unavailable(store, error))?;
        let store = Self {
            pool,
            store: store.to_owned(),
        };
        store.create_schema().await?;
        store.purge(now).await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), RevocationError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.failed(e))?;
        transaction
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| self.failed(e))?;
        transaction.commit().await.map_err(|e| self.failed(e))
    }

    async fn purge(&self, now: u64) -> Result<(), RevocationError> {
        let client = self.client().await?;
        client
            .execute(PURGE, &[&seconds(now)])
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// `postgres HOST:PORT/DB`.
    pub(super) fn describe(&self) -> &str {
        &self.store
    }

    /// Drops expired entries, then revokes `jti` until `exp`; false when it
    /// was revoked already.
    pub(super) async fn revoke(
        &self,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, RevocationError> {
        self.purge(now).await?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(REVOKE)
            .await
            .map_err(|e| self.failed(e))?;
        let rows = client
            .execute(&statement, &[&jti, &seconds(exp), &seconds(now)])
            .await
            .map_err(|e| self.failed(e))?;
        Ok(rows == 1)
    }

    /// True when `jti` is revoked and not expired at `now`.
    pub(super) async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, RevocationError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(IS_REVOKED)
            .await
            .map_err(|e| self.failed(e))?;
        let row = client
            .query_one(&statement, &[&jti, &seconds(now)])
            .await
            .map_err(|e| self.failed(e))?;
        Ok(row.get(0))
    }

    /// The entries not expired at `now`, sorted by ID.
    pub(super) async fn active(&self, now: u64) -> Result<Vec<(String, u64)>, RevocationError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(ACTIVE)
            .await
            .map_err(|e| self.failed(e))?;
        let rows = client
            .query(&statement, &[&seconds(now)])
            .await
            .map_err(|e| self.failed(e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let exp: i64 = row.get(1);
                (row.get(0), u64::try_from(exp).unwrap_or(0))
            })
            .collect())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, RevocationError> {
        self.pool
            .get()
            .await
            .map_err(|error| unavailable(&self.store, error))
    }

    fn failed(&self, error: tokio_postgres::Error) -> RevocationError {
        unavailable(&self.store, error)
    }
}

/// Seconds since the epoch as PostgreSQL's BIGINT.
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unavailable(store: &str, error: impl std::error::Error + 'static) -> RevocationError {
    RevocationError::Unavailable {
        store: store.to_owned(),
        reason: heist_plumbing::status::error_chain(&error),
    }
}
