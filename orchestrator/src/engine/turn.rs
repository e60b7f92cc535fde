//! One turn: gather the speaker's context (its memory and the last few
//! messages), ask the LLM, run the tool calls it makes with the agent's own
//! token, and ask again for the final answer. The turn's writes are left to
//! [`super::persist`].

use std::{
    borrow::Cow,
    collections::BTreeMap,
    time::{Duration, Instant},
};

use heist_plumbing::auth::Audience;
use heist_proto::v1::{
    CallToolRequest, GetCompressedMemoryRequest, GetCompressedMemoryResponse, StoreToolUsageRequest,
};
use tracing::Instrument;

use super::{FRAMING, Orchestrator, ToolRecord, TurnRecord, persist::TurnWrites};
use crate::{
    config::AgentConfig,
    genai,
    llm::{
        AgentPersona, ChatMessage, Completion, CompletionRequest, LlmError, TokenUsage, ToolCall,
        ToolCallMode, ToolSpec, tool_result_message,
    },
};

/// How many times one turn may go back to the LLM with tool results.
const MAX_TOOL_ROUNDS: u32 = 2;
/// How many tool calls one LLM answer may make.
const MAX_CALLS_PER_ROUND: usize = 3;
/// Tool results longer than this are cut before they go back to the LLM.
const MAX_RESULT_CHARS: usize = 4000;

/// Why a turn has no answer (its message is then the error).
#[derive(Debug, thiserror::Error)]
enum TurnError {
    /// The speaker is not among the prepared agents.
    #[error("agent {0} is not configured")]
    NotConfigured(String),
    /// The LLM did not answer.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// Why a tool call has no result (the text is what the LLM and Audit get).
#[derive(Debug, thiserror::Error)]
enum ToolError {
    /// No tool service offers the tool.
    #[error("tool {0:?} is not configured (no tool_services entry)")]
    NotConfigured(String),
    /// The agent's token could not be had.
    #[error("no token for {agent}: {}", status.message())]
    NoToken {
        /// The agent.
        agent: String,
        /// Why OAuth did not give it.
        status: tonic::Status,
    },
    /// The tool service refused or failed the call.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Call(tonic::Status),
}

impl TurnError {
    /// Its `error.type` on the turn's span.
    fn error_type(&self) -> Cow<'static, str> {
        match self {
            Self::NotConfigured(_) => Cow::Borrowed("agent_not_configured"),
            Self::Llm(error) => genai::llm_error_type(error),
        }
    }
}

impl ToolError {
    /// Its `error.type` on the tool call's span: `tool_not_configured`,
    /// `token_unavailable`, or the gRPC code the tool service answered.
    fn error_type(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "tool_not_configured",
            Self::NoToken { .. } => "token_unavailable",
            Self::Call(status) => genai::grpc_error_type(status.code()),
        }
    }
}

/// What a turn gathers while it talks to the LLM and the tools.
#[derive(Default)]
struct TurnLog {
    /// The tool calls made.
    records: Vec<ToolRecord>,
    /// Their audit rows, written with the turn's message.
    writes: Vec<StoreToolUsageRequest>,
    /// The time the LLM calls took.
    llm: Duration,
    /// The tokens the LLM calls used, summed over the rounds that answered.
    usage: TokenUsage,
}

/// A turn that has spoken; its writes are still to be made.
pub(super) struct SpokenTurn {
    pub(super) record: TurnRecord,
    /// The time its LLM calls took.
    pub(super) llm: Duration,
    /// What remains to be done for it.
    pub(super) writes: TurnWrites,
}

/// What a turn needs of an agent, made once (not per turn).
pub(super) struct PreparedAgent {
    /// Who the LLM plays.
    persona: AgentPersona,
    /// The tools it may call that a tool service offers.
    tools: Vec<ToolSpec>,
    /// How to call them, inline (`None` in native mode or without tools).
    tool_instructions: Option<String>,
}

impl PreparedAgent {
    pub(super) fn new(
        agent: &AgentConfig,
        offered: &BTreeMap<String, ToolSpec>,
        mode: ToolCallMode,
    ) -> Self {
        let tools: Vec<ToolSpec> = agent
            .tools
            .iter()
            .filter_map(|name| offered.get(name).cloned())
            .collect();
        let tool_instructions = (!tools.is_empty() && mode == ToolCallMode::Inline).then(|| {
            let mut text = String::from(
                "You can use tools. To call one, write [TOOL:name:argument] in your answer; \
                 you will get the result and can then give your final answer.\nAvailable tools:",
            );
            for tool in &tools {
                text.push_str(&format!(
                    "\n- {} ({}): {}",
                    tool.name, tool.primary_argument, tool.description
                ));
            }
            text
        });
        Self {
            persona: AgentPersona {
                name: agent.name.clone(),
                role: agent.role.clone(),
                system_prompt: agent.system_prompt.clone(),
                tools: agent.tools.clone(),
                is_saboteur: agent.is_saboteur,
            },
            tools,
            tool_instructions,
        }
    }
}

/// The messages the LLM sees: system prompt, tool instructions, memory,
/// the framing (with `warmup`), and the last `keep` messages of the
/// conversation.
fn context(
    agent: &PreparedAgent,
    history: &[TurnRecord],
    memory: Option<String>,
    keep: usize,
    warmup: bool,
) -> Vec<ChatMessage> {
    let start = history.len().saturating_sub(keep);
    let mut messages = Vec::with_capacity(4 + history.len() - start);
    messages.push(ChatMessage::system(agent.persona.system_prompt.clone()));
    if let Some(text) = &agent.tool_instructions {
        messages.push(ChatMessage::system(text.clone()));
    }
    if let Some(memory) = memory {
        messages.push(ChatMessage::system(memory));
    }
    if warmup {
        messages.push(ChatMessage::user(format!("[user]: {FRAMING}")));
    }
    for turn in &history[start..] {
        messages.push(ChatMessage::user(format!(
            "[{}]: {}",
            turn.agent, turn.message
        )));
    }
    messages
}

/// Memory's answer as a system message's text (nothing when it has nothing).
fn memory_text(answer: GetCompressedMemoryResponse) -> Option<String> {
    if answer.memories_count == 0 {
        return None;
    }
    let mut text = String::from("Your notes from earlier turns of this session:\n");
    if !answer.summary.is_empty() {
        text.push_str(&answer.summary);
        text.push('\n');
    }
    for entry in answer.recent {
        text.push_str(&format!("Turn {}: {}\n", entry.turn_id, entry.message));
    }
    Some(text)
}

/// The speaker of one turn: who, in which session, and what it may use.
struct Speaker<'a> {
    orchestrator: &'a Orchestrator,
    session_id: &'a str,
    agent: &'a AgentConfig,
    prepared: &'a PreparedAgent,
    turn_id: i64,
}

impl Orchestrator {
    /// Speaks one turn: memory, LLM, tools. Its writes are left to
    /// [`Orchestrator::store_last_turn`].
    pub(super) async fn run_turn(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        turn_id: i64,
        history: &[TurnRecord],
    ) -> SpokenTurn {
        let span = genai::agent_span(
            session_id,
            self.llm.as_ref(),
            &agent.name,
            &agent.role,
            turn_id,
        );
        async {
            let token = self
                .own_token(Audience::Memory, self.config.timeouts.memory)
                .await
                .ok();
            let memory = self
                .memory_context(session_id, agent, token.as_deref())
                .await;
            let mut log = TurnLog::default();
            let answer = match self.agents.get(&agent.name) {
                Some(prepared) => {
                    let session = &self.config.session;
                    let messages = context(
                        prepared,
                        history,
                        memory,
                        session.context_messages,
                        session.warmup,
                    );
                    let speaker = Speaker {
                        orchestrator: self,
                        session_id,
                        agent,
                        prepared,
                        turn_id,
                    };
                    speaker.converse(messages, &mut log).await
                }
                None => Err(TurnError::NotConfigured(agent.name.clone())),
            };
            let (message, is_error) = match answer {
                Ok(message) => (message, false),
                Err(error) => {
                    tracing::warn!(%error, "turn failed");
                    genai::record_failure(
                        &tracing::Span::current(),
                        &error.error_type(),
                        &error.to_string(),
                    );
                    (format!("Error generating response: {error}"), true)
                }
            };
            let record = TurnRecord {
                turn: turn_id,
                agent: agent.name.clone(),
                role: agent.role.clone(),
                message,
                is_error,
                tool_calls: log.records,
                usage: log.usage,
            };
            SpokenTurn {
                record,
                llm: log.llm,
                writes: TurnWrites {
                    tool_rows: log.writes,
                    span: tracing::Span::current(),
                },
            }
        }
        .instrument(span)
        .await
    }

    /// The agent's compressed memory, as a system message (or nothing if
    /// Memory is down or has nothing yet).
    async fn memory_context(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        token: Option<&str>,
    ) -> Option<String> {
        // Never a call without a token: no token, no memory this turn.
        let Some(token) = token else {
            tracing::warn!("no token for Memory (OAuth unreachable); turn goes on without memory");
            return None;
        };
        let body = GetCompressedMemoryRequest {
            agent_id: agent.name.clone(),
            session_id: session_id.to_owned(),
            recent_count: i32::try_from(self.config.session.memory_recent_count).unwrap_or(3),
            max_chars: i32::try_from(self.config.session.memory_max_chars).unwrap_or(1000),
        };
        let answer = self.memory.compressed_memory(body, token).await;
        match answer.map_err(|error| error.into_status()) {
            Ok(answer) => memory_text(answer),
            Err(status) => {
                tracing::warn!(error = %status.message(), "memory unavailable; turn goes on without it");
                None
            }
        }
    }
}

impl Speaker<'_> {
    /// Asks the LLM, runs its tool calls, asks again, up to the round limit;
    /// the final answer, or why the LLM failed. The tool calls made (also
    /// on failure), their audit rows, the LLM's time and its token usage go
    /// into `log`.
    async fn converse(
        &self,
        mut messages: Vec<ChatMessage>,
        log: &mut TurnLog,
    ) -> Result<String, TurnError> {
        let mode = self.orchestrator.mode;
        let mut round = 0;
        loop {
            let asked = Instant::now();
            let completion = self.complete(&messages, round).await;
            log.llm += asked.elapsed();
            let completion = completion?;
            log.usage = log.usage.plus(completion.usage());
            if completion.tool_calls.is_empty() || round >= MAX_TOOL_ROUNDS {
                return Ok(completion.content.trim().to_owned());
            }
            messages.push(completion.assistant_message(mode));
            for (index, call) in completion
                .tool_calls
                .iter()
                .take(MAX_CALLS_PER_ROUND)
                .enumerate()
            {
                let (record, write) = self.call_tool(round, index, call).await;
                let shown: String = record.result.chars().take(MAX_RESULT_CHARS).collect();
                let shown = if record.success {
                    shown
                } else {
                    format!("ERROR: {shown}")
                };
                messages.push(tool_result_message(call, &shown, mode));
                log.records.push(record);
                log.writes.push(write);
            }
            round += 1;
        }
    }

    /// One LLM call, in its `chat {model}` span.
    async fn complete(&self, messages: &[ChatMessage], round: u32) -> Result<Completion, LlmError> {
        let (llm, capture) = (&self.orchestrator.llm, self.orchestrator.capture);
        let span = genai::chat_span(self.session_id, llm.as_ref(), round);
        capture.record_input(&span, messages);
        let request = CompletionRequest {
            persona: &self.prepared.persona,
            messages,
            tools: &self.prepared.tools,
            mode: self.orchestrator.mode,
            turn_id: self.turn_id,
            round,
        };
        let started = std::time::Instant::now();
        let outcome = llm.complete(request).instrument(span.clone()).await;
        match outcome {
            Ok(completion) => {
                crate::metrics::llm_call(
                    &self.prepared.persona.name,
                    &completion.model,
                    started.elapsed(),
                    completion.prompt_tokens,
                    completion.completion_tokens,
                );
                genai::record_completion(&span, &completion);
                capture.record_output(&span, &completion);
                Ok(completion)
            }
            Err(error) => {
                genai::record_failure(&span, &genai::llm_error_type(&error), &error.to_string());
                Err(error)
            }
        }
    }

    /// Runs one tool call with the agent's token; the record and its audit
    /// row (written with the turn's message).
    async fn call_tool(
        &self,
        round: u32,
        index: usize,
        call: &ToolCall,
    ) -> (ToolRecord, StoreToolUsageRequest) {
        let started = Instant::now();
        let params = serde_json::to_string(&call.arguments).unwrap_or_default();
        let capture = self.orchestrator.capture;
        let description = self
            .prepared
            .tools
            .iter()
            .find(|tool| tool.name == call.name)
            .map(|tool| tool.description.as_str());
        let span = genai::tool_span(self.session_id, call, description);
        capture.record_tool_arguments(&span, call);
        let outcome = self.invoke_tool(call).instrument(span.clone()).await;
        let (result, success) = match outcome {
            Ok(text) => {
                capture.record_tool_result(&span, &text);
                (text, true)
            }
            Err(error) => {
                let reason = error.to_string();
                genai::record_failure(&span, error.error_type(), &reason);
                (reason, false)
            }
        };
        let record = ToolRecord {
            tool: call.name.clone(),
            params,
            result,
            success,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let (session_id, turn_id) = (self.session_id, self.turn_id);
        let write = StoreToolUsageRequest {
            session_id: session_id.to_owned(),
            turn_id,
            agent_name: self.agent.name.clone(),
            tool_name: record.tool.clone(),
            tool_params: record.params.clone(),
            tool_result: record.result.clone(),
            success: record.success,
            duration_ms: i64::try_from(record.duration_ms).unwrap_or(i64::MAX),
            idempotency_key: format!("{session_id}/turn/{turn_id}/tool/{round}/{index}"),
        };
        (record, write)
    }

    /// Calls the tool's service with the agent's token (none when the agent
    /// asks for no scope).
    async fn invoke_tool(&self, call: &ToolCall) -> Result<String, ToolError> {
        let orchestrator = self.orchestrator;
        let agent = self.agent;
        let deadline = orchestrator.config.timeouts.tools;
        let client = orchestrator
            .tool_clients
            .get(&call.name)
            .ok_or_else(|| ToolError::NotConfigured(call.name.clone()))?;
        let token = if agent.oauth_scopes.is_empty() {
            None
        } else {
            Some(
                orchestrator
                    .tokens
                    .token_within(
                        &agent.name,
                        agent.client_secret.expose(),
                        &agent.oauth_scopes,
                        Audience::Tools,
                        deadline,
                    )
                    .await
                    .map_err(|status| ToolError::NoToken {
                        agent: agent.name.clone(),
                        status,
                    })?,
            )
        };
        let body = CallToolRequest {
            tool_name: call.name.clone(),
            arguments: call.arguments.clone().into_iter().collect(),
            session_id: self.session_id.to_owned(),
            agent_name: agent.name.clone(),
            turn_id: self.turn_id,
        };
        let answer = client
            .call_tool(body, token.as_deref())
            .await
            .map_err(|error| ToolError::Call(error.into_status()))?;
        Ok(answer.text)
    }
}

#[cfg(test)]
mod tests;
