//! The SELECTs of the PostgreSQL backend (the same as SQLite's, in
//! PostgreSQL's placeholders) and the row mappings, on a pooled client or
//! inside a write's transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::pg;
use crate::store::cursor::SessionCursor;
use crate::store::error::StoreError;
use crate::store::queries::{USAGE_GROUPING, USAGE_PER_AGENT_SELECT};
use crate::store::types::{
    AgentUsage, MessageRow, SessionEventRow, SessionRow, SessionStatus, TokenCounts, ToolUsageRow,
    UsageTotals,
};

const SESSION_SELECT: &str = "SELECT s.session_id, s.start_time, COALESCE(s.end_time, ''), \
     s.num_turns, s.status, s.metadata, \
     (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.session_id), \
     (SELECT COUNT(*) FROM tool_usage t WHERE t.session_id = s.session_id), \
     COALESCE(s.written_by, ''), COALESCE(s.written_via, '') FROM sessions s";

/// A kind of row listed by ID within a session: its SELECT and its mapping.
pub(crate) trait Listed: Sized + Send + 'static {
    /// `SELECT <columns> FROM <table>`, without a condition.
    const SELECT: &'static str;
    /// Reads one row of [`Self::SELECT`].
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error>;
}

impl Listed for MessageRow {
    const SELECT: &'static str = "SELECT id, session_id, turn_id, agent_name, agent_role, \
        message, timestamp, is_error, idempotency_key, trace_id, COALESCE(written_by, ''), \
        COALESCE(written_via, ''), input_tokens, output_tokens, tokens_estimated FROM messages";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(MessageRow {
            id: row.try_get(0)?,
            session_id: row.try_get(1)?,
            turn_id: row.try_get(2)?,
            agent_name: row.try_get(3)?,
            agent_role: row.try_get(4)?,
            message: row.try_get(5)?,
            timestamp: row.try_get(6)?,
            is_error: row.try_get(7)?,
            idempotency_key: row.try_get(8)?,
            trace_id: row.try_get(9)?,
            written_by: row.try_get(10)?,
            written_via: row.try_get(11)?,
            tokens: TokenCounts {
                input: row.try_get(12)?,
                output: row.try_get(13)?,
                estimated: row.try_get(14)?,
            },
        })
    }
}

impl Listed for ToolUsageRow {
    const SELECT: &'static str = "SELECT id, session_id, turn_id, agent_name, tool_name, \
        tool_params, tool_result, timestamp, success, duration_ms, idempotency_key, trace_id, \
        COALESCE(written_by, ''), COALESCE(written_via, '') FROM tool_usage";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(ToolUsageRow {
            id: row.try_get(0)?,
            session_id: row.try_get(1)?,
            turn_id: row.try_get(2)?,
            agent_name: row.try_get(3)?,
            tool_name: row.try_get(4)?,
            tool_params: row.try_get(5)?,
            tool_result: row.try_get(6)?,
            timestamp: row.try_get(7)?,
            success: row.try_get(8)?,
            duration_ms: row.try_get(9)?,
            idempotency_key: row.try_get(10)?,
            trace_id: row.try_get(11)?,
            written_by: row.try_get(12)?,
            written_via: row.try_get(13)?,
        })
    }
}

impl Listed for SessionEventRow {
    const SELECT: &'static str = "SELECT id, session_id, kind, detail, timestamp, \
        idempotency_key, COALESCE(written_by, ''), COALESCE(written_via, '') FROM session_events";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(SessionEventRow {
            id: row.try_get(0)?,
            session_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            detail: row.try_get(3)?,
            timestamp: row.try_get(4)?,
            idempotency_key: row.try_get(5)?,
            written_by: row.try_get(6)?,
            written_via: row.try_get(7)?,
        })
    }
}

/// One session with its counts.
pub(crate) async fn session(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    let sql = format!("{SESSION_SELECT} WHERE s.session_id = $1");
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    client
        .query_opt(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .map(|row| session_row(&row))
        .transpose()
}

/// One session, or `SessionNotFound`.
pub(crate) async fn existing_session(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<SessionRow, StoreError> {
    session(client, session_id)
        .await?
        .ok_or_else(|| not_found(session_id))
}

/// The status of a session, or `SessionNotFound`; `FOR UPDATE` locks the
/// session's row until the transaction ends (writes take it, so the writes
/// of one session run one at a time, on any replica).
pub(crate) async fn session_status(
    client: &impl GenericClient,
    session_id: &str,
    lock: bool,
) -> Result<SessionStatus, StoreError> {
    let sql = if lock {
        "SELECT status FROM sessions WHERE session_id = $1 FOR UPDATE"
    } else {
        "SELECT status FROM sessions WHERE session_id = $1"
    };
    let statement = client.prepare_cached(sql).await.map_err(pg)?;
    let row = client
        .query_opt(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .ok_or_else(|| not_found(session_id))?;
    status(row.try_get(0).map_err(pg)?)
}

/// Up to `limit` sessions, newest first, optionally of one status, after `after`.
pub(crate) async fn sessions(
    client: &impl GenericClient,
    status: Option<SessionStatus>,
    after: Option<&SessionCursor>,
    limit: usize,
) -> Result<Vec<SessionRow>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let status_text = status.map(SessionStatus::as_str);
    if let Some(status) = &status_text {
        values.push(status);
        conditions.push(format!("s.status = ${}", values.len()));
    }
    if let Some(after) = after {
        values.push(&after.start_time);
        values.push(&after.session_id);
        conditions.push(format!(
            "(s.start_time, s.session_id) < (${}, ${})",
            values.len() - 1,
            values.len()
        ));
    }
    let limit = sql_limit(limit);
    values.push(&limit);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "{SESSION_SELECT}{filter} ORDER BY s.start_time DESC, s.session_id DESC LIMIT ${}",
        values.len()
    );
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    let rows = client.query(&statement, &values).await.map_err(pg)?;
    rows.iter().map(session_row).collect()
}

/// Up to `limit` of a session's rows with an ID above `after_id`, in ID order.
pub(crate) async fn rows_after<T: Listed>(
    client: &impl GenericClient,
    session_id: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let sql = format!(
        "{} WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        T::SELECT
    );
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    let rows = client
        .query(&statement, &[&session_id, &after_id, &sql_limit(limit)])
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|row| T::from_row(row).map_err(pg))
        .collect()
}

/// A session's token usage per agent, by agent name (the session's
/// existence is the caller's to check).
pub(crate) async fn usage_per_agent(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Vec<AgentUsage>, StoreError> {
    let sql =
        format!("{USAGE_PER_AGENT_SELECT} WHERE session_id = $1 AND turn_id > 0 {USAGE_GROUPING}");
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    let rows = client.query(&statement, &[&session_id]).await.map_err(pg)?;
    rows.iter()
        .map(|row| {
            Ok(AgentUsage {
                agent_name: row.try_get(0).map_err(pg)?,
                usage: UsageTotals {
                    input_tokens: row.try_get(1).map_err(pg)?,
                    output_tokens: row.try_get(2).map_err(pg)?,
                    turns_with_usage: row.try_get(3).map_err(pg)?,
                    turns_without_usage: row.try_get(4).map_err(pg)?,
                    estimated_turns: row.try_get(5).map_err(pg)?,
                },
            })
        })
        .collect()
}

/// The messages with these IDs, in ID order (what the notifications name).
pub(crate) async fn messages_by_id(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<MessageRow>, StoreError> {
    let sql = format!("{} WHERE id = ANY($1) ORDER BY id", MessageRow::SELECT);
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    let rows = client.query(&statement, &[&ids]).await.map_err(pg)?;
    rows.iter()
        .map(|row| MessageRow::from_row(row).map_err(pg))
        .collect()
}

/// The row a non-empty key names in a session; an empty key names nothing.
pub(crate) async fn by_key<T: Listed>(
    client: &impl GenericClient,
    session_id: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    if key.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "{} WHERE session_id = $1 AND idempotency_key = $2",
        T::SELECT
    );
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    client
        .query_opt(&statement, &[&session_id, &key])
        .await
        .map_err(pg)?
        .map(|row| T::from_row(&row).map_err(pg))
        .transpose()
}

pub(super) fn not_found(session_id: &str) -> StoreError {
    StoreError::SessionNotFound {
        session_id: session_id.to_owned(),
    }
}

pub(super) fn status(text: String) -> Result<SessionStatus, StoreError> {
    SessionStatus::parse(&text)
        .ok_or_else(|| StoreError::internal(format!("unknown session status {text:?}")))
}

/// A row count as PostgreSQL's BIGINT (a count that large means "no limit").
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn session_row(row: &Row) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        session_id: row.try_get(0).map_err(pg)?,
        start_time: row.try_get(1).map_err(pg)?,
        end_time: row.try_get(2).map_err(pg)?,
        num_turns: row.try_get(3).map_err(pg)?,
        status: status(row.try_get(4).map_err(pg)?)?,
        metadata: row.try_get(5).map_err(pg)?,
        message_count: row.try_get(6).map_err(pg)?,
        tool_usage_count: row.try_get(7).map_err(pg)?,
        written_by: row.try_get(8).map_err(pg)?,
        written_via: row.try_get(9).map_err(pg)?,
    })
}
