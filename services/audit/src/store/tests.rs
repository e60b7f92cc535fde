//! The store through its public API, each test on a fresh database: the
//! contract tests (`contract!`) run on SQLite and on PostgreSQL (a fresh
//! database on the test binary's shared server); the few SQLite-only tests
//! say why.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

/// A clock that moves one second forward at every reading, from a fixed start.
fn stepping_clock() -> Clock {
    let seconds = Arc::new(AtomicI64::new(1_737_000_000));
    Clock::from_fn(move || {
        Timestamp::from_second(seconds.fetch_add(1, Ordering::Relaxed)).unwrap_or_default()
    })
}

/// The backends every contract test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates one contract test for each backend: `name::sqlite` and
/// `name::postgres` run the same body with `backend` set. A test written
/// outside it is SQLite-only (and says why).
macro_rules! contract {
    ($(#[doc = $doc:literal])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
    (#[multi_thread] async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
}

/// A store on a fresh database of `backend`, and the way to reach under it.
struct Fixture {
    /// Holds the SQLite file (empty for PostgreSQL).
    dir: TempDir,
    location: StoreLocation,
    store: AuditStore,
}

impl Fixture {
    /// The integer the SQL's first column of its first row holds, read
    /// beside the store (a SQL reader's view of the tables).
    async fn count(&self, sql: &str) -> i64 {
        match &self.location {
            StoreLocation::Sqlite(path) => count(&Connection::open(path).unwrap(), sql),
            StoreLocation::Postgres(url) => {
                let client = postgres::raw::connect(url).await;
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// Runs `sql` beside the store.
    async fn execute(&self, sql: &str) {
        match &self.location {
            StoreLocation::Sqlite(path) => {
                Connection::open(path).unwrap().execute_batch(sql).unwrap()
            }
            StoreLocation::Postgres(url) => {
                postgres::raw::connect(url)
                    .await
                    .batch_execute(sql)
                    .await
                    .unwrap();
            }
        }
    }

    /// The schema version the database records.
    async fn schema_version(&self) -> i64 {
        match &self.location {
            StoreLocation::Sqlite(_) => self.count("PRAGMA user_version").await,
            StoreLocation::Postgres(_) => self.count("SELECT version FROM schema_version").await,
        }
    }

    /// Records `version` as the database's schema version.
    async fn set_schema_version(&self, version: i64) {
        match &self.location {
            StoreLocation::Sqlite(_) => {
                self.execute(&format!("PRAGMA user_version = {version}"))
                    .await;
            }
            StoreLocation::Postgres(_) => {
                self.execute(&format!("UPDATE schema_version SET version = {version}"))
                    .await;
            }
        }
    }

    /// How many of the store's four tables exist.
    async fn table_count(&self) -> i64 {
        let names = "('sessions', 'messages', 'tool_usage', 'session_events')";
        match &self.location {
            StoreLocation::Sqlite(_) => {
                self.count(&format!(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN {names}"
                ))
                .await
            }
            StoreLocation::Postgres(_) => {
                self.count(&format!(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_name IN {names}"
                ))
                .await
            }
        }
    }

    /// Opens the same database again (after the store was shut down and dropped).
    async fn reopen(&self) -> Result<AuditStore, StoreError> {
        AuditStore::connect(config(self.location.clone())).await
    }
}

/// A fresh database: a file in `dir`, or a new database on the test binary's
/// shared PostgreSQL (which must start: these tests fail, never skip).
fn fresh_location(backend: Backend, dir: &TempDir) -> StoreLocation {
    match backend {
        Backend::Sqlite => StoreLocation::Sqlite(db_path(dir)),
        Backend::Postgres => {
            let server = heist_engines::PostgresServer::shared()
                .expect("the test PostgreSQL server must start");
            StoreLocation::Postgres(
                server
                    .fresh_database()
                    .expect("a fresh PostgreSQL database"),
            )
        }
    }
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("audit.db")
}

fn config(location: StoreLocation) -> StoreConfig {
    StoreConfig {
        clock: stepping_clock(),
        ..StoreConfig::at(location)
    }
}

async fn fixture(backend: Backend) -> Fixture {
    fixture_with(backend, |_| {}).await
}

async fn fixture_with(backend: Backend, configure: impl FnOnce(&mut StoreConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_location(backend, &dir);
    let mut config = config(location.clone());
    configure(&mut config);
    let store = AuditStore::connect(config).await.unwrap();
    Fixture {
        dir,
        location,
        store,
    }
}

/// A fresh database of `backend` as a build of schema `version` left it,
/// holding `rows` (SQL), opened (and so migrated) by this build.
async fn migrated_from(backend: Backend, version: usize, rows: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_location(backend, &dir);
    match &location {
        StoreLocation::Sqlite(path) => {
            schema::create_at_version(path, version).unwrap();
            Connection::open(path).unwrap().execute_batch(rows).unwrap();
        }
        StoreLocation::Postgres(url) => {
            let client = postgres::raw::connect(url).await;
            postgres::raw::create_at_version(&client, version)
                .await
                .unwrap();
            client.batch_execute(rows).await.unwrap();
        }
    }
    let store = AuditStore::connect(config(location.clone())).await.unwrap();
    Fixture {
        dir,
        location,
        store,
    }
}

/// A SQLite-only fixture, for the tests that reach SQLite's own settings.
fn sqlite_config(path: &Path) -> StoreConfig {
    config(StoreLocation::Sqlite(path.to_owned()))
}

fn new_session(id: &str) -> NewSession {
    NewSession {
        session_id: id.into(),
        metadata: r#"{"config":"default"}"#.into(),
        ..NewSession::default()
    }
}

fn message(session_id: &str, text: &str) -> NewMessage {
    NewMessage {
        session_id: session_id.into(),
        turn_id: 1,
        agent_name: "planner".into(),
        agent_role: "Strategic Planner".into(),
        message: text.into(),
        ..NewMessage::default()
    }
}

fn keyed(session_id: &str, text: &str, key: &str) -> NewMessage {
    NewMessage {
        idempotency_key: key.into(),
        ..message(session_id, text)
    }
}

fn tool_usage(session_id: &str, key: &str) -> NewToolUsage {
    NewToolUsage {
        session_id: session_id.into(),
        turn_id: 2,
        agent_name: "hacker".into(),
        tool_name: "calculator".into(),
        tool_params: "2+2".into(),
        tool_result: "4".into(),
        success: true,
        duration_ms: 12,
        idempotency_key: key.into(),
        ..NewToolUsage::default()
    }
}

fn end(session_id: &str, num_turns: i64, status: SessionStatus) -> EndSession {
    EndSession {
        session_id: session_id.into(),
        num_turns,
        status,
    }
}

async fn started(backend: Backend, id: &str) -> Fixture {
    let fx = fixture(backend).await;
    fx.store.create_session(new_session(id)).await.unwrap();
    fx
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

// --- schema and files -------------------------------------------------------

contract! {
    async fn opening_an_empty_file_creates_the_schema_and_sets_user_version(backend) {
        let fx = fixture(backend).await;
        assert_eq!(fx.schema_version().await, 6);
        assert_eq!(fx.table_count().await, 4);
    }
}

contract! {
    async fn reopening_the_file_keeps_the_data(backend) {
        let fx = started(backend, "s1").await;
        let stored = fx
            .store
            .store_message(message("s1", "hello"))
            .await
            .unwrap();
        fx.store.shutdown();

        let store = fx.reopen().await.unwrap();
        let page = store
            .list_messages("s1", PageRequest::default())
            .await
            .unwrap();
        assert_eq!(page.items, [stored]);
    }
}

contract! {
    async fn a_file_with_a_newer_schema_version_refuses_to_open(backend) {
        let fx = fixture(backend).await;
        fx.store.shutdown();
        fx.set_schema_version(7).await;
        let error = fx.reopen().await.unwrap_err();
        assert_eq!(
            error,
            StoreError::SchemaTooNew {
                found: 7,
                supported: 6
            }
        );
    }
}

/// SQLite-only: the seed's SQL with its `?` placeholder, through rusqlite.
#[tokio::test]
async fn the_seeds_sql_reads_the_messages_of_a_session() {
    let fx = started(Backend::Sqlite, "s1").await;
    fx.store
        .store_message(message("s1", "first"))
        .await
        .unwrap();
    fx.store
        .store_message(message("s1", "second"))
        .await
        .unwrap();

    let raw = Connection::open(db_path(&fx.dir)).unwrap();
    let mut stmt = raw
        .prepare("SELECT * FROM messages WHERE session_id = ?")
        .unwrap();
    let texts: Vec<String> = stmt
        .query_map(["s1"], |row| row.get("message"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(texts, ["first", "second"]);
}

// --- sessions -----------------------------------------------------------------

contract! {
    async fn a_new_session_is_active_with_no_turns_and_no_end(backend) {
        let fx = fixture(backend).await;
        let session = fx.store.create_session(new_session("s1")).await.unwrap();
        assert_eq!(session.status, SessionStatus::Active);
        assert_eq!(session.num_turns, 0);
        assert_eq!(session.end_time, "");
        assert_eq!(session.start_time, "2025-01-16T04:00:00.000000Z");
        assert_eq!(fx.store.get_session("s1").await.unwrap(), session);
    }
}

contract! {
    async fn creating_a_session_again_with_the_same_metadata_returns_it_unchanged(backend) {
        let fx = fixture(backend).await;
        let first = fx.store.create_session(new_session("s1")).await.unwrap();
        let again = fx.store.create_session(new_session("s1")).await.unwrap();
        assert_eq!(again, first);
    }
}

contract! {
    async fn creating_a_session_again_with_other_metadata_already_exists(backend) {
        let fx = started(backend, "s1").await;
        let other = NewSession {
            metadata: "{}".into(),
            ..new_session("s1")
        };
        let error = fx.store.create_session(other).await.unwrap_err();
        assert_eq!(
            error,
            StoreError::SessionExists {
                session_id: "s1".into()
            }
        );
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
    }
}

contract! {
    async fn get_session_counts_messages_and_tool_usage(backend) {
        let fx = started(backend, "s1").await;
        for text in ["a", "b", "c"] {
            fx.store.store_message(message("s1", text)).await.unwrap();
        }
        fx.store
            .store_tool_usage(tool_usage("s1", ""))
            .await
            .unwrap();
        let session = fx.store.get_session("s1").await.unwrap();
        assert_eq!(session.message_count, 3);
        assert_eq!(session.tool_usage_count, 1);
    }
}

contract! {
    async fn an_unknown_session_is_not_found_everywhere(backend) {
        let fx = fixture(backend).await;
        let not_found = StoreError::SessionNotFound {
            session_id: "ghost".into(),
        };
        let page = PageRequest::default;
        assert_eq!(fx.store.get_session("ghost").await, Err(not_found.clone()));
        assert_eq!(
            fx.store.store_message(message("ghost", "boo")).await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store.store_tool_usage(tool_usage("ghost", "")).await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store
                .end_session(end("ghost", 1, SessionStatus::Completed))
                .await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store.list_messages("ghost", page()).await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store.list_tool_usage("ghost", page()).await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store.messages_after("ghost", 0, 10).await,
            Err(not_found.clone())
        );
        assert_eq!(not_found.kind(), ErrorKind::NotFound);
    }
}

// --- ending -------------------------------------------------------------------

contract! {
    async fn ending_a_session_records_its_turns_status_and_end_time(backend) {
        let fx = started(backend, "s1").await;
        let ended = fx
            .store
            .end_session(end("s1", 5, SessionStatus::Completed))
            .await
            .unwrap();
        assert_eq!(ended.status, SessionStatus::Completed);
        assert_eq!(ended.num_turns, 5);
        assert_eq!(ended.end_time, "2025-01-16T04:00:01.000000Z");
        assert_eq!(fx.store.get_session("s1").await.unwrap(), ended);
    }
}

contract! {
    async fn ending_an_ended_session_the_same_way_returns_it_unchanged(backend) {
        let fx = started(backend, "s1").await;
        let first = fx
            .store
            .end_session(end("s1", 5, SessionStatus::Interrupted))
            .await
            .unwrap();
        let again = fx
            .store
            .end_session(end("s1", 5, SessionStatus::Interrupted))
            .await
            .unwrap();
        assert_eq!(again, first, "the end time is not moved");
    }
}

contract! {
    async fn ending_an_ended_session_differently_is_a_failed_precondition(backend) {
        let fx = started(backend, "s1").await;
        fx.store
            .end_session(end("s1", 5, SessionStatus::Completed))
            .await
            .unwrap();
        for other in [
            end("s1", 6, SessionStatus::Completed),
            end("s1", 5, SessionStatus::Failed),
        ] {
            let error = fx.store.end_session(other).await.unwrap_err();
            assert_eq!(
                error,
                StoreError::EndedDifferently {
                    session_id: "s1".into(),
                    status: SessionStatus::Completed,
                    num_turns: 5
                }
            );
            assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
            assert!(error.to_string().contains("completed"), "{error}");
        }
    }
}

contract! {
    async fn ending_with_active_status_is_an_invalid_argument(backend) {
        let fx = started(backend, "s1").await;
        let error = fx
            .store
            .end_session(end("s1", 1, SessionStatus::Active))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            fx.store.get_session("s1").await.unwrap().status,
            SessionStatus::Active
        );
    }
}

contract! {
    async fn writing_to_an_ended_session_is_a_failed_precondition_naming_its_status(backend) {
        let fx = started(backend, "s1").await;
        fx.store
            .end_session(end("s1", 2, SessionStatus::Failed))
            .await
            .unwrap();
        let ended = StoreError::SessionEnded {
            session_id: "s1".into(),
            status: SessionStatus::Failed,
        };
        let error = fx
            .store
            .store_message(message("s1", "too late"))
            .await
            .unwrap_err();
        assert_eq!(error, ended);
        assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
        assert!(error.to_string().contains("failed"), "{error}");
        assert_eq!(
            fx.store.store_tool_usage(tool_usage("s1", "k")).await,
            Err(ended)
        );
    }
}

contract! {
    async fn a_retry_after_the_session_ended_still_returns_the_stored_row(backend) {
        let fx = started(backend, "s1").await;
        let stored = fx
            .store
            .store_message(keyed("s1", "last words", "k1"))
            .await
            .unwrap();
        fx.store
            .end_session(end("s1", 1, SessionStatus::Completed))
            .await
            .unwrap();
        let retry = fx
            .store
            .store_message(keyed("s1", "last words", "k1"))
            .await
            .unwrap();
        assert_eq!(retry, stored);
    }
}

// --- idempotency --------------------------------------------------------------

contract! {
    async fn an_idempotent_repeat_returns_the_identical_row_and_stores_one(backend) {
        let fx = started(backend, "s1").await;
        let first = fx
            .store
            .store_message(keyed("s1", "hello", "k1"))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_message(NewMessage {
                trace_id: "another-trace".into(),
                ..keyed("s1", "hello", "k1")
            })
            .await
            .unwrap();
        assert_eq!(repeat, first);
        assert_eq!(
            fx.count("SELECT COUNT(*) FROM messages WHERE idempotency_key = 'k1'").await,
            1
        );

        let tool_first = fx
            .store
            .store_tool_usage(tool_usage("s1", "t1"))
            .await
            .unwrap();
        let tool_repeat = fx
            .store
            .store_tool_usage(tool_usage("s1", "t1"))
            .await
            .unwrap();
        assert_eq!(tool_repeat, tool_first);
        assert_eq!(fx.count("SELECT COUNT(*) FROM tool_usage").await, 1);
    }
}

contract! {
    async fn writes_without_a_key_are_not_deduplicated(backend) {
        let fx = started(backend, "s1").await;
        let first = fx.store.store_message(message("s1", "same")).await.unwrap();
        let second = fx.store.store_message(message("s1", "same")).await.unwrap();
        assert_ne!(first.id, second.id);
    }
}

contract! {
    async fn the_same_key_in_another_session_is_another_write(backend) {
        let fx = started(backend, "s1").await;
        fx.store.create_session(new_session("s2")).await.unwrap();
        let one = fx
            .store
            .store_message(keyed("s1", "hi", "k"))
            .await
            .unwrap();
        let two = fx
            .store
            .store_message(keyed("s2", "hi", "k"))
            .await
            .unwrap();
        assert_ne!(one.id, two.id);
    }
}

contract! {
    async fn reusing_a_key_with_other_content_is_a_conflict(backend) {
        let fx = started(backend, "s1").await;
        fx.store
            .store_message(keyed("s1", "hello", "k1"))
            .await
            .unwrap();
        let error = fx
            .store
            .store_message(keyed("s1", "goodbye", "k1"))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            StoreError::IdempotencyConflict {
                session_id: "s1".into(),
                key: "k1".into()
            }
        );
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);

        fx.store
            .store_tool_usage(tool_usage("s1", "t1"))
            .await
            .unwrap();
        let other = NewToolUsage {
            success: false,
            ..tool_usage("s1", "t1")
        };
        assert_eq!(
            fx.store.store_tool_usage(other).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }
}

// --- validation ---------------------------------------------------------------

contract! {
    async fn bad_input_is_refused_before_it_reaches_the_writer(backend) {
        let fx = started(backend, "s1").await;
        let commits = fx.store.commit_count();
        let bad_messages = [
            message("", "x"),
            message("a b", "x"),
            message(&"s".repeat(129), "x"),
            NewMessage {
                agent_name: String::new(),
                ..message("s1", "x")
            },
            NewMessage {
                agent_name: "a".repeat(129),
                ..message("s1", "x")
            },
            NewMessage {
                agent_role: "r".repeat(257),
                ..message("s1", "x")
            },
            NewMessage {
                turn_id: -1,
                ..message("s1", "x")
            },
            message("s1", &"x".repeat(DEFAULT_MAX_MESSAGE_BYTES + 1)),
            keyed("s1", "x", &"k".repeat(129)),
        ];
        for bad in bad_messages {
            let error = fx.store.store_message(bad).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        }
        let bad_tool_usage = [
            NewToolUsage {
                tool_name: String::new(),
                ..tool_usage("s1", "")
            },
            NewToolUsage {
                tool_name: "t".repeat(129),
                ..tool_usage("s1", "")
            },
            NewToolUsage {
                duration_ms: -1,
                ..tool_usage("s1", "")
            },
            NewToolUsage {
                tool_params: "p".repeat(DEFAULT_MAX_MESSAGE_BYTES + 1),
                ..tool_usage("s1", "")
            },
            NewToolUsage {
                tool_result: "r".repeat(DEFAULT_MAX_MESSAGE_BYTES + 1),
                ..tool_usage("s1", "")
            },
        ];
        for bad in bad_tool_usage {
            let error = fx.store.store_tool_usage(bad).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        }
        let big_metadata = NewSession {
            metadata: "m".repeat(MAX_METADATA_BYTES + 1),
            ..new_session("s2")
        };
        assert_eq!(
            fx.store
                .create_session(big_metadata)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            fx.store
                .end_session(end("s1", -1, SessionStatus::Completed))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            fx.store.get_session("no/such").await,
            Err(StoreError::SessionIdCharacter { character: '/' })
        );
        assert_eq!(
            fx.store.commit_count(),
            commits,
            "nothing reached the writer"
        );
    }
}

contract! {
    async fn the_message_limit_is_configurable(backend) {
        let fx = fixture_with(backend, |config| config.max_message_bytes = 8).await;
        let store = &fx.store;
        store.create_session(new_session("s1")).await.unwrap();
        store
            .store_message(message("s1", "12345678"))
            .await
            .unwrap();
        assert_eq!(
            store.store_message(message("s1", "123456789")).await,
            Err(StoreError::TooManyBytes {
                field: "message",
                max: 8,
                len: 9
            })
        );
    }
}

// --- group commit ---------------------------------------------------------------

contract! {
    #[multi_thread]
    async fn concurrent_writes_all_commit_in_fewer_transactions_than_writes(backend) {
        const TASKS: usize = 64;
        const WRITES: usize = 20;
        let fx = started(backend, "s1").await;
        let commits_before = fx.store.commit_count();

        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let store = fx.store.clone();
            tasks.spawn(async move {
                let mut ids = Vec::with_capacity(WRITES);
                for write in 0..WRITES {
                    let text = format!("task {task} write {write}");
                    ids.push(store.store_message(message("s1", &text)).await.unwrap().id);
                }
                ids
            });
        }
        let ids: Vec<i64> = tasks.join_all().await.into_iter().flatten().collect();

        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), TASKS * WRITES);
        assert_eq!(
            fx.store.get_session("s1").await.unwrap().message_count,
            i64::try_from(TASKS * WRITES).unwrap()
        );
        let commits = fx.store.commit_count() - commits_before;
        assert!(
            commits < u64::try_from(TASKS * WRITES).unwrap(),
            "{commits} commits for {} writes",
            TASKS * WRITES
        );
    }
}

contract! {
    async fn a_bad_write_among_concurrent_ones_fails_alone(backend) {
        let fx = started(backend, "s1").await;
        let store = &fx.store;
        let (good, bad, also_good) = tokio::join!(
            store.store_message(message("s1", "one")),
            store.store_message(message("ghost", "boo")),
            store.store_message(message("s1", "two")),
        );
        assert!(good.is_ok());
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::NotFound);
        assert!(also_good.is_ok());
        assert_eq!(store.get_session("s1").await.unwrap().message_count, 2);
    }
}

// --- storage failures -------------------------------------------------------------

/// SQLite-only: the "disk" is filled with `PRAGMA max_page_count`.
#[tokio::test]
async fn a_full_database_refuses_the_write_stores_nothing_of_it_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(sqlite_config(&path)).unwrap();
    store.create_session(new_session("s1")).await.unwrap();
    let small = store.store_message(message("s1", "small")).await.unwrap();
    store.shutdown();
    drop(store);
    let pages = count(&Connection::open(&path).unwrap(), "PRAGMA page_count");

    let capped = StoreConfig {
        max_db_pages: Some(u64::try_from(pages).unwrap() + 2),
        ..sqlite_config(&path)
    };
    let store = AuditStore::open(capped).unwrap();
    let big = keyed("s1", &"x".repeat(60_000), "big");
    let error = store.store_message(big.clone()).await.unwrap_err();
    assert_eq!(error, StoreError::Full);
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(error.to_string(), "audit database is full");

    let page = store
        .list_messages("s1", PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        page.items,
        [small],
        "nothing of the failed write is visible"
    );
    assert_eq!(store.get_session("s1").await.unwrap().message_count, 1);
    store.shutdown();
    drop(store);

    let store = AuditStore::open(sqlite_config(&path)).unwrap();
    let stored = store.store_message(big).await.unwrap();
    assert_eq!(
        stored.idempotency_key, "big",
        "the limit raised, the write succeeds"
    );
}

contract! {
    async fn after_shutdown_writes_are_unavailable_and_reads_still_work(backend) {
        let fx = started(backend, "s1").await;
        fx.store.shutdown();
        let error = fx
            .store
            .store_message(message("s1", "late"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(fx.store.get_session("s1").await.unwrap().session_id, "s1");
        fx.store.shutdown();
    }
}

// --- paging -----------------------------------------------------------------------

contract! {
    async fn paging_through_250_messages_by_100_gives_3_pages_and_every_row_once(backend) {
        let fx = started(backend, "s1").await;
        for n in 0..250 {
            fx.store
                .store_message(message("s1", &n.to_string()))
                .await
                .unwrap();
        }

        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = fx
                .store
                .list_messages(
                    "s1",
                    PageRequest {
                        page_size: 100,
                        page_token: token,
                    },
                )
                .await
                .unwrap();
            token = page.next_page_token.clone();
            pages.push(page.items);
            if token.is_empty() {
                break;
            }
        }
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let ids: Vec<i64> = pages.into_iter().flatten().map(|row| row.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "in id order, each once");
        assert_eq!(ids.len(), 250);
    }
}

contract! {
    async fn tool_usage_pages_in_id_order(backend) {
        let fx = started(backend, "s1").await;
        for n in 0..5 {
            fx.store
                .store_tool_usage(tool_usage("s1", &format!("k{n}")))
                .await
                .unwrap();
        }
        let first = fx
            .store
            .list_tool_usage("s1", PageRequest::first(3))
            .await
            .unwrap();
        assert_eq!(first.items.len(), 3);
        let rest = fx
            .store
            .list_tool_usage(
                "s1",
                PageRequest {
                    page_size: 3,
                    page_token: first.next_page_token,
                },
            )
            .await
            .unwrap();
        let keys: Vec<String> = first
            .items
            .into_iter()
            .chain(rest.items)
            .map(|row| row.idempotency_key)
            .collect();
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);
        assert_eq!(rest.next_page_token, "");
    }
}

contract! {
    async fn sessions_are_listed_newest_first_and_filtered_by_status(backend) {
        let fx = fixture(backend).await;
        for id in ["s1", "s2", "s3", "s4"] {
            fx.store.create_session(new_session(id)).await.unwrap();
        }
        fx.store
            .end_session(end("s2", 1, SessionStatus::Completed))
            .await
            .unwrap();

        let first = fx
            .store
            .list_sessions(None, PageRequest::first(3))
            .await
            .unwrap();
        let rest = fx
            .store
            .list_sessions(
                None,
                PageRequest {
                    page_size: 3,
                    page_token: first.next_page_token.clone(),
                },
            )
            .await
            .unwrap();
        let ids: Vec<String> = first
            .items
            .iter()
            .chain(&rest.items)
            .map(|row| row.session_id.clone())
            .collect();
        assert_eq!(ids, ["s4", "s3", "s2", "s1"]);
        assert_eq!(rest.next_page_token, "");

        let active = fx
            .store
            .list_sessions(Some(SessionStatus::Active), PageRequest::default())
            .await
            .unwrap();
        let ids: Vec<&str> = active
            .items
            .iter()
            .map(|row| row.session_id.as_str())
            .collect();
        assert_eq!(ids, ["s4", "s3", "s1"]);
    }
}

contract! {
    async fn a_garbage_page_token_is_refused_by_every_listing(backend) {
        let fx = started(backend, "s1").await;
        let garbage = || PageRequest {
            page_size: 10,
            page_token: "not a token".into(),
        };
        assert_eq!(
            fx.store.list_messages("s1", garbage()).await,
            Err(StoreError::InvalidPageToken)
        );
        assert_eq!(
            fx.store.list_tool_usage("s1", garbage()).await,
            Err(StoreError::InvalidPageToken)
        );
        assert_eq!(
            fx.store.list_sessions(None, garbage()).await,
            Err(StoreError::InvalidPageToken)
        );
        assert_eq!(
            StoreError::InvalidPageToken.kind(),
            ErrorKind::InvalidArgument
        );
    }
}

contract! {
    async fn a_page_size_over_1000_is_refused(backend) {
        let fx = started(backend, "s1").await;
        assert_eq!(
            fx.store.list_messages("s1", PageRequest::first(1001)).await,
            Err(StoreError::InvalidPageSize { size: 1001 })
        );
        assert_eq!(
            fx.store.list_sessions(None, PageRequest::first(-1)).await,
            Err(StoreError::InvalidPageSize { size: -1 })
        );
    }
}

contract! {
    async fn messages_after_returns_the_later_messages_in_order(backend) {
        let fx = started(backend, "s1").await;
        let mut ids = Vec::new();
        for text in ["a", "b", "c", "d"] {
            ids.push(
                fx.store
                    .store_message(message("s1", text))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let later = fx.store.messages_after("s1", ids[1], 0).await.unwrap();
        let texts: Vec<&str> = later.iter().map(|row| row.message.as_str()).collect();
        assert_eq!(texts, ["c", "d"]);
        let limited = fx.store.messages_after("s1", 0, 1).await.unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(
            fx.store.messages_after("s1", -1, 1).await,
            Err(StoreError::Negative {
                field: "after_message_id",
                value: -1
            })
        );
    }
}

// --- watching -----------------------------------------------------------------------

contract! {
    async fn subscribers_see_messages_in_commit_order_and_the_session_end(backend) {
        let fx = started(backend, "s1").await;
        let mut feed = fx.store.subscribe();
        let first = fx
            .store
            .store_message(keyed("s1", "one", "k1"))
            .await
            .unwrap();
        fx.store
            .store_tool_usage(tool_usage("s1", ""))
            .await
            .unwrap();
        let second = fx.store.store_message(message("s1", "two")).await.unwrap();
        fx.store
            .store_message(keyed("s1", "one", "k1"))
            .await
            .unwrap();
        fx.store
            .end_session(end("s1", 2, SessionStatus::Completed))
            .await
            .unwrap();

        assert_eq!(feed.recv().await.unwrap(), Committed::Message(Box::new(first)));
        assert_eq!(feed.recv().await.unwrap(), Committed::Message(Box::new(second)));
        assert_eq!(
            feed.recv().await.unwrap(),
            Committed::SessionEnded {
                session_id: "s1".into()
            }
        );
        assert!(
            feed.try_recv().is_err(),
            "repeats and tool usage are not published"
        );
    }
}

// --- turns ----------------------------------------------------------------------------

/// A turn of agent `hacker` in turn 2 (as `tool_usage` names), keyed `key`,
/// with one tool call per key of `tool_keys`.
fn turn(session_id: &str, key: &str, tool_keys: &[&str]) -> NewTurn {
    NewTurn {
        message: NewMessage {
            turn_id: 2,
            agent_name: "hacker".into(),
            agent_role: "Hacker".into(),
            ..keyed(session_id, "the vault's firmware is from 2009", key)
        },
        tool_calls: tool_keys
            .iter()
            .map(|tool_key| tool_usage(session_id, tool_key))
            .collect(),
    }
}

/// Every message and every tool call stored for `session_id`.
async fn stored_rows(store: &AuditStore, session_id: &str) -> (Vec<MessageRow>, Vec<ToolUsageRow>) {
    let messages = store
        .list_messages(session_id, PageRequest::default())
        .await
        .unwrap();
    let tool_usage = store
        .list_tool_usage(session_id, PageRequest::default())
        .await
        .unwrap();
    (messages.items, tool_usage.items)
}

contract! {
    async fn a_turn_with_two_tool_calls_stores_the_message_and_both_rows_in_one_commit(backend) {
        let fx = started(backend, "s1").await;
        let commits = fx.store.commit_count();
        let rows = fx
            .store
            .store_turn(turn("s1", "m1", &["t1", "t2"]))
            .await
            .unwrap();

        assert_eq!(
            fx.store.commit_count(),
            commits + 1,
            "one commit for the turn"
        );
        assert_eq!(rows.message.idempotency_key, "m1");
        assert_eq!(
            (rows.message.turn_id, rows.message.agent_name.as_str()),
            (2, "hacker")
        );
        let keys: Vec<&str> = rows
            .tool_calls
            .iter()
            .map(|row| row.idempotency_key.as_str())
            .collect();
        assert_eq!(keys, ["t1", "t2"], "in the order they were sent");
        assert!(rows.tool_calls[0].id < rows.tool_calls[1].id);
        assert!(
            rows.tool_calls
                .iter()
                .all(|row| row.timestamp == rows.message.timestamp),
            "one write, one timestamp"
        );
        let (messages, tool_usage) = stored_rows(&fx.store, "s1").await;
        assert_eq!(messages, [rows.message]);
        assert_eq!(tool_usage, rows.tool_calls);
    }
}

contract! {
    async fn repeating_a_turn_returns_the_same_rows_and_stores_nothing_new(backend) {
        let fx = started(backend, "s1").await;
        let first = fx
            .store
            .store_turn(turn("s1", "m1", &["t1", "t2"]))
            .await
            .unwrap();
        let mut retry = turn("s1", "m1", &["t1", "t2"]);
        retry.message.trace_id = "another-trace".into();
        let repeat = fx.store.store_turn(retry).await.unwrap();

        assert_eq!(repeat, first);
        assert_eq!(fx.count("SELECT COUNT(*) FROM messages").await, 1);
        assert_eq!(fx.count("SELECT COUNT(*) FROM tool_usage").await, 2);
    }
}

contract! {
    async fn a_turn_whose_second_tool_call_reuses_a_stored_key_with_other_content_stores_nothing_of_the_turn(backend) {
        let fx = started(backend, "s1").await;
        let earlier = fx
            .store
            .store_tool_usage(tool_usage("s1", "t-earlier"))
            .await
            .unwrap();
        let mut clash = turn("s1", "m1", &["t1", "t-earlier"]);
        clash.tool_calls[1].tool_result = "5".into();
        let commits = fx.store.commit_count();

        let error = fx.store.store_turn(clash).await.unwrap_err();
        assert_eq!(
            error,
            StoreError::IdempotencyConflict {
                session_id: "s1".into(),
                key: "t-earlier".into()
            }
        );
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        let (messages, tool_usage) = stored_rows(&fx.store, "s1").await;
        assert!(messages.is_empty(), "the message was rolled back too");
        assert_eq!(tool_usage, [earlier], "and the first tool call");
        // SQLite rolls the refusal back to its savepoint inside a batch that
        // commits; PostgreSQL runs a lone write without a savepoint and rolls
        // its transaction back.
        let committed = match backend {
            Backend::Sqlite => commits + 1,
            Backend::Postgres => commits,
        };
        assert_eq!(
            fx.store.commit_count(),
            committed,
            "the refusal was rolled back, not by failing a commit"
        );

        // Its keys were not taken: the turn without the clash stores.
        let rows = fx
            .store
            .store_turn(turn("s1", "m1", &["t1"]))
            .await
            .unwrap();
        assert_eq!(rows.tool_calls.len(), 1);
    }
}

contract! {
    async fn a_tool_call_naming_another_session_turn_or_agent_is_refused_naming_the_field(backend) {
        let fx = started(backend, "s1").await;
        fx.store.create_session(new_session("s2")).await.unwrap();
        let commits = fx.store.commit_count();
        /// What the test changes in the second tool call.
        type Change = fn(&mut NewToolUsage);
        let cases: [(Change, &str); 3] = [
            (
                |call| call.session_id = "s2".into(),
                r#"session_id: "s2" is not the message's session "s1""#,
            ),
            (
                |call| call.turn_id = 7,
                "turn_id: 7 is not the message's turn 2",
            ),
            (
                |call| call.agent_name = "mole".into(),
                r#"agent_name: "mole" is not the message's agent "hacker""#,
            ),
        ];
        for (change, reason) in cases {
            let mut new = turn("s1", "m1", &["t1", "t2"]);
            change(&mut new.tool_calls[1]);
            let error = fx.store.store_turn(new).await.unwrap_err();
            assert_eq!(
                error,
                StoreError::InvalidToolCall {
                    index: 1,
                    reason: reason.into()
                }
            );
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
            assert_eq!(error.to_string(), format!("tool_calls[1].{reason}"));
        }
        assert_eq!(
            fx.store.commit_count(),
            commits,
            "nothing reached the writer"
        );
        let (messages, tool_usage) = stored_rows(&fx.store, "s1").await;
        assert!(messages.is_empty() && tool_usage.is_empty());
    }
}

contract! {
    async fn a_malformed_row_of_a_turn_is_refused_naming_its_field_and_index(backend) {
        let fx = started(backend, "s1").await;
        let mut no_tool = turn("s1", "m1", &["t1", "t2", "t3"]);
        no_tool.tool_calls[2].tool_name = String::new();
        let error = fx.store.store_turn(no_tool).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "tool_calls[2].tool_name must not be empty"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);

        let mut no_agent = turn("s1", "m1", &["t1"]);
        no_agent.message.agent_name = String::new();
        assert_eq!(
            fx.store.store_turn(no_agent).await,
            Err(StoreError::EmptyField {
                field: "agent_name"
            }),
            "the message's own checks are StoreMessage's"
        );
    }
}

contract! {
    async fn a_turn_with_65_tool_calls_is_refused_and_one_with_64_is_stored(backend) {
        let fx = started(backend, "s1").await;
        let keys: Vec<String> = (0..=MAX_TOOL_CALLS_PER_TURN)
            .map(|n| format!("t{n}"))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(keys.len(), 65);

        let error = fx
            .store
            .store_turn(turn("s1", "m1", &keys))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "tool_calls must be at most 64 per turn, got 65"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        let (messages, _) = stored_rows(&fx.store, "s1").await;
        assert!(messages.is_empty());

        let rows = fx
            .store
            .store_turn(turn("s1", "m1", &keys[..64]))
            .await
            .unwrap();
        assert_eq!(rows.tool_calls.len(), 64);
    }
}

contract! {
    async fn a_turn_without_tool_calls_stores_its_message_alone(backend) {
        let fx = started(backend, "s1").await;
        let rows = fx.store.store_turn(turn("s1", "m1", &[])).await.unwrap();
        assert!(rows.tool_calls.is_empty());
        let (messages, tool_usage) = stored_rows(&fx.store, "s1").await;
        assert_eq!(messages, [rows.message]);
        assert!(tool_usage.is_empty());
    }
}

contract! {
    async fn a_turn_in_an_ended_session_is_refused_as_session_ended_and_a_retry_still_answers(backend) {
        let fx = started(backend, "s1").await;
        let stored = fx
            .store
            .store_turn(turn("s1", "m1", &["t1"]))
            .await
            .unwrap();
        fx.store
            .end_session(end("s1", 2, SessionStatus::Interrupted))
            .await
            .unwrap();

        let error = fx
            .store
            .store_turn(turn("s1", "m2", &["t2"]))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            StoreError::SessionEnded {
                session_id: "s1".into(),
                status: SessionStatus::Interrupted
            }
        );
        assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
        let (messages, tool_usage) = stored_rows(&fx.store, "s1").await;
        assert_eq!((messages.len(), tool_usage.len()), (1, 1));

        let retry = fx
            .store
            .store_turn(turn("s1", "m1", &["t1"]))
            .await
            .unwrap();
        assert_eq!(
            retry, stored,
            "as StoreMessage: a retry after the end answers"
        );
    }
}

contract! {
    async fn a_subscriber_receives_the_message_of_a_turn_and_nothing_for_its_tool_calls(backend) {
        let fx = started(backend, "s1").await;
        let mut feed = fx.store.subscribe();
        let rows = fx
            .store
            .store_turn(turn("s1", "m1", &["t1", "t2"]))
            .await
            .unwrap();
        fx.store
            .store_turn(turn("s1", "m1", &["t1", "t2"]))
            .await
            .unwrap();

        assert_eq!(feed.recv().await.unwrap(), Committed::Message(Box::new(rows.message)));
        assert!(
            feed.try_recv().is_err(),
            "tool calls and the repeat are not published"
        );
    }
}

// --- session events -----------------------------------------------------------------

fn event(session_id: &str, kind: &str, key: &str) -> NewSessionEvent {
    NewSessionEvent {
        session_id: session_id.into(),
        kind: kind.into(),
        detail: r#"{"service":"memory","cause":"unavailable"}"#.into(),
        idempotency_key: key.into(),
        ..NewSessionEvent::default()
    }
}

contract! {
    async fn session_events_are_stored_and_listed_in_storage_order(backend) {
        let fx = started(backend, "s1").await;
        let mut stored = Vec::new();
        for (kind, key) in [
            ("breaker.open", "e1"),
            ("breaker.half_open", "e2"),
            ("breaker.closed", "e3"),
        ] {
            stored.push(
                fx.store
                    .store_session_event(event("s1", kind, key))
                    .await
                    .unwrap(),
            );
        }
        assert!(stored[0].id < stored[1].id && stored[1].id < stored[2].id);
        assert_eq!(stored[0].kind, "breaker.open");
        assert_eq!(
            stored[0].detail,
            r#"{"service":"memory","cause":"unavailable"}"#
        );
        assert_eq!(stored[0].idempotency_key, "e1");
        assert_eq!(stored[0].timestamp, "2025-01-16T04:00:01.000000Z");

        let page = fx
            .store
            .list_session_events("s1", PageRequest::default())
            .await
            .unwrap();
        assert_eq!(page.items, stored);
        assert_eq!(page.next_page_token, "");
        let session = fx.store.get_session("s1").await.unwrap();
        assert_eq!(
            (session.message_count, session.tool_usage_count),
            (0, 0),
            "events are neither messages nor tool calls"
        );
    }
}

contract! {
    async fn session_events_page_with_their_own_tokens(backend) {
        let fx = started(backend, "s1").await;
        for n in 0..5 {
            fx.store
                .store_session_event(event("s1", "spool.replayed", &format!("k{n}")))
                .await
                .unwrap();
        }
        let first = fx
            .store
            .list_session_events("s1", PageRequest::first(2))
            .await
            .unwrap();
        assert!(
            first.next_page_token.starts_with('e'),
            "{}",
            first.next_page_token
        );
        let mut keys: Vec<String> = first
            .items
            .into_iter()
            .map(|row| row.idempotency_key)
            .collect();
        let mut token = first.next_page_token;
        while !token.is_empty() {
            let page = fx
                .store
                .list_session_events(
                    "s1",
                    PageRequest {
                        page_size: 2,
                        page_token: token,
                    },
                )
                .await
                .unwrap();
            keys.extend(page.items.into_iter().map(|row| row.idempotency_key));
            token = page.next_page_token;
        }
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);

        for garbage in ["m1", "t1", "e", "e-1", "not a token"] {
            assert_eq!(
                fx.store
                    .list_session_events(
                        "s1",
                        PageRequest {
                            page_size: 2,
                            page_token: garbage.into(),
                        },
                    )
                    .await,
                Err(StoreError::InvalidPageToken),
                "{garbage}"
            );
        }
        assert_eq!(
            fx.store
                .list_session_events("s1", PageRequest::first(1001))
                .await,
            Err(StoreError::InvalidPageSize { size: 1001 })
        );
    }
}

contract! {
    async fn session_events_are_accepted_in_every_session_status(backend) {
        let fx = fixture(backend).await;
        for (id, status) in [
            ("done", SessionStatus::Completed),
            ("broken", SessionStatus::Failed),
            ("stopped", SessionStatus::Interrupted),
        ] {
            fx.store.create_session(new_session(id)).await.unwrap();
            fx.store.end_session(end(id, 3, status)).await.unwrap();
            let stored = fx
                .store
                .store_session_event(event(id, "breaker.closed", "late"))
                .await
                .unwrap();
            assert_eq!(stored.session_id, id);
            assert_eq!(
                fx.store
                    .list_session_events(id, PageRequest::default())
                    .await
                    .unwrap()
                    .items,
                [stored]
            );
        }
    }
}

contract! {
    async fn a_repeated_session_event_returns_the_stored_row_and_stores_one(backend) {
        let fx = started(backend, "s1").await;
        let first = fx
            .store
            .store_session_event(event("s1", "breaker.open", "k1"))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_session_event(event("s1", "breaker.open", "k1"))
            .await
            .unwrap();
        assert_eq!(repeat, first);
        fx.store
            .end_session(end("s1", 1, SessionStatus::Completed))
            .await
            .unwrap();
        let after_end = fx
            .store
            .store_session_event(event("s1", "breaker.open", "k1"))
            .await
            .unwrap();
        assert_eq!(after_end, first);
        assert_eq!(fx.count("SELECT COUNT(*) FROM session_events").await, 1);

        let unkeyed = [
            fx.store
                .store_session_event(event("s1", "breaker.open", ""))
                .await
                .unwrap(),
            fx.store
                .store_session_event(event("s1", "breaker.open", ""))
                .await
                .unwrap(),
        ];
        assert_ne!(unkeyed[0].id, unkeyed[1].id, "no key, no deduplication");
    }
}

contract! {
    async fn reusing_an_event_key_with_another_kind_or_detail_is_a_conflict(backend) {
        let fx = started(backend, "s1").await;
        fx.store
            .store_session_event(event("s1", "breaker.open", "k1"))
            .await
            .unwrap();
        let conflict = StoreError::IdempotencyConflict {
            session_id: "s1".into(),
            key: "k1".into(),
        };
        let other_kind = event("s1", "breaker.closed", "k1");
        let other_detail = NewSessionEvent {
            detail: "another cause".into(),
            ..event("s1", "breaker.open", "k1")
        };
        for other in [other_kind, other_detail] {
            let error = fx.store.store_session_event(other).await.unwrap_err();
            assert_eq!(error, conflict);
            assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        }
        // A message may use the same key: keys are unique per table and session.
        fx.store
            .store_message(keyed("s1", "hello", "k1"))
            .await
            .unwrap();
    }
}

contract! {
    async fn a_session_event_for_an_unknown_session_is_not_found(backend) {
        let fx = fixture(backend).await;
        let not_found = StoreError::SessionNotFound {
            session_id: "ghost".into(),
        };
        assert_eq!(
            fx.store
                .store_session_event(event("ghost", "breaker.open", "k"))
                .await,
            Err(not_found.clone())
        );
        assert_eq!(
            fx.store
                .list_session_events("ghost", PageRequest::default())
                .await,
            Err(not_found)
        );
    }
}

contract! {
    async fn a_bad_session_event_is_refused_precisely_before_it_reaches_the_writer(backend) {
        let fx = started(backend, "s1").await;
        let commits = fx.store.commit_count();
        let cases = [
            (
                event("s1", "", "k"),
                StoreError::EmptyField { field: "kind" },
            ),
            (
                event("s1", &"k".repeat(65), "k"),
                StoreError::TooManyChars {
                    field: "kind",
                    max: MAX_EVENT_KIND_CHARS,
                    len: 65,
                },
            ),
            (
                event("s1", "Breaker.Open", "k"),
                StoreError::EventKindCharacter { character: 'B' },
            ),
            (
                event("s1", "breaker open", "k"),
                StoreError::EventKindCharacter { character: ' ' },
            ),
            (
                NewSessionEvent {
                    detail: "d".repeat(DEFAULT_MAX_MESSAGE_BYTES + 1),
                    ..event("s1", "breaker.open", "k")
                },
                StoreError::TooManyBytes {
                    field: "detail",
                    max: DEFAULT_MAX_MESSAGE_BYTES,
                    len: DEFAULT_MAX_MESSAGE_BYTES + 1,
                },
            ),
            (event("", "breaker.open", "k"), StoreError::EmptySessionId),
            (
                event("a b", "breaker.open", "k"),
                StoreError::SessionIdCharacter { character: ' ' },
            ),
            (
                event("s1", "breaker.open", &"k".repeat(129)),
                StoreError::TooManyChars {
                    field: "idempotency_key",
                    max: MAX_NAME_CHARS,
                    len: 129,
                },
            ),
        ];
        for (bad, expected) in cases {
            let error = fx.store.store_session_event(bad).await.unwrap_err();
            assert_eq!(error, expected);
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        }
        assert_eq!(
            fx.store.commit_count(),
            commits,
            "nothing reached the writer"
        );
    }
}

/// SQLite-only: files of older builds exist only for SQLite.
#[tokio::test]
async fn a_version_1_file_is_migrated_on_open_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    schema::create_at_version(&path, 1).unwrap();
    let v1 = Connection::open(&path).unwrap();
    v1.execute_batch(
        "INSERT INTO sessions (session_id, start_time) VALUES ('old', '2024-12-31T00:00:00.000000Z');
         INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp)
             VALUES ('old', 1, 'planner', 'Strategic Planner', 'from v1', '2024-12-31T00:00:01.000000Z');",
    )
    .unwrap();
    drop(v1);

    let store = AuditStore::open(sqlite_config(&path)).unwrap();
    let raw = Connection::open(&path).unwrap();
    assert_eq!(count(&raw, "PRAGMA user_version"), 6);
    assert_eq!(
        count(
            &raw,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'session_events'"
        ),
        1
    );
    let messages = store
        .list_messages("old", PageRequest::default())
        .await
        .unwrap();
    let texts: Vec<&str> = messages
        .items
        .iter()
        .map(|row| row.message.as_str())
        .collect();
    assert_eq!(texts, ["from v1"]);
    let stored = store
        .store_session_event(event("old", "session.resumed", "r1"))
        .await
        .unwrap();
    assert_eq!(
        store
            .list_session_events("old", PageRequest::default())
            .await
            .unwrap()
            .items,
        [stored]
    );
}

// --- writers --------------------------------------------------------------------------

fn by<T>(written_by: &str, new: T, set: impl FnOnce(&mut T, String)) -> T {
    let mut new = new;
    set(&mut new, written_by.to_owned());
    new
}

contract! {
    async fn every_row_reads_back_with_the_client_that_wrote_it(backend) {
        let fx = fixture(backend).await;
        let session = fx
            .store
            .create_session(by("orchestrator", new_session("s1"), |n, w| {
                n.written_by = w
            }))
            .await
            .unwrap();
        assert_eq!(session.written_by, "orchestrator");
        fx.store
            .store_message(by("planner", keyed("s1", "hello", "m1"), |n, w| {
                n.written_by = w
            }))
            .await
            .unwrap();
        fx.store
            .store_tool_usage(by("hacker", tool_usage("s1", "t1"), |n, w| {
                n.written_by = w
            }))
            .await
            .unwrap();
        fx.store
            .store_session_event(by("mole", event("s1", "breaker.open", "e1"), |n, w| {
                n.written_by = w
            }))
            .await
            .unwrap();

        let page = PageRequest::default;
        assert_eq!(
            fx.store.get_session("s1").await.unwrap().written_by,
            "orchestrator"
        );
        let messages = fx.store.list_messages("s1", page()).await.unwrap().items;
        assert_eq!(messages[0].written_by, "planner");
        let calls = fx.store.list_tool_usage("s1", page()).await.unwrap().items;
        assert_eq!(calls[0].written_by, "hacker");
        let events = fx
            .store
            .list_session_events("s1", page())
            .await
            .unwrap()
            .items;
        assert_eq!(events[0].written_by, "mole");
        assert_eq!(
            fx.count("SELECT COUNT(*) FROM messages WHERE written_by = 'planner'").await,
            1,
            "the writer is in the table, for SQL readers too"
        );
    }
}

contract! {
    async fn a_repeat_by_another_client_keeps_the_stored_writer(backend) {
        let fx = fixture(backend).await;
        let first = by("orchestrator", new_session("s1"), |n, w| n.written_by = w);
        fx.store.create_session(first.clone()).await.unwrap();
        let again = fx
            .store
            .create_session(by("planner", first, |n, w| n.written_by = w))
            .await
            .unwrap();
        assert_eq!(again.written_by, "orchestrator");

        let message = keyed("s1", "hello", "m1");
        let stored = fx
            .store
            .store_message(by("orchestrator", message.clone(), |n, w| n.written_by = w))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_message(by("planner", message, |n, w| n.written_by = w))
            .await
            .unwrap();
        assert_eq!(repeat, stored, "the repeat answers the stored row");
        assert_eq!(repeat.written_by, "orchestrator");

        let call = tool_usage("s1", "t1");
        fx.store
            .store_tool_usage(by("orchestrator", call.clone(), |n, w| n.written_by = w))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_tool_usage(by("hacker", call, |n, w| n.written_by = w))
            .await
            .unwrap();
        assert_eq!(repeat.written_by, "orchestrator");

        let turn = NewTurn {
            message: by("orchestrator", keyed("s1", "turn two", "m2"), |n, w| {
                n.written_by = w
            }),
            tool_calls: Vec::new(),
        };
        fx.store.store_turn(turn.clone()).await.unwrap();
        let mut other = turn;
        other.message.written_by = "planner".into();
        let repeat = fx.store.store_turn(other).await.unwrap();
        assert_eq!(repeat.message.written_by, "orchestrator");

        let event = event("s1", "breaker.open", "e1");
        fx.store
            .store_session_event(by("orchestrator", event.clone(), |n, w| n.written_by = w))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_session_event(by("mole", event, |n, w| n.written_by = w))
            .await
            .unwrap();
        assert_eq!(repeat.written_by, "orchestrator");

        let stored = fx
            .store
            .list_messages("s1", PageRequest::default())
            .await
            .unwrap()
            .items;
        let writers: Vec<&str> = stored.iter().map(|row| row.written_by.as_str()).collect();
        assert_eq!(
            writers,
            ["orchestrator", "orchestrator"],
            "nothing was rewritten"
        );
    }
}

contract! {
    async fn a_write_with_no_known_writer_is_stored_as_null_and_read_as_empty(backend) {
        let fx = started(backend, "s1").await;
        let row = fx.store.store_message(message("s1", "hi")).await.unwrap();
        assert_eq!(row.written_by, "");
        assert_eq!(
            fx.count("SELECT COUNT(*) FROM messages WHERE written_by IS NULL").await,
            1
        );
        let listed = fx
            .store
            .list_messages("s1", PageRequest::default())
            .await
            .unwrap();
        assert_eq!(listed.items, [row]);
    }
}

// --- peer identities ------------------------------------------------------------------

/// The identity the orchestrator's client certificate proves.
const ORCHESTRATOR_PEER: &str = "spiffe://heist.local/orchestrator";

/// The four tables that record a writer.
const WRITTEN_TABLES: [&str; 4] = ["sessions", "messages", "tool_usage", "session_events"];

/// [`turn`] with one tool call keyed `tool_key`, every row written via `via`.
fn turn_via(session_id: &str, key: &str, tool_key: &str, via: &str) -> NewTurn {
    let mut turn = turn(session_id, key, &[tool_key]);
    turn.message.written_via = via.into();
    for call in &mut turn.tool_calls {
        call.written_via = via.into();
    }
    turn
}

contract! {
    async fn every_row_reads_back_with_the_identity_its_writer_proved(backend) {
        let fx = fixture(backend).await;
        let planner = "spiffe://heist.local/planner";
        let session = fx
            .store
            .create_session(NewSession {
                written_via: ORCHESTRATOR_PEER.into(),
                ..new_session("s1")
            })
            .await
            .unwrap();
        assert_eq!(session.written_via, ORCHESTRATOR_PEER);
        let message = fx
            .store
            .store_message(NewMessage {
                written_via: ORCHESTRATOR_PEER.into(),
                ..keyed("s1", "hello", "m1")
            })
            .await
            .unwrap();
        assert_eq!(message.written_via, ORCHESTRATOR_PEER);
        let call = fx
            .store
            .store_tool_usage(NewToolUsage {
                written_via: ORCHESTRATOR_PEER.into(),
                ..tool_usage("s1", "t1")
            })
            .await
            .unwrap();
        assert_eq!(call.written_via, ORCHESTRATOR_PEER);
        let turn = fx
            .store
            .store_turn(turn_via("s1", "m2", "t2", planner))
            .await
            .unwrap();
        assert_eq!(turn.message.written_via, planner);
        assert_eq!(turn.tool_calls[0].written_via, planner);
        let event = fx
            .store
            .store_session_event(NewSessionEvent {
                written_via: ORCHESTRATOR_PEER.into(),
                ..event("s1", "breaker.open", "e1")
            })
            .await
            .unwrap();
        assert_eq!(event.written_via, ORCHESTRATOR_PEER);

        let page = PageRequest::default;
        assert_eq!(
            fx.store.get_session("s1").await.unwrap().written_via,
            ORCHESTRATOR_PEER
        );
        let listed: Vec<String> = fx
            .store
            .list_messages("s1", page())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|row| row.written_via)
            .collect();
        assert_eq!(listed, [ORCHESTRATOR_PEER, planner]);
        let calls = fx.store.list_tool_usage("s1", page()).await.unwrap().items;
        assert_eq!(calls, [call, turn.tool_calls[0].clone()]);
        let events = fx
            .store
            .list_session_events("s1", page())
            .await
            .unwrap()
            .items;
        assert_eq!(events, [event]);
        for table in WRITTEN_TABLES {
            assert_eq!(
                fx.count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE written_via = '{ORCHESTRATOR_PEER}'"
                ))
                .await,
                1,
                "{table}: the identity is in the table, for SQL readers too"
            );
        }
    }
}

contract! {
    async fn a_repeat_over_another_connection_keeps_the_stored_identity(backend) {
        let fx = fixture(backend).await;
        let first = NewSession {
            written_via: ORCHESTRATOR_PEER.into(),
            ..new_session("s1")
        };
        fx.store.create_session(first.clone()).await.unwrap();
        let again = fx
            .store
            .create_session(NewSession {
                written_via: String::new(),
                ..first
            })
            .await
            .unwrap();
        assert_eq!(again.written_via, ORCHESTRATOR_PEER);

        let message = NewMessage {
            written_via: ORCHESTRATOR_PEER.into(),
            ..keyed("s1", "hello", "m1")
        };
        let stored = fx.store.store_message(message.clone()).await.unwrap();
        let repeat = fx
            .store
            .store_message(NewMessage {
                written_via: "spiffe://heist.local/planner".into(),
                ..message
            })
            .await
            .unwrap();
        assert_eq!(repeat, stored, "the repeat answers the stored row");

        let call = NewToolUsage {
            written_via: ORCHESTRATOR_PEER.into(),
            ..tool_usage("s1", "t1")
        };
        fx.store.store_tool_usage(call.clone()).await.unwrap();
        let repeat = fx
            .store
            .store_tool_usage(NewToolUsage {
                written_via: String::new(),
                ..call.clone()
            })
            .await
            .unwrap();
        assert_eq!(repeat.written_via, ORCHESTRATOR_PEER);

        let turn = turn_via("s1", "m2", "t2", ORCHESTRATOR_PEER);
        fx.store.store_turn(turn).await.unwrap();
        let other = turn_via("s1", "m2", "t2", "spiffe://heist.local/planner");
        let repeat = fx.store.store_turn(other).await.unwrap();
        assert_eq!(repeat.message.written_via, ORCHESTRATOR_PEER);
        assert_eq!(repeat.tool_calls[0].written_via, ORCHESTRATOR_PEER);

        let event = NewSessionEvent {
            written_via: ORCHESTRATOR_PEER.into(),
            ..event("s1", "breaker.open", "e1")
        };
        fx.store.store_session_event(event.clone()).await.unwrap();
        let repeat = fx
            .store
            .store_session_event(NewSessionEvent {
                written_via: "spiffe://heist.local/mole".into(),
                ..event
            })
            .await
            .unwrap();
        assert_eq!(repeat.written_via, ORCHESTRATOR_PEER);

        for table in WRITTEN_TABLES {
            assert_eq!(
                fx.count(&format!(
                    "SELECT COUNT(*) FROM {table} \
                     WHERE written_via IS NULL OR written_via <> '{ORCHESTRATOR_PEER}'"
                ))
                .await,
                0,
                "{table}: nothing was rewritten"
            );
        }
    }
}

contract! {
    async fn a_write_over_plaintext_is_stored_with_no_identity_and_read_as_empty(backend) {
        let fx = fixture(backend).await;
        let session = fx.store.create_session(new_session("s1")).await.unwrap();
        let turn = fx
            .store
            .store_turn(turn("s1", "m1", &["t1"]))
            .await
            .unwrap();
        let event = fx
            .store
            .store_session_event(event("s1", "breaker.open", "e1"))
            .await
            .unwrap();
        assert_eq!(session.written_via, "");
        assert_eq!(turn.message.written_via, "");
        assert_eq!(turn.tool_calls[0].written_via, "");
        assert_eq!(event.written_via, "");
        for table in WRITTEN_TABLES {
            assert_eq!(
                fx.count(&format!("SELECT COUNT(*) FROM {table} WHERE written_via IS NULL"))
                    .await,
                1,
                "{table}: NULL, not an empty string"
            );
        }
        let page = PageRequest::default;
        assert_eq!(fx.store.get_session("s1").await.unwrap().written_via, "");
        assert_eq!(
            fx.store.list_messages("s1", page()).await.unwrap().items,
            [turn.message]
        );
        assert_eq!(
            fx.store.list_tool_usage("s1", page()).await.unwrap().items,
            turn.tool_calls
        );
        assert_eq!(
            fx.store.list_session_events("s1", page()).await.unwrap().items,
            [event]
        );
    }
}

/// A version 3 build's rows: the schema without `written_via`, and one row
/// in each table with its writer.
const V3_ROWS: &str = "INSERT INTO sessions (session_id, start_time, written_by)
            VALUES ('old', '2025-01-01T00:00:00.000000Z', 'orchestrator');
        INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp,
            written_by)
            VALUES ('old', 1, 'planner', 'r', 'from v3', '2025-01-01T00:00:01.000000Z', 'planner');
        INSERT INTO tool_usage (session_id, turn_id, agent_name, tool_name, tool_params,
            tool_result, timestamp, success, written_by)
            VALUES ('old', 1, 'hacker', 'calculator', '1+1', '2', '2025-01-01T00:00:02.000000Z',
                TRUE, 'hacker');
        INSERT INTO session_events (session_id, kind, detail, timestamp, written_by)
            VALUES ('old', 'breaker.open', '', '2025-01-01T00:00:03.000000Z', 'mole');";

contract! {
    async fn a_version_3_database_gains_written_via_and_its_rows_read_back_with_none(backend) {
        let fx = migrated_from(backend, 3, V3_ROWS).await;
        assert_eq!(fx.schema_version().await, 6);
        for table in WRITTEN_TABLES {
            assert_eq!(
                fx.count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE written_via IS NULL AND written_by <> ''"
                ))
                .await,
                1,
                "{table}: the old row stays with its writer, and no identity"
            );
        }
        let page = PageRequest::default;
        let writers = |by: &str, via: &str| (by.to_owned(), via.to_owned());
        let session = fx.store.get_session("old").await.unwrap();
        assert_eq!(
            writers(&session.written_by, &session.written_via),
            writers("orchestrator", "")
        );
        let messages = fx.store.list_messages("old", page()).await.unwrap().items;
        assert_eq!(messages[0].message, "from v3");
        assert_eq!(
            writers(&messages[0].written_by, &messages[0].written_via),
            writers("planner", "")
        );
        let calls = fx.store.list_tool_usage("old", page()).await.unwrap().items;
        assert_eq!(
            writers(&calls[0].written_by, &calls[0].written_via),
            writers("hacker", "")
        );
        let events = fx
            .store
            .list_session_events("old", page())
            .await
            .unwrap()
            .items;
        assert_eq!(
            writers(&events[0].written_by, &events[0].written_via),
            writers("mole", "")
        );

        let new = fx
            .store
            .store_message(NewMessage {
                written_via: ORCHESTRATOR_PEER.into(),
                ..keyed("old", "after the upgrade", "m2")
            })
            .await
            .unwrap();
        assert_eq!(new.written_via, ORCHESTRATOR_PEER);
        assert_eq!(
            fx.store.list_messages("old", page()).await.unwrap().items[1],
            new
        );
    }
}

// --- token accounting -----------------------------------------------------------------

/// A message of `agent` in turn `turn_id`, keyed by both, that used `tokens`.
fn spent(session_id: &str, agent: &str, turn_id: i64, tokens: TokenCounts) -> NewMessage {
    NewMessage {
        turn_id,
        agent_name: agent.into(),
        tokens,
        ..keyed(
            session_id,
            "we go at dawn",
            &format!("{agent}/{turn_id}/message"),
        )
    }
}

fn counted(input: i64, output: i64) -> TokenCounts {
    TokenCounts {
        input: Some(input),
        output: Some(output),
        estimated: false,
    }
}

contract! {
    async fn token_counts_are_stored_read_back_and_summed_per_agent(backend) {
        let fx = started(backend, "s1").await;
        let first = fx
            .store
            .store_message(spent("s1", "planner", 1, counted(1200, 80)))
            .await
            .unwrap();
        assert_eq!(first.tokens, counted(1200, 80));
        let turn = NewTurn {
            message: spent("s1", "hacker", 2, counted(900, 45)),
            tool_calls: vec![NewToolUsage {
                agent_name: "hacker".into(),
                ..tool_usage("s1", "t1")
            }],
        };
        let rows = fx.store.store_turn(turn).await.unwrap();
        assert_eq!(rows.message.tokens, counted(900, 45));
        let guessed = TokenCounts {
            estimated: true,
            ..counted(30, 3)
        };
        fx.store
            .store_message(spent("s1", "planner", 3, guessed))
            .await
            .unwrap();
        fx.store
            .store_message(spent("s1", "hacker", 4, TokenCounts::default()))
            .await
            .unwrap();

        let listed = fx
            .store
            .list_messages("s1", PageRequest::default())
            .await
            .unwrap()
            .items;
        let tokens: Vec<TokenCounts> = listed.iter().map(|row| row.tokens).collect();
        assert_eq!(
            tokens,
            [counted(1200, 80), counted(900, 45), guessed, TokenCounts::default()]
        );

        let usage = fx.store.session_usage("s1").await.unwrap();
        let hacker = UsageTotals {
            input_tokens: 900,
            output_tokens: 45,
            turns_with_usage: 1,
            turns_without_usage: 1,
            estimated_turns: 0,
        };
        let planner = UsageTotals {
            input_tokens: 1230,
            output_tokens: 83,
            turns_with_usage: 2,
            turns_without_usage: 0,
            estimated_turns: 1,
        };
        assert_eq!(
            usage,
            SessionUsage {
                session_id: "s1".into(),
                agents: vec![
                    AgentUsage {
                        agent_name: "hacker".into(),
                        usage: hacker,
                    },
                    AgentUsage {
                        agent_name: "planner".into(),
                        usage: planner,
                    },
                ],
                total: UsageTotals {
                    input_tokens: 2130,
                    output_tokens: 128,
                    turns_with_usage: 3,
                    turns_without_usage: 1,
                    estimated_turns: 1,
                },
            }
        );
    }
}

contract! {
    async fn unknown_token_counts_are_stored_as_null_and_add_nothing(backend) {
        let fx = started(backend, "s1").await;
        let half = TokenCounts {
            input: Some(50),
            output: None,
            estimated: false,
        };
        fx.store
            .store_message(spent("s1", "mole", 1, TokenCounts::default()))
            .await
            .unwrap();
        fx.store
            .store_message(spent("s1", "mole", 2, half))
            .await
            .unwrap();
        assert_eq!(
            fx.count("SELECT COUNT(*) FROM messages WHERE input_tokens IS NULL").await,
            1,
            "unknown is NULL, not 0"
        );
        assert_eq!(
            fx.count("SELECT COUNT(*) FROM messages WHERE output_tokens IS NULL").await,
            2
        );
        let usage = fx.store.session_usage("s1").await.unwrap();
        assert_eq!(
            usage.total,
            UsageTotals {
                input_tokens: 50,
                output_tokens: 0,
                turns_with_usage: 1,
                turns_without_usage: 1,
                estimated_turns: 0,
            }
        );
    }
}

contract! {
    async fn a_session_without_messages_has_no_agents_and_zero_turns(backend) {
        let fx = started(backend, "s1").await;
        let usage = fx.store.session_usage("s1").await.unwrap();
        assert_eq!(usage, SessionUsage::from_agents("s1", Vec::new()));
        assert_eq!(usage.total, UsageTotals::default());
    }
}

contract! {
    async fn the_usage_of_an_unknown_or_malformed_session_is_refused(backend) {
        let fx = started(backend, "s1").await;
        let error = fx.store.session_usage("ghost").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        for bad in ["", "a b"] {
            let error = fx.store.session_usage(bad).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        }
    }
}

contract! {
    async fn bad_token_counts_are_refused_naming_the_field_before_the_writer(backend) {
        let fx = started(backend, "s1").await;
        let commits = fx.store.commit_count();
        let cases = [
            (
                TokenCounts { input: Some(-1), ..TokenCounts::default() },
                "input_tokens must be >= 0, got -1",
            ),
            (
                TokenCounts { output: Some(-5), ..counted(1, 1) },
                "output_tokens must be >= 0, got -5",
            ),
            (
                TokenCounts { output: Some(MAX_TURN_TOKENS + 1), ..TokenCounts::default() },
                "output_tokens must be at most 1000000000 for one turn, got 1000000001",
            ),
            (
                TokenCounts { estimated: true, ..TokenCounts::default() },
                "tokens_estimated must come with input_tokens or output_tokens",
            ),
        ];
        for (tokens, expected) in cases {
            let error = fx
                .store
                .store_message(spent("s1", "planner", 1, tokens))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
            assert!(error.to_string().starts_with(expected), "{error}");
            let turn = NewTurn {
                message: spent("s1", "planner", 1, tokens),
                tool_calls: Vec::new(),
            };
            let error = fx.store.store_turn(turn).await.unwrap_err();
            assert!(error.to_string().starts_with(expected), "{error}");
        }
        let most = fx
            .store
            .store_message(spent("s1", "planner", 1, counted(MAX_TURN_TOKENS, 0)))
            .await
            .unwrap();
        assert_eq!(most.tokens.input, Some(MAX_TURN_TOKENS));
        assert_eq!(fx.store.commit_count(), commits + 1, "only the good one was written");
    }
}

contract! {
    async fn a_repeat_with_other_token_counts_is_a_conflict_and_the_same_ones_a_repeat(backend) {
        let fx = started(backend, "s1").await;
        let stored = fx
            .store
            .store_message(spent("s1", "planner", 1, counted(10, 1)))
            .await
            .unwrap();
        let repeat = fx
            .store
            .store_message(spent("s1", "planner", 1, counted(10, 1)))
            .await
            .unwrap();
        assert_eq!(repeat, stored);
        let error = fx
            .store
            .store_message(spent("s1", "planner", 1, counted(10, 2)))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
    }
}

/// A version 4 build's rows (no token columns): one session with two
/// messages of two agents.
const V4_ROWS: &str = "INSERT INTO sessions (session_id, start_time, written_by)
            VALUES ('old', '2025-01-01T00:00:00.000000Z', 'orchestrator');
        INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp)
            VALUES ('old', 1, 'planner', 'r', 'from v4', '2025-01-01T00:00:01.000000Z'),
                   ('old', 2, 'hacker', 'r', 'also v4', '2025-01-01T00:00:02.000000Z');";

contract! {
    async fn a_version_4_database_gains_token_columns_and_its_messages_read_back_unknown(backend) {
        let fx = migrated_from(backend, 4, V4_ROWS).await;
        assert_eq!(fx.schema_version().await, 6);
        assert_eq!(
            fx.count(
                "SELECT COUNT(*) FROM messages WHERE input_tokens IS NULL \
                 AND output_tokens IS NULL AND NOT tokens_estimated"
            )
            .await,
            2,
            "the old rows stay, their usage unknown"
        );
        let messages = fx
            .store
            .list_messages("old", PageRequest::default())
            .await
            .unwrap()
            .items;
        assert_eq!(messages[0].message, "from v4");
        assert_eq!(messages[0].tokens, TokenCounts::default());
        let usage = fx.store.session_usage("old").await.unwrap();
        assert_eq!(
            (usage.total.turns_with_usage, usage.total.turns_without_usage),
            (0, 2)
        );

        let new = fx
            .store
            .store_message(spent("old", "planner", 3, counted(7, 3)))
            .await
            .unwrap();
        assert_eq!(new.tokens, counted(7, 3));
        let usage = fx.store.session_usage("old").await.unwrap();
        assert_eq!(
            (usage.total.input_tokens, usage.total.output_tokens, usage.total.turns_with_usage),
            (7, 3, 1)
        );
    }
}

mod chain;
mod checkpoints;
