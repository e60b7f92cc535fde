//! A turn's writes: its message to Memory and, at the same time, the
//! message with each of its tool calls to Audit in one `StoreTurn` (one
//! transaction), made while the next turn speaks.

use std::sync::Arc;

use heist_plumbing::auth::Audience;
use heist_proto::v1::{StoreMessageRequest, StoreToolUsageRequest, StoreTurnRequest};
use tracing::Instrument;

use super::{Orchestrator, TurnRecord};
use crate::{
    audit_writer::{AuditWriteError, Written},
    memory_sync::MemorySync,
    spool::SpooledWrite,
};

/// A token count as the proto's `int64` (a count past `i64::MAX` is no count
/// a server sends; Audit refuses anything that large anyway).
fn saturating_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A turn's writes, made while the next turn speaks.
pub(super) struct TurnWrites {
    /// Its tool calls' audit rows, written with its message.
    pub(super) tool_rows: Vec<StoreToolUsageRequest>,
    /// The turn's span: the writes belong to the turn in the trace.
    pub(super) span: tracing::Span,
}

/// Whether a turn's writes landed.
pub(super) struct Stored {
    /// The memory write (or none needed).
    pub(super) memory: bool,
    /// The audit write.
    pub(super) audit: Result<Written, AuditWriteError>,
}

/// The orchestrator's tokens for a turn's writes, one per service written
/// (none when OAuth could not give it: that write waits or is spooled).
struct TurnTokens {
    memory: Option<Arc<str>>,
    audit: Option<Arc<str>>,
}

impl Orchestrator {
    /// Makes the writes of the last turn of `turns`, if they are still to
    /// be made.
    pub(super) async fn store_last_turn(
        &self,
        session_id: &str,
        turns: &[TurnRecord],
        writes: Option<TurnWrites>,
        memory_sync: &mut MemorySync,
    ) -> Option<Stored> {
        let writes = writes?;
        let (record, history) = turns.split_last()?;
        async {
            let (memory_token, audit_token) = tokio::join!(
                self.own_token(Audience::Memory, self.config.timeouts.memory),
                self.own_token(Audience::Audit, self.config.timeouts.audit),
            );
            let tokens = TurnTokens {
                memory: memory_token.ok(),
                audit: audit_token.ok(),
            };
            let (memory, audit) = self
                .persist(
                    session_id,
                    record,
                    writes.tool_rows,
                    history,
                    memory_sync,
                    &tokens,
                )
                .await;
            Some(Stored { memory, audit })
        }
        .instrument(writes.span)
        .await
    }

    /// Stores the turn's message in Memory and, at the same time, the
    /// message with its tool rows in Audit (one `StoreTurn`); returns
    /// whether the memory write and the audit write succeeded.
    async fn persist(
        &self,
        session_id: &str,
        record: &TurnRecord,
        tool_rows: Vec<StoreToolUsageRequest>,
        history: &[TurnRecord],
        memory_sync: &mut MemorySync,
        tokens: &TurnTokens,
    ) -> (bool, Result<Written, AuditWriteError>) {
        let memory = async {
            if record.is_error {
                return true;
            }
            memory_sync
                .store(&self.memory, history, record, tokens.memory.as_deref())
                .await
        };
        let message = StoreMessageRequest {
            session_id: session_id.to_owned(),
            turn_id: record.turn,
            agent_name: record.agent.clone(),
            agent_role: record.role.clone(),
            message: record.message.clone(),
            is_error: record.is_error,
            idempotency_key: format!("{session_id}/turn/{}/message", record.turn),
            input_tokens: record.usage.input.map(saturating_i64),
            output_tokens: record.usage.output.map(saturating_i64),
            tokens_estimated: record.usage.estimated,
        };
        let (memory, audit) = tokio::join!(
            memory,
            self.store_turn(message, tool_rows, tokens.audit.as_deref())
        );
        (memory, audit)
    }

    /// Stores a turn in Audit in one write. Should Audit refuse a turn with
    /// tool calls (a tool row it will not take, say arguments over its size
    /// limit), the rows go one by one instead, so that the refusal costs
    /// that row, not the turn's message.
    async fn store_turn(
        &self,
        message: StoreMessageRequest,
        tool_calls: Vec<StoreToolUsageRequest>,
        token: Option<&str>,
    ) -> Result<Written, AuditWriteError> {
        let turn = StoreTurnRequest {
            message: Some(message),
            tool_calls,
        };
        // The refused write comes back: nothing is cloned for this rare path.
        let (status, turn) = match self.audit.write(turn.into(), token).await {
            Err(AuditWriteError::Refused { status, write }) => match *write {
                SpooledWrite::StoreTurn(turn) if !turn.tool_calls.is_empty() => (status, turn),
                write => {
                    return Err(AuditWriteError::Refused {
                        status,
                        write: Box::new(write),
                    });
                }
            },
            written => return written,
        };
        tracing::warn!(error = %status.message(), "audit refused the turn; storing its rows one by one");
        let StoreTurnRequest {
            message,
            tool_calls,
        } = turn;
        for call in tool_calls {
            if let Err(error) = self.audit.write(call.into(), token).await {
                tracing::error!(%error, "cannot record the tool call in audit");
            }
        }
        match message {
            Some(message) => self.audit.write(message.into(), token).await,
            None => Err(AuditWriteError::Refused {
                status,
                write: Box::new(StoreTurnRequest::default().into()),
            }),
        }
    }
}
