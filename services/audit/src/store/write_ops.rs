//! What each write does inside its savepoint: the checks that need the
//! database (session state, idempotent repeats) and the INSERT or UPDATE.
//!
//! Messages, tool calls and session events share one shape: insert unless the
//! idempotency key is taken ([`insert_keyed`]), else answer the stored row or
//! refuse ([`repeat_or_refuse`]). Messages and tool calls need an active
//! session; session events are accepted in any status. A turn is its message
//! and its tool calls applied one after the other in the turn's one savepoint.
//!
//! Requests arrive here already validated; see `validate`.

use rusqlite::{Connection, OptionalExtension, Params, params};

use super::chain::StartColumns;
use super::error::StoreError;
use super::types::{
    Committed, EndSession, MessageRow, NewMessage, NewSession, NewSessionEvent, NewToolUsage,
    NewTurn, SessionEventRow, SessionRow, SessionStatus, ToolUsageRow, TurnRows,
};
use super::writer::{Applied, Stamp, Write};
use super::{links, queries};
use crate::metrics::{Rows, Table};

impl Write for NewSession {
    type Output = SessionRow;

    /// Creates the session, or returns it unchanged when it exists with the same metadata.
    fn apply(&self, conn: &Connection, at: &Stamp<'_>) -> Result<Applied<SessionRow>, StoreError> {
        let now = at.now;
        if let Some(stored) = queries::session(conn, &self.session_id)? {
            if stored.metadata != self.metadata {
                return Err(StoreError::SessionExists {
                    session_id: self.session_id.clone(),
                });
            }
            return Ok(Applied::quiet(stored));
        }
        let row = self.row(now);
        let start = StartColumns::of(&row, at.integrity.chain);
        conn.prepare_cached(
            "INSERT INTO sessions (session_id, start_time, end_time, num_turns, status, metadata, \
             written_by, written_via, chain_seq, prev_hash, row_hash, chain_head, chain_next, \
             signed_next) \
             VALUES (?1, ?2, NULL, 0, ?3, ?4, NULLIF(?5, ''), NULLIF(?6, ''), ?7, ?8, ?9, ?9, ?10, ?7)",
        )?
        .execute(params![
            self.session_id,
            now,
            row.status,
            self.metadata,
            self.written_by,
            self.written_via,
            start.seq,
            start.prev,
            start.hash,
            start.next
        ])?;
        Ok(Applied::inserted(row, Table::sessions))
    }
}

impl NewSession {
    /// The row of this session, created at `now`: active, no turns, no rows.
    pub(super) fn row(&self, now: &str) -> SessionRow {
        SessionRow {
            session_id: self.session_id.clone(),
            start_time: now.to_owned(),
            end_time: String::new(),
            num_turns: 0,
            status: SessionStatus::Active,
            metadata: self.metadata.clone(),
            message_count: 0,
            tool_usage_count: 0,
            written_by: self.written_by.clone(),
            written_via: self.written_via.clone(),
        }
    }
}

impl Write for EndSession {
    type Output = SessionRow;

    /// Ends an active session; an ended one is returned unchanged if it ended the same way.
    fn apply(&self, conn: &Connection, at: &Stamp<'_>) -> Result<Applied<SessionRow>, StoreError> {
        let now = at.now;
        let stored = queries::existing_session(conn, &self.session_id)?;
        if stored.status.is_ended() {
            if stored.status == self.status && stored.num_turns == self.num_turns {
                return Ok(Applied::quiet(stored));
            }
            return Err(StoreError::EndedDifferently {
                session_id: stored.session_id,
                status: stored.status,
                num_turns: stored.num_turns,
            });
        }
        conn.prepare_cached(
            "UPDATE sessions SET end_time = ?2, num_turns = ?3, status = ?4 WHERE session_id = ?1",
        )?
        .execute(params![self.session_id, now, self.num_turns, self.status])?;
        links::end(conn, at, &self.session_id, self.status, self.num_turns)?;
        Ok(Applied {
            output: SessionRow {
                end_time: now.to_owned(),
                num_turns: self.num_turns,
                status: self.status,
                ..stored
            },
            event: Some(Committed::SessionEnded {
                session_id: self.session_id.clone(),
            }),
            rows: Rows::default(),
        })
    }
}

impl Write for NewMessage {
    type Output = MessageRow;

    /// Stores the message, or returns the stored one for a repeated idempotency key.
    fn apply(&self, conn: &Connection, at: &Stamp<'_>) -> Result<Applied<MessageRow>, StoreError> {
        let now = at.now;
        let ended = ended_status(conn, &self.session_id)?;
        if ended.is_none() {
            let inserted = insert_keyed(
                conn,
                "INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, \
                 timestamp, is_error, idempotency_key, trace_id, written_by, written_via, \
                 input_tokens, output_tokens, tokens_estimated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULLIF(?10, ''), NULLIF(?11, ''), \
                 ?12, ?13, ?14)",
                params![
                    self.session_id,
                    self.turn_id,
                    self.agent_name,
                    self.agent_role,
                    self.message,
                    now,
                    self.is_error,
                    self.idempotency_key,
                    self.trace_id,
                    self.written_by,
                    self.written_via,
                    self.tokens.input,
                    self.tokens.output,
                    self.tokens.estimated
                ],
            )?;
            if let Some(id) = inserted {
                let row = self.row(id, now);
                links::append(conn, at, &self.session_id, &row)?;
                return Ok(Applied {
                    event: Some(Committed::Message(Box::new(row.clone()))),
                    ..Applied::inserted(row, Table::messages)
                });
            }
        }
        let stored = queries::message_by_key(conn, &self.session_id, &self.idempotency_key)?;
        repeat_or_refuse(
            Key::of(&self.session_id, &self.idempotency_key),
            ended,
            stored,
            |row| self.same_content(row),
        )
    }
}

impl NewMessage {
    /// The row this request stores as row `id` at `now`.
    pub(super) fn row(&self, id: i64, now: &str) -> MessageRow {
        MessageRow {
            id,
            session_id: self.session_id.clone(),
            turn_id: self.turn_id,
            agent_name: self.agent_name.clone(),
            agent_role: self.agent_role.clone(),
            message: self.message.clone(),
            timestamp: now.to_owned(),
            is_error: self.is_error,
            idempotency_key: self.idempotency_key.clone(),
            trace_id: self.trace_id.clone(),
            written_by: self.written_by.clone(),
            written_via: self.written_via.clone(),
            tokens: self.tokens,
        }
    }

    /// Whether `row` stores this request (the trace ID and writer of a retry
    /// may differ; the stored writer stays).
    pub(super) fn same_content(&self, row: &MessageRow) -> bool {
        row.turn_id == self.turn_id
            && row.agent_name == self.agent_name
            && row.agent_role == self.agent_role
            && row.message == self.message
            && row.is_error == self.is_error
            && row.tokens == self.tokens
    }
}

impl Write for NewToolUsage {
    type Output = ToolUsageRow;

    /// Stores the tool call, or returns the stored one for a repeated idempotency key.
    fn apply(
        &self,
        conn: &Connection,
        at: &Stamp<'_>,
    ) -> Result<Applied<ToolUsageRow>, StoreError> {
        let now = at.now;
        let ended = ended_status(conn, &self.session_id)?;
        if ended.is_none() {
            let inserted = insert_keyed(
                conn,
                "INSERT INTO tool_usage (session_id, turn_id, agent_name, tool_name, \
                 tool_params, tool_result, timestamp, success, duration_ms, \
                 idempotency_key, trace_id, written_by, written_via) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                 NULLIF(?12, ''), NULLIF(?13, ''))",
                params![
                    self.session_id,
                    self.turn_id,
                    self.agent_name,
                    self.tool_name,
                    self.tool_params,
                    self.tool_result,
                    now,
                    self.success,
                    self.duration_ms,
                    self.idempotency_key,
                    self.trace_id,
                    self.written_by,
                    self.written_via
                ],
            )?;
            if let Some(id) = inserted {
                let row = self.row(id, now);
                links::append(conn, at, &self.session_id, &row)?;
                return Ok(Applied::inserted(row, Table::tool_usage));
            }
        }
        let stored = queries::tool_usage_by_key(conn, &self.session_id, &self.idempotency_key)?;
        repeat_or_refuse(
            Key::of(&self.session_id, &self.idempotency_key),
            ended,
            stored,
            |row| self.same_content(row),
        )
    }
}

impl NewToolUsage {
    /// The row this request stores as row `id` at `now`.
    pub(super) fn row(&self, id: i64, now: &str) -> ToolUsageRow {
        ToolUsageRow {
            id,
            session_id: self.session_id.clone(),
            turn_id: self.turn_id,
            agent_name: self.agent_name.clone(),
            tool_name: self.tool_name.clone(),
            tool_params: self.tool_params.clone(),
            tool_result: self.tool_result.clone(),
            timestamp: now.to_owned(),
            success: self.success,
            duration_ms: self.duration_ms,
            idempotency_key: self.idempotency_key.clone(),
            trace_id: self.trace_id.clone(),
            written_by: self.written_by.clone(),
            written_via: self.written_via.clone(),
        }
    }

    /// Whether `row` stores this request (the trace ID and writer of a retry
    /// may differ; the stored writer stays).
    pub(super) fn same_content(&self, row: &ToolUsageRow) -> bool {
        row.turn_id == self.turn_id
            && row.agent_name == self.agent_name
            && row.tool_name == self.tool_name
            && row.tool_params == self.tool_params
            && row.tool_result == self.tool_result
            && row.success == self.success
            && row.duration_ms == self.duration_ms
    }
}

impl Write for NewTurn {
    type Output = TurnRows;

    /// Stores the message, then each tool call, each exactly as if stored
    /// alone (a repeated key answers its stored row). The first refusal fails
    /// the turn, and the writer rolls back the turn's whole savepoint with it.
    /// Publishes what the message publishes: watchers see it as if it came
    /// from `StoreMessage` (tool calls publish nothing).
    fn apply(&self, conn: &Connection, at: &Stamp<'_>) -> Result<Applied<TurnRows>, StoreError> {
        let message = self.message.apply(conn, at)?;
        let mut rows = message.rows;
        let tool_calls = self
            .tool_calls
            .iter()
            .map(|call| {
                call.apply(conn, at).map(|applied| {
                    rows = rows.plus(applied.rows);
                    applied.output
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Applied {
            output: TurnRows {
                message: message.output,
                tool_calls,
            },
            event: message.event,
            rows,
        })
    }
}

impl Write for NewSessionEvent {
    type Output = SessionEventRow;

    /// Stores the event whatever the session's status (a breaker may change
    /// state while the session ends), or returns the stored one for a repeated key.
    fn apply(
        &self,
        conn: &Connection,
        at: &Stamp<'_>,
    ) -> Result<Applied<SessionEventRow>, StoreError> {
        let now = at.now;
        queries::session_status(conn, &self.session_id)?;
        let inserted = insert_keyed(
            conn,
            "INSERT INTO session_events (session_id, kind, detail, timestamp, idempotency_key, \
             written_by, written_via) VALUES (?1, ?2, ?3, ?4, ?5, NULLIF(?6, ''), NULLIF(?7, ''))",
            params![
                self.session_id,
                self.kind,
                self.detail,
                now,
                self.idempotency_key,
                self.written_by,
                self.written_via
            ],
        )?;
        if let Some(id) = inserted {
            let row = self.row(id, now);
            links::append(conn, at, &self.session_id, &row)?;
            return Ok(Applied::inserted(row, Table::session_events));
        }
        let stored = queries::session_event_by_key(conn, &self.session_id, &self.idempotency_key)?;
        repeat_or_refuse(
            Key::of(&self.session_id, &self.idempotency_key),
            None,
            stored,
            |row| row.kind == self.kind && row.detail == self.detail,
        )
    }
}

impl NewSessionEvent {
    /// The row this request stores as row `id` at `now`.
    pub(super) fn row(&self, id: i64, now: &str) -> SessionEventRow {
        SessionEventRow {
            id,
            session_id: self.session_id.clone(),
            kind: self.kind.clone(),
            detail: self.detail.clone(),
            timestamp: now.to_owned(),
            idempotency_key: self.idempotency_key.clone(),
            written_by: self.written_by.clone(),
            written_via: self.written_via.clone(),
        }
    }
}

/// The status of a session that has ended, `None` while it is active, or
/// `SessionNotFound`.
fn ended_status(conn: &Connection, session_id: &str) -> Result<Option<SessionStatus>, StoreError> {
    let status = queries::session_status(conn, session_id)?;
    Ok(status.is_ended().then_some(status))
}

/// Runs `insert` (an INSERT into a table with a unique `(session_id,
/// idempotency_key)` index for non-empty keys) unless its key is taken:
/// the new row's ID, or `None` when a row already holds the key.
fn insert_keyed(
    conn: &Connection,
    insert: &str,
    values: impl Params,
) -> Result<Option<i64>, StoreError> {
    let sql = format!(
        "{insert} ON CONFLICT (session_id, idempotency_key) WHERE idempotency_key <> '' \
         DO NOTHING RETURNING id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(values, |row| row.get(0))
        .optional()?)
}

/// The session and idempotency key of a write that was not inserted.
pub(super) struct Key<'a> {
    session_id: &'a str,
    idempotency_key: &'a str,
}

impl<'a> Key<'a> {
    pub(super) fn of(session_id: &'a str, idempotency_key: &'a str) -> Self {
        Key {
            session_id,
            idempotency_key,
        }
    }
}

/// Decides a write that inserted nothing: a repeat of the row stored under
/// its key, a key reused for other content, or a write refused because its
/// session had `ended` (`None`: the insert was tried and the key was taken).
pub(super) fn repeat_or_refuse<T>(
    key: Key<'_>,
    ended: Option<SessionStatus>,
    stored: Option<T>,
    same_content: impl Fn(&T) -> bool,
) -> Result<Applied<T>, StoreError> {
    match stored {
        Some(row) if same_content(&row) => Ok(Applied::quiet(row)),
        Some(_) => Err(StoreError::IdempotencyConflict {
            session_id: key.session_id.to_owned(),
            key: key.idempotency_key.to_owned(),
        }),
        None => match ended {
            Some(status) => Err(StoreError::SessionEnded {
                session_id: key.session_id.to_owned(),
                status,
            }),
            None => Err(StoreError::internal(
                "an insert was ignored although no row holds its idempotency key",
            )),
        },
    }
}
