//! The audit store: sessions, messages, tool usage and session events, in
//! a SQLite file or a PostgreSQL database, behind the API the gRPC
//! `AuditService` serves.
//!
//! Layout:
//! - `types`: requests, rows, pages and events (plain data);
//! - `validate`: the contract's limits, checked here before any backend runs;
//! - `cursor`: page sizes and opaque page tokens (the same on both backends);
//! - `location`: `--store` parsed (`sqlite:PATH` or `postgres://...`);
//! - SQLite: `schema` (connection settings, tables, `PRAGMA user_version`),
//!   `writer` (the one writer thread and its group commit), `write_ops` (what
//!   each write does in its savepoint; its row builders and repeat-or-refuse
//!   rule serve PostgreSQL too), `reader` and `queries` (read-only
//!   connections and the SELECTs);
//! - `postgres`: the PostgreSQL backend (pool, one transaction per write,
//!   `LISTEN`/`NOTIFY` for watchers across replicas);
//! - `chain`: the hash chain's encoding (v1), SHA-256 and the walk that
//!   verifies a session; `links` (SQLite) and `postgres::links` write and
//!   read the chain columns inside each backend's transactions;
//! - `checkpoint`: the signed checkpoints (the statement, when one is due,
//!   the keys a verifier trusts, the seal `GetSession` answers);
//!   [`verify_sqlite_file`] is the offline verifier's entry;
//! - `clock` and `error`: timestamps and the one error enum.
//!
//! The two backends are an enum ([`AuditStore`] matches on it), not a trait
//! object: there are exactly two, known here; their methods are async and
//! generic over the write (no boxing, no `async-trait`); and everything that
//! is not storage (validation, paging, tokens, the event feed) stays in one
//! place above the match, so both answer the same contract.
//!
//! An OK reply to a write means it is durable. After each commit, new
//! messages and session ends are published, in commit order, to every
//! receiver of [`AuditStore::subscribe`] (with PostgreSQL: on every replica).

mod chain;
mod checkpoint;
mod clock;
mod cursor;
mod error;
mod links;
mod location;
mod postgres;
mod queries;
mod reader;
mod schema;
mod types;
mod validate;
mod write_ops;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::broadcast;

pub use chain::{Break, Hash, RowKind, RowRef, Verification, hex};
pub use checkpoint::{
    Checkpoint, CheckpointBreak, DEFAULT_CHECKPOINT_EVERY, Integrity, Rules, Seal, ring_keys,
    statement as checkpoint_statement,
};
pub use clock::Clock;
pub use cursor::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use error::{ErrorKind, StoreError};
pub use location::StoreLocation;
pub use types::{
    AgentUsage, Committed, EndSession, MessageRow, NewMessage, NewSession, NewSessionEvent,
    NewToolUsage, NewTurn, Page, PageRequest, SessionEventRow, SessionRow, SessionStatus,
    SessionUsage, Synchronous, TokenCounts, ToolUsageRow, TurnRows, UsageTotals,
};
pub use validate::{
    MAX_EVENT_KIND_CHARS, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_ROLE_CHARS,
    MAX_TOOL_CALLS_PER_TURN, MAX_TRACE_ID_CHARS, MAX_TURN_TOKENS,
};

use cursor::{IdListing, SessionCursor, into_page, page_size};
use postgres::{Listed, PgBackend, PgWrite};
use reader::ReadPool;
use writer::WriterHandle;

/// The default limit on a message, tool parameters, tool result or event detail: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The default number of read-only connections (SQLite) or pooled connections (PostgreSQL).
pub const DEFAULT_READ_CONNECTIONS: usize = 4;
/// The default size of the PostgreSQL connection pool.
pub const DEFAULT_POSTGRES_CONNECTIONS: usize = 16;
/// How many committed events a slow subscriber may fall behind before it lags.
const EVENT_CAPACITY: usize = 1024;

/// How to open an [`AuditStore`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The backend: a SQLite file (created with its schema if missing) or a
    /// PostgreSQL database (its schema created or migrated on start).
    pub location: StoreLocation,
    /// The most bytes of a message, tool parameters, tool result or event detail.
    pub max_message_bytes: usize,
    /// SQLite only: caps the file at this many pages (`PRAGMA max_page_count`); `None`: no cap.
    pub max_db_pages: Option<u64>,
    /// SQLite: how many read-only connections serve reads (at least one is
    /// opened). PostgreSQL: ignored; see `postgres_connections`.
    pub read_connections: usize,
    /// PostgreSQL only: the most pooled connections (reads and writes).
    pub postgres_connections: usize,
    /// Where timestamps come from.
    pub clock: Clock,
    /// SQLite only: whether each commit fsyncs (FULL, the default) or not
    /// (NORMAL). PostgreSQL commits as the server is configured (by default
    /// every commit is flushed).
    pub synchronous: Synchronous,
    /// How many `WatchSession` streams the service serves at once (the
    /// service enforces it; it travels here with the rest of the config).
    pub watchers: crate::WatchLimits,
    /// Whether sessions are chained, the key that signs their checkpoints
    /// and how often (by default a key made for this process).
    pub integrity: Integrity,
}

impl StoreConfig {
    /// A configuration for the SQLite file at `path` with default limits and the system clock.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig::at(StoreLocation::Sqlite(path.into()))
    }

    /// A configuration for the PostgreSQL database at `url` with default limits.
    pub fn postgres(url: impl Into<String>) -> Self {
        StoreConfig::at(StoreLocation::Postgres(url.into()))
    }

    /// A configuration for `location` with default limits and the system clock.
    pub fn at(location: StoreLocation) -> Self {
        StoreConfig {
            location,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_db_pages: None,
            read_connections: DEFAULT_READ_CONNECTIONS,
            postgres_connections: DEFAULT_POSTGRES_CONNECTIONS,
            clock: Clock::system(),
            synchronous: Synchronous::Full,
            watchers: crate::WatchLimits::default(),
            integrity: Integrity::ephemeral(),
        }
    }
}

/// Verifies `session` (or every session, oldest first) of the Audit SQLite
/// file at `path` under `rules`, read-only and without the service: the
/// offline verifier. A file that is not an Audit store, or one from before
/// the chain (schema v5 or older, never opened by a chaining Audit), is
/// refused with what to do.
pub fn verify_sqlite_file(
    path: &std::path::Path,
    session: Option<&str>,
    rules: &Rules,
) -> Result<Vec<(String, Verification)>, StoreError> {
    if !path.is_file() {
        return Err(StoreError::invalid("file", "does not exist"));
    }
    let conn = schema::open_reader(path)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 0 {
        return Err(StoreError::invalid("file", "is not an Audit database"));
    }
    if version < schema::CHAIN_VERSION {
        return Err(StoreError::invalid(
            "file",
            format!(
                "has schema version {version}, from before the hash chain: start heist-audit \
                 on it once to migrate (its rows are then reported unchained)"
            ),
        ));
    }
    let ids = match session {
        Some(id) => {
            validate::session_id(id)?;
            vec![id.to_owned()]
        }
        None => queries::session_ids_oldest_first(&conn)?,
    };
    ids.into_iter()
        .map(|id| links::verify(&conn, &id, rules).map(|found| (id, found)))
        .collect()
}

/// A cheap-to-clone handle to the store; the backend stops when the last
/// handle is dropped or [`AuditStore::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where rows are stored.
    backend: Backend,
    /// Hands out subscriptions to committed events (the backend holds a clone to send).
    events: broadcast::Sender<Committed>,
    /// The configured limit on message, tool parameter, tool result and event detail bytes.
    max_message_bytes: usize,
    /// The chain switch, the checkpoint signer and the trusted keys.
    integrity: Integrity,
}

/// The storage behind the handle (see the module doc for why an enum).
#[derive(Debug)]
enum Backend {
    /// A SQLite file: one writer thread, a pool of read-only connections.
    Sqlite {
        /// Queues writes to the writer thread.
        writer: WriterHandle,
        /// Serves reads without waiting for writes.
        readers: Arc<ReadPool>,
    },
    /// A PostgreSQL database shared by any number of replicas.
    Postgres(PgBackend),
}

impl AuditStore {
    /// Opens (creating or migrating) a SQLite store and starts its writer
    /// thread; blocks while it opens. A PostgreSQL location is refused: use
    /// [`Self::connect`].
    ///
    /// Fails with `SchemaTooNew` for a file written by a newer build, and with
    /// `Unavailable` when the file cannot be opened or written.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let StoreLocation::Sqlite(path) = &config.location else {
            return Err(StoreError::invalid(
                "store",
                "a PostgreSQL store is opened with AuditStore::connect",
            ));
        };
        let conn = schema::open_writer(path, config.max_db_pages, config.synchronous)?;
        let readers = (0..config.read_connections.max(1))
            .map(|_| schema::open_reader(path))
            .collect::<Result<Vec<Connection>, _>>()?;
        let readers = ReadPool::new(readers)
            .ok_or_else(|| StoreError::internal("no read connection was opened"))?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let writer =
            WriterHandle::spawn(conn, config.clock, config.integrity.clone(), events.clone())?;
        Ok(AuditStore::with(
            Backend::Sqlite { writer, readers },
            events,
            config.max_message_bytes,
            config.integrity,
        ))
    }

    /// Opens the store at `config.location`, whichever the backend: SQLite
    /// as [`Self::open`] (off the async workers); PostgreSQL by connecting
    /// (an unreachable server or a refused login fails with `Unavailable`,
    /// naming the server and the cause), migrating the schema (a newer one
    /// fails with `SchemaTooNew`) and listening for other replicas' commits.
    pub async fn connect(config: StoreConfig) -> Result<Self, StoreError> {
        match &config.location {
            StoreLocation::Sqlite(_) => tokio::task::spawn_blocking(move || Self::open(config))
                .await
                .map_err(|error| {
                    StoreError::internal(format!("opening the store panicked: {error}"))
                })?,
            StoreLocation::Postgres(url) => {
                let (events, _) = broadcast::channel(EVENT_CAPACITY);
                let backend = PgBackend::connect(
                    url,
                    config.postgres_connections,
                    config.clock.clone(),
                    config.integrity.clone(),
                    events.clone(),
                )
                .await?;
                Ok(AuditStore::with(
                    Backend::Postgres(backend),
                    events,
                    config.max_message_bytes,
                    config.integrity,
                ))
            }
        }
    }

    fn with(
        backend: Backend,
        events: broadcast::Sender<Committed>,
        max_message_bytes: usize,
        integrity: Integrity,
    ) -> Self {
        AuditStore {
            inner: Arc::new(Inner {
                backend,
                events,
                max_message_bytes,
                integrity,
            }),
        }
    }

    /// Runs a validated write on the backend.
    async fn write<W: PgWrite>(&self, write: W) -> Result<W::Output, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer.submit(write).await,
            Backend::Postgres(pg) => pg.submit(write).await,
        }
    }

    /// Creates a session; the same ID with the same metadata returns the stored
    /// session, with other metadata fails with `SessionExists`.
    pub async fn create_session(&self, new: NewSession) -> Result<SessionRow, StoreError> {
        validate::new_session(&new)?;
        self.write(new).await
    }

    /// Stores a message in an active session; a repeated idempotency key
    /// returns the stored row (same content) or fails with `IdempotencyConflict`.
    pub async fn store_message(&self, new: NewMessage) -> Result<MessageRow, StoreError> {
        validate::new_message(&new, self.inner.max_message_bytes)?;
        self.write(new).await
    }

    /// Stores a tool call in an active session, idempotent like [`Self::store_message`].
    pub async fn store_tool_usage(&self, new: NewToolUsage) -> Result<ToolUsageRow, StoreError> {
        validate::new_tool_usage(&new, self.inner.max_message_bytes)?;
        self.write(new).await
    }

    /// Stores a turn's message and tool calls in one savepoint, all or
    /// nothing: each row is idempotent on its own key as in
    /// [`Self::store_message`] and [`Self::store_tool_usage`], and if any row
    /// is refused (e.g. `IdempotencyConflict`, `SessionEnded`) none is stored.
    /// Watchers see the message as if it came from [`Self::store_message`].
    pub async fn store_turn(&self, new: NewTurn) -> Result<TurnRows, StoreError> {
        validate::new_turn(&new, self.inner.max_message_bytes)?;
        self.write(new).await
    }

    /// Stores a session event in a session of any status, idempotent like
    /// [`Self::store_message`]; an unknown session fails with `SessionNotFound`.
    pub async fn store_session_event(
        &self,
        new: NewSessionEvent,
    ) -> Result<SessionEventRow, StoreError> {
        validate::new_session_event(&new, self.inner.max_message_bytes)?;
        self.write(new).await
    }

    /// Ends a session; ending it again the same way returns it unchanged,
    /// another way fails with `EndedDifferently`.
    pub async fn end_session(&self, end: EndSession) -> Result<SessionRow, StoreError> {
        validate::end_session(&end)?;
        self.write(end).await
    }

    /// Walks the session's hash chain (issue 18) in chain order and checks
    /// its signed checkpoints against this store's keys, in one snapshot:
    /// intact, unchained (started before schema v6), or the first row that
    /// does not match; an unknown session fails with `SessionNotFound`.
    pub async fn verify_session(&self, session_id: &str) -> Result<Verification, StoreError> {
        validate::session_id(session_id)?;
        let rules = self.inner.integrity.rules();
        match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                let session_id = session_id.to_owned();
                // One read transaction: one snapshot of every table.
                readers
                    .read(move |conn| links::verify(conn, &session_id, &rules))
                    .await
            }
            Backend::Postgres(pg) => pg.verify_session(session_id, &rules).await,
        }
    }

    /// The session's seal as stored: its chain's length and head and its
    /// latest checkpoint, read without walking the chain (`None` for an
    /// unchained session); an unknown session fails with `SessionNotFound`.
    pub async fn session_seal(&self, session_id: &str) -> Result<Option<Seal>, StoreError> {
        validate::session_id(session_id)?;
        match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                let session_id = session_id.to_owned();
                readers
                    .read(move |conn| links::seal(conn, &session_id))
                    .await
            }
            Backend::Postgres(pg) => pg.session_seal(session_id).await,
        }
    }

    /// How this store protects its chains: its checkpoint keys and interval.
    pub fn integrity(&self) -> &Integrity {
        &self.inner.integrity
    }

    /// One session with its message and tool usage counts.
    pub async fn get_session(&self, session_id: &str) -> Result<SessionRow, StoreError> {
        validate::session_id(session_id)?;
        match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                let session_id = session_id.to_owned();
                readers
                    .read(move |conn| queries::existing_session(conn, &session_id))
                    .await
            }
            Backend::Postgres(pg) => pg.session(session_id).await,
        }
    }

    /// A session's LLM token usage summed per agent (by name) and in total;
    /// an unknown session fails with `SessionNotFound`.
    pub async fn session_usage(&self, session_id: &str) -> Result<SessionUsage, StoreError> {
        validate::session_id(session_id)?;
        let agents = match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                let session_id = session_id.to_owned();
                readers
                    .read(move |conn| {
                        queries::session_status(conn, &session_id)?;
                        queries::usage_per_agent(conn, &session_id)
                    })
                    .await?
            }
            Backend::Postgres(pg) => pg.usage_per_agent(session_id).await?,
        };
        Ok(SessionUsage::from_agents(session_id, agents))
    }

    /// A page of sessions, newest first, optionally only those with `status`.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
        page: PageRequest,
    ) -> Result<Page<SessionRow>, StoreError> {
        let limit = page_size(page.page_size.into())?;
        let after = SessionCursor::parse(&page.page_token)?;
        let rows = match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                readers
                    .read(move |conn| queries::sessions(conn, status, after.as_ref(), limit + 1))
                    .await?
            }
            Backend::Postgres(pg) => pg.sessions(status, after.as_ref(), limit + 1).await?,
        };
        Ok(into_page(rows, limit, SessionCursor::token))
    }

    /// A page of a session's messages, in storage order.
    pub async fn list_messages(
        &self,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<MessageRow>, StoreError> {
        self.list_by_id(
            IdListing::Messages,
            session_id,
            page,
            queries::messages,
            |row| row.id,
        )
        .await
    }

    /// A page of a session's tool calls, in storage order.
    pub async fn list_tool_usage(
        &self,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<ToolUsageRow>, StoreError> {
        self.list_by_id(
            IdListing::ToolUsage,
            session_id,
            page,
            queries::tool_usage,
            |row| row.id,
        )
        .await
    }

    /// A page of a session's events, in storage order.
    pub async fn list_session_events(
        &self,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<SessionEventRow>, StoreError> {
        self.list_by_id(
            IdListing::SessionEvents,
            session_id,
            page,
            queries::session_events,
            |row| row.id,
        )
        .await
    }

    /// Up to `limit` (0 means 100, at most 1000) of a session's messages with
    /// an ID above `after_id`, in storage order: the backfill of a watch.
    pub async fn messages_after(
        &self,
        session_id: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError> {
        validate::session_id(session_id)?;
        if after_id < 0 {
            return Err(StoreError::Negative {
                field: "after_message_id",
                value: after_id,
            });
        }
        let limit = page_size(i64::try_from(limit).unwrap_or(i64::MAX))?;
        self.rows_after(session_id, after_id, limit, queries::messages)
            .await
    }

    /// Receives every message and session end committed from now on, in
    /// commit order (with PostgreSQL: by any replica), and [`Committed::Gap`]
    /// when some may have been missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.inner.events.subscribe()
    }

    /// How many transactions this handle's backend has committed (with
    /// SQLite each holds a batch of writes; with PostgreSQL one write).
    pub fn commit_count(&self) -> u64 {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer.commit_count(),
            Backend::Postgres(pg) => pg.commit_count(),
        }
    }

    /// True when the store can serve: always for SQLite (a file), and for
    /// PostgreSQL while a connection answers (the health probe asks this).
    pub async fn is_reachable(&self) -> bool {
        match &self.inner.backend {
            Backend::Sqlite { .. } => true,
            Backend::Postgres(postgres) => postgres.is_reachable().await,
        }
    }

    /// Which backend this store runs on: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Stops accepting writes after every queued one has committed (SQLite:
    /// joins the writer thread; PostgreSQL: stops listening). Writes after
    /// this fail as unavailable; reads still work.
    ///
    /// This blocks the calling thread for as long as the queued writes take.
    pub fn shutdown(&self) {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => writer.shutdown(),
            Backend::Postgres(pg) => pg.shutdown(),
        }
    }

    /// Pages through a session's rows of one ID-ordered listing.
    async fn list_by_id<T: Listed>(
        &self,
        listing: IdListing,
        session_id: &str,
        page: PageRequest,
        fetch: queries::FetchAfter<T>,
        id: fn(&T) -> i64,
    ) -> Result<Page<T>, StoreError> {
        validate::session_id(session_id)?;
        let limit = page_size(page.page_size.into())?;
        let after = listing.after(&page.page_token)?;
        let rows = self.rows_after(session_id, after, limit + 1, fetch).await?;
        Ok(into_page(rows, limit, |row| listing.token(id(row))))
    }

    /// Up to `limit` of an existing session's rows after `after_id`, in ID order.
    async fn rows_after<T: Listed>(
        &self,
        session_id: &str,
        after_id: i64,
        limit: usize,
        fetch: queries::FetchAfter<T>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite { readers, .. } => {
                let session_id = session_id.to_owned();
                readers
                    .read(move |conn| {
                        queries::session_status(conn, &session_id)?;
                        fetch(conn, &session_id, after_id, limit)
                    })
                    .await
            }
            Backend::Postgres(pg) => pg.rows_after(session_id, after_id, limit).await,
        }
    }
}
