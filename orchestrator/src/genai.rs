//! The OpenTelemetry GenAI semantic conventions (`gen-ai`, development
//! status; checked against semconv 1.41) for the orchestrator's spans:
//!
//! - `invoke_workflow heist` (INTERNAL), one per session: the workflow of
//!   many agents;
//! - `invoke_agent {agent}` (INTERNAL), one per turn;
//! - `chat {model}` (CLIENT; INTERNAL for the offline backend, which runs in
//!   the process), one per LLM call, named for the model requested;
//! - `execute_tool {tool}` (INTERNAL), one per tool call.
//!
//! Each carries `gen_ai.operation.name` and `gen_ai.conversation.id` (the
//! session ID; `session.id` stays on every span), and `error.type` when it
//! failed (see [`llm_error_type`], [`grpc_error_type`] and the engine's
//! tool and turn errors). Message content (prompts, answers, tool arguments
//! and results) is exported only when the process starts with
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (see
//! [`ContentCapture`]), and then as span attributes only, never in a log
//! line.

use std::{borrow::Cow, sync::OnceLock};

use heist_plumbing::telemetry::{record_error, set_exported_attribute};
use tracing::{Span, field::Empty};

use crate::llm::{ChatMessage, Completion, LlmBackend, LlmError, ToolCall};

mod content;

/// The workflow a session runs, `gen_ai.workflow.name` (low cardinality:
/// every session is the same workflow).
pub const WORKFLOW_NAME: &str = "heist";

/// The session span's name: `invoke_workflow {gen_ai.workflow.name}`.
const WORKFLOW_SPAN_NAME: &str = "invoke_workflow heist";

/// The environment variable that opts in to exporting message content.
pub const CAPTURE_CONTENT_VAR: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// Whether message content goes on the spans: off unless the process
/// started with [`CAPTURE_CONTENT_VAR`] set to `true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentCapture {
    on: bool,
}

impl ContentCapture {
    /// Capture on (for tests and embedders that opt in in code).
    pub const ON: Self = Self { on: true };
    /// Capture off, the default.
    pub const OFF: Self = Self { on: false };

    /// The process's choice, read from [`CAPTURE_CONTENT_VAR`] once (the
    /// first call) and kept for the life of the process.
    pub fn from_env() -> Self {
        static CHOICE: OnceLock<ContentCapture> = OnceLock::new();
        *CHOICE.get_or_init(|| Self::parse(std::env::var(CAPTURE_CONTENT_VAR).ok().as_deref()))
    }

    /// The choice a value of [`CAPTURE_CONTENT_VAR`] makes: on for `true`
    /// (any case, blanks around it ignored), off for anything else or unset.
    pub fn parse(value: Option<&str>) -> Self {
        Self {
            on: value.is_some_and(|value| value.trim().eq_ignore_ascii_case("true")),
        }
    }

    /// True when content is captured.
    pub fn is_on(self) -> bool {
        self.on
    }

    /// `gen_ai.input.messages` on a `chat` span: the messages sent, in order.
    pub fn record_input(self, span: &Span, messages: &[ChatMessage]) {
        if self.on {
            set_exported_attribute(
                span,
                "gen_ai.input.messages",
                content::input_messages(messages),
            );
        }
    }

    /// `gen_ai.output.messages` on a `chat` span: the model's answer.
    pub fn record_output(self, span: &Span, completion: &Completion) {
        if self.on {
            set_exported_attribute(
                span,
                "gen_ai.output.messages",
                content::output_messages(completion),
            );
        }
    }

    /// `gen_ai.tool.call.arguments` on an `execute_tool` span.
    pub fn record_tool_arguments(self, span: &Span, call: &ToolCall) {
        if self.on {
            set_exported_attribute(
                span,
                "gen_ai.tool.call.arguments",
                content::tool_arguments(call),
            );
        }
    }

    /// `gen_ai.tool.call.result` on an `execute_tool` span.
    pub fn record_tool_result(self, span: &Span, result: &str) {
        if self.on {
            set_exported_attribute(span, "gen_ai.tool.call.result", result.to_owned());
        }
    }
}

/// The session's span, `invoke_workflow heist`; [`heist_plumbing::propagation::with_session`]
/// records its `session.id`.
pub fn workflow_span(session_id: &str, max_turns: u64) -> Span {
    tracing::info_span!(
        target: "heist_orchestrator",
        "invoke_workflow",
        otel.name = WORKFLOW_SPAN_NAME,
        gen_ai.operation.name = "invoke_workflow",
        gen_ai.workflow.name = WORKFLOW_NAME,
        gen_ai.conversation.id = %session_id,
        session.id = Empty,
        max_turns,
        error.type = Empty,
    )
}

/// A turn's span, `invoke_agent {agent}`, also with the older `agent.name`,
/// `agent.role` and `turn.id`.
pub fn agent_span(
    session_id: &str,
    llm: &dyn LlmBackend,
    agent: &str,
    role: &str,
    turn_id: i64,
) -> Span {
    tracing::info_span!(
        target: "heist_orchestrator",
        "invoke_agent",
        otel.name = %format!("invoke_agent {agent}"),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.provider.name = llm.provider_name(),
        gen_ai.agent.name = %agent,
        gen_ai.request.model = %llm.model(),
        gen_ai.conversation.id = %session_id,
        agent.name = %agent,
        agent.role = %role,
        turn.id = turn_id,
        error.type = Empty,
    )
}

/// An LLM call's span, `chat {model}` for the model requested; the answer
/// fills in the rest ([`record_completion`]).
pub fn chat_span(session_id: &str, llm: &dyn LlmBackend, round: u32) -> Span {
    let kind = if llm.is_offline() {
        "internal"
    } else {
        "client"
    };
    tracing::info_span!(
        target: "heist_orchestrator",
        "chat",
        otel.name = %format!("chat {}", llm.model()),
        otel.kind = kind,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = llm.provider_name(),
        gen_ai.request.model = %llm.model(),
        gen_ai.conversation.id = %session_id,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        round,
        error.type = Empty,
    )
}

/// What the answer tells of a `chat` call: the model that answered and,
/// when the server reports them, the tokens used.
pub fn record_completion(span: &Span, completion: &Completion) {
    span.record("gen_ai.response.model", completion.model.as_str());
    if let Some(tokens) = completion.prompt_tokens {
        span.record("gen_ai.usage.input_tokens", tokens);
    }
    if let Some(tokens) = completion.completion_tokens {
        span.record("gen_ai.usage.output_tokens", tokens);
    }
}

/// A tool call's span, `execute_tool {tool}`, also with the older
/// `tool.name`; `description` is the tool's, when a tool service offers it.
pub fn tool_span(session_id: &str, call: &ToolCall, description: Option<&str>) -> Span {
    tracing::info_span!(
        target: "heist_orchestrator",
        "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.id,
        gen_ai.tool.type = "function",
        gen_ai.tool.description = description,
        gen_ai.conversation.id = %session_id,
        tool.name = %call.name,
        error.type = Empty,
    )
}

/// Marks `span` as failed: `error.type` (low cardinality), span status
/// ERROR and an `exception` event with `message` (never content).
pub fn record_failure(span: &Span, error_type: &str, message: &str) {
    span.record("error.type", error_type);
    record_error(span, error_type, message);
}

/// The `error.type` of an LLM failure: `timeout`, `connection_failed`, the
/// HTTP status (`500`, `429`), `model_not_found`, `bad_response`,
/// `request_failed` or `invalid_settings`.
pub fn llm_error_type(error: &LlmError) -> Cow<'static, str> {
    match error {
        LlmError::InvalidSettings { .. } => Cow::Borrowed("invalid_settings"),
        LlmError::Timeout { .. } => Cow::Borrowed("timeout"),
        LlmError::Connect { .. } => Cow::Borrowed("connection_failed"),
        LlmError::Http { status, .. } => Cow::Owned(status.to_string()),
        LlmError::ModelNotFound { .. } => Cow::Borrowed("model_not_found"),
        LlmError::BadResponse(_) => Cow::Borrowed("bad_response"),
        LlmError::Request { .. } => Cow::Borrowed("request_failed"),
    }
}

/// The `error.type` of a failed gRPC call: its status code's canonical
/// name, e.g. `PERMISSION_DENIED`.
pub fn grpc_error_type(code: tonic::Code) -> &'static str {
    heist_plumbing::status::code_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_captured_only_when_the_variable_says_true() {
        for on in ["true", "TRUE", " True "] {
            assert!(ContentCapture::parse(Some(on)).is_on(), "{on:?}");
        }
        for off in [
            None,
            Some(""),
            Some("false"),
            Some("1"),
            Some("yes"),
            Some("truee"),
        ] {
            assert!(!ContentCapture::parse(off).is_on(), "{off:?}");
        }
        assert_eq!(ContentCapture::default(), ContentCapture::OFF);
    }

    #[test]
    fn the_session_span_is_named_for_the_workflow() {
        assert_eq!(
            WORKFLOW_SPAN_NAME,
            format!("invoke_workflow {WORKFLOW_NAME}")
        );
    }

    #[test]
    fn llm_failures_have_low_cardinality_error_types() {
        let http = LlmError::Http {
            url: "http://127.0.0.1:1/v1/chat/completions".to_owned(),
            status: 503,
            body: "overloaded: try the prompt again".to_owned(),
        };
        assert_eq!(llm_error_type(&http), "503");
        let timeout = LlmError::Timeout {
            url: "http://127.0.0.1:1".to_owned(),
            after: std::time::Duration::from_secs(60),
        };
        assert_eq!(llm_error_type(&timeout), "timeout");
        assert_eq!(
            llm_error_type(&LlmError::BadResponse("not json".to_owned())),
            "bad_response"
        );
    }

    #[test]
    fn grpc_failures_are_named_by_their_canonical_code() {
        assert_eq!(
            grpc_error_type(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(grpc_error_type(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(
            grpc_error_type(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
    }
}
