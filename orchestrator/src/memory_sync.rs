//! Keeping Memory complete for a session, whatever happens to Memory.
//!
//! - The outbox: a memory write that fails waits in a bounded queue; later
//!   writes queue behind it, and the queue is replayed in order as soon as
//!   Memory answers again. (Writes are idempotent on (agent, session, turn),
//!   so a replay never duplicates.)
//! - The reconcile: Memory keeps its state in memory, so a restart loses
//!   it. Memory names each of its runs (`instance_id`): when the instance
//!   changes, or when this session first meets Memory and Memory has fewer
//!   of its turns than it should, or when the outbox overflowed, the turns
//!   Memory lacks are re-sent from the session's history. Memory is a
//!   bounded cache: under the same instance, fewer turns mean evictions it
//!   made on purpose, and only the latest `max_per_stream` turns of an
//!   agent are ever re-sent (re-sending evicted turns would only evict
//!   others, on every turn). The session's end checks every agent.
//! - Refusals: a write Memory refuses for good (ALREADY_EXISTS: the turn is
//!   held with other text; INVALID_ARGUMENT, ...) can never succeed, so it
//!   is dropped, logged and counted ([`MemorySync::refused`]) instead of
//!   blocking the writes behind it.
//! - The alignment ([`MemorySync::align`], on resume): Audit is the source
//!   of truth. A crashed run may have stored in Memory a turn Audit never
//!   got, which the resumed run speaks again with other text; so before the
//!   first resumed turn, an agent's stream holding any turn Audit does not
//!   is cleared (`ClearMemory`, with `memory:admin`) and stored again from
//!   Audit's turns (the latest `max_per_stream`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use heist_proto::v1::{ClearMemoryRequest, ListMemoryTurnsRequest, StoreMemoryRequest};
use tonic::Code;

use crate::{clients::MemoryClient, engine::TurnRecord, resilience::ResilienceError};

/// A session's outbox of memory writes and whether a reconcile is due.
#[derive(Debug)]
pub struct MemorySync {
    session_id: String,
    outbox: VecDeque<StoreMemoryRequest>,
    capacity: usize,
    /// Entries were dropped from a full outbox, or Memory lost entries: the
    /// history must be compared with what Memory has.
    reconcile_due: bool,
    /// How many turns of each agent belong in Memory, kept up to date as
    /// the history grows (so a turn costs O(1), not O(history)).
    counts: TurnCounts,
    /// The Memory runs seen answering this session, most recent last (none
    /// before the first answer): replicas of Memory on one store answer
    /// with their own runs in turn, and only a run not seen before is a
    /// restart.
    instances: Vec<String>,
    /// Memory's per-(agent, session) bound, as it last told it.
    max_per_stream: Option<usize>,
    /// Writes Memory refused for good, dropped.
    refused: usize,
    /// The refusals not yet taken by [`MemorySync::take_refusals`].
    refusals: Vec<Refusal>,
    /// The outbox's depth as last told to the metric.
    reported: usize,
}

impl Drop for MemorySync {
    fn drop(&mut self) {
        crate::metrics::outbox_changed(self.reported, 0);
    }
}

/// A memory write Memory refused for good (and that was dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The agent of the write.
    pub agent: String,
    /// Its turn.
    pub turn: i64,
    /// Memory's answer, as `AlreadyExists: ...`.
    pub reason: String,
}

/// What [`MemorySync::align`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aligned {
    /// Agents' streams that held turns Audit does not, cleared.
    pub cleared_streams: usize,
    /// Turns stored again from Audit's history.
    pub resent: usize,
}

/// Whether Memory's refusal of a write is final: the write itself is wrong
/// for Memory (a turn held with other text, bad input), so sending it again
/// would get the same answer. Unreachable, slow, or no permission (a token
/// problem, which a new token may fix) are not final.
pub fn is_permanent_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::AlreadyExists | Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition
    )
}

/// How many Memory runs a session remembers (a replica's restarts make new
/// ones; the oldest are forgotten).
const KNOWN_INSTANCES: usize = 16;

/// Whether Memory lost entries of the session: it is a run other than the
/// ones `known` (a restart), or, when none is known yet (this session's
/// first answer), it keeps fewer than it should (`short`). Fewer turns under
/// a known run are evictions, made on purpose.
fn lost_entries(known: &[String], instance: &str, short: bool) -> bool {
    if known.is_empty() {
        short
    } else {
        !known.iter().any(|seen| seen == instance)
    }
}

/// Notes `instance` as seen (most recent last), forgetting the oldest past
/// [`KNOWN_INSTANCES`].
fn remember(known: &mut Vec<String>, instance: String) {
    known.retain(|seen| *seen != instance);
    known.push(instance);
    if known.len() > KNOWN_INSTANCES {
        known.remove(0);
    }
}

/// A session's turns that belong in Memory (failed turns do not), by agent,
/// in order.
fn memory_turns_by_agent<'a>(
    turns: impl IntoIterator<Item = &'a TurnRecord>,
) -> BTreeMap<&'a str, Vec<&'a TurnRecord>> {
    let mut by_agent: BTreeMap<&str, Vec<&TurnRecord>> = BTreeMap::new();
    for turn in turns.into_iter().filter(|turn| !turn.is_error) {
        by_agent.entry(turn.agent.as_str()).or_default().push(turn);
    }
    by_agent
}

/// The turns of each agent that belong in Memory (failed turns do not),
/// counted over a history that only grows.
#[derive(Debug, Default)]
struct TurnCounts {
    /// How many turns of the history are counted.
    counted: usize,
    by_agent: HashMap<String, usize>,
}

impl TurnCounts {
    /// Counts the turns of `history` not counted yet.
    fn catch_up(&mut self, history: &[TurnRecord]) {
        for turn in history.get(self.counted..).unwrap_or_default() {
            if !turn.is_error {
                *self.by_agent.entry(turn.agent.clone()).or_default() += 1;
            }
        }
        self.counted = self.counted.max(history.len());
    }

    /// `agent`'s turns that belong in Memory in `history` and `current`
    /// (call [`TurnCounts::catch_up`] with `history` first).
    fn of(&self, agent: &str, current: &TurnRecord) -> usize {
        let earlier = self.by_agent.get(agent).copied().unwrap_or(0);
        earlier + usize::from(current.agent == agent && !current.is_error)
    }
}

/// The memory write of a turn.
pub fn entry(session_id: &str, record: &TurnRecord) -> StoreMemoryRequest {
    StoreMemoryRequest {
        agent_id: record.agent.clone(),
        session_id: session_id.to_owned(),
        turn_id: record.turn,
        message: record.message.clone(),
        idempotency_key: format!("{session_id}/turn/{}/memory", record.turn),
    }
}

impl MemorySync {
    /// An empty outbox holding at most `capacity` writes.
    pub fn new(session_id: &str, capacity: usize) -> Self {
        Self {
            session_id: session_id.to_owned(),
            outbox: VecDeque::new(),
            capacity: capacity.max(1),
            reconcile_due: false,
            counts: TurnCounts::default(),
            instances: Vec::new(),
            max_per_stream: None,
            refused: 0,
            refusals: Vec::new(),
            reported: 0,
        }
    }

    /// Writes Memory refused for good (dropped, so they block nothing).
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// The refusals since the last call, for the session's record (Audit).
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// Drops `write`, refused for good by Memory, and says so.
    fn drop_refused(&mut self, write: &StoreMemoryRequest, status: &tonic::Status) {
        self.refused += 1;
        self.refusals.push(Refusal {
            agent: write.agent_id.clone(),
            turn: write.turn_id,
            reason: format!("{:?}: {}", status.code(), status.message()),
        });
        tracing::error!(
            agent = %write.agent_id,
            turn = write.turn_id,
            code = ?status.code(),
            error = %status.message(),
            "memory refused a write for good; dropped, the writes behind it go on"
        );
    }

    /// Takes in the per-(agent, session) bound Memory told (0: none).
    fn note_bound(&mut self, max_per_stream: i64) {
        self.max_per_stream = usize::try_from(max_per_stream).ok().filter(|max| *max > 0);
    }

    /// Whether `kept` turns of an agent's stream are fewer than Memory
    /// should keep of the `stored` ones sent, within its bound.
    fn short(&self, kept: i64, stored: usize) -> bool {
        let expected = self.max_per_stream.map_or(stored, |max| stored.min(max));
        usize::try_from(kept).unwrap_or(0) < expected
    }

    /// Of an agent's turns for Memory, those it is meant to keep: the
    /// latest `max_per_stream`.
    fn within_bound<'t, 'a>(&self, own: &'t [&'a TurnRecord]) -> &'t [&'a TurnRecord] {
        let skip = self
            .max_per_stream
            .map_or(0, |max| own.len().saturating_sub(max));
        own.get(skip..).unwrap_or_default()
    }

    /// Writes waiting for Memory.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Queues the memory write of `current` behind anything waiting and
    /// replays the queue in order; true when nothing is left waiting.
    /// `history` (the session's earlier turns) serves a reconcile if Memory
    /// lost entries.
    pub async fn store(
        &mut self,
        client: &MemoryClient,
        history: &[TurnRecord],
        current: &TurnRecord,
        token: Option<&str>,
    ) -> bool {
        let done = self.queue_and_replay(client, history, current, token).await;
        self.report_depth();
        done
    }

    /// The outbox's depth, told to the metric (as a change since last told).
    fn report_depth(&mut self) {
        crate::metrics::outbox_changed(self.reported, self.outbox.len());
        self.reported = self.outbox.len();
    }

    async fn queue_and_replay(
        &mut self,
        client: &MemoryClient,
        history: &[TurnRecord],
        current: &TurnRecord,
        token: Option<&str>,
    ) -> bool {
        let write = entry(&self.session_id, current);
        let turns = || history.iter().chain(std::iter::once(current));
        if self.outbox.len() >= self.capacity {
            self.outbox.pop_front();
            self.reconcile_due = true;
        }
        self.outbox.push_back(write);
        self.counts.catch_up(history);
        // Never a call without a token: the write waits for one.
        let Some(token) = token else {
            tracing::warn!(
                waiting = self.outbox.len(),
                "no token for Memory (OAuth unreachable); write kept in the outbox"
            );
            return false;
        };
        while let Some(next) = self.outbox.front() {
            let agent = next.agent_id.clone();
            match client.store_memory(next, token).await {
                // While Memory's breaker is open, the write just waits here.
                Err(ResilienceError::BreakerOpen(_)) => return false,
                Ok(answer) => {
                    self.outbox.pop_front();
                    let stored = self.counts.of(&agent, current);
                    self.note_bound(answer.max_per_stream);
                    let short = self.short(answer.memories_count, stored);
                    let lost = lost_entries(&self.instances, &answer.instance_id, short);
                    remember(&mut self.instances, answer.instance_id);
                    if lost {
                        tracing::warn!(
                            agent,
                            kept = answer.memories_count,
                            stored,
                            "memory lost entries (restarted); re-sending them"
                        );
                        self.reconcile_due = true;
                    }
                }
                Err(ResilienceError::Status(status)) if is_permanent_refusal(&status) => {
                    if let Some(refused) = self.outbox.pop_front() {
                        self.drop_refused(&refused, &status);
                    }
                }
                Err(ResilienceError::Status(status)) => {
                    tracing::warn!(error = %status.message(), waiting = self.outbox.len(), "memory write failed; kept in the outbox");
                    return false;
                }
            }
        }
        if self.reconcile_due {
            match self.reconcile(client, turns(), Some(token)).await {
                Ok(resent) => {
                    self.reconcile_due = false;
                    if resent > 0 {
                        tracing::info!(resent, "memory reconciled");
                    }
                }
                Err(status) => {
                    tracing::warn!(error = %status.message(), "memory reconcile failed; retried later");
                    return false;
                }
            }
        }
        true
    }

    /// True when writes wait or Memory may lack entries.
    pub fn needs_reconcile(&self) -> bool {
        self.reconcile_due || !self.outbox.is_empty()
    }

    /// Asks Memory which turns it keeps for each agent of `turns` and
    /// re-sends those it lacks, if it lost them (a new instance, an
    /// overflowed outbox); returns how many were sent.
    pub async fn reconcile<'a>(
        &mut self,
        client: &MemoryClient,
        turns: impl IntoIterator<Item = &'a TurnRecord>,
        token: Option<&str>,
    ) -> Result<usize, tonic::Status> {
        let resent = self.resend_lost(client, turns, token).await;
        self.report_depth();
        resent
    }

    async fn resend_lost<'a>(
        &mut self,
        client: &MemoryClient,
        turns: impl IntoIterator<Item = &'a TurnRecord>,
        token: Option<&str>,
    ) -> Result<usize, tonic::Status> {
        let token = token.ok_or_else(no_token)?;
        let known = self.instances.clone();
        let mut resent = 0;
        for (agent, own) in memory_turns_by_agent(turns) {
            let listed = self.list(client, agent, token).await?;
            let kept = i64::try_from(listed.turn_ids.len()).unwrap_or(i64::MAX);
            let short = self.short(kept, own.len());
            let lost = lost_entries(&known, &listed.instance_id, short);
            remember(&mut self.instances, listed.instance_id);
            if !lost && !self.reconcile_due && self.outbox.is_empty() {
                continue;
            }
            resent += self
                .resend_missing(client, &own, &listed.turn_ids, token)
                .await?;
        }
        self.outbox.clear();
        self.reconcile_due = false;
        Ok(resent)
    }

    /// Brings Memory into line with Audit's `history` (on resume, before
    /// the first new turn): for every agent of `roster` and of the history,
    /// a stream holding a turn the history does not (a crashed run stored
    /// it in Memory, Audit never got it) is cleared with `admin_token`
    /// (`memory:admin`) and stored again from the history; a stream only
    /// missing turns gets them.
    pub async fn align<'a>(
        &mut self,
        client: &MemoryClient,
        roster: impl IntoIterator<Item = &'a str>,
        history: &'a [TurnRecord],
        token: Option<&str>,
        admin_token: Option<&str>,
    ) -> Result<Aligned, tonic::Status> {
        let token = token.ok_or_else(no_token)?;
        let mut by_agent = memory_turns_by_agent(history);
        for agent in roster {
            by_agent.entry(agent).or_default();
        }
        let mut aligned = Aligned::default();
        for (agent, own) in by_agent {
            let listed = self.list(client, agent, token).await?;
            remember(&mut self.instances, listed.instance_id.clone());
            let foreign = foreign_turns(&own, &listed.turn_ids);
            let mut kept = listed.turn_ids;
            if !foreign.is_empty() {
                tracing::warn!(
                    agent,
                    turns = ?foreign,
                    "memory holds turns the audit trail does not (a crashed run); clearing the stream and storing it again from audit"
                );
                let clear = ClearMemoryRequest {
                    agent_id: agent.to_owned(),
                    session_id: self.session_id.clone(),
                    idempotency_key: format!("{}/align/{agent}", self.session_id),
                };
                client
                    .clear_memory(clear, admin_token.ok_or_else(no_token)?)
                    .await?;
                aligned.cleared_streams += 1;
                kept.clear();
            }
            aligned.resent += self.resend_missing(client, &own, &kept, token).await?;
        }
        Ok(aligned)
    }

    /// The turn IDs Memory keeps for `agent` in this session (noting its bound).
    async fn list(
        &mut self,
        client: &MemoryClient,
        agent: &str,
        token: &str,
    ) -> Result<heist_proto::v1::ListMemoryTurnsResponse, tonic::Status> {
        let list = ListMemoryTurnsRequest {
            agent_id: agent.to_owned(),
            session_id: self.session_id.clone(),
        };
        let listed = client.list_memory_turns(list, token).await?;
        self.note_bound(listed.max_per_stream);
        Ok(listed)
    }

    /// Stores the turns of `own` (within Memory's bound) that `kept` lacks;
    /// a turn refused for good is dropped, not retried. Returns how many
    /// were stored.
    async fn resend_missing(
        &mut self,
        client: &MemoryClient,
        own: &[&TurnRecord],
        kept: &[i64],
        token: &str,
    ) -> Result<usize, tonic::Status> {
        let missing: Vec<StoreMemoryRequest> = self
            .within_bound(own)
            .iter()
            .filter(|turn| kept.binary_search(&turn.turn).is_err())
            .map(|turn| entry(&self.session_id, turn))
            .collect();
        let mut resent = 0;
        for write in missing {
            match client.store_memory_unguarded(write.clone(), token).await {
                Ok(_) => resent += 1,
                Err(status) if is_permanent_refusal(&status) => self.drop_refused(&write, &status),
                Err(status) => return Err(status),
            }
        }
        Ok(resent)
    }
}

/// The turns Memory keeps (`kept`, ascending) that are not among `own`.
fn foreign_turns(own: &[&TurnRecord], kept: &[i64]) -> Vec<i64> {
    kept.iter()
        .copied()
        .filter(|id| !own.iter().any(|turn| turn.turn == *id))
        .collect()
}

/// The error of a Memory call that was not sent for lack of a token.
fn no_token() -> tonic::Status {
    tonic::Status::unavailable("no token for Memory (OAuth unreachable); not sent")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(turn: i64, agent: &str, is_error: bool) -> TurnRecord {
        TurnRecord {
            turn,
            agent: agent.into(),
            role: "Role".into(),
            message: format!("turn {turn}"),
            is_error,
            tool_calls: Vec::new(),
            usage: Default::default(),
        }
    }

    #[test]
    fn failed_turns_do_not_belong_in_memory() {
        let history = [
            turn(1, "planner", false),
            turn(2, "mole", false),
            turn(3, "planner", true),
        ];
        let mut counts = TurnCounts::default();
        counts.catch_up(&history);
        let current = turn(4, "mole", false);
        assert_eq!(counts.of("planner", &current), 1);
        assert_eq!(counts.of("mole", &current), 2, "the current turn counts");
        assert_eq!(counts.of("mole", &turn(4, "mole", true)), 1);
    }

    #[test]
    fn counts_follow_a_growing_history_counting_each_turn_once() {
        let mut history = vec![turn(1, "planner", false), turn(2, "mole", false)];
        let mut counts = TurnCounts::default();
        counts.catch_up(&history);
        counts.catch_up(&history);
        history.push(turn(3, "planner", false));
        counts.catch_up(&history);
        let current = turn(4, "hacker", false);
        assert_eq!(counts.of("planner", &current), 2);
        assert_eq!(counts.of("mole", &current), 1);
        assert_eq!(counts.of("hacker", &current), 1);
    }

    #[test]
    fn fewer_turns_under_the_same_memory_run_are_evictions_not_losses() {
        let known = ["run-a".to_owned()];
        assert!(!lost_entries(&known, "run-a", true), "evicted on purpose");
        assert!(lost_entries(&known, "run-b", false), "a restart loses all");
        assert!(
            lost_entries(&[], "run-a", true),
            "first answer, turns missing"
        );
        assert!(!lost_entries(&[], "run-a", false));
    }

    #[test]
    fn replicas_answering_in_turn_are_no_restart_but_a_new_run_is() {
        let mut known = Vec::new();
        remember(&mut known, "replica-a".to_owned());
        remember(&mut known, "replica-b".to_owned());
        remember(&mut known, "replica-a".to_owned());
        assert_eq!(known, ["replica-b", "replica-a"]);
        assert!(!lost_entries(&known, "replica-b", false));
        assert!(lost_entries(&known, "replica-b-restarted", false));
        for run in 0..20 {
            remember(&mut known, format!("run-{run}"));
        }
        assert_eq!(known.len(), KNOWN_INSTANCES);
        assert_eq!(known.last().map(String::as_str), Some("run-19"));
    }

    #[test]
    fn memory_is_short_only_of_what_its_bound_lets_it_keep() {
        let mut sync = MemorySync::new("heist_x", 8);
        sync.note_bound(3);
        assert!(!sync.short(3, 10), "3 kept of 10 sent, bound 3");
        assert!(sync.short(2, 10));
        sync.note_bound(0);
        assert!(sync.short(9, 10), "no bound told: all 10 are expected");
        assert!(!sync.short(10, 10));
    }

    #[test]
    fn only_the_latest_turns_within_the_bound_are_meant_to_be_kept() {
        let history: Vec<TurnRecord> = (1..=9)
            .map(|n| turn(n, if n % 2 == 0 { "mole" } else { "planner" }, n == 7))
            .collect();
        let by_agent = memory_turns_by_agent(&history);
        let ids = |turns: &[&TurnRecord]| turns.iter().map(|turn| turn.turn).collect::<Vec<_>>();
        let mut sync = MemorySync::new("heist_x", 8);
        let all = ids(sync.within_bound(&by_agent["planner"]));
        assert_eq!(all, [1, 3, 5, 9], "failed turn 7 left out");
        sync.note_bound(2);
        let latest = ids(sync.within_bound(&by_agent["planner"]));
        assert_eq!(latest, [5, 9]);
    }

    #[test]
    fn only_refusals_of_the_write_itself_are_final() {
        for code in [
            Code::AlreadyExists,
            Code::InvalidArgument,
            Code::OutOfRange,
            Code::FailedPrecondition,
        ] {
            assert!(
                is_permanent_refusal(&tonic::Status::new(code, "x")),
                "{code:?}"
            );
        }
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(
                !is_permanent_refusal(&tonic::Status::new(code, "x")),
                "{code:?}"
            );
        }
    }

    #[test]
    fn entries_are_keyed_by_session_and_turn() {
        let write = entry("heist_x", &turn(4, "mole", false));
        assert_eq!((write.agent_id.as_str(), write.turn_id), ("mole", 4));
        assert_eq!(write.idempotency_key, "heist_x/turn/4/memory");
    }
}
