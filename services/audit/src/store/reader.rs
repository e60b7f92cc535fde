//! The pool of read-only connections. With WAL, readers see the last commit
//! and never wait for the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tracing::Span;

use super::error::StoreError;

/// A round robin of read-only connections, used on tokio's blocking threads.
#[derive(Debug)]
pub(crate) struct ReadPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    /// A pool of the given connections; `None` when there are none.
    pub(crate) fn new(connections: Vec<Connection>) -> Option<Arc<Self>> {
        if connections.is_empty() {
            return None;
        }
        Some(Arc::new(ReadPool {
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }))
    }

    /// Runs `read` on a pooled connection in one read transaction (one
    /// consistent snapshot), off the async workers, in the caller's span.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| pool.read_now(read)))
            .await
            .map_err(|error| StoreError::internal(format!("audit read task failed: {error}")))?
    }

    fn read_now<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let conn = self.connections[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = conn.unchecked_transaction()?;
        read(&snapshot)
        // Dropping the snapshot ends the read transaction.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;
    use crate::store::types::Synchronous;

    #[test]
    fn a_pool_needs_at_least_one_connection() {
        assert!(ReadPool::new(Vec::new()).is_none());
    }

    #[tokio::test]
    async fn reads_run_while_the_writer_holds_a_write_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = schema::open_writer(&path, None, Synchronous::Full).unwrap();
        writer
            .execute(
                "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 't')",
                [],
            )
            .unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute(
                "INSERT INTO sessions (session_id, start_time) VALUES ('s2', 't')",
                [],
            )
            .unwrap();

        let pool = ReadPool::new(vec![schema::open_reader(&path).unwrap()]).unwrap();
        let count = pool
            .read(|conn| {
                Ok(conn.query_row("SELECT COUNT(*) FROM sessions", [], |row| {
                    row.get::<_, i64>(0)
                })?)
            })
            .await
            .unwrap();
        assert_eq!(
            count, 1,
            "the reader sees the last commit, not the open write"
        );
        writer.execute_batch("COMMIT").unwrap();
    }
}
