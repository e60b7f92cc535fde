//! Conversions between the store's requests and rows and the `heist.v1` messages.

use heist_proto::v1 as pb;

use crate::store::{
    AgentUsage, Checkpoint, Integrity, MessageRow, NewMessage, NewToolUsage, RowRef, Seal,
    SessionEventRow, SessionRow, SessionStatus, SessionUsage, TokenCounts, ToolUsageRow, TurnRows,
    UsageTotals, Verification,
};

/// Who writes a row and under which trace: the same for every row of one call.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    /// The OpenTelemetry trace ID of the call (hex), or empty.
    pub(crate) trace_id: String,
    /// The client (token `sub`) that makes the call.
    pub(crate) written_by: String,
    /// The identity the client's TLS certificate proved, or empty.
    pub(crate) written_via: String,
}

/// The store's request for a `StoreMessageRequest`, written by `write`.
pub(crate) fn new_message(request: pb::StoreMessageRequest, write: Write) -> NewMessage {
    NewMessage {
        session_id: request.session_id,
        turn_id: request.turn_id,
        agent_name: request.agent_name,
        agent_role: request.agent_role,
        message: request.message,
        is_error: request.is_error,
        idempotency_key: request.idempotency_key,
        trace_id: write.trace_id,
        written_by: write.written_by,
        written_via: write.written_via,
        tokens: TokenCounts {
            input: request.input_tokens,
            output: request.output_tokens,
            estimated: request.tokens_estimated,
        },
    }
}

/// The store's request for a `StoreToolUsageRequest`, written by `write`.
pub(crate) fn new_tool_usage(request: pb::StoreToolUsageRequest, write: Write) -> NewToolUsage {
    NewToolUsage {
        session_id: request.session_id,
        turn_id: request.turn_id,
        agent_name: request.agent_name,
        tool_name: request.tool_name,
        tool_params: request.tool_params,
        tool_result: request.tool_result,
        success: request.success,
        duration_ms: request.duration_ms,
        idempotency_key: request.idempotency_key,
        trace_id: write.trace_id,
        written_by: write.written_by,
        written_via: write.written_via,
    }
}

impl From<SessionStatus> for pb::SessionStatus {
    fn from(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Active => Self::Active,
            SessionStatus::Completed => Self::Completed,
            SessionStatus::Failed => Self::Failed,
            SessionStatus::Interrupted => Self::Interrupted,
        }
    }
}

impl From<SessionRow> for pb::Session {
    fn from(row: SessionRow) -> Self {
        Self {
            session_id: row.session_id,
            start_time: row.start_time,
            end_time: row.end_time,
            num_turns: row.num_turns,
            status: pb::SessionStatus::from(row.status) as i32,
            metadata: row.metadata,
            message_count: row.message_count,
            tool_usage_count: row.tool_usage_count,
            written_by: row.written_by,
            written_via: row.written_via,
            ..pb::Session::default()
        }
    }
}

/// `session` with its seal (`GetSession`'s answer).
pub(crate) fn sealed(session: SessionRow, seal: Option<Seal>) -> pb::Session {
    let session = pb::Session::from(session);
    match seal {
        None => session,
        Some(seal) => pb::Session {
            chain_head: crate::store::hex(&seal.head),
            chain_rows: count(seal.rows),
            checkpoint: seal.checkpoint.map(Into::into),
            ..session
        },
    }
}

impl From<MessageRow> for pb::Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: row.id,
            session_id: row.session_id,
            turn_id: row.turn_id,
            agent_name: row.agent_name,
            agent_role: row.agent_role,
            message: row.message,
            timestamp: row.timestamp,
            is_error: row.is_error,
            idempotency_key: row.idempotency_key,
            trace_id: row.trace_id,
            written_by: row.written_by,
            written_via: row.written_via,
            input_tokens: row.tokens.input,
            output_tokens: row.tokens.output,
            tokens_estimated: row.tokens.estimated,
        }
    }
}

impl From<ToolUsageRow> for pb::ToolUsage {
    fn from(row: ToolUsageRow) -> Self {
        Self {
            id: row.id,
            session_id: row.session_id,
            turn_id: row.turn_id,
            agent_name: row.agent_name,
            tool_name: row.tool_name,
            tool_params: row.tool_params,
            tool_result: row.tool_result,
            timestamp: row.timestamp,
            success: row.success,
            duration_ms: row.duration_ms,
            idempotency_key: row.idempotency_key,
            trace_id: row.trace_id,
            written_by: row.written_by,
            written_via: row.written_via,
        }
    }
}

impl From<SessionEventRow> for pb::SessionEvent {
    fn from(row: SessionEventRow) -> Self {
        Self {
            id: row.id,
            session_id: row.session_id,
            kind: row.kind,
            detail: row.detail,
            timestamp: row.timestamp,
            idempotency_key: row.idempotency_key,
            written_by: row.written_by,
            written_via: row.written_via,
        }
    }
}

impl From<TurnRows> for pb::StoreTurnResponse {
    fn from(rows: TurnRows) -> Self {
        Self {
            message: Some(rows.message.into()),
            tool_calls: rows.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<UsageTotals> for pb::TokenUsage {
    fn from(usage: UsageTotals) -> Self {
        Self {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            turns_with_usage: usage.turns_with_usage,
            turns_without_usage: usage.turns_without_usage,
            estimated_turns: usage.estimated_turns,
        }
    }
}

impl From<AgentUsage> for pb::AgentUsage {
    fn from(agent: AgentUsage) -> Self {
        Self {
            agent_name: agent.agent_name,
            usage: Some(agent.usage.into()),
        }
    }
}

impl From<SessionUsage> for pb::SessionUsage {
    fn from(usage: SessionUsage) -> Self {
        Self {
            session_id: usage.session_id,
            agents: usage.agents.into_iter().map(Into::into).collect(),
            total: Some(usage.total.into()),
        }
    }
}

/// The verdict on `session_id` as the `VerifySession` reply.
pub(crate) fn verification(session_id: &str, found: Verification) -> pb::SessionVerification {
    let reply = pb::SessionVerification {
        session_id: session_id.to_owned(),
        ..pb::SessionVerification::default()
    };
    match found {
        Verification::Intact {
            rows,
            head,
            checkpoint,
        } => pb::SessionVerification {
            integrity: pb::Integrity::Intact.into(),
            rows: count(rows),
            chain_head: crate::store::hex(&head),
            checkpoint: checkpoint.map(Into::into),
            ..reply
        },
        Verification::Unchained { rows } => pb::SessionVerification {
            integrity: pb::Integrity::Unchained.into(),
            rows: count(rows),
            ..reply
        },
        Verification::Broken { row, what } => pb::SessionVerification {
            integrity: pb::Integrity::Tampered.into(),
            first_bad_row: Some(row.into()),
            problem: what.to_string(),
            ..reply
        },
    }
}

fn count(rows: u64) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

impl From<Checkpoint> for pb::ChainCheckpoint {
    fn from(checkpoint: Checkpoint) -> Self {
        pb::ChainCheckpoint {
            rows: count(checkpoint.rows),
            head: crate::store::hex(&checkpoint.head),
            key_id: checkpoint.key_id,
            signature: crate::store::hex(&checkpoint.signature),
            signed_at: checkpoint.signed_at,
        }
    }
}

impl From<RowRef> for pb::ChainRow {
    fn from(row: RowRef) -> Self {
        pb::ChainRow {
            table: row.kind.table().to_owned(),
            kind: row.kind.name().to_owned(),
            id: row.id.unwrap_or(0),
            turn: row.turn.unwrap_or(0),
        }
    }
}

/// Audit's checkpoint keys and interval as the `GetCheckpointKeys` reply.
pub(crate) fn checkpoint_keys(integrity: &Integrity) -> pb::CheckpointKeys {
    let keys = integrity
        .public_keys()
        .iter()
        .map(|key| heist_plumbing::jwk::to_proto(heist_tokens::Jwk::from(key)))
        .collect();
    pb::CheckpointKeys {
        keys,
        checkpoint_every: count(integrity.checkpoint_every),
    }
}
