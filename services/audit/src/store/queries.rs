//! The SELECTs shared by the writer (to answer repeats) and the readers, and the row mappings.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use super::cursor::SessionCursor;
use super::error::StoreError;
use super::types::{
    AgentUsage, MessageRow, SessionEventRow, SessionRow, SessionStatus, TokenCounts, ToolUsageRow,
    UsageTotals,
};

/// A session with its counts; `end_time` is NULL while active and read as "".
const SESSION_SELECT: &str = "SELECT s.session_id, s.start_time, COALESCE(s.end_time, ''), \
     s.num_turns, s.status, s.metadata, \
     (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.session_id), \
     (SELECT COUNT(*) FROM tool_usage t WHERE t.session_id = s.session_id), \
     COALESCE(s.written_by, ''), COALESCE(s.written_via, '') FROM sessions s";

const MESSAGE_SELECT: &str = "SELECT id, session_id, turn_id, agent_name, agent_role, message, \
     timestamp, is_error, idempotency_key, trace_id, COALESCE(written_by, ''), \
     COALESCE(written_via, ''), input_tokens, output_tokens, tokens_estimated FROM messages";

/// A session's token usage per agent, from its turns' messages (framing
/// messages, turn 0, are no turns): each backend adds `WHERE session_id =
/// <its placeholder> AND turn_id > 0` and [`USAGE_GROUPING`]. A message
/// with a count (input or output) has usage; unknown counts add nothing.
pub(crate) const USAGE_PER_AGENT_SELECT: &str = "SELECT agent_name, \
     CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
     COUNT(*) FILTER (WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL), \
     COUNT(*) FILTER (WHERE input_tokens IS NULL AND output_tokens IS NULL), \
     COUNT(*) FILTER (WHERE tokens_estimated \
         AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)) \
     FROM messages";

/// The grouping and order of [`USAGE_PER_AGENT_SELECT`]: one row per agent, by name.
pub(crate) const USAGE_GROUPING: &str = "GROUP BY agent_name ORDER BY agent_name";

const TOOL_USAGE_SELECT: &str = "SELECT id, session_id, turn_id, agent_name, tool_name, \
     tool_params, tool_result, timestamp, success, duration_ms, idempotency_key, trace_id, \
     COALESCE(written_by, ''), COALESCE(written_via, '') FROM tool_usage";

const SESSION_EVENT_SELECT: &str = "SELECT id, session_id, kind, detail, timestamp, \
     idempotency_key, COALESCE(written_by, ''), COALESCE(written_via, '') FROM session_events";

impl ToSql for SessionStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for SessionStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        SessionStatus::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown session status {text:?}").into()))
    }
}

/// One session with its message and tool usage counts.
pub(crate) fn session(
    conn: &Connection,
    session_id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!("{SESSION_SELECT} WHERE s.session_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([session_id], session_row)
        .optional()?)
}

/// One session, or `SessionNotFound`.
pub(crate) fn existing_session(
    conn: &Connection,
    session_id: &str,
) -> Result<SessionRow, StoreError> {
    session(conn, session_id)?.ok_or_else(|| StoreError::SessionNotFound {
        session_id: session_id.to_owned(),
    })
}

/// The status of a session, or `SessionNotFound` (cheaper than [`session`]: no counts).
pub(crate) fn session_status(
    conn: &Connection,
    session_id: &str,
) -> Result<SessionStatus, StoreError> {
    conn.prepare_cached("SELECT status FROM sessions WHERE session_id = ?1")?
        .query_row([session_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::SessionNotFound {
            session_id: session_id.to_owned(),
        })
}

/// Up to `limit` sessions, newest first, optionally of one status, after `after`.
pub(crate) fn sessions(
    conn: &Connection,
    status: Option<SessionStatus>,
    after: Option<&SessionCursor>,
    limit: usize,
) -> Result<Vec<SessionRow>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<&dyn ToSql> = Vec::new();
    if let Some(status) = &status {
        conditions.push("s.status = ?");
        values.push(status);
    }
    if let Some(after) = after {
        conditions.push("(s.start_time, s.session_id) < (?, ?)");
        values.push(&after.start_time);
        values.push(&after.session_id);
    }
    let limit = sql_limit(limit);
    values.push(&limit);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql =
        format!("{SESSION_SELECT}{filter} ORDER BY s.start_time DESC, s.session_id DESC LIMIT ?");
    collect(conn, &sql, values.as_slice(), session_row)
}

/// Reads up to `limit` of a session's rows with an ID above `after_id`, in ID order.
pub(crate) type FetchAfter<T> = fn(&Connection, &str, i64, usize) -> Result<Vec<T>, StoreError>;

/// Up to `limit` of a session's messages with an ID above `after_id`, in ID order.
pub(crate) fn messages(
    conn: &Connection,
    session_id: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    let sql = format!("{MESSAGE_SELECT} WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    collect(
        conn,
        &sql,
        params![session_id, after_id, sql_limit(limit)],
        message_row,
    )
}

/// Up to `limit` of a session's tool calls with an ID above `after_id`, in ID order.
pub(crate) fn tool_usage(
    conn: &Connection,
    session_id: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<ToolUsageRow>, StoreError> {
    let sql = format!("{TOOL_USAGE_SELECT} WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    collect(
        conn,
        &sql,
        params![session_id, after_id, sql_limit(limit)],
        tool_usage_row,
    )
}

/// Up to `limit` of a session's events with an ID above `after_id`, in ID order.
pub(crate) fn session_events(
    conn: &Connection,
    session_id: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<SessionEventRow>, StoreError> {
    let sql =
        format!("{SESSION_EVENT_SELECT} WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    collect(
        conn,
        &sql,
        params![session_id, after_id, sql_limit(limit)],
        session_event_row,
    )
}

/// A session's token usage per agent, by agent name (the session's
/// existence is the caller's to check).
pub(crate) fn usage_per_agent(
    conn: &Connection,
    session_id: &str,
) -> Result<Vec<AgentUsage>, StoreError> {
    let sql =
        format!("{USAGE_PER_AGENT_SELECT} WHERE session_id = ?1 AND turn_id > 0 {USAGE_GROUPING}");
    collect(conn, &sql, [session_id], |row| {
        Ok(AgentUsage {
            agent_name: row.get(0)?,
            usage: UsageTotals {
                input_tokens: row.get(1)?,
                output_tokens: row.get(2)?,
                turns_with_usage: row.get(3)?,
                turns_without_usage: row.get(4)?,
                estimated_turns: row.get(5)?,
            },
        })
    })
}

/// The message stored in a session under an idempotency key.
pub(crate) fn message_by_key(
    conn: &Connection,
    session_id: &str,
    key: &str,
) -> Result<Option<MessageRow>, StoreError> {
    let sql = format!("{MESSAGE_SELECT} WHERE session_id = ?1 AND idempotency_key = ?2");
    by_key(conn, &sql, session_id, key, message_row)
}

/// The tool call stored in a session under an idempotency key.
pub(crate) fn tool_usage_by_key(
    conn: &Connection,
    session_id: &str,
    key: &str,
) -> Result<Option<ToolUsageRow>, StoreError> {
    let sql = format!("{TOOL_USAGE_SELECT} WHERE session_id = ?1 AND idempotency_key = ?2");
    by_key(conn, &sql, session_id, key, tool_usage_row)
}

/// The session event stored in a session under an idempotency key.
pub(crate) fn session_event_by_key(
    conn: &Connection,
    session_id: &str,
    key: &str,
) -> Result<Option<SessionEventRow>, StoreError> {
    let sql = format!("{SESSION_EVENT_SELECT} WHERE session_id = ?1 AND idempotency_key = ?2");
    by_key(conn, &sql, session_id, key, session_event_row)
}

/// The row a non-empty key names; an empty key names nothing.
fn by_key<T>(
    conn: &Connection,
    sql: &str,
    session_id: &str,
    key: &str,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    if key.is_empty() {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(sql)?
        .query_row([session_id, key], map)
        .optional()?)
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(values, map)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A row count as SQLite's integer (a count that large means "no limit").
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        session_id: row.get(0)?,
        start_time: row.get(1)?,
        end_time: row.get(2)?,
        num_turns: row.get(3)?,
        status: row.get(4)?,
        metadata: row.get(5)?,
        message_count: row.get(6)?,
        tool_usage_count: row.get(7)?,
        written_by: row.get(8)?,
        written_via: row.get(9)?,
    })
}

fn message_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: row.get(0)?,
        session_id: row.get(1)?,
        turn_id: row.get(2)?,
        agent_name: row.get(3)?,
        agent_role: row.get(4)?,
        message: row.get(5)?,
        timestamp: row.get(6)?,
        is_error: row.get(7)?,
        idempotency_key: row.get(8)?,
        trace_id: row.get(9)?,
        written_by: row.get(10)?,
        written_via: row.get(11)?,
        tokens: TokenCounts {
            input: row.get(12)?,
            output: row.get(13)?,
            estimated: row.get(14)?,
        },
    })
}

fn tool_usage_row(row: &Row<'_>) -> rusqlite::Result<ToolUsageRow> {
    Ok(ToolUsageRow {
        id: row.get(0)?,
        session_id: row.get(1)?,
        turn_id: row.get(2)?,
        agent_name: row.get(3)?,
        tool_name: row.get(4)?,
        tool_params: row.get(5)?,
        tool_result: row.get(6)?,
        timestamp: row.get(7)?,
        success: row.get(8)?,
        duration_ms: row.get(9)?,
        idempotency_key: row.get(10)?,
        trace_id: row.get(11)?,
        written_by: row.get(12)?,
        written_via: row.get(13)?,
    })
}

fn session_event_row(row: &Row<'_>) -> rusqlite::Result<SessionEventRow> {
    Ok(SessionEventRow {
        id: row.get(0)?,
        session_id: row.get(1)?,
        kind: row.get(2)?,
        detail: row.get(3)?,
        timestamp: row.get(4)?,
        idempotency_key: row.get(5)?,
        written_by: row.get(6)?,
        written_via: row.get(7)?,
    })
}

/// Every session ID, oldest first (the offline verifier's walk).
pub(crate) fn session_ids_oldest_first(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT session_id FROM sessions ORDER BY start_time, session_id")?;
    let ids = stmt.query_map([], |row| row.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}
