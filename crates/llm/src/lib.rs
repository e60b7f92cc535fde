//! LLM backends for the agents' turns.
//!
//! The turn engine holds an `Arc<dyn LlmBackend>` and calls [`LlmBackend::complete`] once per
//! round: round 0 may ask for tools, later rounds see the tool results and answer.
//!
//! Layout:
//! - `types`: the conversation and tool types shared by every backend;
//! - `backend`: the object-safe [`LlmBackend`] trait;
//! - `error`: [`LlmError`], every way a completion can fail;
//! - `inline`: the seed's `[TOOL:name:argument]` form, parsed and answered;
//! - `openai` (with `openai_wire`, `http_retry`): the OpenAI-compatible HTTP backend
//!   (LM Studio, Ollama, vLLM, llama.cpp server);
//! - `offline` (with `offline_lines`, `fnv`): the deterministic backend used when no LLM is configured.
//! - `text`: small text helpers.

mod backend;
mod error;
mod fnv;
mod http_retry;
mod inline;
mod offline;
mod offline_lines;
mod openai;
mod openai_wire;
mod text;
mod types;

pub use backend::{BoxFuture, LlmBackend, OFFLINE_PROVIDER};
pub use error::LlmError;
pub use http_retry::Backoff;
pub use inline::{parse_inline_tool_calls, tool_result_message};
pub use offline::OfflineBackend;
pub use openai::{OpenAiBackend, OpenAiSettings};
pub use types::{
    AgentPersona, ChatMessage, Completion, CompletionRequest, Role, TokenUsage, ToolCall,
    ToolCallMode, ToolSpec,
};
