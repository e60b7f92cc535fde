//! The conversation, persona and tool types every backend speaks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions that frame the conversation (the persona's system prompt).
    System,
    /// Input to the model: other agents' messages, inline tool results.
    User,
    /// The model's own earlier answers, with the tool calls it made.
    Assistant,
    /// A native tool result, answering one tool call by its id.
    Tool,
}

impl Role {
    /// The role's name on the OpenAI wire: `system`, `user`, `assistant` or `tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text; may be empty for an assistant message that only calls tools.
    pub content: String,
    /// Native tool calls made by an assistant message (empty otherwise).
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// Optional author name (the agent, or the tool for a tool result).
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with this role and text and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message without tool calls.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// The same message with an author name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A tool an agent may call, as the model is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The tool's name, e.g. `calculator`.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON schema of the parameters (an `object` schema whose properties are strings).
    pub parameters_schema: Value,
    /// The parameter an inline `[TOOL:name:argument]` call fills, e.g. `expression`.
    pub primary_argument: String,
}

impl ToolSpec {
    /// A tool with one required string parameter, `primary_argument`, described by `argument_doc`.
    pub fn single_string(
        name: impl Into<String>,
        description: impl Into<String>,
        primary_argument: impl Into<String>,
        argument_doc: &str,
    ) -> Self {
        let primary_argument = primary_argument.into();
        let parameters_schema = json!({
            "type": "object",
            "properties": {
                primary_argument.as_str(): { "type": "string", "description": argument_doc }
            },
            "required": [primary_argument.as_str()],
        });
        Self {
            name: name.into(),
            description: description.into(),
            parameters_schema,
            primary_argument,
        }
    }
}

/// One tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id (the server's for native calls, `inline_<n>` for inline ones).
    pub id: String,
    /// The tool's name; may name a tool the agent does not have (the engine records it as failed).
    pub name: String,
    /// The arguments, every value as a string.
    pub arguments: BTreeMap<String, String>,
}

/// How tool calls travel between the model and the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallMode {
    /// The seed's form: `[TOOL:name:argument]` inside the text, results as user messages.
    #[default]
    Inline,
    /// OpenAI function calling: `tools` in the request, `tool_calls` in the answer.
    Native,
}

/// The agent a completion is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPersona {
    /// The agent's name, e.g. `planner`.
    pub name: String,
    /// The agent's role, e.g. `Strategic Planner`.
    pub role: String,
    /// The system prompt that defines the agent.
    pub system_prompt: String,
    /// The names of the tools the agent may call.
    pub tools: Vec<String>,
    /// Whether the agent secretly works against the crew.
    pub is_saboteur: bool,
}

/// Everything a backend needs for one call.
#[derive(Debug, Clone, Copy)]
pub struct CompletionRequest<'a> {
    /// The agent speaking.
    pub persona: &'a AgentPersona,
    /// The conversation so far, system prompt first.
    pub messages: &'a [ChatMessage],
    /// The tools this agent may call.
    pub tools: &'a [ToolSpec],
    /// How tool calls are expressed.
    pub mode: ToolCallMode,
    /// The conversation's turn number.
    pub turn_id: i64,
    /// 0 for the first call of a turn, 1.. after tool results were added.
    pub round: u32,
}

/// A backend's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer's text (inline tool calls included, in inline mode).
    pub content: String,
    /// The tool calls asked for: native ones, or the inline ones parsed from `content`.
    pub tool_calls: Vec<ToolCall>,
    /// The model that answered.
    pub model: String,
    /// Prompt tokens used, when the server reports them.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens used, when the server reports them.
    pub completion_tokens: Option<u64>,
}

impl Completion {
    /// The tokens this call used, as the server reported them (unknown: `None`).
    pub fn usage(&self) -> TokenUsage {
        TokenUsage {
            input: self.prompt_tokens,
            output: self.completion_tokens,
            estimated: false,
        }
    }

    /// The answer as an assistant message to append to the conversation before tool results.
    pub fn assistant_message(&self, mode: ToolCallMode) -> ChatMessage {
        let tool_calls = match mode {
            ToolCallMode::Native => self.tool_calls.clone(),
            ToolCallMode::Inline => Vec::new(),
        };
        ChatMessage {
            tool_calls,
            ..ChatMessage::assistant(self.content.clone())
        }
    }
}

/// The tokens one or more LLM calls used: `None` when no call reported the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input (prompt) tokens.
    pub input: Option<u64>,
    /// Output (completion) tokens.
    pub output: Option<u64>,
    /// True when a count is an estimate rather than the server's report.
    pub estimated: bool,
}

impl TokenUsage {
    /// The usage of both: each count summed over the calls that reported it
    /// (unknown only when neither did); estimated when either is.
    pub fn plus(self, other: TokenUsage) -> TokenUsage {
        fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            }
        }
        TokenUsage {
            input: add(self.input, other.input),
            output: add(self.output, other.output),
            estimated: self.estimated || other.estimated,
        }
    }

    /// True when at least one count is known.
    pub fn is_known(&self) -> bool {
        self.input.is_some() || self.output.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion_with_call() -> Completion {
        Completion {
            content: "checking [TOOL:calculator:1+1]".to_owned(),
            tool_calls: vec![ToolCall {
                id: "c1".to_owned(),
                name: "calculator".to_owned(),
                arguments: BTreeMap::from([("expression".to_owned(), "1+1".to_owned())]),
            }],
            model: "m".to_owned(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    #[test]
    fn single_string_spec_requires_its_primary_argument_as_a_string() {
        let spec = ToolSpec::single_string("calculator", "maths", "expression", "an expression");
        assert_eq!(spec.primary_argument, "expression");
        assert_eq!(
            spec.parameters_schema["properties"]["expression"]["type"],
            "string"
        );
        assert_eq!(spec.parameters_schema["required"][0], "expression");
    }

    #[test]
    fn native_assistant_message_carries_the_tool_calls() {
        let message = completion_with_call().assistant_message(ToolCallMode::Native);
        assert_eq!(message.role, Role::Assistant);
        assert_eq!(message.tool_calls.len(), 1);
    }

    #[test]
    fn inline_assistant_message_keeps_the_calls_in_the_text_only() {
        let message = completion_with_call().assistant_message(ToolCallMode::Inline);
        assert!(message.tool_calls.is_empty());
        assert!(message.content.contains("[TOOL:calculator:1+1]"));
    }

    #[test]
    fn usage_sums_the_counts_that_were_reported_and_stays_unknown_when_none_was() {
        let reported = TokenUsage {
            input: Some(40),
            output: Some(7),
            estimated: false,
        };
        let silent = TokenUsage::default();
        assert_eq!(silent.plus(silent), silent);
        assert!(!silent.plus(silent).is_known());
        assert_eq!(silent.plus(reported), reported);
        let twice = reported.plus(reported);
        assert_eq!((twice.input, twice.output), (Some(80), Some(14)));
        let half = TokenUsage {
            output: None,
            ..reported
        };
        assert_eq!(
            half.plus(half).output,
            None,
            "an unreported count stays unknown"
        );
        let guessed = TokenUsage {
            estimated: true,
            ..reported
        };
        assert!(reported.plus(guessed).estimated);
    }

    #[test]
    fn tool_call_mode_reads_lowercase_names() {
        let mode: ToolCallMode = serde_json::from_str("\"native\"").unwrap();
        assert_eq!(mode, ToolCallMode::Native);
        assert!(serde_json::from_str::<ToolCallMode>("\"telepathy\"").is_err());
    }
}
