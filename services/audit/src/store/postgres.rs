//! The PostgreSQL backend: the same contract as the SQLite file, for several
//! Audit replicas on one database.
//!
//! Layout:
//! - `schema`: tables (SQLite's names and columns) and migrations (`schema_version`);
//! - `writes`: what each write does in its one transaction;
//! - `queries`: the SELECTs and row mappings;
//! - `links`: the hash chain's columns, extended under the session's row lock;
//! - `listen`: the `LISTEN` connection that feeds [`AuditStore::subscribe`](super::AuditStore::subscribe);
//! - `error`: PostgreSQL's failures as store errors.
//!
//! Writes go to one task per replica that commits concurrent writes in one
//! transaction (`writer`, as SQLite's writer does); reads run on the pool
//! (deadpool-postgres; statements prepared once per connection with
//! `prepare_cached`). An OK reply means PostgreSQL has committed the write
//! (and, with its default `synchronous_commit = on`, flushed it to its WAL).

mod error;
mod links;
mod listen;
mod queries;
mod schema;
mod writer;
mod writes;

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

pub(crate) use error::describe_url;
pub(crate) use queries::Listed;
pub(crate) use writes::PgWrite;

use super::checkpoint::{Integrity, Rules};
use super::clock::Clock;
use super::cursor::SessionCursor;
use super::error::StoreError;
use super::types::{AgentUsage, Committed, SessionRow, SessionStatus};

/// The notification channel of the store's events.
pub(crate) const CHANNEL: &str = "heist_audit";
/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free pooled connection when all are busy
/// (writes to one session queue on its row lock while holding theirs); the
/// caller's deadline usually ends the wait first.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// An open PostgreSQL store: the pool, the writer task, the listening task.
#[derive(Debug)]
pub(crate) struct PgBackend {
    pool: Pool,
    /// Commits the writes, grouped.
    writer: writer::PgWriter,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl PgBackend {
    /// True when a pooled connection answers `SELECT 1` within 2 s (health).
    pub(crate) async fn is_reachable(&self) -> bool {
        let ping = async {
            let client = self.pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
            Ok(Some(_))
        )
    }

    /// Connects (failing with one line naming the server and the cause),
    /// migrates the schema, and starts listening for committed events.
    pub(crate) async fn connect(
        url: &str,
        connections: usize,
        clock: Clock,
        integrity: Integrity,
        events: broadcast::Sender<Committed>,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::invalid("store", format!("malformed PostgreSQL URL: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let target = error::target(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::internal(format!("building the PostgreSQL pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| error::cannot_connect(&target, &e))?;
        schema::migrate(&mut client).await?;
        drop(client);
        let listener = listen::Listener {
            config,
            pool: pool.clone(),
            events,
            target,
        };
        let first = listener.listen().await?;
        let task = tokio::spawn(listener.run(first));
        Ok(PgBackend {
            writer: writer::PgWriter::spawn(pool.clone(), clock, integrity),
            pool,
            listener: Mutex::new(Some(task)),
        })
    }

    /// Queues a write for the writer task; OK once committed.
    pub(crate) async fn submit<W: PgWrite>(&self, write: W) -> Result<W::Output, StoreError> {
        self.writer.submit(write).await
    }

    /// One session with its counts, or `SessionNotFound`.
    pub(crate) async fn session(&self, session_id: &str) -> Result<SessionRow, StoreError> {
        let client = self.client().await?;
        queries::existing_session(&client, session_id).await
    }

    /// An existing session's token usage per agent, or `SessionNotFound`.
    pub(crate) async fn usage_per_agent(
        &self,
        session_id: &str,
    ) -> Result<Vec<AgentUsage>, StoreError> {
        let client = self.client().await?;
        queries::session_status(&client, session_id, false).await?;
        queries::usage_per_agent(&client, session_id).await
    }

    /// Up to `limit` sessions, newest first, after `after`.
    pub(crate) async fn sessions(
        &self,
        status: Option<SessionStatus>,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let client = self.client().await?;
        queries::sessions(&client, status, after, limit).await
    }

    /// Up to `limit` of an existing session's rows after `after_id`, in ID order.
    pub(crate) async fn rows_after<T: Listed>(
        &self,
        session_id: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        queries::session_status(&client, session_id, false).await?;
        queries::rows_after(&client, session_id, after_id, limit).await
    }

    /// Walks an existing session's hash chain and checkpoints in one
    /// snapshot under `rules`, or `SessionNotFound`.
    pub(crate) async fn verify_session(
        &self,
        session_id: &str,
        rules: &Rules,
    ) -> Result<crate::store::chain::Verification, StoreError> {
        let mut client = self.client().await?;
        links::verify(&mut client, session_id, rules).await
    }

    /// An existing session's seal as stored, or `SessionNotFound`.
    pub(crate) async fn session_seal(
        &self,
        session_id: &str,
    ) -> Result<Option<crate::store::checkpoint::Seal>, StoreError> {
        let client = self.client().await?;
        links::seal(&client, session_id).await
    }

    /// How many write transactions have committed.
    pub(crate) fn commit_count(&self) -> u64 {
        self.writer.commit_count()
    }

    /// Stops listening and refuses later writes; reads still work.
    pub(crate) fn shutdown(&self) {
        self.writer.shutdown();
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(error::pool)
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        self.shutdown();
        self.pool.close();
    }
}

/// Test helpers that reach under the store: raw SQL on its database.
#[cfg(test)]
pub(crate) mod raw {
    use tokio_postgres::NoTls;

    pub(crate) use super::schema::create_at_version;

    /// A plain connection to `url` (its driver task spawned).
    pub(crate) async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}
