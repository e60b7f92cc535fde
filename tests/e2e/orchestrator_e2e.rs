//! The orchestrator against the whole mesh in-process: a 20-turn offline
//! session lands in every service, and the run degrades instead of failing
//! when Memory or a tool service is down.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{collections::BTreeMap, sync::Arc};

use heist_e2e::mesh::{TestMesh, closed_endpoint};
use heist_orchestrator::{
    app,
    config::Config,
    engine::{RunOptions, SessionOutcome, TurnRecord, TurnSink, TurnTiming},
    llm::OfflineBackend,
    mesh::Mesh,
    transcript,
};
use heist_proto::v1::{
    GetSessionRequest, ListMemoryTurnsRequest, ListMessagesRequest, ListToolUsageRequest,
    SessionStatus, memory_service_client::MemoryServiceClient,
};
use tokio::sync::watch;

/// A fresh audit spool in its own directory (kept for the test's life).
fn spool() -> heist_orchestrator::spool::Spool {
    let dir = tempfile::TempDir::new().unwrap().keep();
    heist_orchestrator::spool::Spool::open(dir.join("audit.spool")).unwrap()
}

/// Collects turns and their timings as they end.
#[derive(Default)]
struct Collected(
    std::sync::Mutex<Vec<TurnRecord>>,
    std::sync::Mutex<Vec<(i64, TurnTiming)>>,
);

impl TurnSink for Collected {
    fn turn(&self, _session_id: &str, record: &TurnRecord) {
        self.0.lock().unwrap().push(record.clone());
    }

    fn timing(&self, _session_id: &str, turn: i64, timing: TurnTiming) {
        self.1.lock().unwrap().push((turn, timing));
    }
}

/// The turn IDs each agent spoke in a session, in order.
fn turns_by_agent(outcome: &SessionOutcome) -> BTreeMap<String, Vec<i64>> {
    let mut spoken: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for turn in &outcome.turns {
        spoken
            .entry(turn.agent.clone())
            .or_default()
            .push(turn.turn);
    }
    spoken
}

/// The turn IDs Memory keeps for `agent` in `session_id`.
async fn memory_turns(
    memory: &mut MemoryServiceClient<heist_e2e::mesh::Bearer>,
    agent: &str,
    session_id: &str,
) -> Vec<i64> {
    memory
        .list_memory_turns(ListMemoryTurnsRequest {
            agent_id: agent.to_owned(),
            session_id: session_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .turn_ids
}

async fn run(config: Config, session_id: &str, turns: u64, seed: u64) -> SessionOutcome {
    let config = Arc::new(config);
    let mesh = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, mesh, Arc::new(OfflineBackend::new(seed)), spool()).await;
    let (_stop, stop) = watch::channel(false);
    let sink = Collected::default();
    let outcome = orchestrator
        .run_session(
            session_id,
            &RunOptions {
                max_turns: turns,
                seed,
            },
            stop,
            &sink,
        )
        .await
        .unwrap();
    assert_eq!(
        sink.0.lock().unwrap().len(),
        outcome.turns.len(),
        "every turn was reported"
    );
    let timings = sink.1.lock().unwrap();
    let timed: Vec<i64> = timings.iter().map(|(turn, _)| *turn).collect();
    let turns: Vec<i64> = outcome.turns.iter().map(|turn| turn.turn).collect();
    assert_eq!(timed, turns, "every turn was timed, in order");
    for (turn, timing) in timings.iter() {
        assert!(
            timing.llm <= timing.total && timing.mesh() == timing.total - timing.llm,
            "turn {turn}: {timing:?}"
        );
    }
    drop(timings);
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_turn_offline_session_lands_in_every_service() {
    let mesh = TestMesh::start().await;
    let session_id = "heist_20261124_120000_e2e0";
    let outcome = run(mesh.config(), session_id, 20, 7).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns.len(), 20);
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!((outcome.memory_failures, outcome.audit_failures), (0, 0));
    assert_eq!(outcome.turns[0].agent, "planner");
    assert!(
        outcome
            .turns
            .windows(2)
            .all(|pair| pair[0].agent != pair[1].agent)
    );
    assert!(
        outcome.tool_calls() > 0,
        "the offline agents use their tools"
    );

    const SCOPES: &str = "audit:read memory:read agents:act_for_any";
    let mut audit = mesh.audit_client(SCOPES).await;
    let session = audit
        .get_session(GetSessionRequest {
            session_id: session_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.status(), SessionStatus::Completed);
    assert_eq!((session.num_turns, session.message_count), (20, 20));
    let messages = audit
        .list_messages(ListMessagesRequest {
            session_id: session_id.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let stored: Vec<(i64, String)> = messages
        .iter()
        .map(|m| (m.turn_id, m.agent_name.clone()))
        .collect();
    let expected: Vec<(i64, String)> = outcome
        .turns
        .iter()
        .map(|t| (t.turn, t.agent.clone()))
        .collect();
    assert_eq!(stored, expected, "turn ids 1..20 with the right agents");
    assert!(
        messages
            .iter()
            .all(|m| !m.is_error && !m.agent_role.is_empty())
    );

    let usage = audit
        .list_tool_usage(ListToolUsageRequest {
            session_id: session_id.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tool_usage;
    assert_eq!(usage.len(), outcome.tool_calls());
    let made: Vec<(i64, String, bool)> = outcome
        .turns
        .iter()
        .flat_map(|turn| {
            turn.tool_calls
                .iter()
                .map(move |call| (turn.turn, call.tool.clone(), call.success))
        })
        .collect();
    let recorded: Vec<(i64, String, bool)> = usage
        .iter()
        .map(|u| (u.turn_id, u.tool_name.clone(), u.success))
        .collect();
    assert_eq!(recorded, made);
    assert!(
        usage.iter().all(|u| u.success),
        "every tool is up: {usage:?}"
    );

    let mut memory = mesh.memory_client(SCOPES).await;
    for (agent, turns) in turns_by_agent(&outcome) {
        let kept = memory_turns(&mut memory, &agent, session_id).await;
        assert_eq!(kept, turns, "memory of {agent}");
    }

    let written = transcript::write(&mesh.dir.path().join("heist"), &outcome).unwrap();
    assert_eq!(written.len(), 2);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mesh.dir.path().join("heist.json")).unwrap())
            .unwrap();
    assert_eq!(json["turns"].as_array().unwrap().len(), 20);
    let markdown = std::fs::read_to_string(mesh.dir.path().join("heist.md")).unwrap();
    assert!(markdown.contains("## Turn 20:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_session() {
    let mesh = TestMesh::start().await;
    let one = run(mesh.config(), "heist_seed_one", 8, 42).await;
    let two = run(mesh.config(), "heist_seed_two", 8, 42).await;
    let speakers = |outcome: &SessionOutcome| {
        outcome
            .turns
            .iter()
            .map(|t| t.agent.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(speakers(&one), speakers(&two));
    let other = run(mesh.config(), "heist_seed_other", 8, 43).await;
    assert_ne!(speakers(&one), speakers(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_longer_than_memorys_bound_leaves_its_evictions_alone() {
    const BOUND: usize = 3;
    let mesh = TestMesh::builder()
        .memory_limits(heist_memory::Limits {
            max_per_stream: BOUND,
            ..heist_memory::Limits::default()
        })
        .start()
        .await;
    let session_id = "heist_bounded_memory";
    let outcome = run(mesh.config(), session_id, 40, 9).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.memory_failures, 0);
    let mut memory = mesh.memory_client("memory:read agents:act_for_any").await;
    let mut evictions = 0;
    for (agent, turns) in turns_by_agent(&outcome) {
        let kept = memory_turns(&mut memory, &agent, session_id).await;
        let latest = &turns[turns.len().saturating_sub(BOUND)..];
        assert_eq!(kept, latest, "memory of {agent}: its latest {BOUND} turns");
        evictions += turns.len().saturating_sub(BOUND);
    }
    let stats = memory
        .get_stats(heist_proto::v1::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    // Each turn beyond the bound evicts exactly one: no evicted turn was
    // re-sent (which would evict another, every turn).
    assert_eq!(stats.evicted_memories, i64::try_from(evictions).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_down_the_run_completes_and_counts_the_failed_writes() {
    let mesh = TestMesh::start().await;
    let mut config = mesh.config();
    config.memory = closed_endpoint().into();
    let outcome = run(config, "heist_no_memory", 6, 3).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns.len(), 6);
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!(outcome.memory_failures, 6);
    assert_eq!(outcome.audit_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tool_service_down_its_calls_are_recorded_as_failed() {
    let mesh = TestMesh::start().await;
    let mut config = mesh.config();
    let down = closed_endpoint();
    for target in config.tool_services.values_mut() {
        *target = down.clone().into();
    }
    let session_id = "heist_no_tools";
    let outcome = run(config, session_id, 8, 5).await;
    assert_eq!(outcome.status, "completed");
    assert!(outcome.tool_calls() > 0);
    assert_eq!(outcome.failed_tool_calls, outcome.tool_calls());
    let mut audit = mesh.audit_client("audit:read").await;
    let usage = audit
        .list_tool_usage(ListToolUsageRequest {
            session_id: session_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tool_usage;
    assert_eq!(usage.len(), outcome.tool_calls());
    assert!(
        usage
            .iter()
            .all(|u| !u.success && u.tool_result.contains("Unavailable")),
        "{usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_agent_has_no_scope_for_is_refused_and_recorded() {
    let mesh = TestMesh::start().await;
    let mut config = mesh.config();
    // The mole keeps its tool but loses the scope for it.
    for agent in &mut config.agents {
        if agent.name == "mole" {
            agent.oauth_scopes = vec!["simulation:read".into()];
        }
    }
    config.session.turn_order = vec!["planner".into(), "mole".into()];
    let outcome = run(config, "heist_no_scope", 4, 1).await;
    assert_eq!(outcome.status, "completed");
    let mole_calls: Vec<_> = outcome
        .turns
        .iter()
        .filter(|turn| turn.agent == "mole")
        .flat_map(|turn| turn.tool_calls.clone())
        .collect();
    assert!(!mole_calls.is_empty());
    assert!(
        mole_calls
            .iter()
            .all(|call| !call.success && call.result.contains("PermissionDenied")),
        "{mole_calls:?}"
    );
}
