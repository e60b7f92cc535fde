//! A session's life: the turn loop, then the last writes, Memory brought in
//! line, the end recorded in Audit and the spool drained. What a session
//! carries from turn to turn is one [`Session`], as mini-redis keeps a
//! connection's state in its `Handler`.

use std::{sync::Arc, time::Instant};

use heist_plumbing::auth::Audience;
use heist_proto::v1::{CreateSessionRequest, EndSessionRequest, StoreSessionEventRequest};
use tokio::sync::{broadcast, watch};

use super::{
    FRAMING, MEMORY_ADMIN_SCOPE, Orchestrator, RunError, RunOptions, SessionEnd, SessionOutcome,
    TurnRecord, TurnSink, TurnTiming,
    persist::{Stored, TurnWrites},
    turn::SpokenTurn,
};
use crate::{
    audit_writer::{AuditWriteError, Written},
    memory_sync::MemorySync,
    resilience::{AUDIT, BreakerEvent, BreakerState, service_of},
    spool::SpooledWrite,
    turn_order::TurnOrder,
};

/// The longest pause between two attempts to reach Audit while paused.
pub(super) const MAX_PAUSE_STEP: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the end of a session waits for Audit to take the spool.
const END_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How many memory writes may wait for Memory; beyond that the oldest are
/// dropped and re-sent from the history by a reconcile.
const MEMORY_OUTBOX_CAPACITY: usize = 256;

/// Returns when the breaker of `service` (or of one of its replicas) closes
/// (never, once the events end).
async fn closed(events: &mut broadcast::Receiver<BreakerEvent>, service: &str) {
    loop {
        match events.recv().await {
            Ok(event)
                if service_of(&event.service) == service && event.to == BreakerState::Closed =>
            {
                return;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The first turn to speak after `history` (1 for a new session).
fn first_turn(history: &[TurnRecord]) -> u64 {
    history
        .last()
        .map_or(1, |turn| u64::try_from(turn.turn).unwrap_or(0) + 1)
}

/// What is left of the last turn once the next has spoken: its writes, and
/// its timing (reported once the next turn has spoken).
#[derive(Default)]
struct LastTurn {
    writes: Option<TurnWrites>,
    timing: Option<(i64, TurnTiming)>,
}

/// One session's state, from its first turn to its end.
struct Session<'a> {
    orchestrator: &'a Orchestrator,
    id: &'a str,
    sink: &'a dyn TurnSink,
    /// Turns true when the session is to stop after the current turn.
    stop: watch::Receiver<bool>,
    /// What the session has come to so far (its turns, resumed ones first).
    outcome: SessionOutcome,
    memory_sync: MemorySync,
    /// True while Memory still has to be aligned with a resumed history.
    align_due: bool,
    breaker_events: broadcast::Receiver<BreakerEvent>,
}

impl Orchestrator {
    /// Runs a session: its token, its creation in Audit (a new one), its
    /// Memory aligned (a resumed one), then its turns and its end.
    pub(super) async fn run_session_inner(
        &self,
        session_id: &str,
        options: &RunOptions,
        history: Vec<TurnRecord>,
        stop: watch::Receiver<bool>,
        sink: &dyn TurnSink,
    ) -> Result<SessionOutcome, RunError> {
        let started = Instant::now();
        // For Audit: the session's creation and its end.
        let token = self
            .own_token(Audience::Audit, self.config.timeouts.oauth)
            .await
            .map_err(RunError::Token)?;
        if history.is_empty() {
            self.create_session(session_id, options, &token).await?;
        }
        let mut memory_sync = MemorySync::new(session_id, MEMORY_OUTBOX_CAPACITY);
        // A resumed session: Memory may hold turns of the crashed run that
        // Audit does not; bring it into line before the first new turn (and
        // again at the end if Memory could not be reached now).
        let align_due = first_turn(&history) > 1
            && !self
                .align_memory(session_id, &history, &mut memory_sync)
                .await;
        let mut session = Session {
            orchestrator: self,
            id: session_id,
            sink,
            stop,
            outcome: SessionOutcome::new(session_id, history),
            memory_sync,
            align_due,
            breaker_events: self.breakers.subscribe(),
        };
        let last = session.speak(options).await;
        session.flush(last).await;
        session.settle_memory().await;
        session.end(token).await;
        session.outcome.elapsed_ms =
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // After the session's time: the seal is read once it is over.
        session.seal().await;
        Ok(session.outcome)
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
        self.audit_client
            .send(&SpooledWrite::CreateSession(create), Some(token))
            .await
            .map_err(|error| RunError::CreateSession(error.into_status()))
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
        let token = self.own_token(Audience::Memory, deadline).await.ok();
        let admin = self
            .tokens
            .token_within(
                &self.config.oauth.client_id,
                self.config.oauth.client_secret.expose(),
                &[MEMORY_ADMIN_SCOPE.to_owned()],
                Audience::Memory,
                deadline,
            )
            .await
            .ok();
        let roster = self.config.agents.iter().map(|agent| agent.name.as_str());
        match memory_sync
            .align(
                &self.memory,
                roster,
                history,
                token.as_deref(),
                admin.as_deref(),
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
}

impl SessionOutcome {
    /// A session that has yet to run its turns after `history`.
    fn new(session_id: &str, history: Vec<TurnRecord>) -> Self {
        Self {
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
            chain_seal: None,
        }
    }
}

impl Session<'_> {
    /// The turn loop: each turn speaks while the one before it is stored.
    /// The speakers after a resumed history are the ones an uninterrupted
    /// run would have picked. Returns what is left of the last turn.
    async fn speak(&mut self, options: &RunOptions) -> LastTurn {
        let orchestrator = self.orchestrator;
        let config = &orchestrator.config;
        let order = TurnOrder::new(config.session.turn_order.clone(), options.seed);
        let mut last_speaker = self.outcome.turns.last().map(|turn| turn.agent.clone());
        let max_spooled =
            usize::try_from(config.resilience.max_spooled_turns).unwrap_or(usize::MAX);
        let mut last = LastTurn::default();
        for turn in first_turn(&self.outcome.turns)..=options.max_turns {
            let turn_started = Instant::now();
            self.note_breaker_events().await;
            self.drain_spool(max_spooled, true).await;
            if *self.stop.borrow() {
                self.outcome.status = SessionEnd::Interrupted;
                break;
            }
            let speaker = order.speaker(turn, last_speaker.as_deref()).to_owned();
            let Some(agent) = config.agent(&speaker) else {
                continue;
            };
            let turn_id = i64::try_from(turn).unwrap_or(i64::MAX);
            let (stored, spoken) = tokio::join!(
                orchestrator.store_last_turn(
                    self.id,
                    &self.outcome.turns,
                    last.writes.take(),
                    &mut self.memory_sync
                ),
                orchestrator.run_turn(self.id, agent, turn_id, &self.outcome.turns),
            );
            if let Some(stored) = stored {
                self.count_stored(stored);
            }
            self.record_memory_refusals().await;
            self.spoke(spoken, turn_id, turn_started, &mut last);
            last_speaker = Some(speaker);
        }
        last
    }

    /// Counts a turn that has spoken, reports it (and the timing of the one
    /// before it), and keeps it as the last turn.
    fn spoke(&mut self, spoken: SpokenTurn, turn_id: i64, started: Instant, last: &mut LastTurn) {
        crate::metrics::turn(&spoken.record.agent, spoken.record.is_error);
        let outcome = &mut self.outcome;
        outcome.failed_turns += usize::from(spoken.record.is_error);
        outcome.failed_tool_calls += spoken
            .record
            .tool_calls
            .iter()
            .filter(|call| !call.success)
            .count();
        self.sink.turn(self.id, &spoken.record);
        if let Some((turn, timing)) = last.timing.take() {
            self.sink.timing(self.id, turn, timing);
        }
        last.timing = Some((
            turn_id,
            TurnTiming {
                total: started.elapsed(),
                llm: spoken.llm,
            },
        ));
        outcome.turns.push(spoken.record);
        last.writes = Some(spoken.writes);
    }

    /// Makes the last turn's writes, and reports its timing with them.
    async fn flush(&mut self, last: LastTurn) {
        let flush_started = Instant::now();
        if let Some(stored) = self
            .orchestrator
            .store_last_turn(
                self.id,
                &self.outcome.turns,
                last.writes,
                &mut self.memory_sync,
            )
            .await
        {
            self.count_stored(stored);
        }
        if let Some((turn, mut timing)) = last.timing {
            timing.total += flush_started.elapsed();
            self.sink.timing(self.id, turn, timing);
        }
    }

    /// Aligns Memory if that is still due, records the memory writes it
    /// refused, and reconciles it with the session's turns once more.
    async fn settle_memory(&mut self) {
        let orchestrator = self.orchestrator;
        if self.align_due {
            self.align_due = !orchestrator
                .align_memory(self.id, &self.outcome.turns, &mut self.memory_sync)
                .await;
            if self.align_due {
                self.outcome.memory_pending = self.outcome.memory_pending.max(1);
            }
        }
        self.record_memory_refusals().await;
        self.outcome.memory_failures += self.memory_sync.refused();
        // Memory may have restarted since the last write: compare once more.
        let deadline = orchestrator.config.timeouts.memory;
        let token = orchestrator
            .own_token(Audience::Memory, deadline)
            .await
            .ok();
        match self
            .memory_sync
            .reconcile(
                &orchestrator.memory,
                self.outcome.turns.iter(),
                token.as_deref(),
            )
            .await
        {
            Ok(resent) => tracing::info!(resent, "memory reconciled at the end of the session"),
            Err(status) => {
                tracing::warn!(error = %status.message(), "memory could not be reconciled");
                self.outcome.memory_pending = self.memory_sync.pending().max(1);
            }
        }
    }

    /// Decides how the session ended, records that in Audit (with `token`
    /// unless a fresh one can be had), and drains the spool.
    async fn end(&mut self, token: Arc<str>) {
        let orchestrator = self.orchestrator;
        let outcome = &mut self.outcome;
        outcome.status = SessionEnd::of(
            outcome.status == SessionEnd::Interrupted,
            outcome.failed_turns,
            outcome.turns.len(),
        );
        let token = orchestrator
            .own_token(Audience::Audit, orchestrator.config.timeouts.audit)
            .await
            .ok()
            .unwrap_or(token);
        let end = SpooledWrite::EndSession(EndSessionRequest {
            session_id: self.id.to_owned(),
            num_turns: i64::try_from(outcome.turns.len()).unwrap_or(i64::MAX),
            status: outcome.status.proto().into(),
            idempotency_key: format!("{}/end", self.id),
        });
        self.record_audit(end, Some(&token)).await;
        self.note_breaker_events().await;
        // A stopped session does not wait for Audit at its end.
        let stopped = *self.stop.borrow();
        self.drain_spool(0, stopped).await;
        self.outcome.audit_spooled = orchestrator.audit.pending_for(self.id).await.0;
    }

    /// Asks Audit, once, for the ended session's seal (its chain head and
    /// signed checkpoint, `GetSession`: two rows read, no walk of the
    /// chain); none while writes of the session are still spooled, or when
    /// Audit cannot answer.
    async fn seal(&mut self) {
        if self.outcome.audit_spooled > 0 {
            return;
        }
        let orchestrator = self.orchestrator;
        let deadline = orchestrator.config.timeouts.audit;
        let Ok(token) = orchestrator.own_token(Audience::Audit, deadline).await else {
            return;
        };
        match orchestrator.audit_client.session(self.id, &token).await {
            Ok(session) => self.outcome.chain_seal = crate::seal::ChainSeal::of(&session),
            Err(status) => {
                tracing::warn!(error = %status.message(), "audit could not answer the session's seal");
            }
        }
    }

    /// Counts what became of a turn's writes.
    fn count_stored(&mut self, stored: Stored) {
        let outcome = &mut self.outcome;
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

    /// Records in Audit, as `memory.refused` session events, the memory
    /// writes Memory refused for good since the last call (they were
    /// dropped so as not to block the others).
    async fn record_memory_refusals(&mut self) {
        let session_id = self.id;
        for refusal in self.memory_sync.take_refusals() {
            let write = SpooledWrite::StoreSessionEvent(StoreSessionEventRequest {
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
            self.record_own_audit(write).await;
        }
    }

    /// Sends an audit write with the orchestrator's own token (waited for
    /// within Audit's deadline), or spools it; counts what happened.
    async fn record_own_audit(&mut self, write: SpooledWrite) {
        let orchestrator = self.orchestrator;
        let token = orchestrator
            .own_token(Audience::Audit, orchestrator.config.timeouts.audit)
            .await
            .ok();
        self.record_audit(write, token.as_deref()).await;
    }

    /// Sends an audit write, or spools it; counts what happened.
    async fn record_audit(&mut self, write: SpooledWrite, token: Option<&str>) {
        match self.orchestrator.audit.write(write, token).await {
            Ok(Written::Stored) => {}
            Ok(Written::Spooled) => self.outcome.audit_spooled_writes += 1,
            Err(AuditWriteError::Refused { status, .. }) => {
                tracing::error!(error = %status.message(), "audit refused a write");
                self.outcome.audit_failures += 1;
            }
            Err(error @ (AuditWriteError::Spool(_) | AuditWriteError::SpoolThread)) => {
                tracing::error!(%error, "audit write lost: neither audit nor the spool took it");
                self.outcome.audit_failures += 1;
            }
        }
    }

    /// Replays the spool; while more than `max_turns` turns of this session
    /// wait in it, pauses the conversation until Audit takes them (or until
    /// the session is stopped, when `heed_stop`, or, at the end of a
    /// session, a time limit).
    async fn drain_spool(&mut self, max_turns: usize, heed_stop: bool) {
        let orchestrator = self.orchestrator;
        let audit = &orchestrator.audit;
        let deadline = orchestrator.config.timeouts.audit;
        let token = orchestrator.own_token(Audience::Audit, deadline).await.ok();
        if audit.replay(token.as_deref()).await == 0 {
            return;
        }
        let (writes, turns) = audit.pending_for(self.id).await;
        if turns <= max_turns && !(max_turns == 0 && writes > 0) {
            return;
        }
        self.sink.notice(
            self.id,
            &format!("⏸  Audit is unreachable: {writes} writes of {turns} turns are spooled; pausing until it is back"),
        );
        let started = Instant::now();
        let mut step = std::time::Duration::from_millis(100);
        let mut events = orchestrator.breakers.subscribe();
        loop {
            if (heed_stop && *self.stop.borrow())
                || (max_turns == 0 && started.elapsed() > END_DRAIN_LIMIT)
            {
                break;
            }
            // The next attempt comes after the backoff step, or as soon as
            // Audit's breaker closes (its health said SERVING).
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = closed(&mut events, AUDIT) => {}
            }
            step = (step * 2).min(MAX_PAUSE_STEP);
            let token = orchestrator.own_token(Audience::Audit, deadline).await.ok();
            audit.replay(token.as_deref()).await;
            let (writes, turns) = audit.pending_for(self.id).await;
            if turns <= max_turns && (max_turns > 0 || writes == 0) {
                self.sink.notice(
                    self.id,
                    "▶️  Audit is back: the spool is replayed, the conversation goes on",
                );
                break;
            }
        }
    }

    /// Logs every breaker state change since the last call, adds it to the
    /// session's span, records it as a session event in Audit, and keeps it
    /// for the summary.
    async fn note_breaker_events(&mut self) {
        let mut seen = Vec::new();
        loop {
            match self.breaker_events.try_recv() {
                Ok(event) => seen.push(event),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "breaker events missed");
                }
                Err(_) => break,
            }
        }
        let session_id = self.id;
        for event in seen {
            let text = event.to_string();
            tracing::warn!(target: "heist_orchestrator", breaker = %event.service, state = %event.to, "{text}");
            if event.to == BreakerState::Open {
                self.sink.notice(session_id, &format!("⚡ circuit {text}"));
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
            let write = SpooledWrite::StoreSessionEvent(StoreSessionEventRequest {
                session_id: session_id.to_owned(),
                kind: kind.to_owned(),
                detail: text.clone(),
                idempotency_key: format!("{session_id}/breaker/{}/{nanos}", event.service),
            });
            self.record_own_audit(write).await;
            self.outcome.breaker_events.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(turn: i64) -> TurnRecord {
        TurnRecord {
            turn,
            agent: "planner".to_owned(),
            role: "Planner".to_owned(),
            message: "go".to_owned(),
            is_error: false,
            tool_calls: Vec::new(),
            usage: Default::default(),
        }
    }

    #[test]
    fn a_new_session_starts_at_turn_one() {
        assert_eq!(first_turn(&[]), 1);
    }

    #[test]
    fn a_resumed_session_starts_after_its_last_stored_turn() {
        assert_eq!(first_turn(&[turn(1), turn(2), turn(3)]), 4);
        assert_eq!(first_turn(&[turn(7)]), 8);
    }

    #[test]
    fn a_history_with_a_nonsense_turn_number_starts_at_one() {
        assert_eq!(first_turn(&[turn(-3)]), 1);
    }

    #[test]
    fn a_new_outcome_has_counted_nothing_yet() {
        let outcome = SessionOutcome::new("heist_x", vec![turn(1)]);
        assert_eq!(outcome.session_id, "heist_x");
        assert_eq!(outcome.status, SessionEnd::Completed);
        assert_eq!(outcome.turns.len(), 1);
        assert_eq!(
            (
                outcome.failed_turns,
                outcome.audit_failures,
                outcome.memory_failures
            ),
            (0, 0, 0)
        );
    }
}
