//! The intelligence database: built from the shipped SQL at start-up, then
//! opened read-only behind an authorizer, size limits and a time limit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::hooks::Authorization;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::{Value, json};

use super::policy;
use super::pool::{Pool, Pooled};
use crate::caller::Caller;
use crate::clock::Clock;
use crate::config::{ConfigError, IntelDbConfig};
use crate::tool::ToolError;

/// The database's schema and rows, shipped with the crate.
const INTEL_SQL: &str = include_str!("../../intel/intel.sql");

/// How many SQLite VM steps run between two looks at the clock.
const PROGRESS_STEPS: i32 = 1_000;

/// The longest string or blob a query may build, in bytes.
const MAX_VALUE_BYTES: i32 = 1_000_000;

/// The longest SQL text SQLite accepts, in bytes.
const MAX_SQL_BYTES: i32 = 100_000;

/// The most text a result may carry before it is cut short, in bytes.
const MAX_RESULT_BYTES: usize = 1 << 20;

/// The rows a query returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryResult {
    /// The column names.
    pub(crate) columns: Vec<String>,
    /// The rows, each a JSON value per column.
    pub(crate) rows: Vec<Vec<Value>>,
    /// Whether rows were left out to keep the answer within its limits.
    pub(crate) truncated: bool,
}

/// How queries share the database: how long one may run, how many run at
/// once, and each client's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// How long one query may run.
    pub(crate) time_limit: Duration,
    /// How many read-only connections run queries at once.
    pub(crate) connections: usize,
    /// How many of them one client may hold at once.
    pub(crate) per_client: usize,
    /// How long a query waits for a connection.
    pub(crate) queue_wait: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub(crate) fn from_config(config: &crate::config::ToolsConfig) -> Self {
        Self {
            time_limit: config.query_time_limit,
            connections: config.query_connections,
            per_client: config.query_per_client,
            queue_wait: config.query_queue_wait,
        }
    }
}

/// The built database and its pool of read-only connections.
pub(crate) struct IntelDb {
    /// The read-only connections, shared fairly between clients.
    pool: Pool,
    /// Tells the time for the deadline.
    clock: Arc<dyn Clock>,
    /// How long one query may run.
    time_limit: Duration,
    /// Where the database file is.
    path: PathBuf,
    /// Keeps a temporary database's directory alive; removed on drop.
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for IntelDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntelDb")
            .field("path", &self.path)
            .field("time_limit", &self.time_limit)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// Why a running query stopped early: the first of these that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Nobody waits for the answer any more.
    CallerGone,
    /// The caller's deadline passed.
    CallerDeadline,
    /// The query's own time limit passed.
    TimeLimit,
}

impl IntelDb {
    /// Builds the database where `config` says and opens `limits.connections`
    /// read-only connections to it (the file is on disk, temporary or not,
    /// so every connection sees the same built database).
    pub(crate) fn open(
        config: &IntelDbConfig,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let (path, temp_dir) = match config {
            IntelDbConfig::File(path) => (path.clone(), None),
            IntelDbConfig::Temporary => {
                let dir = tempfile::Builder::new()
                    .prefix("heist-intel-")
                    .tempdir()
                    .map_err(|e| db_error(Path::new("(temporary directory)"), e))?;
                (dir.path().join("intel.db"), Some(dir))
            }
        };
        build(&path)?;
        let connections = (0..limits.connections)
            .map(|_| {
                let last_denial = Arc::new(Mutex::new(None));
                let connection = open_read_only(&path, Arc::clone(&last_denial))?;
                Ok(Pooled {
                    connection,
                    last_denial,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self {
            pool: Pool::new(connections, limits.per_client, limits.queue_wait),
            clock,
            time_limit: limits.time_limit,
            path,
            _temp_dir: temp_dir,
        })
    }

    /// Where the database file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How many connections are free (no query holds them).
    pub(crate) fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// Runs one read-only statement for the service itself (untimed: the
    /// metrics time the tool's queries).
    pub(crate) fn query(&self, sql: &str, max_rows: usize) -> Result<QueryResult, ToolError> {
        self.run_for(sql, max_rows, &Caller::internal())
    }

    /// Runs one read-only statement for `caller`, returning at most
    /// `max_rows` rows; it stops at the time limit, at the caller's
    /// deadline, or when the caller goes away, whichever comes first.
    pub(crate) fn query_for(
        &self,
        sql: &str,
        max_rows: usize,
        caller: &Caller,
    ) -> Result<QueryResult, ToolError> {
        // Timed for the metrics, waiting for a connection included.
        let started = std::time::Instant::now();
        let result = self.run_for(sql, max_rows, caller);
        crate::metrics::database_query_took(started.elapsed());
        result
    }

    /// [`Self::query_for`] without its timing.
    fn run_for(
        &self,
        sql: &str,
        max_rows: usize,
        caller: &Caller,
    ) -> Result<QueryResult, ToolError> {
        let mut lease = self.pool.checkout(caller)?;
        // A limit too large to add to the clock means no time limit at all.
        let limit = self.clock.now().checked_add(self.time_limit);
        let clock = Arc::clone(&self.clock);
        let watched = caller.clone();
        let stop = move || {
            if watched.is_cancelled() {
                Some(Stop::CallerGone)
            } else if watched.deadline_passed() {
                Some(Stop::CallerDeadline)
            } else if limit.is_some_and(|limit| clock.now() >= limit) {
                Some(Stop::TimeLimit)
            } else {
                None
            }
        };
        let stop_reason = stop.clone();
        lease
            .connection
            .progress_handler(PROGRESS_STEPS, Some(move || stop().is_some()))
            .map_err(|e| ToolError::Internal(format!("installing the time limit: {e}")))?;
        let pooled: &Pooled = &lease;
        let errors = SqlErrors {
            last_denial: &pooled.last_denial,
            time_limit: self.time_limit,
            stop_reason: &stop_reason,
        };
        *errors.denial() = None;
        run(&pooled.connection, sql, max_rows, &errors)
    }
}

/// Runs `sql` on `connection`, mapping failures with `errors`.
fn run(
    connection: &Connection,
    sql: &str,
    max_rows: usize,
    errors: &SqlErrors<'_>,
) -> Result<QueryResult, ToolError> {
    let mut statement = connection.prepare(sql).map_err(|e| errors.map(&e, sql))?;
    if !statement.readonly() {
        return Err(read_only("statements that write"));
    }
    let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
    let mut rows = statement.query([]).map_err(|e| errors.map(&e, sql))?;
    let mut result = QueryResult {
        columns,
        rows: Vec::new(),
        truncated: false,
    };
    let mut budget = MAX_RESULT_BYTES;
    while let Some(row) = rows.next().map_err(|e| errors.map(&e, sql))? {
        if result.rows.len() == max_rows {
            result.truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(result.columns.len());
        for index in 0..result.columns.len() {
            let value = row.get_ref(index).map_err(|e| errors.map(&e, sql))?;
            budget = budget.saturating_sub(value_size(value));
            values.push(to_json(value));
        }
        if budget == 0 {
            result.truncated = true;
            break;
        }
        result.rows.push(values);
    }
    Ok(result)
}

/// What is needed to explain a failure of one query.
struct SqlErrors<'a> {
    /// What the connection's authorizer last refused.
    last_denial: &'a Mutex<Option<String>>,
    /// The query's time limit.
    time_limit: Duration,
    /// Why the query was stopped, if it was.
    stop_reason: &'a dyn Fn() -> Option<Stop>,
}

impl SqlErrors<'_> {
    /// The authorizer's last refusal.
    fn denial(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_denial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Maps a SQLite failure while running `sql` to the caller's view of it.
    fn map(&self, error: &rusqlite::Error, sql: &str) -> ToolError {
        let code = error.sqlite_error_code();
        match (error, code) {
            (_, Some(ErrorCode::AuthorizationForStatementDenied)) => {
                let what = self.denial().take();
                read_only(what.as_deref().unwrap_or("this statement"))
            }
            (_, Some(ErrorCode::ReadOnly)) => read_only("writing"),
            (_, Some(ErrorCode::OperationInterrupted)) => match (self.stop_reason)() {
                Some(Stop::CallerGone) => {
                    ToolError::Cancelled("query stopped: the caller went away".to_owned())
                }
                Some(Stop::CallerDeadline) => {
                    ToolError::DeadlineExceeded("query stopped at the caller's deadline".to_owned())
                }
                Some(Stop::TimeLimit) | None => ToolError::DeadlineExceeded(format!(
                    "query stopped at the time limit of {} ms",
                    self.time_limit.as_millis()
                )),
            },
            (_, Some(ErrorCode::TooBig)) => ToolError::invalid(format!(
                "query: a value grew past the limit of {MAX_VALUE_BYTES} bytes"
            )),
            (rusqlite::Error::MultipleStatement, _) => {
                ToolError::invalid("query: only one statement per query")
            }
            (rusqlite::Error::SqlInputError { msg, offset, .. }, _) => ToolError::InvalidArgument {
                message: format!("query: SQL error: {}", sqlite_message(msg)),
                position: usize::try_from(*offset)
                    .ok()
                    .and_then(|offset| sql.get(..offset))
                    .map(|before| before.chars().count()),
            },
            (rusqlite::Error::SqliteFailure(_, Some(msg)), Some(ErrorCode::Unknown)) => {
                ToolError::invalid(format!("query: SQL error: {}", sqlite_message(msg)))
            }
            _ => ToolError::Internal(format!(
                "query failed: {}",
                sqlite_message(&error.to_string())
            )),
        }
    }
}

/// The longest SQLite message quoted back, in characters (it may echo the query).
const MAX_MESSAGE_CHARS: usize = 200;

/// `message` on one line, control characters escaped, cut to
/// [`MAX_MESSAGE_CHARS`] (the shared quoting of caller values).
fn sqlite_message(message: &str) -> heist_plumbing::quote::Quoted<'_> {
    heist_plumbing::quote(message).at_most(MAX_MESSAGE_CHARS)
}

/// A refusal to do `what` on the read-only database.
fn read_only(what: &str) -> ToolError {
    ToolError::PermissionDenied(format!(
        "the intelligence database is read-only: {what} is not allowed"
    ))
}

/// A build or open failure of the database at `path`.
fn db_error(path: &Path, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::IntelDb {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Builds the database into `path` from the shipped SQL: first into a
/// sibling temporary file, then renamed over `path`, so that nobody ever
/// opens a half-built database.
fn build(path: &Path) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".intel-")
        .suffix(".db.tmp")
        .tempfile_in(dir)
        .map_err(|e| db_error(path, e))?;
    let connection = Connection::open(staging.path()).map_err(|e| db_error(path, e))?;
    connection
        .execute_batch(INTEL_SQL)
        .map_err(|e| db_error(path, e))?;
    connection.close().map_err(|(_, e)| db_error(path, e))?;
    staging.persist(path).map_err(|e| db_error(path, e.error))?;
    Ok(())
}

/// Opens `path` read-only with query-only mode, size limits and the
/// authorizer, which records what it refuses in `last_denial`.
fn open_read_only(
    path: &Path,
    last_denial: Arc<Mutex<Option<String>>>,
) -> Result<Connection, ConfigError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags).map_err(|e| db_error(path, e))?;
    connection
        .pragma_update(None, "query_only", true)
        .map_err(|e| db_error(path, e))?;
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES),
        (Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES),
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
    ] {
        connection
            .set_limit(limit, value)
            .map_err(|e| db_error(path, e))?;
    }
    connection
        .authorizer(Some(
            move |context: rusqlite::hooks::AuthContext<'_>| match policy::check(&context.action) {
                Ok(()) => Authorization::Allow,
                Err(what) => {
                    *last_denial.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
                    Authorization::Deny
                }
            },
        ))
        .map_err(|e| db_error(path, e))?;
    Ok(connection)
}

/// Roughly how many bytes `value` adds to an answer.
fn value_size(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
        _ => 8,
    }
}

/// `value` as JSON: numbers stay numbers, blobs are described.
fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(r) => serde_json::Number::from_f64(r)
            .map_or_else(|| Value::String(r.to_string()), Value::Number),
        ValueRef::Text(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => Value::String(format!("<blob of {} bytes>", bytes.len())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::clock::SystemClock;

    fn limits(time_limit: Duration) -> Limits {
        Limits {
            time_limit,
            ..Limits::from_config(&crate::config::ToolsConfig::default())
        }
    }

    fn db() -> IntelDb {
        IntelDb::open(
            &IntelDbConfig::Temporary,
            limits(Duration::from_secs(2)),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    fn count(db: &IntelDb, table: &str) -> i64 {
        let result = db
            .query(&format!("SELECT COUNT(*) FROM {table}"), 10)
            .unwrap();
        result.rows[0][0].as_i64().unwrap()
    }

    /// A clock that moves a second forward every time it is read.
    struct Racing(Mutex<Instant>);

    impl Clock for Racing {
        fn now(&self) -> Instant {
            let mut now = self.0.lock().unwrap();
            *now += Duration::from_secs(1);
            *now
        }
    }

    #[test]
    fn the_shipped_sql_builds_between_50_and_150_rows() {
        let db = db();
        let tables = [
            "access_levels",
            "shifts",
            "employees",
            "guards",
            "guard_schedule",
            "alarm_zones",
            "cameras",
            "doors",
            "vault",
        ];
        let total: i64 = tables.iter().map(|t| count(&db, t)).sum();
        assert!((50..=150).contains(&total), "{total} rows");
    }

    #[test]
    fn the_foreign_keys_of_the_shipped_data_all_resolve() {
        let db = db();
        let orphans = db
            .query(
                "SELECT (SELECT COUNT(*) FROM employees WHERE access_level NOT IN (SELECT level FROM access_levels))
                      + (SELECT COUNT(*) FROM employees WHERE shift_id NOT IN (SELECT id FROM shifts))
                      + (SELECT COUNT(*) FROM guards WHERE employee_id NOT IN (SELECT id FROM employees))
                      + (SELECT COUNT(*) FROM guard_schedule WHERE guard_id NOT IN (SELECT id FROM guards))
                      + (SELECT COUNT(*) FROM cameras WHERE alarm_zone_id NOT IN (SELECT id FROM alarm_zones))
                      + (SELECT COUNT(*) FROM doors WHERE camera_id NOT IN (SELECT id FROM cameras))",
                1,
            )
            .unwrap();
        assert_eq!(orphans.rows, vec![vec![json!(0)]]);
    }

    #[test]
    fn the_guards_names_and_shifts_agree_with_employees_and_shifts() {
        let db = db();
        let disagreeing = db
            .query(
                "SELECT COUNT(*) FROM guards g JOIN employees e ON e.id = g.employee_id \
                 JOIN shifts s ON s.id = e.shift_id \
                 WHERE g.name <> e.name OR lower(g.shift) <> lower(s.name)",
                1,
            )
            .unwrap();
        assert_eq!(disagreeing.rows, vec![vec![json!(0)]]);
        let night = db
            .query(
                "SELECT name FROM guards WHERE shift='night' ORDER BY id",
                10,
            )
            .unwrap();
        assert_eq!(
            night.rows,
            vec![vec![json!("Victor Stahl")], vec![json!("Ruth Ngata")]]
        );
        let any_case = db
            .query("SELECT COUNT(*) FROM guards WHERE shift = 'Night'", 1)
            .unwrap();
        assert_eq!(any_case.rows, vec![vec![json!(2)]]);
    }

    #[test]
    fn rows_come_back_as_json_with_their_column_names() {
        let result = db()
            .query(
                "SELECT code, blind_spot_minutes, note, 1.5, x'00ff' FROM cameras WHERE code = 'CAM-07'",
                10,
            )
            .unwrap();
        assert_eq!(
            result.columns,
            ["code", "blind_spot_minutes", "note", "1.5", "x'00ff'"]
        );
        assert_eq!(result.rows[0][0], json!("CAM-07"));
        assert_eq!(result.rows[0][1], json!(4));
        assert_eq!(result.rows[0][3], json!(1.5));
        assert_eq!(result.rows[0][4], json!("<blob of 2 bytes>"));
        assert!(!result.truncated);
    }

    #[test]
    fn rows_beyond_the_limit_are_cut_and_flagged() {
        let result = db().query("SELECT * FROM employees", 5).unwrap();
        assert_eq!(result.rows.len(), 5);
        assert!(result.truncated);
        let exact = db().query("SELECT * FROM vault", 2).unwrap();
        assert!(!exact.truncated);
    }

    #[test]
    fn writes_are_denied_by_the_authorizer_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intel.db");
        let db = IntelDb::open(
            &IntelDbConfig::File(path.clone()),
            limits(Duration::from_secs(2)),
            Arc::new(SystemClock),
        )
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let attempts = [
            (
                "INSERT INTO guards VALUES (9, 1, 'G-999', 1, 1, 1)",
                "inserting into guards",
            ),
            ("UPDATE vault SET lock = 'none'", "updating vault"),
            ("DELETE FROM cameras", "deleting from cameras"),
            ("DROP TABLE guards", "changing the schema"),
            ("CREATE TABLE loot (x)", "changing the schema"),
            ("ALTER TABLE guards ADD COLUMN bribed", "altering guards"),
            ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
            ("DETACH DATABASE main", "DETACH"),
            ("PRAGMA query_only = 0", "PRAGMA query_only"),
            ("PRAGMA table_info(guards)", "PRAGMA table_info"),
            ("BEGIN", "a transaction"),
            ("SAVEPOINT s", "a transaction"),
            (
                "WITH x AS (SELECT 1) INSERT INTO shifts SELECT 9, 'x', 'a', 'b', 1 FROM x",
                "inserting into shifts",
            ),
        ];
        for (sql, what) in attempts {
            match db.query(sql, 10) {
                Err(ToolError::PermissionDenied(message)) => {
                    assert!(message.contains(what), "{sql}: {message}");
                }
                other => panic!("{sql}: expected a permission denial, got {other:?}"),
            }
        }
        assert_eq!(count(&db, "guards"), 8);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn vacuum_is_refused_as_a_write() {
        let err = db().query("VACUUM", 10).unwrap_err();
        assert!(matches!(err, ToolError::PermissionDenied(_)), "{err:?}");
    }

    #[test]
    fn a_syntax_error_points_at_the_offending_token() {
        let err = db().query("SELECT * FRM guards", 10).unwrap_err();
        match err {
            ToolError::InvalidArgument { message, position } => {
                assert!(message.starts_with("query: SQL error:"), "{message}");
                assert_eq!(position, Some(9));
            }
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_table_is_an_invalid_argument() {
        let err = db().query("SELECT * FROM loot", 10).unwrap_err();
        assert!(err.to_string().contains("no such table: loot"), "{err}");
    }

    #[test]
    fn a_runaway_recursive_query_stops_at_a_100_ms_limit() {
        let db = IntelDb::open(
            &IntelDbConfig::Temporary,
            limits(Duration::from_millis(100)),
            Arc::new(SystemClock),
        )
        .unwrap();
        let started = Instant::now();
        let err = db
            .query(
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
                 SELECT COUNT(*) FROM r",
                10,
            )
            .unwrap_err();
        assert_eq!(
            err,
            ToolError::DeadlineExceeded("query stopped at the time limit of 100 ms".into())
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_time_limit_follows_the_injected_clock() {
        let db = IntelDb::open(
            &IntelDbConfig::Temporary,
            limits(Duration::from_millis(2_500)),
            Arc::new(Racing(Mutex::new(Instant::now()))),
        )
        .unwrap();
        // The clock passes the deadline on the third progress check.
        let err = db
            .query(
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
                 SELECT COUNT(*) FROM r",
                10,
            )
            .unwrap_err();
        assert!(matches!(err, ToolError::DeadlineExceeded(_)));
        assert!(db.query("SELECT 1", 10).is_ok());
    }

    #[test]
    fn a_time_limit_too_large_for_the_clock_means_no_deadline() {
        let db = IntelDb::open(
            &IntelDbConfig::Temporary,
            limits(Duration::MAX),
            Arc::new(SystemClock),
        )
        .unwrap();
        let result = db.query("SELECT COUNT(*) FROM employees", 1).unwrap();
        assert_eq!(result.rows, vec![vec![json!(22)]]);
    }

    #[test]
    fn an_oversized_value_is_refused() {
        let err = db()
            .query("SELECT length(randomblob(2000000))", 10)
            .unwrap_err();
        assert!(err.to_string().contains("past the limit"), "{err}");
    }

    #[test]
    fn an_existing_file_is_rebuilt_from_the_shipped_sql() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intel.db");
        std::fs::write(&path, "not a database").unwrap();
        let db = IntelDb::open(
            &IntelDbConfig::File(path.clone()),
            limits(Duration::from_secs(2)),
            Arc::new(SystemClock),
        )
        .unwrap();
        assert_eq!(db.path(), path);
        assert_eq!(count(&db, "vault"), 2);
    }

    #[test]
    fn a_path_in_a_missing_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = IntelDbConfig::File(dir.path().join("absent").join("intel.db"));
        let err = IntelDb::open(
            &config,
            limits(Duration::from_secs(2)),
            Arc::new(SystemClock),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::IntelDb { .. }), "{err}");
    }

    #[test]
    fn a_temporary_database_is_removed_when_dropped() {
        let db = db();
        let path = db.path().to_owned();
        assert!(path.exists());
        drop(db);
        assert!(!path.exists());
    }
}
