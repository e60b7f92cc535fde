//! The object-safe trait every LLM backend implements.

use std::future::Future;
use std::pin::Pin;

use super::error::LlmError;
use super::types::{Completion, CompletionRequest};

/// A boxed, sendable future: what [`LlmBackend::complete`] returns so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that answers an agent's turn: an LLM server, or the offline stand-in.
pub trait LlmBackend: Send + Sync {
    /// Answers one round of one agent's turn.
    fn complete<'a>(
        &'a self,
        request: CompletionRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>>;

    /// One line for the start-up banner, e.g. `openai-compatible http://localhost:1234/v1 model X`.
    fn describe(&self) -> String;

    /// Whether this backend answers without any LLM.
    fn is_offline(&self) -> bool;

    /// The model every request asks for (the configured one; the answer names the model that
    /// actually answered), e.g. for the `gen_ai.request.model` span attribute.
    fn model(&self) -> &str;

    /// Who serves the completions, as OpenTelemetry's `gen_ai.provider.name` names it:
    /// `openai` for any OpenAI-compatible server, [`OFFLINE_PROVIDER`] for the offline backend.
    fn provider_name(&self) -> &'static str;
}

/// The `gen_ai.provider.name` of the offline backend (no well-known value applies: it is this
/// project's own deterministic stand-in).
pub const OFFLINE_PROVIDER: &str = "heist.offline";
