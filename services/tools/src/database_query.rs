//! The `database_query` tool: answers questions about the bank from a
//! read-only SQLite intelligence database.
//!
//! A query is either one SQL `SELECT`/`WITH` statement or one of the seed's
//! keyword questions ("guard schedule", "security employees", "access
//! levels", ...), which map to [`canned`] queries; a query that is not valid
//! SQL but names a topic (the seed's `SELECT guard schedule`) answers the
//! topic and says so, and an SQL error names the tables and their columns
//! ([`schema`]). The database is built at start-up ([`intel_db`]) and opened
//! read-only by a small [`pool`] of connections shared fairly between
//! clients, behind an authorizer ([`policy`]), size limits, a row limit and
//! a time limit; a query also stops when its caller's deadline passes or its
//! caller goes away.

mod canned;
mod intel_db;
mod policy;
mod pool;
mod schema;
mod sql_text;
mod table;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use self::intel_db::{IntelDb, Limits};
use self::schema::Schema;
use crate::caller::Caller;
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, ToolsConfig, require_positive};
use crate::tool::{Parameter, Tool, ToolError, ToolOutput, parameters_schema, required_argument};

/// The database query's only argument (its description, naming the tables
/// and topics, is built with the database: see [`DatabaseQuery::query_help`]).
const PARAMETERS: &[Parameter] = &[Parameter {
    name: "query",
    description: "One SQL SELECT statement, or a question naming a topic such as \
                  `guard schedule`, `security employees` or `access levels`.",
}];

/// The seed's example query, shown to the LLM.
const EXAMPLE_QUERY: &str = "SELECT * FROM guards WHERE shift='night'";

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
    /// The tables and their columns, for the description and SQL errors.
    schema: Schema,
    /// The description, naming the tables and their columns.
    description: String,
    /// The `query` argument's description, naming the tables and topics.
    query_help: String,
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
        require_positive("query_connections", config.query_connections as u128)?;
        require_positive("query_per_client", config.query_per_client as u128)?;
        if config.query_per_client > config.query_connections {
            return Err(ConfigError::InvalidLimit {
                name: "query_per_client",
                reason: format!(
                    "{} is more than the {} query_connections",
                    config.query_per_client, config.query_connections
                ),
            });
        }
        let db = IntelDb::open(&config.intel_db, Limits::from_config(config), clock)?;
        let schema = Schema::read(&db).map_err(|e| ConfigError::IntelDb {
            path: db.path().to_owned(),
            reason: format!("reading the schema: {e}"),
        })?;
        let tables = schema.all();
        let topics = canned::topics();
        Ok(Self {
            db,
            max_rows: config.max_rows,
            description: format!(
                "Queries the read-only intelligence database on First National Heist Bank. \
                 Send one SQLite SELECT statement (at most {} rows come back), e.g. \
                 `{EXAMPLE_QUERY}`, or a topic question: {topics}. Tables: {tables}.",
                config.max_rows,
            ),
            query_help: format!(
                "One SQLite SELECT statement, e.g. `{EXAMPLE_QUERY}`, over the tables \
                 {tables}; or a topic question: {topics}."
            ),
            schema,
        })
    }

    /// Where the database file was built.
    pub fn db_path(&self) -> &Path {
        self.db.path()
    }

    /// How many of the database's connections no query holds.
    pub fn idle_connections(&self) -> usize {
        self.db.idle_connections()
    }
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

    fn parameters_schema(&self) -> Value {
        let mut schema = parameters_schema(PARAMETERS);
        schema["properties"]["query"]["description"] = Value::String(self.query_help.clone());
        schema
    }

    fn call(&self, args: &HashMap<String, String>) -> Result<ToolOutput, ToolError> {
        self.call_for(args, &Caller::internal())
    }

    fn call_for(
        &self,
        args: &HashMap<String, String>,
        caller: &Caller,
    ) -> Result<ToolOutput, ToolError> {
        let query = required_argument(args, PARAMETERS, "query")?;
        match classify(query)? {
            Request::Read(sql) => match self.answer(sql, caller) {
                // Not valid SQL, but the seed's way of asking a topic
                // (`SELECT guard schedule`): answered as that topic.
                Err(ToolError::InvalidArgument { message, position }) => {
                    match canned::as_select(sql) {
                        Some(canned) => self.answer_topic(canned, caller, Some(&message)),
                        None => Err(ToolError::InvalidArgument {
                            message: self.teach(message, sql),
                            position,
                        }),
                    }
                }
                other => other,
            },
            Request::Canned(canned) => self.answer_topic(canned, caller, None),
            Request::OtherSql(text) => match self.answer(text, caller) {
                // Not SQL at all: perhaps a question ("Update on the vault?").
                Err(ToolError::InvalidArgument { message, position })
                    if message.contains("syntax error") =>
                {
                    match canned::find(text) {
                        Some(canned) => self.answer_topic(canned, caller, Some(&message)),
                        None => Err(ToolError::InvalidArgument {
                            message: format!(
                                "{message}; only SELECT queries are run, or name a topic: {}; {}",
                                canned::topics(),
                                self.schema.hint(text)
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
    /// Runs `sql` for `caller` and renders its rows.
    fn answer(&self, sql: &str, caller: &Caller) -> Result<ToolOutput, ToolError> {
        let result = self.db.query_for(sql, self.max_rows, caller)?;
        let table = table::render(&result.columns, &result.rows, result.truncated);
        Ok(ToolOutput {
            text: table,
            data: json!({
                "columns": result.columns,
                "rows": result.rows,
                "truncated": result.truncated,
            }),
        })
    }

    /// Answers the topic `canned` under its title; `not_sql` is why the
    /// query, tried as SQL first, failed (then the answer says it was taken
    /// as the topic question).
    fn answer_topic(
        &self,
        canned: &canned::CannedQuery,
        caller: &Caller,
        not_sql: Option<&str>,
    ) -> Result<ToolOutput, ToolError> {
        let mut output = self.answer(canned.sql, caller)?;
        let topic = canned.name();
        output.text = format!("{}:\n{}", canned.title, output.text);
        output.data["topic"] = json!(topic);
        if let Some(reason) = not_sql {
            let reason = reason
                .strip_prefix("query: SQL error: ")
                .or_else(|| reason.strip_prefix("query: "))
                .unwrap_or(reason);
            let note = format!("answered as the topic question '{topic}' (as SQL: {reason})");
            output.text = format!("{}\n({note})", output.text);
            output.data["note"] = json!(note);
        }
        Ok(output)
    }

    /// An SQL error `message` for `sql`, with the tables and their columns
    /// and the topics, so that the caller can correct the query.
    fn teach(&self, message: String, sql: &str) -> String {
        if !message.starts_with("query: SQL error") {
            return message;
        }
        format!(
            "{message}; {}; or ask a topic: {}",
            self.schema.hint(sql),
            canned::topics()
        )
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
    fn the_seeds_example_query_finds_the_night_guards() {
        let output = call(&tool(), "SELECT * FROM guards WHERE shift='night'").unwrap();
        assert_eq!(output.data["rows"].as_array().unwrap().len(), 2);
        assert!(output.text.contains("Victor Stahl"), "{}", output.text);
    }

    #[test]
    fn a_select_of_a_topic_question_answers_the_topic_and_says_so() {
        let tool = tool();
        let output = call(&tool, "SELECT guard schedule").unwrap();
        assert!(
            output.text.starts_with("Guard schedule:\nguard "),
            "{}",
            output.text
        );
        assert!(
            output.text.ends_with(
                "(answered as the topic question 'guard schedule' (as SQL: no such column: guard))"
            ),
            "{}",
            output.text
        );
        assert_eq!(output.data["topic"], "guard schedule");
        let levels = call(&tool, "SELECT access levels").unwrap();
        assert_eq!(levels.data["topic"], "access levels");
        assert!(levels.data["note"].is_string());
    }

    #[test]
    fn a_sql_error_is_an_invalid_argument_with_sqlites_reason() {
        let message = invalid_message(call(&tool(), "SELECT nope FROM guards"));
        assert!(
            message
                .starts_with("query: SQL error: no such column: nope; the tables are guards(id, "),
            "{message}"
        );
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
            ToolsConfig {
                query_connections: 0,
                query_per_client: 0,
                ..ToolsConfig::default()
            },
            ToolsConfig {
                query_per_client: 0,
                ..ToolsConfig::default()
            },
            ToolsConfig {
                query_connections: 2,
                query_per_client: 3,
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
