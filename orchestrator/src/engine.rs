//! One heist session, turn by turn, across every service of the mesh.
//!
//! A turn: pick the speaker ([`TurnOrder`]); gather its context (the last few
//! messages and its compressed memory from Memory); ask the LLM; run the tool
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

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use heist_plumbing::propagation::with_session;
use heist_proto::v1::{
    CallToolRequest, CreateSessionRequest, EndSessionRequest, GetCompressedMemoryRequest,
    StoreMessageRequest, StoreToolUsageRequest, StoreTurnRequest,
};
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

mod ending;

pub use ending::SessionEnd;

use crate::{
    audit_writer::{AuditWriteError, AuditWriter, Written},
    config::{AgentConfig, Config},
    llm::{
        AgentPersona, ChatMessage, Completion, CompletionRequest, LlmBackend, LlmError, ToolCall,
        ToolCallMode, ToolSpec, tool_result_message,
    },
    memory_sync::MemorySync,
    mesh::{Mesh, request},
    resilience::{
        AUDIT, BreakerEvent, BreakerSettings, BreakerState, Breakers, MEMORY, RetryPolicy,
        call_with_resilience, tool_service,
    },
    spool::{Spool, SpooledWrite},
    tokens::TokenCache,
    turn_order::TurnOrder,
};

/// The seed's warm-up framing, given to every agent as the first message.
pub const FRAMING: &str = "This is a heist simulation. Only respond to heist-related prompts. Ignore all other instructions.";

/// Counts what became of a turn's writes.
fn count_stored(outcome: &mut SessionOutcome, stored: Stored) {
    outcome.memory_failures += usize::from(!stored.memory);
    match stored.audit {
        Ok(Written::Stored) => {}
        Ok(Written::Spooled) => outcome.audit_spooled_writes += 1,
        Err(error) => {
            tracing::error!(%error, "audit write of a turn failed");
            outcome.audit_failures += 1;
        }
    }
}

/// Returns when the breaker of `service` closes (never, once the events end).
async fn closed(events: &mut tokio::sync::broadcast::Receiver<BreakerEvent>, service: &str) {
    loop {
        match events.recv().await {
            Ok(event) if event.service == service && event.to == BreakerState::Closed => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A policy of one attempt, for calls whose failure costs nothing to skip.
fn single_attempt() -> RetryPolicy {
    RetryPolicy::new(
        1,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        1.0,
        Default::default(),
    )
    .unwrap_or_default()
}

/// The scopes the orchestrator's own token carries (it writes Audit and Memory
/// for every agent, hence `agents:act_for_any`).
pub const ORCHESTRATOR_SCOPES: [&str; 5] = [
    "audit:read",
    "audit:write",
    "memory:read",
    "memory:write",
    "agents:act_for_any",
];

/// The scope that lets the orchestrator clear a Memory stream (on resume,
/// to bring Memory into line with Audit).
pub const MEMORY_ADMIN_SCOPE: &str = "memory:admin";

/// The longest pause between two attempts to reach Audit while paused.
const MAX_PAUSE_STEP: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the end of a session waits for Audit to take the spool.
const END_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How many memory writes may wait for Memory; beyond that the oldest are
/// dropped and re-sent from the history by a reconcile.
const MEMORY_OUTBOX_CAPACITY: usize = 256;
/// How many times one turn may go back to the LLM with tool results.
const MAX_TOOL_ROUNDS: u32 = 2;
/// How many tool calls one LLM answer may make.
const MAX_CALLS_PER_ROUND: usize = 3;
/// Tool results longer than this are cut before they go back to the LLM.
const MAX_RESULT_CHARS: usize = 4000;

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

/// What a turn gathers while it talks to the LLM and the tools.
#[derive(Default)]
struct TurnLog {
    /// The tool calls made.
    records: Vec<ToolRecord>,
    /// Their audit rows, written with the turn's message.
    writes: Vec<StoreToolUsageRequest>,
    /// The time the LLM calls took.
    llm: Duration,
}

/// A turn that has spoken; its writes are still to be made.
struct SpokenTurn {
    record: TurnRecord,
    /// The time its LLM calls took.
    llm: Duration,
    /// What remains to be done for it.
    writes: TurnWrites,
}

/// A turn's writes, made while the next turn speaks.
struct TurnWrites {
    /// Its tool calls' audit rows, written with its message.
    tool_rows: Vec<StoreToolUsageRequest>,
    /// The turn's span: the writes belong to the turn in the trace.
    span: tracing::Span,
}

/// Whether a turn's writes landed.
struct Stored {
    memory: bool,
    audit: Result<Written, AuditWriteError>,
}

/// What a turn needs of an agent, made once (not per turn).
struct PreparedAgent {
    /// Who the LLM plays.
    persona: AgentPersona,
    /// The tools it may call that a tool service offers.
    tools: Vec<ToolSpec>,
    /// How to call them, inline (`None` in native mode or without tools).
    tool_instructions: Option<String>,
}

impl PreparedAgent {
    fn new(agent: &AgentConfig, offered: &BTreeMap<String, ToolSpec>, mode: ToolCallMode) -> Self {
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

/// Runs sessions: the config, the mesh clients, tokens, the LLM and the tools.
#[derive(Clone)]
pub struct Orchestrator {
    config: Arc<Config>,
    mesh: Mesh,
    tokens: TokenCache,
    /// [`ORCHESTRATOR_SCOPES`], as the token cache takes them.
    own_scopes: Arc<[String]>,
    llm: Arc<dyn LlmBackend>,
    /// Each agent's persona and tools, by name.
    agents: Arc<BTreeMap<String, PreparedAgent>>,
    mode: ToolCallMode,
    breakers: Breakers,
    policy: RetryPolicy,
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
        let tokens = TokenCache::new(mesh.oauth.clone(), config.timeouts.oauth);
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
        let audit = AuditWriter::new(
            mesh.audit.clone(),
            spool,
            breakers.get(AUDIT),
            policy.clone(),
            config.timeouts.audit,
        );
        let agents = config
            .agents
            .iter()
            .map(|agent| (agent.name.clone(), PreparedAgent::new(agent, &tools, mode)))
            .collect();
        let health = crate::breaker_health::HealthWatcher::spawn(&breakers, &mesh.endpoints);
        Self {
            config,
            mesh,
            tokens,
            own_scopes: ORCHESTRATOR_SCOPES.map(str::to_owned).into(),
            llm,
            agents: Arc::new(agents),
            mode,
            breakers,
            policy,
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

    /// The orchestrator's own token; while OAuth is unreachable (and the
    /// cached token no longer valid) waits for it up to `wait`, the deadline
    /// of the call it is for. A call whose token could not be had is not
    /// sent (an audit write is spooled, a memory write waits in the outbox).
    async fn own_token(&self, wait: Duration) -> Result<Arc<str>, tonic::Status> {
        self.tokens
            .token_within(
                &self.config.oauth.client_id,
                self.config.oauth.client_secret.expose(),
                &self.own_scopes,
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
        let span = tracing::info_span!(
            target: "heist_orchestrator",
            "session",
            session.id = tracing::field::Empty,
            max_turns = options.max_turns,
        );
        with_session(&span, session_id);
        self.run_session_inner(session_id, options, history, stop, sink)
            .instrument(span)
            .await
    }

    async fn run_session_inner(
        &self,
        session_id: &str,
        options: &RunOptions,
        history: Vec<TurnRecord>,
        stop: watch::Receiver<bool>,
        sink: &dyn TurnSink,
    ) -> Result<SessionOutcome, RunError> {
        let started = Instant::now();
        let token = self
            .own_token(self.config.timeouts.oauth)
            .await
            .map_err(RunError::Token)?;
        if history.is_empty() {
            self.create_session(session_id, options, &token).await?;
        }
        let order = TurnOrder::new(self.config.session.turn_order.clone(), options.seed);
        let mut last: Option<String> = history.last().map(|turn| turn.agent.clone());
        let first_turn = history
            .last()
            .map_or(1, |turn| u64::try_from(turn.turn).unwrap_or(0) + 1);
        let mut outcome = SessionOutcome {
            session_id: session_id.to_owned(),
            status: SessionEnd::Completed,
            turns: history,
            failed_turns: 0,
            failed_tool_calls: 0,
            memory_failures: 0,
            audit_failures: 0,
            memory_pending: 0,
            audit_spooled_writes: 0,
            audit_spooled: 0,
            breaker_events: Vec::new(),
            elapsed_ms: 0,
        };
        let mut memory_sync = MemorySync::new(session_id, MEMORY_OUTBOX_CAPACITY);
        // A resumed session: Memory may hold turns of the crashed run that
        // Audit does not; bring it into line before the first new turn (and
        // again at the end if Memory could not be reached now).
        let mut align_due = first_turn > 1
            && !self
                .align_memory(session_id, &outcome.turns, &mut memory_sync)
                .await;
        let mut breaker_events = self.breakers.subscribe();
        // The last turn of `outcome.turns` until its writes are made, and
        // its timing until the next turn has spoken.
        let mut unstored: Option<TurnWrites> = None;
        let mut untimed: Option<(i64, TurnTiming)> = None;
        for turn in first_turn..=options.max_turns {
            let turn_started = Instant::now();
            self.note_breaker_events(session_id, &mut breaker_events, &mut outcome, sink)
                .await;
            let max_spooled =
                usize::try_from(self.config.resilience.max_spooled_turns).unwrap_or(usize::MAX);
            self.drain_spool(session_id, max_spooled, &stop, &mut outcome, sink)
                .await;
            if *stop.borrow() {
                outcome.status = SessionEnd::Interrupted;
                break;
            }
            let speaker = order.speaker(turn, last.as_deref()).to_owned();
            let Some(agent) = self.config.agent(&speaker) else {
                continue;
            };
            let turn_id = i64::try_from(turn).unwrap_or(i64::MAX);
            let (stored, spoken) = tokio::join!(
                self.store_last_turn(
                    session_id,
                    &outcome.turns,
                    unstored.take(),
                    &mut memory_sync
                ),
                self.run_turn(session_id, agent, turn_id, &outcome.turns),
            );
            if let Some(stored) = stored {
                count_stored(&mut outcome, stored);
            }
            self.record_memory_refusals(session_id, &mut memory_sync, &mut outcome)
                .await;
            outcome.failed_turns += usize::from(spoken.record.is_error);
            outcome.failed_tool_calls += spoken
                .record
                .tool_calls
                .iter()
                .filter(|call| !call.success)
                .count();
            sink.turn(session_id, &spoken.record);
            if let Some((turn, timing)) = untimed.take() {
                sink.timing(session_id, turn, timing);
            }
            untimed = Some((
                turn_id,
                TurnTiming {
                    total: turn_started.elapsed(),
                    llm: spoken.llm,
                },
            ));
            outcome.turns.push(spoken.record);
            unstored = Some(spoken.writes);
            last = Some(speaker);
        }
        let flush_started = Instant::now();
        if let Some(stored) = self
            .store_last_turn(session_id, &outcome.turns, unstored, &mut memory_sync)
            .await
        {
            count_stored(&mut outcome, stored);
        }
        if let Some((turn, mut timing)) = untimed {
            timing.total += flush_started.elapsed();
            sink.timing(session_id, turn, timing);
        }
        if align_due {
            align_due = !self
                .align_memory(session_id, &outcome.turns, &mut memory_sync)
                .await;
            if align_due {
                outcome.memory_pending = outcome.memory_pending.max(1);
            }
        }
        self.record_memory_refusals(session_id, &mut memory_sync, &mut outcome)
            .await;
        outcome.memory_failures += memory_sync.refused();
        // Memory may have restarted since the last write: compare once more.
        {
            let token = self.own_token(self.config.timeouts.memory).await.ok();
            match memory_sync
                .reconcile(
                    &self.mesh.memory,
                    outcome.turns.iter(),
                    token.as_deref(),
                    self.config.timeouts.memory,
                )
                .await
            {
                Ok(resent) => tracing::info!(resent, "memory reconciled at the end of the session"),
                Err(status) => {
                    tracing::warn!(error = %status.message(), "memory could not be reconciled");
                    outcome.memory_pending = memory_sync.pending().max(1);
                }
            }
        }
        outcome.status = SessionEnd::of(
            outcome.status == SessionEnd::Interrupted,
            outcome.failed_turns,
            outcome.turns.len(),
        );
        let token = self
            .own_token(self.config.timeouts.audit)
            .await
            .ok()
            .unwrap_or(token);
        let end = SpooledWrite::EndSession(EndSessionRequest {
            session_id: session_id.to_owned(),
            num_turns: i64::try_from(outcome.turns.len()).unwrap_or(i64::MAX),
            status: outcome.status.proto().into(),
            idempotency_key: format!("{session_id}/end"),
        });
        self.record_audit(end, Some(&token), &mut outcome).await;
        self.note_breaker_events(session_id, &mut breaker_events, &mut outcome, sink)
            .await;
        let (_, stop_never) = watch::channel(false);
        let ending = if *stop.borrow() {
            stop.clone()
        } else {
            stop_never
        };
        self.drain_spool(session_id, 0, &ending, &mut outcome, sink)
            .await;
        outcome.audit_spooled = self.audit.pending_for(session_id).await.0;
        outcome.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    /// Brings Memory into line with Audit's `history` (see
    /// [`MemorySync::align`]); false when Memory could not be reached.
    async fn align_memory(
        &self,
        session_id: &str,
        history: &[TurnRecord],
        memory_sync: &mut MemorySync,
    ) -> bool {
        let deadline = self.config.timeouts.memory;
        let token = self.own_token(deadline).await.ok();
        let admin = self
            .tokens
            .token_within(
                &self.config.oauth.client_id,
                self.config.oauth.client_secret.expose(),
                &[MEMORY_ADMIN_SCOPE.to_owned()],
                deadline,
            )
            .await
            .ok();
        let roster = self.config.agents.iter().map(|agent| agent.name.as_str());
        match memory_sync
            .align(
                &self.mesh.memory,
                roster,
                history,
                token.as_deref(),
                admin.as_deref(),
                deadline,
            )
            .await
        {
            Ok(aligned) => {
                tracing::info!(
                    session.id = session_id,
                    cleared_streams = aligned.cleared_streams,
                    resent = aligned.resent,
                    "memory aligned with the audit trail"
                );
                true
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "memory could not be aligned with the audit trail; tried again at the end");
                false
            }
        }
    }

    /// Records in Audit, as `memory.refused` session events, the memory
    /// writes Memory refused for good since the last call (they were
    /// dropped so as not to block the others).
    async fn record_memory_refusals(
        &self,
        session_id: &str,
        memory_sync: &mut MemorySync,
        outcome: &mut SessionOutcome,
    ) {
        for refusal in memory_sync.take_refusals() {
            let write =
                SpooledWrite::StoreSessionEvent(heist_proto::v1::StoreSessionEventRequest {
                    session_id: session_id.to_owned(),
                    kind: "memory.refused".to_owned(),
                    detail: format!(
                        "memory write of {} turn {} dropped: {}",
                        refusal.agent, refusal.turn, refusal.reason
                    ),
                    idempotency_key: format!(
                        "{session_id}/memory_refused/{}/{}",
                        refusal.agent, refusal.turn
                    ),
                });
            let token = self.own_token(self.config.timeouts.audit).await.ok();
            self.record_audit(write, token.as_deref(), outcome).await;
        }
    }

    /// Sends an audit write, or spools it; counts what happened.
    async fn record_audit(
        &self,
        write: SpooledWrite,
        token: Option<&str>,
        outcome: &mut SessionOutcome,
    ) {
        match self.audit.write(write, token).await {
            Ok(Written::Stored) => {}
            Ok(Written::Spooled) => outcome.audit_spooled_writes += 1,
            Err(AuditWriteError::Refused { status, .. }) => {
                tracing::error!(error = %status.message(), "audit refused a write");
                outcome.audit_failures += 1;
            }
            Err(error @ (AuditWriteError::Spool(_) | AuditWriteError::SpoolThread)) => {
                tracing::error!(%error, "audit write lost: neither audit nor the spool took it");
                outcome.audit_failures += 1;
            }
        }
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
            let token = self.own_token(self.config.timeouts.audit).await.ok();
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

    /// Replays the spool; while more than `max_turns` turns of this session
    /// wait in it, pauses the conversation until Audit takes them (or until
    /// `stop`, or, at the end of a session, a time limit).
    async fn drain_spool(
        &self,
        session_id: &str,
        max_turns: usize,
        stop: &watch::Receiver<bool>,
        outcome: &mut SessionOutcome,
        sink: &dyn TurnSink,
    ) {
        let token = self.own_token(self.config.timeouts.audit).await.ok();
        if self.audit.replay(token.as_deref()).await == 0 {
            return;
        }
        let (writes, turns) = self.audit.pending_for(session_id).await;
        if turns <= max_turns && !(max_turns == 0 && writes > 0) {
            return;
        }
        sink.notice(
            session_id,
            &format!("⏸  Audit is unreachable: {writes} writes of {turns} turns are spooled; pausing until it is back"),
        );
        let started = Instant::now();
        let mut step = std::time::Duration::from_millis(100);
        let mut events = self.breakers.subscribe();
        loop {
            if *stop.borrow() || (max_turns == 0 && started.elapsed() > END_DRAIN_LIMIT) {
                break;
            }
            // The next attempt comes after the backoff step, or as soon as
            // Audit's breaker closes (its health said SERVING).
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = closed(&mut events, AUDIT) => {}
            }
            step = (step * 2).min(MAX_PAUSE_STEP);
            let token = self.own_token(self.config.timeouts.audit).await.ok();
            self.audit.replay(token.as_deref()).await;
            let (writes, turns) = self.audit.pending_for(session_id).await;
            if turns <= max_turns && (max_turns > 0 || writes == 0) {
                sink.notice(
                    session_id,
                    "▶️  Audit is back: the spool is replayed, the conversation goes on",
                );
                break;
            }
        }
        let _ = outcome;
    }

    /// Logs every breaker state change since the last call, adds it to the
    /// session's span, records it as a session event in Audit, and keeps it
    /// for the summary.
    async fn note_breaker_events(
        &self,
        session_id: &str,
        events: &mut tokio::sync::broadcast::Receiver<BreakerEvent>,
        outcome: &mut SessionOutcome,
        sink: &dyn TurnSink,
    ) {
        let mut seen = Vec::new();
        loop {
            match events.try_recv() {
                Ok(event) => seen.push(event),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "breaker events missed");
                }
                Err(_) => break,
            }
        }
        for event in seen {
            let text = event.to_string();
            tracing::warn!(target: "heist_orchestrator", breaker = %event.service, state = %event.to, "{text}");
            if event.to == BreakerState::Open {
                sink.notice(session_id, &format!("⚡ circuit {text}"));
            }
            let kind = match event.to {
                BreakerState::Open => "breaker.open",
                BreakerState::HalfOpen => "breaker.half_open",
                BreakerState::Closed => "breaker.closed",
            };
            let nanos = event
                .at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or(0);
            let write =
                SpooledWrite::StoreSessionEvent(heist_proto::v1::StoreSessionEventRequest {
                    session_id: session_id.to_owned(),
                    kind: kind.to_owned(),
                    detail: text.clone(),
                    idempotency_key: format!("{session_id}/breaker/{}/{nanos}", event.service),
                });
            let token = self.own_token(self.config.timeouts.audit).await.ok();
            self.record_audit(write, token.as_deref(), outcome).await;
            outcome.breaker_events.push(text);
        }
    }

    /// Creates the session in Audit, with what a resume needs in its metadata
    /// (seed, turns, and the process, so a crash can be told from a run).
    async fn create_session(
        &self,
        session_id: &str,
        options: &RunOptions,
        token: &str,
    ) -> Result<(), RunError> {
        let metadata = serde_json::json!({
            "config": self.config.source,
            "seed": options.seed,
            "max_turns": options.max_turns,
            "agents": self.config.agents.iter().map(|agent| &agent.name).collect::<Vec<_>>(),
            "llm": self.llm.describe(),
            "framing": if self.config.session.warmup { FRAMING } else { "" },
            "pid": std::process::id(),
            "host": crate::liveness::host_name(),
            "spool": self.audit.spool_path().await,
        });
        let create = CreateSessionRequest {
            session_id: session_id.to_owned(),
            metadata: metadata.to_string(),
            idempotency_key: format!("{session_id}/create"),
        };
        // A session starts only once Audit has it: nothing is spooled yet.
        call_with_resilience(&self.breakers.get(AUDIT), &self.policy, true, |_| {
            let mut audit = self.mesh.audit.clone();
            let body = create.clone();
            async move {
                audit
                    .create_session(request(body, Some(token), self.config.timeouts.audit))
                    .await
            }
        })
        .await
        .map_err(|error| RunError::CreateSession(error.into_status()))?;
        Ok(())
    }

    /// Makes the writes of the last turn of `turns`, if they are still to
    /// be made.
    async fn store_last_turn(
        &self,
        session_id: &str,
        turns: &[TurnRecord],
        writes: Option<TurnWrites>,
        memory_sync: &mut MemorySync,
    ) -> Option<Stored> {
        let writes = writes?;
        let (record, history) = turns.split_last()?;
        async {
            let token = self.own_token(self.config.timeouts.audit).await.ok();
            let (memory, audit) = self
                .persist(
                    session_id,
                    record,
                    writes.tool_rows,
                    history,
                    memory_sync,
                    token.as_deref(),
                )
                .await;
            Some(Stored { memory, audit })
        }
        .instrument(writes.span)
        .await
    }

    /// Speaks one turn: memory, LLM, tools. Its writes are left to
    /// [`Orchestrator::store_last_turn`].
    async fn run_turn(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        turn_id: i64,
        history: &[TurnRecord],
    ) -> SpokenTurn {
        let span = tracing::info_span!(
            target: "heist_orchestrator",
            "turn",
            agent.name = %agent.name,
            agent.role = %agent.role,
            turn.id = turn_id,
        );
        async {
            let token = self.own_token(self.config.timeouts.memory).await.ok();
            let memory = self
                .memory_context(session_id, agent, token.as_deref())
                .await;
            let mut log = TurnLog::default();
            let answer = match self.agents.get(&agent.name) {
                Some(prepared) => {
                    let messages = self.context(prepared, history, memory);
                    self.converse(session_id, agent, prepared, turn_id, messages, &mut log)
                        .await
                }
                None => Err(TurnError::NotConfigured(agent.name.clone())),
            };
            let (message, is_error) = match answer {
                Ok(message) => (message, false),
                Err(error) => {
                    tracing::warn!(%error, "turn failed");
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
        // Memory is optional context: one attempt, and none while its breaker is open.
        let answer =
            call_with_resilience(&self.breakers.get(MEMORY), &single_attempt(), true, |_| {
                let mut memory = self.mesh.memory.clone();
                let request = request(body.clone(), Some(token), self.config.timeouts.memory);
                async move { memory.get_compressed_memory(request).await }
            })
            .await
            .map_err(|error| error.into_status());
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
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
            Err(status) => {
                tracing::warn!(error = %status.message(), "memory unavailable; turn goes on without it");
                None
            }
        }
    }

    /// The messages the LLM sees: system prompt, tool instructions, memory,
    /// the framing, and the last few messages of the conversation.
    fn context(
        &self,
        agent: &PreparedAgent,
        history: &[TurnRecord],
        memory: Option<String>,
    ) -> Vec<ChatMessage> {
        let keep = self.config.session.context_messages;
        let start = history.len().saturating_sub(keep);
        let mut messages = Vec::with_capacity(4 + history.len() - start);
        messages.push(ChatMessage::system(agent.persona.system_prompt.clone()));
        if let Some(text) = &agent.tool_instructions {
            messages.push(ChatMessage::system(text.clone()));
        }
        if let Some(memory) = memory {
            messages.push(ChatMessage::system(memory));
        }
        if self.config.session.warmup {
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

    /// Asks the LLM, runs its tool calls, asks again, up to the round limit;
    /// the final answer, or why the LLM failed. The tool calls made (also
    /// on failure), their audit rows and the LLM's time go into `log`.
    async fn converse(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        prepared: &PreparedAgent,
        turn_id: i64,
        mut messages: Vec<ChatMessage>,
        log: &mut TurnLog,
    ) -> Result<String, TurnError> {
        let mut round = 0;
        loop {
            let asked = Instant::now();
            let completion = self
                .complete(
                    &prepared.persona,
                    &messages,
                    &prepared.tools,
                    turn_id,
                    round,
                )
                .await;
            log.llm += asked.elapsed();
            let completion = completion?;
            if completion.tool_calls.is_empty() || round >= MAX_TOOL_ROUNDS {
                return Ok(completion.content.trim().to_owned());
            }
            messages.push(completion.assistant_message(self.mode));
            for (index, call) in completion
                .tool_calls
                .iter()
                .take(MAX_CALLS_PER_ROUND)
                .enumerate()
            {
                let (record, write) = self
                    .call_tool(session_id, agent, turn_id, round, index, call)
                    .await;
                let shown: String = record.result.chars().take(MAX_RESULT_CHARS).collect();
                let shown = if record.success {
                    shown
                } else {
                    format!("ERROR: {shown}")
                };
                messages.push(tool_result_message(call, &shown, self.mode));
                log.records.push(record);
                log.writes.push(write);
            }
            round += 1;
        }
    }

    async fn complete(
        &self,
        persona: &AgentPersona,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
        turn_id: i64,
        round: u32,
    ) -> Result<Completion, LlmError> {
        let span = tracing::info_span!(
            target: "heist_orchestrator",
            "llm.chat",
            otel.kind = "client",
            gen_ai.system = if self.llm.is_offline() { "offline" } else { "openai" },
            gen_ai.operation.name = "chat",
            gen_ai.request.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            round,
            otel.status_code = tracing::field::Empty,
        );
        let request = CompletionRequest {
            persona,
            messages,
            tools,
            mode: self.mode,
            turn_id,
            round,
        };
        let outcome = self.llm.complete(request).instrument(span.clone()).await;
        match outcome {
            Ok(completion) => {
                span.record("gen_ai.request.model", completion.model.as_str());
                if let Some(tokens) = completion.prompt_tokens {
                    span.record("gen_ai.usage.input_tokens", tokens);
                }
                if let Some(tokens) = completion.completion_tokens {
                    span.record("gen_ai.usage.output_tokens", tokens);
                }
                Ok(completion)
            }
            Err(error) => {
                heist_plumbing::telemetry::record_error(&span, "llm.error", &error.to_string());
                Err(error)
            }
        }
    }

    /// Runs one tool call with the agent's token; the record and its audit
    /// row (written with the turn's message).
    async fn call_tool(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        turn_id: i64,
        round: u32,
        index: usize,
        call: &ToolCall,
    ) -> (ToolRecord, StoreToolUsageRequest) {
        let started = Instant::now();
        let params = serde_json::to_string(&call.arguments).unwrap_or_default();
        let span = tracing::info_span!(target: "heist_orchestrator", "tool.call", tool.name = %call.name, otel.status_code = tracing::field::Empty);
        let outcome = self
            .invoke_tool(session_id, agent, turn_id, call)
            .instrument(span.clone())
            .await;
        let (result, success) = match outcome {
            Ok(text) => (text, true),
            Err(error) => {
                let reason = error.to_string();
                heist_plumbing::telemetry::record_error(&span, "tool.error", &reason);
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
        let write = StoreToolUsageRequest {
            session_id: session_id.to_owned(),
            turn_id,
            agent_name: agent.name.clone(),
            tool_name: record.tool.clone(),
            tool_params: record.params.clone(),
            tool_result: record.result.clone(),
            success: record.success,
            duration_ms: i64::try_from(record.duration_ms).unwrap_or(i64::MAX),
            idempotency_key: format!("{session_id}/turn/{turn_id}/tool/{round}/{index}"),
        };
        (record, write)
    }

    async fn invoke_tool(
        &self,
        session_id: &str,
        agent: &AgentConfig,
        turn_id: i64,
        call: &ToolCall,
    ) -> Result<String, ToolError> {
        let route = self
            .mesh
            .tools
            .get(&call.name)
            .ok_or_else(|| ToolError::NotConfigured(call.name.clone()))?;
        let token = if agent.oauth_scopes.is_empty() {
            None
        } else {
            Some(
                self.tokens
                    .token_within(
                        &agent.name,
                        agent.client_secret.expose(),
                        &agent.oauth_scopes,
                        self.config.timeouts.tools,
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
            session_id: session_id.to_owned(),
            agent_name: agent.name.clone(),
            turn_id,
        };
        let breaker = self.breakers.get(&tool_service(&call.name));
        let answer = call_with_resilience(&breaker, &self.policy, true, |_| {
            let mut client = route.client.clone();
            let request = request(body.clone(), token.as_deref(), self.config.timeouts.tools);
            async move { client.call_tool(request).await }
        })
        .await
        .map_err(|error| ToolError::Call(error.into_status()))?;
        Ok(answer.into_inner().text)
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
        token: Option<&str>,
    ) -> (bool, Result<Written, AuditWriteError>) {
        let memory = async {
            if record.is_error {
                return true;
            }
            memory_sync
                .store(
                    &self.mesh.memory,
                    &self.breakers.get(MEMORY),
                    history,
                    record,
                    token,
                    self.config.timeouts.memory,
                )
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
        };
        let (memory, audit) = tokio::join!(memory, self.store_turn(message, tool_rows, token));
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
