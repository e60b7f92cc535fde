//! Checks every request against the contract's limits before it reaches the writer.
//!
//! Validation runs in the caller's task, so bad input never occupies the writer thread.

use super::error::StoreError;
use super::types::{
    EndSession, NewMessage, NewSession, NewSessionEvent, NewToolUsage, NewTurn, TokenCounts,
};

/// The most characters of a session ID, agent name, tool name or idempotency key.
pub const MAX_NAME_CHARS: usize = 128;
/// The most characters of an agent role.
pub const MAX_ROLE_CHARS: usize = 256;
/// The most characters of a trace ID (a W3C trace ID has 32).
pub const MAX_TRACE_ID_CHARS: usize = 64;
/// The most characters of a session event's kind.
pub const MAX_EVENT_KIND_CHARS: usize = 64;
/// The most bytes of a session's metadata.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The most tool calls one turn may carry (`StoreTurn`).
pub const MAX_TOOL_CALLS_PER_TURN: usize = 64;
/// The most input or output tokens one turn may record: far beyond any
/// model's context window, so a larger count is a bug, not usage.
pub const MAX_TURN_TOKENS: i64 = 1_000_000_000;

/// Checks a session ID: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub(crate) fn session_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::EmptySessionId);
    }
    chars("session_id", id, MAX_NAME_CHARS)?;
    match first_outside(id, is_session_id_char) {
        Some(character) => Err(StoreError::SessionIdCharacter { character }),
        None => Ok(()),
    }
}

/// Checks a session event's kind: 1 to 64 characters of `[a-z0-9._-]`.
fn event_kind(kind: &str) -> Result<(), StoreError> {
    required("kind", kind, MAX_EVENT_KIND_CHARS)?;
    match first_outside(kind, is_event_kind_char) {
        Some(character) => Err(StoreError::EventKindCharacter { character }),
        None => Ok(()),
    }
}

/// Checks a request to create a session.
pub(crate) fn new_session(new: &NewSession) -> Result<(), StoreError> {
    session_id(&new.session_id)?;
    bytes("metadata", &new.metadata, MAX_METADATA_BYTES)?;
    chars("idempotency_key", &new.idempotency_key, MAX_NAME_CHARS)
}

/// Checks a request to store a message; `max_bytes` bounds the message text.
pub(crate) fn new_message(new: &NewMessage, max_bytes: usize) -> Result<(), StoreError> {
    session_id(&new.session_id)?;
    non_negative("turn_id", new.turn_id)?;
    required("agent_name", &new.agent_name, MAX_NAME_CHARS)?;
    chars("agent_role", &new.agent_role, MAX_ROLE_CHARS)?;
    bytes("message", &new.message, max_bytes)?;
    chars("idempotency_key", &new.idempotency_key, MAX_NAME_CHARS)?;
    chars("trace_id", &new.trace_id, MAX_TRACE_ID_CHARS)?;
    tokens(&new.tokens)
}

/// Checks a turn's token counts: each unknown or 0 to [`MAX_TURN_TOKENS`],
/// and `tokens_estimated` only beside a count.
fn tokens(tokens: &TokenCounts) -> Result<(), StoreError> {
    for (field, count) in [
        ("input_tokens", tokens.input),
        ("output_tokens", tokens.output),
    ] {
        if let Some(count) = count {
            non_negative(field, count)?;
            if count > MAX_TURN_TOKENS {
                return Err(StoreError::invalid(
                    field,
                    format!("must be at most {MAX_TURN_TOKENS} for one turn, got {count}"),
                ));
            }
        }
    }
    if tokens.estimated && !tokens.is_known() {
        return Err(StoreError::invalid(
            "tokens_estimated",
            "must come with input_tokens or output_tokens (there is no count to estimate)",
        ));
    }
    Ok(())
}

/// Checks a request to store a tool call; `max_bytes` bounds parameters and result.
pub(crate) fn new_tool_usage(new: &NewToolUsage, max_bytes: usize) -> Result<(), StoreError> {
    session_id(&new.session_id)?;
    non_negative("turn_id", new.turn_id)?;
    required("agent_name", &new.agent_name, MAX_NAME_CHARS)?;
    required("tool_name", &new.tool_name, MAX_NAME_CHARS)?;
    bytes("tool_params", &new.tool_params, max_bytes)?;
    bytes("tool_result", &new.tool_result, max_bytes)?;
    non_negative("duration_ms", new.duration_ms)?;
    chars("idempotency_key", &new.idempotency_key, MAX_NAME_CHARS)?;
    chars("trace_id", &new.trace_id, MAX_TRACE_ID_CHARS)
}

/// Checks a request to store a turn: its message as [`new_message`], at most
/// [`MAX_TOOL_CALLS_PER_TURN`] tool calls, each as [`new_tool_usage`] and
/// naming the message's session, turn and agent. A tool call's error names
/// it by index: `tool_calls[2].turn_id: 7 is not the message's turn 6`.
pub(crate) fn new_turn(new: &NewTurn, max_bytes: usize) -> Result<(), StoreError> {
    new_message(&new.message, max_bytes)?;
    let count = new.tool_calls.len();
    if count > MAX_TOOL_CALLS_PER_TURN {
        return Err(StoreError::invalid(
            "tool_calls",
            format!("must be at most {MAX_TOOL_CALLS_PER_TURN} per turn, got {count}"),
        ));
    }
    for (index, call) in new.tool_calls.iter().enumerate() {
        let at_index = |reason: String| StoreError::InvalidToolCall { index, reason };
        new_tool_usage(call, max_bytes).map_err(|error| at_index(error.to_string()))?;
        if let Some(reason) = differs_from_message(call, &new.message) {
            return Err(at_index(reason));
        }
    }
    Ok(())
}

/// How `call` names another session, turn or agent than its turn's
/// `message` (`field: what differs`); `None` when it names the same.
fn differs_from_message(call: &NewToolUsage, message: &NewMessage) -> Option<String> {
    if call.session_id != message.session_id {
        return Some(format!(
            "session_id: {:?} is not the message's session {:?}",
            heist_plumbing::quote(&call.session_id),
            heist_plumbing::quote(&message.session_id)
        ));
    }
    if call.turn_id != message.turn_id {
        return Some(format!(
            "turn_id: {} is not the message's turn {}",
            call.turn_id, message.turn_id
        ));
    }
    if call.agent_name != message.agent_name {
        return Some(format!(
            "agent_name: {:?} is not the message's agent {:?}",
            heist_plumbing::quote(&call.agent_name),
            heist_plumbing::quote(&message.agent_name)
        ));
    }
    None
}

/// Checks a request to store a session event; `max_bytes` bounds the detail.
pub(crate) fn new_session_event(new: &NewSessionEvent, max_bytes: usize) -> Result<(), StoreError> {
    session_id(&new.session_id)?;
    event_kind(&new.kind)?;
    bytes("detail", &new.detail, max_bytes)?;
    chars("idempotency_key", &new.idempotency_key, MAX_NAME_CHARS)
}

/// Checks a request to end a session: a turn count >= 0 and a final status.
pub(crate) fn end_session(end: &EndSession) -> Result<(), StoreError> {
    session_id(&end.session_id)?;
    non_negative("num_turns", end.num_turns)?;
    if !end.status.is_ended() {
        return Err(StoreError::NotAFinalStatus { status: end.status });
    }
    Ok(())
}

/// The first character of `value` that `allowed` refuses, if any.
fn first_outside(value: &str, allowed: fn(char) -> bool) -> Option<char> {
    value.chars().find(|c| !allowed(*c))
}

fn is_session_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn is_event_kind_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

/// A text field that must be present and at most `max` characters.
fn required(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::EmptyField { field });
    }
    chars(field, value, max)
}

/// A text field of at most `max` characters (a byte count within `max` needs no counting).
fn chars(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() <= max {
        return Ok(());
    }
    let len = value.chars().count();
    if len > max {
        return Err(StoreError::TooManyChars { field, max, len });
    }
    Ok(())
}

/// A text field of at most `max` bytes.
fn bytes(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::TooManyBytes {
            field,
            max,
            len: value.len(),
        });
    }
    Ok(())
}

fn non_negative(field: &'static str, value: i64) -> Result<(), StoreError> {
    if value < 0 {
        return Err(StoreError::Negative { field, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::SessionStatus;

    const LIMIT: usize = 64 * 1024;

    fn message() -> NewMessage {
        NewMessage {
            session_id: "heist_20250116_143052_a1b2".into(),
            turn_id: 1,
            agent_name: "planner".into(),
            agent_role: "Strategic Planner".into(),
            message: "we go at dawn".into(),
            ..NewMessage::default()
        }
    }

    fn tool_usage() -> NewToolUsage {
        NewToolUsage {
            session_id: "s1".into(),
            turn_id: 2,
            agent_name: "hacker".into(),
            tool_name: "calculator".into(),
            tool_params: "2+2".into(),
            tool_result: "4".into(),
            success: true,
            duration_ms: 3,
            ..NewToolUsage::default()
        }
    }

    fn event(kind: &str) -> NewSessionEvent {
        NewSessionEvent {
            session_id: "s1".into(),
            kind: kind.into(),
            detail: r#"{"service":"memory"}"#.into(),
            idempotency_key: "breaker-1".into(),
            written_by: String::new(),
            written_via: String::new(),
        }
    }

    fn end(status: SessionStatus) -> EndSession {
        EndSession {
            session_id: "s1".into(),
            num_turns: 3,
            status,
        }
    }

    #[test]
    fn a_well_formed_session_id_passes() {
        assert_eq!(session_id("heist_2025-01-16.a:b"), Ok(()));
        assert_eq!(session_id(&"a".repeat(128)), Ok(()));
    }

    #[test]
    fn an_empty_session_id_is_refused() {
        assert_eq!(session_id(""), Err(StoreError::EmptySessionId));
    }

    #[test]
    fn a_session_id_over_128_characters_is_refused() {
        assert_eq!(
            session_id(&"a".repeat(129)),
            Err(StoreError::TooManyChars {
                field: "session_id",
                max: 128,
                len: 129
            })
        );
    }

    #[test]
    fn a_session_id_with_a_slash_or_space_or_accent_is_refused() {
        for (id, character) in [("a/b", '/'), ("a b", ' '), ("café", 'é')] {
            assert_eq!(
                session_id(id),
                Err(StoreError::SessionIdCharacter { character })
            );
        }
    }

    #[test]
    fn a_well_formed_message_passes() {
        assert_eq!(new_message(&message(), LIMIT), Ok(()));
    }

    #[test]
    fn a_message_without_agent_name_is_refused() {
        let new = NewMessage {
            agent_name: String::new(),
            ..message()
        };
        assert_eq!(
            new_message(&new, LIMIT),
            Err(StoreError::EmptyField {
                field: "agent_name"
            })
        );
    }

    #[test]
    fn an_agent_name_over_128_characters_is_refused_counting_characters_not_bytes() {
        let ok = NewMessage {
            agent_name: "é".repeat(128),
            ..message()
        };
        assert_eq!(new_message(&ok, LIMIT), Ok(()));
        let long = NewMessage {
            agent_name: "é".repeat(129),
            ..message()
        };
        assert_eq!(
            new_message(&long, LIMIT),
            Err(StoreError::TooManyChars {
                field: "agent_name",
                max: 128,
                len: 129
            })
        );
    }

    #[test]
    fn an_agent_role_over_256_characters_is_refused() {
        let new = NewMessage {
            agent_role: "r".repeat(257),
            ..message()
        };
        assert_eq!(
            new_message(&new, LIMIT),
            Err(StoreError::TooManyChars {
                field: "agent_role",
                max: 256,
                len: 257
            })
        );
    }

    #[test]
    fn a_message_over_the_byte_limit_is_refused() {
        let new = NewMessage {
            message: "x".repeat(11),
            ..message()
        };
        assert_eq!(new_message(&new, 11), Ok(()));
        assert_eq!(
            new_message(&new, 10),
            Err(StoreError::TooManyBytes {
                field: "message",
                max: 10,
                len: 11
            })
        );
    }

    #[test]
    fn a_negative_turn_id_is_refused() {
        let new = NewMessage {
            turn_id: -1,
            ..message()
        };
        assert_eq!(
            new_message(&new, LIMIT),
            Err(StoreError::Negative {
                field: "turn_id",
                value: -1
            })
        );
    }

    #[test]
    fn an_idempotency_key_over_128_characters_is_refused() {
        let new = NewMessage {
            idempotency_key: "k".repeat(129),
            ..message()
        };
        assert_eq!(
            new_message(&new, LIMIT),
            Err(StoreError::TooManyChars {
                field: "idempotency_key",
                max: 128,
                len: 129
            })
        );
    }

    #[test]
    fn a_well_formed_tool_usage_passes() {
        assert_eq!(new_tool_usage(&tool_usage(), LIMIT), Ok(()));
    }

    #[test]
    fn a_tool_usage_without_tool_name_is_refused() {
        let new = NewToolUsage {
            tool_name: String::new(),
            ..tool_usage()
        };
        assert_eq!(
            new_tool_usage(&new, LIMIT),
            Err(StoreError::EmptyField { field: "tool_name" })
        );
    }

    #[test]
    fn a_tool_name_over_128_characters_is_refused() {
        let new = NewToolUsage {
            tool_name: "t".repeat(129),
            ..tool_usage()
        };
        assert_eq!(
            new_tool_usage(&new, LIMIT),
            Err(StoreError::TooManyChars {
                field: "tool_name",
                max: 128,
                len: 129
            })
        );
    }

    #[test]
    fn tool_params_and_result_over_the_byte_limit_are_refused() {
        let params = NewToolUsage {
            tool_params: "p".repeat(5),
            ..tool_usage()
        };
        assert_eq!(
            new_tool_usage(&params, 4),
            Err(StoreError::TooManyBytes {
                field: "tool_params",
                max: 4,
                len: 5
            })
        );
        let result = NewToolUsage {
            tool_params: String::new(),
            tool_result: "r".repeat(5),
            ..tool_usage()
        };
        assert_eq!(
            new_tool_usage(&result, 4),
            Err(StoreError::TooManyBytes {
                field: "tool_result",
                max: 4,
                len: 5
            })
        );
    }

    #[test]
    fn a_negative_duration_is_refused() {
        let new = NewToolUsage {
            duration_ms: -5,
            ..tool_usage()
        };
        assert_eq!(
            new_tool_usage(&new, LIMIT),
            Err(StoreError::Negative {
                field: "duration_ms",
                value: -5
            })
        );
    }

    #[test]
    fn metadata_over_64_kib_is_refused() {
        let new = NewSession {
            session_id: "s1".into(),
            metadata: "m".repeat(MAX_METADATA_BYTES + 1),
            ..NewSession::default()
        };
        assert_eq!(
            new_session(&new),
            Err(StoreError::TooManyBytes {
                field: "metadata",
                max: MAX_METADATA_BYTES,
                len: MAX_METADATA_BYTES + 1
            })
        );
    }

    #[test]
    fn ending_with_active_status_is_refused() {
        assert_eq!(
            end_session(&end(SessionStatus::Active)),
            Err(StoreError::NotAFinalStatus {
                status: SessionStatus::Active
            })
        );
    }

    #[test]
    fn ending_with_a_final_status_passes() {
        for status in [
            SessionStatus::Completed,
            SessionStatus::Failed,
            SessionStatus::Interrupted,
        ] {
            assert_eq!(end_session(&end(status)), Ok(()));
        }
    }

    #[test]
    fn ending_with_negative_turns_is_refused() {
        let request = EndSession {
            num_turns: -1,
            ..end(SessionStatus::Completed)
        };
        assert_eq!(
            end_session(&request),
            Err(StoreError::Negative {
                field: "num_turns",
                value: -1
            })
        );
    }

    #[test]
    fn well_formed_event_kinds_pass() {
        for kind in [
            "breaker.open",
            "breaker.half_open",
            "spool.replayed",
            "session-resumed",
            "v2",
        ] {
            assert_eq!(new_session_event(&event(kind), LIMIT), Ok(()), "{kind}");
        }
        assert_eq!(event_kind(&"k".repeat(64)), Ok(()));
    }

    #[test]
    fn an_empty_event_kind_is_refused() {
        assert_eq!(
            new_session_event(&event(""), LIMIT),
            Err(StoreError::EmptyField { field: "kind" })
        );
    }

    #[test]
    fn an_event_kind_over_64_characters_is_refused() {
        assert_eq!(
            event_kind(&"k".repeat(65)),
            Err(StoreError::TooManyChars {
                field: "kind",
                max: 64,
                len: 65
            })
        );
    }

    #[test]
    fn an_event_kind_with_an_uppercase_letter_space_colon_or_accent_is_refused() {
        for (kind, character) in [
            ("Breaker.open", 'B'),
            ("breaker open", ' '),
            ("breaker:open", ':'),
            ("bréaker", 'é'),
        ] {
            assert_eq!(
                event_kind(kind),
                Err(StoreError::EventKindCharacter { character }),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_event_detail_over_the_byte_limit_is_refused_and_an_empty_one_passes() {
        let big = NewSessionEvent {
            detail: "d".repeat(11),
            ..event("breaker.open")
        };
        assert_eq!(
            new_session_event(&big, 10),
            Err(StoreError::TooManyBytes {
                field: "detail",
                max: 10,
                len: 11
            })
        );
        let empty = NewSessionEvent {
            detail: String::new(),
            ..event("breaker.open")
        };
        assert_eq!(new_session_event(&empty, 10), Ok(()));
    }

    #[test]
    fn an_event_with_a_bad_session_id_or_a_long_key_is_refused() {
        let bad_session = NewSessionEvent {
            session_id: "a/b".into(),
            ..event("breaker.open")
        };
        assert_eq!(
            new_session_event(&bad_session, LIMIT),
            Err(StoreError::SessionIdCharacter { character: '/' })
        );
        let long_key = NewSessionEvent {
            idempotency_key: "k".repeat(129),
            ..event("breaker.open")
        };
        assert_eq!(
            new_session_event(&long_key, LIMIT),
            Err(StoreError::TooManyChars {
                field: "idempotency_key",
                max: 128,
                len: 129
            })
        );
    }
}
