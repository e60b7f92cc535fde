//! The store's requests and rows: plain data that mirrors `heist.v1` audit messages.

use std::fmt;

/// The state of a session, stored as lowercase text in `sessions.status`.
///
/// The proto's `SESSION_STATUS_UNSPECIFIED` has no variant here: where the
/// API accepts "no status" it takes an `Option<SessionStatus>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Running, or left running by a crash.
    Active,
    /// Ran all its turns.
    Completed,
    /// Stopped by an error.
    Failed,
    /// Stopped by the user or by a crash, and may be resumed.
    Interrupted,
}

impl SessionStatus {
    /// Every status, in the proto's order.
    pub const ALL: [SessionStatus; 4] = [
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Failed,
        SessionStatus::Interrupted,
    ];

    /// The text stored in the database: `active`, `completed`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Interrupted => "interrupted",
        }
    }

    /// Parses the stored text; `None` for anything else.
    pub fn parse(text: &str) -> Option<SessionStatus> {
        SessionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// True once the session has ended (every status but `Active`).
    pub fn is_ended(self) -> bool {
        self != SessionStatus::Active
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Asks to create a session (the proto's `CreateSessionRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSession {
    /// The session ID: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
    pub session_id: String,
    /// Free-form JSON kept with the session (at most 64 KiB); may be empty.
    pub metadata: String,
    /// The client's idempotency key (at most 128 characters); creation is
    /// already idempotent by session ID, so it is only checked, not stored.
    pub idempotency_key: String,
    /// The client (token `sub`) that writes it; empty: unknown (stored as NULL).
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved (a SAN, e.g.
    /// `spiffe://heist.local/orchestrator`); empty over plaintext or
    /// server-only TLS (stored as NULL).
    pub written_via: String,
}

/// Asks to store one agent message (the proto's `StoreMessageRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// The session, which must exist and be active.
    pub session_id: String,
    /// The turn (>= 0; 0 for a framing message).
    pub turn_id: i64,
    /// The agent that said it (1 to 128 characters).
    pub agent_name: String,
    /// The agent's role (at most 256 characters).
    pub agent_role: String,
    /// The text, at most the store's `max_message_bytes`.
    pub message: String,
    /// True when the turn failed and `message` describes the error.
    pub is_error: bool,
    /// Unique within the session; empty means "do not deduplicate".
    pub idempotency_key: String,
    /// The OpenTelemetry trace ID of the write (hex); may be empty.
    pub trace_id: String,
    /// The client (token `sub`) that writes it; empty: unknown (stored as NULL).
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved (a SAN, e.g.
    /// `spiffe://heist.local/orchestrator`); empty over plaintext or
    /// server-only TLS (stored as NULL).
    pub written_via: String,
    /// The LLM tokens the turn used (unknown counts are stored as NULL).
    pub tokens: TokenCounts,
}

/// The LLM tokens one turn used, summed over its rounds: `None` is unknown
/// (stored as NULL, never as 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Input (prompt) tokens (0 to `MAX_TURN_TOKENS`).
    pub input: Option<i64>,
    /// Output (completion) tokens (0 to `MAX_TURN_TOKENS`).
    pub output: Option<i64>,
    /// True when the counts are an estimate, not the server's report.
    pub estimated: bool,
}

impl TokenCounts {
    /// True when at least one count is known.
    pub fn is_known(&self) -> bool {
        self.input.is_some() || self.output.is_some()
    }
}

/// Token usage summed over a set of turns (the proto's `TokenUsage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Input tokens of the turns whose usage is known.
    pub input_tokens: i64,
    /// Output tokens of the turns whose usage is known.
    pub output_tokens: i64,
    /// Turns that carry a count.
    pub turns_with_usage: i64,
    /// Turns that carry none.
    pub turns_without_usage: i64,
    /// Turns with usage whose counts are estimated.
    pub estimated_turns: i64,
}

impl UsageTotals {
    /// The sum of `self` and `other`, field by field (saturating).
    pub fn plus(self, other: UsageTotals) -> UsageTotals {
        UsageTotals {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            turns_with_usage: self.turns_with_usage.saturating_add(other.turns_with_usage),
            turns_without_usage: self
                .turns_without_usage
                .saturating_add(other.turns_without_usage),
            estimated_turns: self.estimated_turns.saturating_add(other.estimated_turns),
        }
    }
}

/// One agent's token usage in a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUsage {
    /// The agent (the messages' `agent_name`).
    pub agent_name: String,
    /// Its turns' usage.
    pub usage: UsageTotals,
}

/// A session's token usage (the proto's `SessionUsage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUsage {
    /// The session ID.
    pub session_id: String,
    /// One entry per agent with a message in the session, by agent name.
    pub agents: Vec<AgentUsage>,
    /// The whole session: the sum of `agents`.
    pub total: UsageTotals,
}

impl SessionUsage {
    /// The usage of `session_id` from its per-agent sums (the total added up here).
    pub fn from_agents(session_id: &str, agents: Vec<AgentUsage>) -> SessionUsage {
        let total = agents
            .iter()
            .fold(UsageTotals::default(), |sum, agent| sum.plus(agent.usage));
        SessionUsage {
            session_id: session_id.to_owned(),
            agents,
            total,
        }
    }
}

/// Asks to store one tool call (the proto's `StoreToolUsageRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewToolUsage {
    /// The session, which must exist and be active.
    pub session_id: String,
    /// The turn (>= 0).
    pub turn_id: i64,
    /// The agent that made the call (1 to 128 characters).
    pub agent_name: String,
    /// The tool (1 to 128 characters).
    pub tool_name: String,
    /// The call's parameters, at most the store's `max_message_bytes`.
    pub tool_params: String,
    /// The tool's answer or the reason it failed, at most `max_message_bytes`.
    pub tool_result: String,
    /// True when the tool answered.
    pub success: bool,
    /// How long the call took, in milliseconds (>= 0).
    pub duration_ms: i64,
    /// Unique within the session; empty means "do not deduplicate".
    pub idempotency_key: String,
    /// The OpenTelemetry trace ID of the write (hex); may be empty.
    pub trace_id: String,
    /// The client (token `sub`) that writes it; empty: unknown (stored as NULL).
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved (a SAN, e.g.
    /// `spiffe://heist.local/orchestrator`); empty over plaintext or
    /// server-only TLS (stored as NULL).
    pub written_via: String,
}

/// Asks to store one turn, all or nothing: its message and the tool calls
/// made during it (the proto's `StoreTurnRequest`).
///
/// Each row stays idempotent on its own key, as a [`NewMessage`] or a
/// [`NewToolUsage`] stored alone; if any row is refused, nothing of the turn
/// is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTurn {
    /// The turn's message; its session, turn and agent are the turn's.
    pub message: NewMessage,
    /// The tool calls, in order (at most `MAX_TOOL_CALLS_PER_TURN`), each
    /// naming the message's session, turn and agent.
    pub tool_calls: Vec<NewToolUsage>,
}

/// Asks to store one session event (the proto's `StoreSessionEventRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSessionEvent {
    /// The session, which must exist (in any status).
    pub session_id: String,
    /// What happened: 1 to 64 characters of `[a-z0-9._-]`, e.g. `breaker.open`.
    pub kind: String,
    /// The particulars, free text or JSON, at most the store's `max_message_bytes`.
    pub detail: String,
    /// Unique within the session; empty means "do not deduplicate".
    pub idempotency_key: String,
    /// The client (token `sub`) that writes it; empty: unknown (stored as NULL).
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved (a SAN, e.g.
    /// `spiffe://heist.local/orchestrator`); empty over plaintext or
    /// server-only TLS (stored as NULL).
    pub written_via: String,
}

/// Asks to end a session (the proto's `EndSessionRequest`).
///
/// Ending is idempotent by content (the same turns and status return the
/// ended session), so the request's idempotency key is not needed here; the
/// proto's UNSPECIFIED status has no value and is refused by the gRPC layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndSession {
    /// The session, which must exist.
    pub session_id: String,
    /// How many turns ran (>= 0).
    pub num_turns: i64,
    /// The final status: completed, failed or interrupted (`Active` is refused).
    pub status: SessionStatus,
}

/// One stored session (the proto's `Session`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// The session ID.
    pub session_id: String,
    /// When the session started (RFC 3339, UTC).
    pub start_time: String,
    /// When the session ended (RFC 3339, UTC); empty while it is active.
    pub end_time: String,
    /// How many turns the session ran; 0 while it is active.
    pub num_turns: i64,
    /// The session's state.
    pub status: SessionStatus,
    /// The JSON its creator attached; may be empty.
    pub metadata: String,
    /// How many messages are stored for the session.
    pub message_count: i64,
    /// How many tool calls are stored for the session.
    pub tool_usage_count: i64,
    /// The client (token `sub`) that created it; empty for rows from before writers were recorded.
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved; empty over
    /// plaintext or server-only TLS, and for rows from before it was recorded.
    pub written_via: String,
}

/// One stored agent message (the proto's `Message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    /// The row ID; increases in storage order.
    pub id: i64,
    /// The session the message belongs to.
    pub session_id: String,
    /// The turn in which it was said.
    pub turn_id: i64,
    /// The agent that said it.
    pub agent_name: String,
    /// The agent's role.
    pub agent_role: String,
    /// The text of the message (or of the error, when `is_error`).
    pub message: String,
    /// When it was stored (RFC 3339, UTC).
    pub timestamp: String,
    /// True when the turn failed and `message` describes the error.
    pub is_error: bool,
    /// The idempotency key it was stored with.
    pub idempotency_key: String,
    /// The OpenTelemetry trace ID of the write; may be empty.
    pub trace_id: String,
    /// The client (token `sub`) that wrote it; empty for rows from before writers were recorded.
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved; empty over
    /// plaintext or server-only TLS, and for rows from before it was recorded.
    pub written_via: String,
    /// The LLM tokens the turn used; unknown for rows from before they were recorded.
    pub tokens: TokenCounts,
}

/// One stored tool call (the proto's `ToolUsage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolUsageRow {
    /// The row ID; increases in storage order.
    pub id: i64,
    /// The session the call belongs to.
    pub session_id: String,
    /// The turn in which the call was made.
    pub turn_id: i64,
    /// The agent that made the call.
    pub agent_name: String,
    /// The tool.
    pub tool_name: String,
    /// The call's parameters.
    pub tool_params: String,
    /// The tool's answer, or the reason it failed.
    pub tool_result: String,
    /// When it was stored (RFC 3339, UTC).
    pub timestamp: String,
    /// True when the tool answered.
    pub success: bool,
    /// How long the call took, in milliseconds.
    pub duration_ms: i64,
    /// The idempotency key it was stored with.
    pub idempotency_key: String,
    /// The OpenTelemetry trace ID of the write; may be empty.
    pub trace_id: String,
    /// The client (token `sub`) that wrote it; empty for rows from before writers were recorded.
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved; empty over
    /// plaintext or server-only TLS, and for rows from before it was recorded.
    pub written_via: String,
}

/// One stored turn (the proto's `StoreTurnResponse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnRows {
    /// The stored message.
    pub message: MessageRow,
    /// The stored tool calls, in the order they were sent.
    pub tool_calls: Vec<ToolUsageRow>,
}

/// One stored session event (the proto's `SessionEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEventRow {
    /// The row ID; increases in storage order.
    pub id: i64,
    /// The session the event belongs to.
    pub session_id: String,
    /// What happened, e.g. `breaker.open`.
    pub kind: String,
    /// The particulars, free text or JSON.
    pub detail: String,
    /// When it was stored (RFC 3339, UTC).
    pub timestamp: String,
    /// The idempotency key it was stored with.
    pub idempotency_key: String,
    /// The client (token `sub`) that wrote it; empty for rows from before writers were recorded.
    pub written_by: String,
    /// The identity the writer's TLS client certificate proved; empty over
    /// plaintext or server-only TLS, and for rows from before it was recorded.
    pub written_via: String,
}

/// What the writer publishes to watchers after each commit, in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// A new message was stored (repeats of an idempotent write are not
    /// published); boxed, so the other events stay small in the channel.
    Message(Box<MessageRow>),
    /// A session ended (ending an ended session again is not published).
    SessionEnded {
        /// The session that ended.
        session_id: String,
    },
    /// Events may have been missed (PostgreSQL's notification connection was
    /// lost and is back): every watcher reads its session back from the
    /// database, from the last row it sent.
    Gap,
}

/// Asks for one page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many rows: 1 to 1000, or 0 for the default of 100.
    pub page_size: i32,
    /// The `next_page_token` of the previous page; empty for the first page.
    pub page_token: String,
}

impl PageRequest {
    /// The first page with the given size.
    pub fn first(page_size: i32) -> Self {
        PageRequest {
            page_size,
            page_token: String::new(),
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Pass this in the next `PageRequest`; empty on the last page.
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back_from_its_text() {
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn unknown_status_text_does_not_parse() {
        assert_eq!(SessionStatus::parse("Active"), None);
        assert_eq!(SessionStatus::parse(""), None);
    }

    #[test]
    fn only_active_is_not_ended() {
        assert!(!SessionStatus::Active.is_ended());
        assert!(SessionStatus::Completed.is_ended());
        assert!(SessionStatus::Failed.is_ended());
        assert!(SessionStatus::Interrupted.is_ended());
    }
}

/// How hard each commit presses data to disk (SQLite `synchronous` in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged row survives a power cut. The default.
    #[default]
    Full,
    /// No fsync at commit: an acknowledged row survives any crash of the
    /// process, but the last commits may be lost on power loss.
    Normal,
}

impl Synchronous {
    /// The `PRAGMA synchronous` value.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }

    /// Parses `full` or `normal` (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!(
                "unknown synchronous mode {other:?}; use full or normal"
            )),
        }
    }
}
