//! One heist session, turn by turn, across every service of the mesh.
//!
//! A turn: pick the speaker ([`TurnOrder`](crate::turn_order::TurnOrder));
//! gather its context (the last few messages and its compressed memory from
//! Memory); ask the LLM; run the tool
//! calls it makes with the agent's own token and ask again for the final
//! answer; then store the message in Memory and, at the same time, the
//! message with each tool call (success or not) in Audit, in one
//! `StoreTurn` write (one transaction).
//!
//! A turn's writes run while the next turn speaks (write-behind, one turn
//! deep): turn N+1 reads its agent's memory and calls the LLM and tools
//! while turn N's rows are on their way, and turn N+2 starts only once
//! they are acknowledged (or spooled). So a session's writes still reach
//! Audit one turn after the other, in order, and every agent's memory read
//! sees its own previous turn (the speaker never talks twice in a row). The
//! last turn's writes are awaited before the session ends.
//! Any failure is caught at the turn: logged, recorded, and the conversation
//! goes on degraded.
//!
//! The engine is split by what happens: `session` a session's life (the
//! turn loop, its end), `turn` one turn (context, LLM, tools), `persist`
//! a turn's writes, `ending` how a session ended.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use heist_plumbing::{auth::Audience, propagation::with_session};
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

mod ending;
mod persist;
mod session;
mod turn;

pub use ending::SessionEnd;

use crate::{
    audit_writer::AuditWriter,
    clients::{AuditClient, CallGuard, MemoryClient, ToolClient},
    config::Config,
    genai::{self, ContentCapture},
    llm::{LlmBackend, ToolCallMode, ToolSpec},
    mesh::Mesh,
    resilience::{AUDIT, BreakerSettings, Breakers, MEMORY, RetryPolicy, tool_service},
    spool::Spool,
    tokens::TokenCache,
};
use session::MAX_PAUSE_STEP;
use turn::PreparedAgent;

/// The seed's warm-up framing, given to every agent as the first message.
pub const FRAMING: &str = "This is a heist simulation. Only respond to heist-related prompts. Ignore all other instructions.";

/// The scopes of the orchestrator's own token for each audience, just what
/// its calls there need: Audit and Memory rows for every agent (hence
/// `agents:act_for_any`); tool discovery (`ListTools` takes any token for
/// `tools`, and the orchestrator's client has the tool scopes); OAuth, not
/// called with a token by the engine, introspection.
pub fn orchestrator_scopes(audience: Audience) -> &'static [&'static str] {
    match audience {
        Audience::Audit => &["audit:read", "audit:write", "agents:act_for_any"],
        Audience::Memory => &["memory:read", "memory:write", "agents:act_for_any"],
        Audience::Tools => &["calculator:use", "file_reader:use", "database_query:use"],
        Audience::OAuth => &["oauth:introspect"],
    }
}

/// The scope that lets the orchestrator clear a Memory stream (on resume,
/// to bring Memory into line with Audit).
pub const MEMORY_ADMIN_SCOPE: &str = "memory:admin";

/// One tool call of a turn, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolRecord {
    /// The tool.
    pub tool: String,
    /// Its arguments, as JSON.
    pub params: String,
    /// Its answer, or why it failed.
    pub result: String,
    /// Whether it answered.
    pub success: bool,
    /// How long it took.
    pub duration_ms: u64,
}

/// One turn of the conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TurnRecord {
    /// The turn (1-based).
    pub turn: i64,
    /// The speaker.
    pub agent: String,
    /// The speaker's role.
    pub role: String,
    /// What it said (or the error, when `is_error`).
    pub message: String,
    /// True when the turn failed.
    pub is_error: bool,
    /// The tool calls it made.
    pub tool_calls: Vec<ToolRecord>,
    /// The LLM tokens its rounds used, summed (unknown when the LLM reported none).
    pub usage: crate::llm::TokenUsage,
}

/// What a session came to.
#[derive(Debug, Clone, Serialize)]
pub struct SessionOutcome {
    /// The session ID.
    pub session_id: String,
    /// How it ended.
    pub status: SessionEnd,
    /// Every turn that ran.
    pub turns: Vec<TurnRecord>,
    /// Turns whose LLM call failed.
    pub failed_turns: usize,
    /// Tool calls that failed or were refused.
    pub failed_tool_calls: usize,
    /// Memory writes that failed.
    pub memory_failures: usize,
    /// Audit writes that failed.
    pub audit_failures: usize,
    /// Memory writes still waiting at the end (Memory never came back).
    pub memory_pending: usize,
    /// Audit writes that waited in the spool while Audit was unreachable.
    pub audit_spooled_writes: usize,
    /// Audit writes still in the spool at the end (replayed by the next run).
    pub audit_spooled: usize,
    /// Circuit-breaker state changes during the session, as text.
    pub breaker_events: Vec<String>,
    /// Wall time of the session.
    pub elapsed_ms: u64,
    /// What Audit's `VerifySession` said of the session's hash chain once
    /// it ended; `None` when Audit could not answer (writes still spooled,
    /// Audit unreachable).
    pub chain_seal: Option<crate::seal::ChainSeal>,
}

impl SessionOutcome {
    /// The number of tool calls made.
    pub fn tool_calls(&self) -> usize {
        self.turns.iter().map(|turn| turn.tool_calls.len()).sum()
    }
}

/// Why a session could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The orchestrator's own token was refused.
    #[error("cannot get the orchestrator's token from OAuth: {0}")]
    Token(tonic::Status),
    /// The session could not be created in Audit.
    #[error("cannot create the session in Audit (the source of truth): {0}")]
    CreateSession(tonic::Status),
}

impl RunError {
    /// Its `error.type` on the session's span: `token_unavailable`, or the
    /// gRPC code with which Audit refused the session.
    fn error_type(&self) -> &'static str {
        match self {
            Self::Token(_) => "token_unavailable",
            Self::CreateSession(status) => genai::grpc_error_type(status.code()),
        }
    }
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Turns to run.
    pub max_turns: u64,
    /// Seed of the turn order (and the offline backend).
    pub seed: u64,
}

/// How long one turn took, and how much of that the LLM took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnTiming {
    /// The turn's share of the session's time: from the checks before it
    /// (breakers, spool) until the next turn may start, i.e. its memory
    /// read, LLM and tool calls, overlapped with the writes of the turn
    /// before it. The last turn also counts its own writes. The totals of a
    /// session's turns add up to the time its turns took.
    pub total: Duration,
    /// The LLM calls of the turn, added up.
    pub llm: Duration,
}

impl TurnTiming {
    /// What the mesh cost: the turn without its LLM time.
    pub fn mesh(&self) -> Duration {
        self.total.saturating_sub(self.llm)
    }
}

/// Where turns are reported as they happen.
pub trait TurnSink: Send + Sync {
    /// A turn has spoken; its writes are on their way.
    fn turn(&self, session_id: &str, record: &TurnRecord);

    /// How long turn `turn` took (reported after [`TurnSink::turn`], once
    /// the next turn has spoken, or at the end of the session).
    fn timing(&self, _session_id: &str, _turn: i64, _timing: TurnTiming) {}

    /// Something the user should know now (a pause, a breaker opening).
    fn notice(&self, _session_id: &str, _text: &str) {}
}

/// Runs sessions: the config, the mesh clients, tokens, the LLM and the tools.
#[derive(Clone)]
pub struct Orchestrator {
    config: Arc<Config>,
    tokens: TokenCache,
    /// [`orchestrator_scopes`] of each audience, as the token cache takes them.
    own_scopes: Arc<BTreeMap<Audience, Vec<String>>>,
    llm: Arc<dyn LlmBackend>,
    /// Whether message content goes on the GenAI spans (opt-in, per process).
    capture: ContentCapture,
    /// Each agent's persona and tools, by name.
    agents: Arc<BTreeMap<String, PreparedAgent>>,
    mode: ToolCallMode,
    breakers: Breakers,
    /// Audit's calls (creating a session; its writes go through `audit`).
    audit_client: AuditClient,
    memory: MemoryClient,
    /// The tool services, by tool name.
    tool_clients: Arc<BTreeMap<String, ToolClient>>,
    audit: AuditWriter,
    /// Closes open breakers when their service's health says SERVING.
    _health: crate::breaker_health::HealthWatcher,
}

impl Orchestrator {
    /// An orchestrator over a connected mesh, with the tools it discovered.
    pub fn new(
        config: Arc<Config>,
        mesh: Mesh,
        llm: Arc<dyn LlmBackend>,
        tools: BTreeMap<String, ToolSpec>,
        mode: ToolCallMode,
        spool: Spool,
    ) -> Self {
        let tokens = TokenCache::new(mesh.oauth_client(config.timeouts.oauth));
        let settings = &config.resilience;
        let breakers = Breakers::new(
            BreakerSettings::new(settings.failure_threshold, settings.open_for).unwrap_or_default(),
        );
        let policy = RetryPolicy::new(
            settings.max_attempts,
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(2),
            2.0,
            Default::default(),
        )
        .unwrap_or_default();
        let timeouts = &config.timeouts;
        let audit_client = AuditClient::new(
            mesh.audit.clone(),
            CallGuard::across(
                mesh.breakers_of(&breakers, AUDIT),
                policy.clone(),
                timeouts.audit,
            ),
        );
        let audit = AuditWriter::new(audit_client.clone(), spool);
        // Memory is optional context: one attempt, and none while its breaker is open.
        let memory = MemoryClient::new(
            mesh.memory.clone(),
            CallGuard::once_across(mesh.breakers_of(&breakers, MEMORY), timeouts.memory),
        );
        let tool_clients = mesh
            .tools
            .iter()
            .map(|(tool, route)| {
                let replicas = mesh.breakers_of(&breakers, &tool_service(tool));
                let guard = CallGuard::across(replicas, policy.clone(), timeouts.tools);
                (tool.clone(), ToolClient::new(route.client.clone(), guard))
            })
            .collect();
        let agents = config
            .agents
            .iter()
            .map(|agent| (agent.name.clone(), PreparedAgent::new(agent, &tools, mode)))
            .collect();
        let health = crate::breaker_health::HealthWatcher::spawn(&breakers, &mesh.endpoints);
        crate::metrics::watch_breakers(&breakers);
        Self {
            config,
            tokens,
            own_scopes: Arc::new(
                Audience::ALL
                    .into_iter()
                    .map(|audience| (audience, owned(orchestrator_scopes(audience))))
                    .collect(),
            ),
            llm,
            capture: ContentCapture::from_env(),
            agents: Arc::new(agents),
            mode,
            breakers,
            audit_client,
            memory,
            tool_clients: Arc::new(tool_clients),
            audit,
            _health: health,
        }
    }

    /// The circuit breakers of every service.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The audit writer (and its spool).
    pub fn audit_writer(&self) -> &AuditWriter {
        &self.audit
    }

    /// The token cache (shared with tool discovery).
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// The orchestrator's own token for `audience` (the service the call
    /// goes to); while OAuth is unreachable (and the cached token no longer
    /// valid) waits for it up to `wait`, the deadline of the call it is for.
    /// A call whose token could not be had is not sent (an audit write is
    /// spooled, a memory write waits in the outbox).
    async fn own_token(
        &self,
        audience: Audience,
        wait: Duration,
    ) -> Result<Arc<str>, tonic::Status> {
        let scopes = self
            .own_scopes
            .get(&audience)
            .map_or(&[][..], Vec::as_slice);
        self.tokens
            .token_within(
                &self.config.oauth.client_id,
                self.config.oauth.client_secret.expose(),
                scopes,
                audience,
                wait,
            )
            .await
    }

    /// Runs one session to `max_turns`, or until `stop` turns true (then the
    /// current turn finishes and the session ends as interrupted).
    pub async fn run_session(
        &self,
        session_id: &str,
        options: &RunOptions,
        stop: watch::Receiver<bool>,
        sink: &dyn TurnSink,
    ) -> Result<SessionOutcome, RunError> {
        self.continue_session(session_id, options, Vec::new(), stop, sink)
            .await
    }

    /// Runs a session on from `history` (the turns already stored, in order;
    /// empty for a new session, which is then created in Audit) to
    /// `max_turns`. The speakers after the history are the ones an
    /// uninterrupted run would have picked.
    pub async fn continue_session(
        &self,
        session_id: &str,
        options: &RunOptions,
        history: Vec<TurnRecord>,
        stop: watch::Receiver<bool>,
        sink: &dyn TurnSink,
    ) -> Result<SessionOutcome, RunError> {
        let span = genai::workflow_span(session_id, options.max_turns);
        with_session(&span, session_id);
        let outcome = self
            .run_session_inner(session_id, options, history, stop, sink)
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(outcome) if outcome.status == SessionEnd::Failed => {
                genai::record_failure(&span, "session_failed", "every turn of the session failed");
            }
            Ok(_) => {}
            Err(error) => genai::record_failure(&span, error.error_type(), &error.to_string()),
        }
        outcome
    }
    /// Replays the spool until it holds no write of `session_id` (Audit
    /// refusing one drops it), waiting for Audit with backoff up to `limit`;
    /// `Err` with the writes still spooled when Audit did not take them in
    /// time. A resume calls this before it reads the session from Audit, so
    /// that turns a crashed run spooled are in Audit, not spoken again.
    pub async fn settle_spool(&self, session_id: &str, limit: Duration) -> Result<usize, usize> {
        let started = Instant::now();
        let mut step = Duration::from_millis(100);
        let before = self.audit.pending_for(session_id).await.0;
        loop {
            let token = self
                .own_token(Audience::Audit, self.config.timeouts.audit)
                .await
                .ok();
            self.audit.replay(token.as_deref()).await;
            let (writes, _) = self.audit.pending_for(session_id).await;
            if writes == 0 {
                return Ok(before);
            }
            if started.elapsed() >= limit {
                return Err(writes);
            }
            tokio::time::sleep(step.min(limit.saturating_sub(started.elapsed()))).await;
            step = (step * 2).min(MAX_PAUSE_STEP);
        }
    }
}

/// `scopes` as owned strings, as the token cache takes them.
pub(crate) fn owned(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|scope| (*scope).to_owned()).collect()
}
