//! What each write does in its PostgreSQL transaction: the same checks and
//! answers as SQLite's `write_ops` (which owns the shared parts: the rows a
//! request makes, what counts as the same content, repeat or refuse).
//!
//! Every write to a session first locks the session's row (`FOR UPDATE`),
//! so one session's writes run one at a time across every replica: IDs of a
//! session's messages are handed out in commit order (a watcher that has
//! seen ID n has seen every earlier message of its session), and a write
//! cannot slip past a concurrent end. Idempotency rests on the unique
//! `(session_id, idempotency_key)` indexes: `ON CONFLICT DO NOTHING`, then
//! the stored row answers. A new message or an end is announced with
//! `pg_notify`, which PostgreSQL delivers to every listener at COMMIT, in
//! commit order. Every write but a turn with tool calls refuses before it
//! changes a row, so only those need a savepoint in a batch; and each takes
//! few round trips (a message: the lock, then insert-and-announce).

use std::future::Future;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::CHANNEL;
use super::error::pg;
use super::{links, queries};
use crate::metrics::{Rows, Table};
use crate::store::chain::{Chained, StartColumns};
use crate::store::error::StoreError;
use crate::store::types::{
    EndSession, MessageRow, NewMessage, NewSession, NewSessionEvent, NewToolUsage, NewTurn,
    SessionEventRow, SessionRow, SessionStatus, ToolUsageRow, TurnRows,
};
use crate::store::write_ops::{Key, repeat_or_refuse};
use crate::store::writer::Stamp;
use crate::store::writer::Write;

/// One kind of write on PostgreSQL, answering what its SQLite [`Write`] answers.
pub(crate) trait PgWrite: Write + Sync {
    /// The session whose row the write locks (batches are ordered by it).
    fn session_id(&self) -> &str;

    /// Whether a refusal may come after the write changed rows (a turn's
    /// tool call after its message), so that in a batch it needs a
    /// savepoint; other writes refuse before they change anything.
    fn needs_savepoint(&self) -> bool {
        false
    }

    /// Runs the write inside `tx`; `at.now` is its timestamp. Answers the
    /// output and the rows it inserted.
    fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> impl Future<Output = Result<(Self::Output, Rows), StoreError>> + Send;
}

impl PgWrite for NewSession {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(SessionRow, Rows), StoreError> {
        let now = at.now;
        let row = self.row(now);
        let start = StartColumns::of(&row, at.integrity.chain);
        let inserted = execute(
            tx,
            "INSERT INTO sessions (session_id, start_time, end_time, num_turns, status, \
             metadata, written_by, written_via, chain_seq, prev_hash, row_hash, chain_head, \
             chain_next, signed_next) \
             VALUES ($1, $2, NULL, 0, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, $8, $9, $9, $10, $7) \
             ON CONFLICT (session_id) DO NOTHING",
            &[
                &self.session_id,
                &now,
                &row.status.as_str(),
                &self.metadata,
                &self.written_by,
                &self.written_via,
                &start.seq,
                &start.prev,
                &start.hash,
                &start.next,
            ],
        )
        .await?;
        if inserted == 1 {
            return Ok((row, Rows::one(Table::sessions)));
        }
        let stored = queries::existing_session(tx, &self.session_id).await?;
        if stored.metadata != self.metadata {
            return Err(StoreError::SessionExists {
                session_id: self.session_id.clone(),
            });
        }
        Ok((stored, Rows::default()))
    }
}

impl PgWrite for EndSession {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(SessionRow, Rows), StoreError> {
        let now = at.now;
        links::lock(tx, at, &self.session_id).await?;
        let stored = queries::existing_session(tx, &self.session_id).await?;
        if stored.status.is_ended() {
            if stored.status == self.status && stored.num_turns == self.num_turns {
                return Ok((stored, Rows::default()));
            }
            return Err(StoreError::EndedDifferently {
                session_id: stored.session_id,
                status: stored.status,
                num_turns: stored.num_turns,
            });
        }
        execute(
            tx,
            "UPDATE sessions SET end_time = $2, num_turns = $3, status = $4 \
             WHERE session_id = $1",
            &[
                &self.session_id,
                &now,
                &self.num_turns,
                &self.status.as_str(),
            ],
        )
        .await?;
        links::end(tx, at, &self.session_id, self.status, self.num_turns).await?;
        notify(tx, &format!("e{}", self.session_id)).await?;
        let row = SessionRow {
            end_time: now.to_owned(),
            num_turns: self.num_turns,
            status: self.status,
            ..stored
        };
        Ok((row, Rows::default()))
    }
}

impl PgWrite for NewMessage {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(MessageRow, Rows), StoreError> {
        let now = at.now;
        let ended = ended_status(tx, at, &self.session_id).await?;
        let insert = KeyedInsert {
            columns: "session_id, turn_id, agent_name, agent_role, message, timestamp, \
                 is_error, idempotency_key, trace_id, written_by, written_via, input_tokens, \
                 output_tokens, tokens_estimated",
            placeholders: "$1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, ''), \
                 NULLIF($11, ''), $12, $13, $14",
            values: &[
                &self.session_id,
                &self.turn_id,
                &self.agent_name,
                &self.agent_role,
                &self.message,
                &now,
                &self.is_error,
                &self.idempotency_key,
                &self.trace_id,
                &self.written_by,
                &self.written_via,
                &self.tokens.input,
                &self.tokens.output,
                &self.tokens.estimated,
            ],
            announce: Announce::Message,
            table: Table::messages,
        };
        insert_or_repeat(
            tx,
            at,
            (&self.session_id, &self.idempotency_key),
            ended,
            insert,
            |id| self.row(id, now),
            |row| self.same_content(row),
        )
        .await
    }
}

impl PgWrite for NewToolUsage {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(ToolUsageRow, Rows), StoreError> {
        let now = at.now;
        let ended = ended_status(tx, at, &self.session_id).await?;
        let insert = KeyedInsert {
            columns: "session_id, turn_id, agent_name, tool_name, tool_params, tool_result, \
                 timestamp, success, duration_ms, idempotency_key, trace_id, written_by, \
                 written_via",
            placeholders: "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULLIF($12, ''), \
                 NULLIF($13, '')",
            values: &[
                &self.session_id,
                &self.turn_id,
                &self.agent_name,
                &self.tool_name,
                &self.tool_params,
                &self.tool_result,
                &now,
                &self.success,
                &self.duration_ms,
                &self.idempotency_key,
                &self.trace_id,
                &self.written_by,
                &self.written_via,
            ],
            announce: Announce::Nothing,
            table: Table::tool_usage,
        };
        insert_or_repeat(
            tx,
            at,
            (&self.session_id, &self.idempotency_key),
            ended,
            insert,
            |id| self.row(id, now),
            |row| self.same_content(row),
        )
        .await
    }
}

impl PgWrite for NewTurn {
    fn session_id(&self) -> &str {
        &self.message.session_id
    }

    fn needs_savepoint(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    /// The message, then each tool call, in the turn's one transaction: the
    /// first refusal fails the turn and the transaction rolls back.
    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(TurnRows, Rows), StoreError> {
        let (message, mut rows) = self.message.apply_pg(tx, at).await?;
        let mut tool_calls = Vec::with_capacity(self.tool_calls.len());
        for call in &self.tool_calls {
            let (call, call_rows) = call.apply_pg(tx, at).await?;
            rows = rows.plus(call_rows);
            tool_calls.push(call);
        }
        let turn = TurnRows {
            message,
            tool_calls,
        };
        Ok((turn, rows))
    }
}

impl PgWrite for NewSessionEvent {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    async fn apply_pg(
        &self,
        tx: &Transaction<'_>,
        at: &Stamp<'_>,
    ) -> Result<(SessionEventRow, Rows), StoreError> {
        let now = at.now;
        // Events are taken whatever the session's status (it must exist).
        links::lock(tx, at, &self.session_id).await?;
        let insert = KeyedInsert {
            columns: "session_id, kind, detail, timestamp, idempotency_key, written_by, \
                 written_via",
            placeholders: "$1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, '')",
            values: &[
                &self.session_id,
                &self.kind,
                &self.detail,
                &now,
                &self.idempotency_key,
                &self.written_by,
                &self.written_via,
            ],
            announce: Announce::Nothing,
            table: Table::session_events,
        };
        insert_or_repeat(
            tx,
            at,
            (&self.session_id, &self.idempotency_key),
            None,
            insert,
            |id| self.row(id, now),
            |row: &SessionEventRow| row.kind == self.kind && row.detail == self.detail,
        )
        .await
    }
}

/// Locks the session and returns its status if it has ended, `None` while
/// it is active, or `SessionNotFound`.
async fn ended_status(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
) -> Result<Option<SessionStatus>, StoreError> {
    let status = links::lock(tx, at, session_id).await?;
    Ok(status.is_ended().then_some(status))
}

/// What an inserted row announces to the listeners.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announce {
    /// Nothing: watchers follow messages only.
    Nothing,
    /// `m<id>`: a new message.
    Message,
}

/// One keyed row's `INSERT`: its columns and their placeholders (into the
/// table of the row's kind), its values, what it announces, and its table
/// (for the metrics).
struct KeyedInsert<'a> {
    columns: &'a str,
    placeholders: &'a str,
    values: &'a [&'a (dyn ToSql + Sync)],
    announce: Announce,
    table: Table,
}

impl KeyedInsert<'_> {
    /// The statement into `table` unless the row's non-empty idempotency
    /// key is taken, answering the new ID (and announcing a message); when
    /// `chained`, with the row's ID and chain columns (the parameters after
    /// its own, [`links::ChainValues::params`]) and the session's head
    /// moved if the row went in.
    fn sql(&self, table: &str, chained: bool) -> String {
        let n = self.values.len();
        let p = |k: usize| format!("${}", n + k);
        let (columns, placeholders, moved) = if chained {
            (
                format!("id, chain_seq, prev_hash, row_hash, {}", self.columns),
                format!(
                    "{}, {}, {}, {}, {}",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    self.placeholders
                ),
                format!(
                    ", moved AS (UPDATE sessions SET chain_head = {}, chain_next = {} \
                     WHERE session_id = {} AND EXISTS (SELECT 1 FROM inserted))",
                    p(4),
                    p(5),
                    p(6)
                ),
            )
        } else {
            (
                self.columns.to_owned(),
                self.placeholders.to_owned(),
                String::new(),
            )
        };
        let announce = match self.announce {
            Announce::Nothing => String::new(),
            Announce::Message => format!(", pg_notify('{CHANNEL}', 'm' || id)"),
        };
        format!(
            "WITH inserted AS (INSERT INTO {table} ({columns}) VALUES ({placeholders}) \
             ON CONFLICT (session_id, idempotency_key) WHERE idempotency_key <> '' \
             DO NOTHING RETURNING id){moved} SELECT id{announce} FROM inserted"
        )
    }
}

/// The one way a keyed row is written: inserted while its session is active
/// (`ended` is `None`), or, when its key is taken or the session has ended,
/// the stored row of that key answered if it has the same content (a
/// repeat), else refused (`IdempotencyConflict`, `SessionEnded`).
async fn insert_or_repeat<T: queries::Listed + Chained>(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    (session_id, idempotency_key): (&str, &str),
    ended: Option<SessionStatus>,
    insert: KeyedInsert<'_>,
    row: impl FnOnce(i64) -> T,
    same_content: impl Fn(&T) -> bool,
) -> Result<(T, Rows), StoreError> {
    if ended.is_none() {
        match links::head(tx, at, session_id).await? {
            Some(tip) => {
                let (new, chain) = links::RowChain::take(tx, tip, row).await?;
                let values = chain.values(session_id)?;
                let mut params = insert.values.to_vec();
                params.extend(values.params());
                let sql = insert.sql(T::KIND.table(), true);
                if insert_keyed(tx, &sql, &params).await?.is_some() {
                    links::inserted(tx, at, session_id, &chain).await?;
                    return Ok((new, Rows::one(insert.table)));
                }
            }
            None => {
                let sql = insert.sql(T::KIND.table(), false);
                if let Some(id) = insert_keyed(tx, &sql, insert.values).await? {
                    return Ok((row(id), Rows::one(insert.table)));
                }
            }
        }
    }
    let stored = queries::by_key(tx, session_id, idempotency_key).await?;
    repeat_or_refuse(
        Key::of(session_id, idempotency_key),
        ended,
        stored,
        same_content,
    )
    .map(|applied| (applied.output, Rows::default()))
}

/// Runs a [`KeyedInsert::sql`] statement: the new row's ID, or `None` when
/// the row's key was taken (one round trip).
async fn insert_keyed(
    tx: &Transaction<'_>,
    sql: &str,
    values: &[&(dyn ToSql + Sync)],
) -> Result<Option<i64>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    let row = tx.query_opt(&statement, values).await.map_err(pg)?;
    row.map(|row| row.try_get(0).map_err(pg)).transpose()
}

async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    values: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.execute(&statement, values).await.map_err(pg)
}

/// Queues a notification, sent by PostgreSQL if and when the transaction commits.
async fn notify(tx: &Transaction<'_>, payload: &str) -> Result<(), StoreError> {
    execute(tx, "SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map(drop)
}
