//! The `database_query` tool: answers questions about the bank from a
//! read-only SQLite intelligence database.
//!
//! A query is either one SQL `SELECT`/`WITH` statement or one of the seed's
//! keyword questions ("guard schedule", "security employees", "access
//! levels", ...), which map to [`canned`] queries. The database is built at
//! start-up ([`intel_db`]) and opened read-only behind an authorizer
//! ([`policy`]), size limits, a row limit and a time limit.

mod canned;
mod intel_db;
mod policy;
mod sql_text;
mod table;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use self::intel_db::IntelDb;
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, ToolsConfig, require_positive};
use crate::tool::{Parameter, Tool, ToolError, ToolOutput, required_argument};

/// The database query's only argument.
const PARAMETERS: &[Parameter] = &[Parameter {
    name: "query",
    description: "One SQL SELECT statement, or a question naming a topic such as \
                  `guard schedule`, `security employees` or `access levels`.",
}];

/// The longest query accepted, in characters.
const MAX_QUERY_CHARS: usize = 10_000;

/// Keywords that start a statement that reads: run as SQL.
const READ_KEYWORDS: &[&str] = &["SELECT", "WITH", "VALUES"];

/// Keywords that start other statements (writes, settings, transactions),
/// but also plain questions ("Update on the vault?"). Such text goes to
/// SQLite, whose authorizer refuses the statements; if SQLite cannot parse
/// it, it is taken as a question.
const OTHER_SQL_KEYWORDS: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "EXPLAIN",
];

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request<'q> {
    /// A read query to run as given.
    Read(&'q str),
    /// Text that starts like another SQL statement: SQL or a question.
    OtherSql(&'q str),
    /// A keyword question.
    Canned(&'static canned::CannedQuery),
}

/// Decides what `query` is, refusing what cannot be run.
fn classify(query: &str) -> Result<Request<'_>, ToolError> {
    if query.trim().is_empty() {
        return Err(ToolError::invalid(format!(
            "query is empty; give one SELECT statement or a topic: {}",
            canned::topics()
        )));
    }
    let length = query.chars().count();
    if length > MAX_QUERY_CHARS {
        return Err(ToolError::invalid(format!(
            "query is {length} characters long, over the limit of {MAX_QUERY_CHARS}"
        )));
    }
    let keyword = sql_text::first_keyword(query).unwrap_or_default();
    let is_read = READ_KEYWORDS.contains(&keyword.as_str());
    if is_read || OTHER_SQL_KEYWORDS.contains(&keyword.as_str()) {
        let statements = sql_text::statement_count(query);
        if statements > 1 {
            return Err(ToolError::invalid(format!(
                "query holds {statements} statements; send exactly one"
            )));
        }
        return Ok(if is_read {
            Request::Read(query)
        } else {
            Request::OtherSql(query)
        });
    }
    canned::find(query).map(Request::Canned).ok_or_else(|| {
        ToolError::invalid(format!(
            "query is neither SQL nor a known topic; give one SELECT statement \
             or a topic: {}",
            canned::topics()
        ))
    })
}

/// The `database_query` tool.
#[derive(Debug)]
pub struct DatabaseQuery {
    db: IntelDb,
    max_rows: usize,
    /// The description, naming the tables and their columns.
    description: String,
}

impl DatabaseQuery {
    /// Builds the intelligence database as `config` says, with the real clock.
    pub fn new(config: &ToolsConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the intelligence database as `config` says; `clock` times queries.
    pub fn with_clock(config: &ToolsConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        require_positive("max_rows", config.max_rows as u128)?;
        require_positive("query_time_limit", config.query_time_limit.as_nanos())?;
        let db = IntelDb::open(&config.intel_db, config.query_time_limit, clock)?;
        let schema = describe_schema(&db).map_err(|e| ConfigError::IntelDb {
            path: db.path().to_owned(),
            reason: format!("reading the schema: {e}"),
        })?;
        Ok(Self {
            db,
            max_rows: config.max_rows,
            description: format!(
                "Queries the read-only intelligence database on First National Heist Bank. \
                 Send one SQLite SELECT statement (at most {} rows come back) or a topic: {}. \
                 Tables: {schema}.",
                config.max_rows,
                canned::topics()
            ),
        })
    }

    /// Where the database file was built.
    pub fn db_path(&self) -> &Path {
        self.db.path()
    }
}

/// Lists every table with its columns, e.g. `shifts(id, name, ...)`.
fn describe_schema(db: &IntelDb) -> Result<String, ToolError> {
    let tables = db.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        1_000,
    )?;
    let mut described = Vec::with_capacity(tables.rows.len());
    for name in tables.rows.iter().filter_map(|row| row.first()?.as_str()) {
        let quoted = name.replace('"', "\"\"");
        let columns = db
            .query(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"), 1)?
            .columns;
        described.push(format!("{name}({})", columns.join(", ")));
    }
    Ok(described.join(", "))
}

impl Tool for DatabaseQuery {
    fn name(&self) -> &'static str {
        "database_query"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn required_scope(&self) -> &'static str {
        "database_query:use"
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn primary_argument(&self) -> &'static str {
        "query"
    }

    fn call(&self, args: &HashMap<String, String>) -> Result<ToolOutput, ToolError> {
        let query = required_argument(args, PARAMETERS, "query")?;
        match classify(query)? {
            Request::Read(sql) => self.answer(sql, None),
            Request::Canned(canned) => self.answer(canned.sql, Some(canned.title)),
            Request::OtherSql(text) => match self.answer(text, None) {
                // Not SQL at all: perhaps a question ("Update on the vault?").
                Err(ToolError::InvalidArgument { message, position })
                    if message.contains("syntax error") =>
                {
                    match canned::find(text) {
                        Some(canned) => self.answer(canned.sql, Some(canned.title)),
                        None => Err(ToolError::InvalidArgument {
                            message: format!(
                                "{message}; only SELECT queries are run, or name a topic: {}",
                                canned::topics()
                            ),
                            position,
                        }),
                    }
                }
                // A statement SQLite understood enough to refuse (e.g. a write
                // naming an unknown column) is still a write: refused as such.
                Err(ToolError::InvalidArgument { .. }) => {
                    Err(ToolError::PermissionDenied(format!(
                        "database_query is read-only: {} statements are not allowed",
                        sql_text::first_keyword(text).unwrap_or_default()
                    )))
                }
                other => other,
            },
        }
    }
}

impl DatabaseQuery {
    /// Runs `sql` and renders its rows, under `title` if it has one.
    fn answer(&self, sql: &str, title: Option<&str>) -> Result<ToolOutput, ToolError> {
        let result = self.db.query(sql, self.max_rows)?;
        let table = table::render(&result.columns, &result.rows, result.truncated);
        Ok(ToolOutput {
            text: title.map_or_else(|| table.clone(), |title| format!("{title}:\n{table}")),
            data: json!({
                "columns": result.columns,
                "rows": result.rows,
                "truncated": result.truncated,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;

    fn tool() -> DatabaseQuery {
        DatabaseQuery::new(&ToolsConfig::default()).unwrap()
    }

    fn call(tool: &DatabaseQuery, query: &str) -> Result<ToolOutput, ToolError> {
        tool.call(&HashMap::from([("query".to_owned(), query.to_owned())]))
    }

    fn invalid_message(result: Result<ToolOutput, ToolError>) -> String {
        match result {
            Err(ToolError::InvalidArgument { message, .. }) => message,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn a_select_returns_a_table_and_json_rows() {
        let output = call(
            &tool(),
            "SELECT code, blind_spot_minutes FROM cameras WHERE blind_spot_minutes > 0 ORDER BY code",
        )
        .unwrap();
        assert_eq!(
            output.text,
            "code   | blind_spot_minutes\n\
             -------+-------------------\n\
             CAM-04 |                  3\n\
             CAM-07 |                  4\n\
             (2 rows)"
        );
        assert_eq!(
            output.data,
            json!({
                "columns": ["code", "blind_spot_minutes"],
                "rows": [["CAM-04", 3], ["CAM-07", 4]],
                "truncated": false,
            })
        );
    }

    #[test]
    fn a_with_query_is_accepted() {
        let output = call(
            &tool(),
            "WITH armed AS (SELECT * FROM guards WHERE armed = 1) SELECT COUNT(*) AS n FROM armed",
        )
        .unwrap();
        assert_eq!(output.data["rows"], json!([[6]]));
    }

    #[test]
    fn the_seed_keyword_questions_answer_from_canned_queries() {
        let tool = tool();
        let schedule = call(&tool, "guard schedule").unwrap();
        assert!(schedule.text.starts_with("Guard schedule:\nguard "));
        assert!(schedule.text.contains("Victor Stahl"));
        assert_eq!(schedule.data["rows"].as_array().unwrap().len(), 8);

        let security = call(&tool, "security employees").unwrap();
        assert_eq!(security.data["rows"].as_array().unwrap().len(), 11);
        assert_eq!(call(&tool, "security").unwrap().data, security.data);

        let levels = call(&tool, "access levels").unwrap();
        assert_eq!(levels.data["rows"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn every_topic_answers_with_rows() {
        let tool = tool();
        for canned in canned::CANNED {
            let output = call(&tool, canned.keywords[0]).unwrap();
            let rows = output.data["rows"].as_array().unwrap().len();
            assert!(rows > 0, "{} returned no rows", canned.title);
            assert!(output.text.starts_with(canned.title));
        }
    }

    #[test]
    fn an_unknown_question_lists_the_known_topics() {
        let message = invalid_message(call(&tool(), "who has the keys?"));
        assert!(
            message.contains("neither SQL nor a known topic"),
            "{message}"
        );
        assert!(message.contains("guard schedule, security employees, access levels"));
    }

    #[test]
    fn an_empty_query_is_refused() {
        let message = invalid_message(call(&tool(), "  "));
        assert!(message.starts_with("query is empty"), "{message}");
    }

    #[test]
    fn an_overlong_query_is_refused() {
        let query = format!("SELECT 1 {}", " ".repeat(MAX_QUERY_CHARS));
        let message = invalid_message(call(&tool(), &query));
        assert!(message.contains("over the limit of 10000"), "{message}");
    }

    #[test]
    fn multiple_statements_are_refused() {
        let tool = tool();
        for query in ["SELECT 1; SELECT 2", "SELECT 1; DROP TABLE guards"] {
            let message = invalid_message(call(&tool, query));
            assert_eq!(message, "query holds 2 statements; send exactly one");
        }
        assert!(call(&tool, "SELECT 1;").is_ok());
    }

    #[test]
    fn writes_attach_and_pragma_are_denied_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intel.db");
        let config = ToolsConfig {
            intel_db: crate::config::IntelDbConfig::File(path.clone()),
            ..ToolsConfig::default()
        };
        let tool = DatabaseQuery::new(&config).unwrap();
        let before = std::fs::read(&path).unwrap();
        for query in [
            "INSERT INTO guards VALUES (9, 1, 'G-999', 1, 1, 1)",
            "update vault set lock = 'none'",
            "DELETE FROM cameras",
            "DROP TABLE guards",
            "CREATE TABLE loot (x)",
            "ALTER TABLE guards RENAME TO g",
            "ATTACH DATABASE '/tmp/x.db' AS x",
            "DETACH DATABASE x",
            "PRAGMA writable_schema = 1",
            "BEGIN",
            "COMMIT",
            "VACUUM",
            "/* sneaky */ REPLACE INTO shifts VALUES (1, 'x', 'a', 'b', 1)",
            "WITH x AS (SELECT 1) DELETE FROM guards",
            "UPDATE guards SET no_such_column = 'x'",
            "DELETE FROM no_such_table",
        ] {
            assert!(
                matches!(call(&tool, query), Err(ToolError::PermissionDenied(_))),
                "{query} was not denied"
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let guards = call(&tool, "SELECT COUNT(*) FROM guards").unwrap();
        assert_eq!(guards.data["rows"], json!([[8]]));
    }

    #[test]
    fn a_question_that_starts_like_sql_is_answered_as_a_question() {
        let tool = tool();
        let update = call(&tool, "Update on the vault?").unwrap();
        assert!(update.text.starts_with("Vault:"), "{}", update.text);
        let end = call(&tool, "End of shift times").unwrap();
        assert!(end.text.starts_with("Shifts:"), "{}", end.text);
        let message = invalid_message(call(&tool, "Drop me a hint"));
        assert!(message.contains("syntax error"), "{message}");
        assert!(
            message.contains("or name a topic: guard schedule"),
            "{message}"
        );
    }

    #[test]
    fn a_write_naming_a_topic_is_still_denied() {
        let result = call(&tool(), "DELETE FROM guards WHERE name = 'vault'");
        assert!(
            matches!(result, Err(ToolError::PermissionDenied(_))),
            "{result:?}"
        );
    }

    #[test]
    fn a_sql_error_is_an_invalid_argument_with_sqlites_reason() {
        let message = invalid_message(call(&tool(), "SELECT nope FROM guards"));
        assert_eq!(message, "query: SQL error: no such column: nope");
    }

    #[test]
    fn rows_over_the_limit_are_truncated_and_say_so() {
        let config = ToolsConfig {
            max_rows: 3,
            ..ToolsConfig::default()
        };
        let tool = DatabaseQuery::new(&config).unwrap();
        let output = call(&tool, "employees").unwrap();
        assert_eq!(output.data["truncated"], Value::Bool(true));
        assert_eq!(output.data["rows"].as_array().unwrap().len(), 3);
        assert!(output.text.contains("truncated"), "{}", output.text);
    }

    #[test]
    fn a_never_ending_query_stops_with_deadline_exceeded() {
        let config = ToolsConfig {
            query_time_limit: Duration::from_millis(100),
            ..ToolsConfig::default()
        };
        let tool = DatabaseQuery::new(&config).unwrap();
        let result = call(
            &tool,
            "WITH RECURSIVE forever(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM forever) \
             SELECT max(n) FROM forever",
        );
        assert!(
            matches!(result, Err(ToolError::DeadlineExceeded(_))),
            "{result:?}"
        );
    }

    #[test]
    fn the_description_names_topics_and_tables() {
        let tool = tool();
        let description = tool.description();
        assert!(description.contains("guard schedule"), "{description}");
        assert!(
            description.contains("guards(id, employee_id, badge_number"),
            "{description}"
        );
        assert_eq!(tool.required_scope(), "database_query:use");
        assert_eq!(tool.primary_argument(), "query");
    }

    #[test]
    fn a_missing_query_argument_is_refused_by_name() {
        let err = tool().call(&HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing argument 'query'"));
    }

    #[test]
    fn zero_limits_are_config_errors() {
        for config in [
            ToolsConfig {
                max_rows: 0,
                ..ToolsConfig::default()
            },
            ToolsConfig {
                query_time_limit: Duration::ZERO,
                ..ToolsConfig::default()
            },
        ] {
            assert!(matches!(
                DatabaseQuery::new(&config),
                Err(ConfigError::InvalidLimit { .. })
            ));
        }
    }
}
