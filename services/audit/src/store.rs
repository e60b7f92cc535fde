//! The audit store: sessions, messages, tool usage and session events in
//! SQLite, behind the API the gRPC `AuditService` serves.
//!
//! Layout:
//! - `types`: requests, rows, pages and events (plain data);
//! - `validate`: the contract's limits, checked in the caller before queuing;
//! - `schema`: connection settings, tables and migrations (`PRAGMA user_version`);
//! - `writer`: the one writer thread and its group commit;
//! - `write_ops`: what each write does inside its savepoint;
//! - `reader` and `queries`: the read-only connection pool and the SELECTs;
//! - `cursor`: page sizes and opaque page tokens;
//! - `clock` and `error`: timestamps and the one error enum.
//!
//! Writes go to one thread that owns the write connection and commits
//! concurrent writes together; an OK reply means the write is durable. Reads
//! run on a pool of read-only connections and never wait for writes. After
//! each commit, new messages and session ends are published, in commit order,
//! to every receiver of [`AuditStore::subscribe`].

mod clock;
mod cursor;
mod error;
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

pub use clock::Clock;
pub use cursor::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use error::{ErrorKind, StoreError};
pub use types::{
    Committed, EndSession, MessageRow, NewMessage, NewSession, NewSessionEvent, NewToolUsage,
    NewTurn, Page, PageRequest, SessionEventRow, SessionRow, SessionStatus, Synchronous,
    ToolUsageRow, TurnRows,
};
pub use validate::{
    MAX_EVENT_KIND_CHARS, MAX_METADATA_BYTES, MAX_NAME_CHARS, MAX_ROLE_CHARS,
    MAX_TOOL_CALLS_PER_TURN, MAX_TRACE_ID_CHARS,
};

use cursor::{IdListing, SessionCursor, into_page, page_size};
use reader::ReadPool;
use writer::WriterHandle;

/// The default limit on a message, tool parameters, tool result or event detail: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The default number of read-only connections.
pub const DEFAULT_READ_CONNECTIONS: usize = 4;
/// How many committed events a slow subscriber may fall behind before it lags.
const EVENT_CAPACITY: usize = 1024;

/// How to open an [`AuditStore`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The SQLite file; created with its schema if missing.
    pub path: PathBuf,
    /// The most bytes of a message, tool parameters, tool result or event detail.
    pub max_message_bytes: usize,
    /// Caps the file at this many pages (`PRAGMA max_page_count`); `None`: no cap.
    pub max_db_pages: Option<u64>,
    /// How many read-only connections serve reads (at least one is opened).
    pub read_connections: usize,
    /// Where timestamps come from.
    pub clock: Clock,
    /// Whether each commit fsyncs (FULL, the default) or not (NORMAL).
    pub synchronous: Synchronous,
    /// How many `WatchSession` streams the service serves at once (the
    /// service enforces it; it travels here with the rest of the config).
    pub watchers: crate::WatchLimits,
}

impl StoreConfig {
    /// A configuration for the file at `path` with default limits and the system clock.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_db_pages: None,
            read_connections: DEFAULT_READ_CONNECTIONS,
            clock: Clock::system(),
            synchronous: Synchronous::Full,
            watchers: crate::WatchLimits::default(),
        }
    }
}

/// A cheap-to-clone handle to the store; the writer stops when the last handle
/// is dropped or [`AuditStore::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Queues writes to the writer thread.
    writer: WriterHandle,
    /// Serves reads without waiting for writes.
    readers: Arc<ReadPool>,
    /// Hands out subscriptions to committed events (the writer holds a clone to send).
    events: broadcast::Sender<Committed>,
    /// The configured limit on message, tool parameter, tool result and event detail bytes.
    max_message_bytes: usize,
}

impl AuditStore {
    /// Opens (creating or migrating) the database and starts the writer thread.
    ///
    /// Fails with `SchemaTooNew` for a file written by a newer build, and with
    /// `Unavailable` when the file cannot be opened or written.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let conn = schema::open_writer(&config.path, config.max_db_pages, config.synchronous)?;
        let readers = (0..config.read_connections.max(1))
            .map(|_| schema::open_reader(&config.path))
            .collect::<Result<Vec<Connection>, _>>()?;
        let readers = ReadPool::new(readers)
            .ok_or_else(|| StoreError::internal("no read connection was opened"))?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let writer = WriterHandle::spawn(conn, config.clock, events.clone())?;
        Ok(AuditStore {
            inner: Arc::new(Inner {
                writer,
                readers,
                events,
                max_message_bytes: config.max_message_bytes,
            }),
        })
    }

    /// Creates a session; the same ID with the same metadata returns the stored
    /// session, with other metadata fails with `SessionExists`.
    pub async fn create_session(&self, new: NewSession) -> Result<SessionRow, StoreError> {
        validate::new_session(&new)?;
        self.inner.writer.submit(new).await
    }

    /// Stores a message in an active session; a repeated idempotency key
    /// returns the stored row (same content) or fails with `IdempotencyConflict`.
    pub async fn store_message(&self, new: NewMessage) -> Result<MessageRow, StoreError> {
        validate::new_message(&new, self.inner.max_message_bytes)?;
        self.inner.writer.submit(new).await
    }

    /// Stores a tool call in an active session, idempotent like [`Self::store_message`].
    pub async fn store_tool_usage(&self, new: NewToolUsage) -> Result<ToolUsageRow, StoreError> {
        validate::new_tool_usage(&new, self.inner.max_message_bytes)?;
        self.inner.writer.submit(new).await
    }

    /// Stores a turn's message and tool calls in one savepoint, all or
    /// nothing: each row is idempotent on its own key as in
    /// [`Self::store_message`] and [`Self::store_tool_usage`], and if any row
    /// is refused (e.g. `IdempotencyConflict`, `SessionEnded`) none is stored.
    /// Watchers see the message as if it came from [`Self::store_message`].
    pub async fn store_turn(&self, new: NewTurn) -> Result<TurnRows, StoreError> {
        validate::new_turn(&new, self.inner.max_message_bytes)?;
        self.inner.writer.submit(new).await
    }

    /// Stores a session event in a session of any status, idempotent like
    /// [`Self::store_message`]; an unknown session fails with `SessionNotFound`.
    pub async fn store_session_event(
        &self,
        new: NewSessionEvent,
    ) -> Result<SessionEventRow, StoreError> {
        validate::new_session_event(&new, self.inner.max_message_bytes)?;
        self.inner.writer.submit(new).await
    }

    /// Ends a session; ending it again the same way returns it unchanged,
    /// another way fails with `EndedDifferently`.
    pub async fn end_session(&self, end: EndSession) -> Result<SessionRow, StoreError> {
        validate::end_session(&end)?;
        self.inner.writer.submit(end).await
    }

    /// One session with its message and tool usage counts.
    pub async fn get_session(&self, session_id: &str) -> Result<SessionRow, StoreError> {
        validate::session_id(session_id)?;
        let session_id = session_id.to_owned();
        self.inner
            .readers
            .read(move |conn| queries::existing_session(conn, &session_id))
            .await
    }

    /// A page of sessions, newest first, optionally only those with `status`.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
        page: PageRequest,
    ) -> Result<Page<SessionRow>, StoreError> {
        let limit = page_size(page.page_size.into())?;
        let after = SessionCursor::parse(&page.page_token)?;
        let rows = self
            .inner
            .readers
            .read(move |conn| queries::sessions(conn, status, after.as_ref(), limit + 1))
            .await?;
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
        let session_id = session_id.to_owned();
        self.inner
            .readers
            .read(move |conn| {
                queries::session_status(conn, &session_id)?;
                queries::messages(conn, &session_id, after_id, limit)
            })
            .await
    }

    /// Receives every message and session end committed from now on, in commit order.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.inner.events.subscribe()
    }

    /// How many transactions the writer has committed (each holds a batch of writes).
    pub fn commit_count(&self) -> u64 {
        self.inner.writer.commit_count()
    }

    /// Stops the writer after it has committed every queued write, and waits for
    /// its thread to exit. Writes after this fail as unavailable; reads still work.
    ///
    /// This blocks the calling thread for as long as the queued writes take.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }

    /// Pages through a session's rows of one ID-ordered listing.
    async fn list_by_id<T: Send + 'static>(
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
        let session_id = session_id.to_owned();
        let rows = self
            .inner
            .readers
            .read(move |conn| {
                queries::session_status(conn, &session_id)?;
                fetch(conn, &session_id, after, limit + 1)
            })
            .await?;
        Ok(into_page(rows, limit, |row| listing.token(id(row))))
    }
}
