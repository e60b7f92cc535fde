//! The database file: connection settings, the schema and its migrations.
//!
//! The tables keep the seed's names and columns, so the seed's SQL
//! (`SELECT * FROM messages WHERE session_id = ?`) works on the file, and add
//! the columns the contract needs. The schema version lives in
//! `PRAGMA user_version`; [`MIGRATIONS`] lists the steps from each version to
//! the next, and opening a file applies the missing ones in one transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::error::StoreError;
use super::types::Synchronous;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The steps from version `i` to `i + 1`; the file's `user_version` is how many ran.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// Version 1: the seed's three tables, extended, with their indexes.
const V1: &str = "
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time   TEXT,
    num_turns  INTEGER NOT NULL DEFAULT 0,
    status     TEXT NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'completed', 'failed', 'interrupted')),
    metadata   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_newest ON sessions (start_time DESC, session_id DESC);
CREATE INDEX sessions_by_status_newest ON sessions (status, start_time DESC, session_id DESC);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES sessions (session_id),
    turn_id         INTEGER NOT NULL,
    agent_name      TEXT NOT NULL,
    agent_role      TEXT NOT NULL,
    message         TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    is_error        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL DEFAULT '',
    trace_id        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_by_session ON messages (session_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (session_id, idempotency_key)
    WHERE idempotency_key <> '';

CREATE TABLE tool_usage (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES sessions (session_id),
    turn_id         INTEGER NOT NULL,
    agent_name      TEXT NOT NULL,
    tool_name       TEXT NOT NULL,
    tool_params     TEXT NOT NULL,
    tool_result     TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    success         INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL DEFAULT '',
    trace_id        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tool_usage_by_session ON tool_usage (session_id, id);
CREATE UNIQUE INDEX tool_usage_idempotency ON tool_usage (session_id, idempotency_key)
    WHERE idempotency_key <> '';
";

/// Version 2: `session_events`, what happened to a run (breaker state changes,
/// spool replays, resumes), idempotent by key like the other writes.
const V2: &str = "
CREATE TABLE session_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES sessions (session_id),
    kind            TEXT NOT NULL,
    detail          TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX session_events_by_session ON session_events (session_id, id);
CREATE UNIQUE INDEX session_events_idempotency ON session_events (session_id, idempotency_key)
    WHERE idempotency_key <> '';
";

/// Version 3: `written_by` on every table, the client (token `sub`) that wrote
/// the row (for a session: created it). Rows from before stay NULL (unknown).
const V3: &str = "
ALTER TABLE sessions ADD COLUMN written_by TEXT;
ALTER TABLE messages ADD COLUMN written_by TEXT;
ALTER TABLE tool_usage ADD COLUMN written_by TEXT;
ALTER TABLE session_events ADD COLUMN written_by TEXT;
";

/// Version 4: `written_via` on every table, beside `written_by`: the identity
/// the writer's TLS client certificate proved (mutual TLS only). Rows from
/// before, and rows written over plaintext or server-only TLS, stay NULL.
const V4: &str = "
ALTER TABLE sessions ADD COLUMN written_via TEXT;
ALTER TABLE messages ADD COLUMN written_via TEXT;
ALTER TABLE tool_usage ADD COLUMN written_via TEXT;
ALTER TABLE session_events ADD COLUMN written_via TEXT;
";

/// Version 5: each message's LLM token usage (its turn's rounds summed):
/// input and output tokens, NULL when unknown (rows from before, the offline
/// backend), and whether the counts are estimated.
const V5: &str = "
ALTER TABLE messages ADD COLUMN input_tokens INTEGER;
ALTER TABLE messages ADD COLUMN output_tokens INTEGER;
ALTER TABLE messages ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0;
";

/// Version 6: the hash chain of each session (issue 18; the encoding is in
/// the `chain` module): on every table, a row's position in its session's
/// chain (`chain_seq`), the previous row's hash and its own. The session
/// start is the `sessions` row (position 0); its end has the `end_*`
/// columns; `chain_head` and `chain_next` are the hash of the session's last
/// row and the next position, which the writers extend. Rows from before
/// stay NULL: unchained, not tampered. `checkpoints` holds the signed heads
/// (the `checkpoint` module); `signed_next` is the number of rows the
/// session's latest checkpoint covers.
const V6: &str = "
ALTER TABLE sessions ADD COLUMN chain_seq INTEGER;
ALTER TABLE sessions ADD COLUMN prev_hash BLOB;
ALTER TABLE sessions ADD COLUMN row_hash BLOB;
ALTER TABLE messages ADD COLUMN chain_seq INTEGER;
ALTER TABLE messages ADD COLUMN prev_hash BLOB;
ALTER TABLE messages ADD COLUMN row_hash BLOB;
ALTER TABLE tool_usage ADD COLUMN chain_seq INTEGER;
ALTER TABLE tool_usage ADD COLUMN prev_hash BLOB;
ALTER TABLE tool_usage ADD COLUMN row_hash BLOB;
ALTER TABLE session_events ADD COLUMN chain_seq INTEGER;
ALTER TABLE session_events ADD COLUMN prev_hash BLOB;
ALTER TABLE session_events ADD COLUMN row_hash BLOB;
ALTER TABLE sessions ADD COLUMN end_seq INTEGER;
ALTER TABLE sessions ADD COLUMN end_prev_hash BLOB;
ALTER TABLE sessions ADD COLUMN end_hash BLOB;
ALTER TABLE sessions ADD COLUMN chain_head BLOB;
ALTER TABLE sessions ADD COLUMN chain_next INTEGER;
ALTER TABLE sessions ADD COLUMN signed_next INTEGER;
CREATE TABLE checkpoints (
    session_id  TEXT NOT NULL REFERENCES sessions (session_id),
    rows        INTEGER NOT NULL,
    head        BLOB NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BLOB NOT NULL,
    signed_at   TEXT NOT NULL,
    PRIMARY KEY (session_id, rows)
);
";

/// The first schema version with the hash chain.
pub(crate) const CHAIN_VERSION: i64 = 6;

/// The schema version this build creates and reads.
pub(crate) fn current_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Opens the one writing connection, creating and migrating the file as needed.
///
/// `synchronous` is FULL by default: with WAL, every COMMIT fsyncs the log, so
/// an OK reply means the row survives a power cut. That fsync is the cost of
/// each commit, which is why the writer groups concurrent writes into one
/// transaction: one fsync serves a whole batch. NORMAL skips the fsync at
/// commit: an OK row survives any crash of the process, but the last commits
/// may be lost if the machine loses power (the file is never corrupted).
///
/// `max_db_pages` caps the file with `PRAGMA max_page_count` (tests use it to
/// fill the "disk"); `None` keeps SQLite's default.
pub(crate) fn open_writer(
    path: &Path,
    max_db_pages: Option<u64>,
    synchronous: Synchronous,
) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::unavailable(format!(
            "cannot use write-ahead logging for {}: journal mode stays {mode}",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    if let Some(pages) = max_db_pages {
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        let _: i64 =
            conn.pragma_update_and_check(None, "max_page_count", pages, |row| row.get(0))?;
    }
    Ok(conn)
}

/// Opens a read-only connection to a file `open_writer` has prepared.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Brings the file to [`current_version`] in one transaction; a newer file is refused.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = current_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| StoreError::internal(format!("negative schema version {found}")))?;
    if done == MIGRATIONS.len() {
        return Ok(());
    }
    for step in &MIGRATIONS[done..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    tracing::info!(from = found, to = supported, "audit schema migrated");
    Ok(())
}

/// Writes the file as an older build would have: the first `version`
/// migrations, and `user_version` set to `version`.
#[cfg(test)]
pub(crate) fn create_at_version(path: &Path, version: usize) -> Result<(), StoreError> {
    let conn = Connection::open(path)?;
    for step in MIGRATIONS.iter().take(version) {
        conn.execute_batch(step)?;
    }
    conn.pragma_update(
        None,
        "user_version",
        i64::try_from(version).unwrap_or(i64::MAX),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_empty_file_gets_the_schema_and_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("audit.db"), None, Synchronous::Full).unwrap();
        assert_eq!(user_version(&conn), 6);
        assert_eq!(
            table_names(&conn),
            [
                "checkpoints",
                "messages",
                "session_events",
                "sessions",
                "sqlite_sequence",
                "tool_usage"
            ]
        );
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
        let foreign_keys: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        assert!(foreign_keys);
    }

    #[test]
    fn opening_a_current_file_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let conn = open_writer(&path, None, Synchronous::Full).unwrap();
        conn.execute(
            "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 'now')",
            [],
        )
        .unwrap();
        drop(conn);
        let conn = open_writer(&path, None, Synchronous::Full).unwrap();
        assert_eq!(user_version(&conn), 6);
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM sessions", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn a_file_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 7)
            .unwrap();
        assert_eq!(
            open_writer(&path, None, Synchronous::Full).err(),
            Some(StoreError::SchemaTooNew {
                found: 7,
                supported: 6
            })
        );
    }

    #[test]
    fn a_version_1_file_gains_session_events_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        create_at_version(&path, 1).unwrap();
        let v1 = Connection::open(&path).unwrap();
        assert!(!table_names(&v1).contains(&"session_events".to_owned()));
        v1.execute(
            "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 'now')",
            [],
        )
        .unwrap();
        drop(v1);

        let conn = open_writer(&path, None, Synchronous::Full).unwrap();
        assert_eq!(user_version(&conn), 6);
        assert!(table_names(&conn).contains(&"session_events".to_owned()));
        let session: String = conn
            .query_row("SELECT session_id FROM sessions", [], |row| row.get(0))
            .unwrap();
        assert_eq!(session, "s1");
        let insert = "INSERT INTO session_events (session_id, kind, detail, timestamp, \
                      idempotency_key) VALUES ('s1', 'breaker.open', '', 't', ?1)";
        for key in ["", "", "k1"] {
            conn.execute(insert, [key]).unwrap();
        }
        assert!(
            conn.execute(insert, ["k1"]).is_err(),
            "keys are unique per session"
        );
    }

    fn column_names(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const TABLES: [&str; 4] = ["sessions", "messages", "tool_usage", "session_events"];

    #[test]
    fn a_version_2_file_gains_written_by_everywhere_and_keeps_its_rows_with_no_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        create_at_version(&path, 2).unwrap();
        let v2 = Connection::open(&path).unwrap();
        for table in TABLES {
            assert!(!column_names(&v2, table).contains(&"written_by".to_owned()));
        }
        v2.execute_batch(
            "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 'now');
             INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp)
                 VALUES ('s1', 1, 'planner', 'r', 'we go at dawn', 't');
             INSERT INTO tool_usage (session_id, turn_id, agent_name, tool_name, tool_params,
                 tool_result, timestamp, success) VALUES ('s1', 1, 'planner', 'calculator', '1+1', '2', 't', 1);
             INSERT INTO session_events (session_id, kind, detail, timestamp)
                 VALUES ('s1', 'breaker.open', '', 't');",
        )
        .unwrap();
        drop(v2);

        let conn = open_writer(&path, None, Synchronous::Full).unwrap();
        assert_eq!(user_version(&conn), 6);
        for table in TABLES {
            assert!(
                column_names(&conn, table).contains(&"written_by".to_owned()),
                "{table}"
            );
            let (rows, unknown): (i64, i64) = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE written_by IS NULL) FROM {table}"
                    ),
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap();
            assert_eq!(
                (rows, unknown),
                (1, 1),
                "{table}: the old row stays, writer unknown"
            );
        }
        let message: String = conn
            .query_row("SELECT message FROM messages", [], |row| row.get(0))
            .unwrap();
        assert_eq!(message, "we go at dawn");
    }

    #[test]
    fn a_session_event_for_an_unknown_session_is_refused_by_the_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("audit.db"), None, Synchronous::Full).unwrap();
        let result = conn.execute(
            "INSERT INTO session_events (session_id, kind, detail, timestamp) \
             VALUES ('ghost', 'breaker.open', '', 't')",
            [],
        );
        assert!(result.is_err());
    }

    #[test]
    fn a_repeated_idempotency_key_is_refused_by_the_index_but_empty_keys_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("audit.db"), None, Synchronous::Full).unwrap();
        conn.execute(
            "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 'now')",
            [],
        )
        .unwrap();
        let insert = "INSERT INTO messages (session_id, turn_id, agent_name, agent_role, \
                      message, timestamp, idempotency_key) VALUES ('s1', 1, 'a', 'r', 'm', 't', ?1)";
        for key in ["", "", "k1"] {
            conn.execute(insert, [key]).unwrap();
        }
        assert!(conn.execute(insert, ["k1"]).is_err());
    }

    #[test]
    fn a_message_for_an_unknown_session_is_refused_by_the_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("audit.db"), None, Synchronous::Full).unwrap();
        let result = conn.execute(
            "INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, \
             timestamp) VALUES ('ghost', 1, 'a', 'r', 'm', 't')",
            [],
        );
        assert!(result.is_err());
    }

    #[test]
    fn a_reader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let _writer = open_writer(&path, None, Synchronous::Full).unwrap();
        let reader = open_reader(&path).unwrap();
        let error = reader
            .execute(
                "INSERT INTO sessions (session_id, start_time) VALUES ('s1', 'now')",
                [],
            )
            .unwrap_err();
        assert_eq!(
            StoreError::from(error).kind(),
            super::super::ErrorKind::Unavailable
        );
    }
}
