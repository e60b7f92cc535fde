//! Fault injection with the real binaries: a 100-turn offline session while
//! a service is SIGKILLed at seeded random points and restarted. Every loop
//! is bounded in count and time.
//!
//! The run is paced: a service that is not killed is reached through a
//! delay proxy, so that the session lasts several seconds on any machine
//! (the mesh itself answers a turn in a few milliseconds) and the faults,
//! and a token renewal after them, land mid-run.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use heist_mesh::{
    binary, channel_to, dev_token,
    processes::{ProcessMesh, fault_points},
    proxy::DelayProxy,
};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    ListMemoryTurnsRequest, Message, SessionStatus, ToolUsage,
    memory_service_client::MemoryServiceClient,
};

const TURNS: u64 = 100;
/// The longest a faulty run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// What the pacing proxy holds back each chunk to Audit by (a turn writes
/// Audit once, while the next turn speaks: ~10 s for the session, longer
/// than the tests' 8-second tokens); Memory, read on every turn's critical
/// path and written, is paced at a quarter of that.
const PACE: Duration = Duration::from_millis(40);

/// Starts the orchestrator on `mesh` for a 100-turn session, reaching
/// `paced` through `proxy`.
fn start_run(mesh: &ProcessMesh, seed: u64, paced: &str, proxy: &DelayProxy) -> Child {
    let config = mesh.write_config_with("mesh.yaml", &[(paced, &proxy.url())]);
    Command::new(binary("orchestrator"))
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "--turns",
            &TURNS.to_string(),
            "--seed",
            &seed.to_string(),
            "--quiet",
        ])
        .arg("--transcript")
        .arg(mesh.dir.path().join("transcript.json"))
        .current_dir(mesh.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills and restarts `service` at each point (measured from now), then
/// waits for the run to end; returns its exit code and output. The run
/// reaches Audit (Memory, when Audit is the one killed) through a delay
/// proxy.
async fn fault_run(
    mesh: &mut ProcessMesh,
    service: &str,
    seed: u64,
    down_for: Duration,
) -> (Option<i32>, String) {
    let (paced, pace) = if service == "audit" {
        ("memory", PACE / 4)
    } else {
        ("audit", PACE)
    };
    let proxy = DelayProxy::start(mesh.addr(paced), pace).await;
    let started = Instant::now();
    let mut run = start_run(mesh, seed, paced, &proxy);
    for point in fault_points(seed, 3, Duration::from_millis(300), Duration::from_secs(4)) {
        if let Some(wait) = point.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if run.try_wait().unwrap().is_some() {
            break;
        }
        mesh.kill(service);
        tokio::time::sleep(down_for).await;
        mesh.restart(service);
    }
    mesh.wait_serving(service).await;
    let output = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + RUN_LIMIT;
        while run.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = run.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        run.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), shown)
}

fn session_id(shown: &str) -> String {
    shown
        .lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .unwrap()
        .trim()
        .to_owned()
}

/// The session's messages and tool calls, read from Audit.
async fn audit_trail(
    mesh: &ProcessMesh,
    session_id: &str,
) -> (SessionStatus, Vec<Message>, Vec<ToolUsage>) {
    let trail = heist_mesh::audit_trail(mesh.addr("oauth"), mesh.addr("audit"), session_id).await;
    (trail.session.status(), trail.messages, trail.tool_usage)
}

fn assert_every_turn_once(messages: &[Message]) {
    let turns: Vec<i64> = messages.iter().map(|m| m.turn_id).collect();
    assert_eq!(
        turns,
        (1..=TURNS as i64).collect::<Vec<_>>(),
        "turn ids 1..N, no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_killed_three_times_loses_no_entry_of_the_session() {
    let mut mesh = ProcessMesh::start().await;
    let (code, shown) = fault_run(&mut mesh, "memory", 11, Duration::from_millis(300)).await;
    assert_eq!(code, Some(0), "{shown}");
    let session_id = session_id(&shown);
    let (status, messages, _) = audit_trail(&mesh, &session_id).await;
    assert_eq!(status, SessionStatus::Completed);
    assert_every_turn_once(&messages);
    let mut spoken: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for message in messages.iter().filter(|m| !m.is_error) {
        spoken
            .entry(message.agent_name.clone())
            .or_default()
            .push(message.turn_id);
    }
    let token = dev_token(
        mesh.addr("oauth"),
        "orchestrator",
        "memory:read agents:act_for_any",
    )
    .await
    .unwrap();
    let mut memory = MemoryServiceClient::with_interceptor(
        channel_to(mesh.addr("memory")),
        BearerInterceptor::new(&token),
    );
    for (agent, turns) in spoken {
        let kept = memory
            .list_memory_turns(ListMemoryTurnsRequest {
                agent_id: agent.clone(),
                session_id: session_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .turn_ids;
        assert_eq!(kept, turns, "memory of {agent} after 3 memory restarts");
    }
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_service_killed_fails_its_calls_with_the_reason_and_they_succeed_after_restart() {
    let mut mesh = ProcessMesh::start().await;
    let (code, shown) = fault_run(&mut mesh, "tools", 23, Duration::from_millis(500)).await;
    assert_eq!(code, Some(0), "{shown}");
    let session_id = session_id(&shown);
    let (status, messages, usage) = audit_trail(&mesh, &session_id).await;
    assert_eq!(status, SessionStatus::Completed);
    assert_every_turn_once(&messages);
    let failed: Vec<&ToolUsage> = usage.iter().filter(|u| !u.success).collect();
    assert!(!failed.is_empty(), "the outages made some calls fail");
    for call in &failed {
        assert!(
            call.tool_result.contains("Unavailable")
                || call.tool_result.contains("Cancelled")
                || call.tool_result.contains("Unknown"),
            "a failed call says why: {call:?}"
        );
    }
    let last_failure = failed.iter().map(|u| u.id).max().unwrap();
    let timeline: Vec<(i64, bool)> = usage.iter().map(|u| (u.turn_id, u.success)).collect();
    assert!(
        usage.iter().any(|u| u.success && u.id > last_failure),
        "calls succeed again after the restart: {timeline:?}\n{shown}"
    );
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_killed_three_times_and_the_turns_go_on_with_cached_tokens() {
    let mut mesh = ProcessMesh::start().await;
    let (code, shown) = fault_run(&mut mesh, "oauth", 37, Duration::from_millis(500)).await;
    assert_eq!(code, Some(0), "{shown}");
    // Read before this test asks OAuth for a token of its own.
    let log = std::fs::read_to_string(mesh.dir.path().join("heist-oauth.log")).unwrap();
    let session_id = session_id(&shown);
    let (status, messages, usage) = audit_trail(&mesh, &session_id).await;
    assert_eq!(status, SessionStatus::Completed);
    assert_every_turn_once(&messages);
    assert!(
        messages.iter().all(|m| !m.is_error),
        "no turn failed while OAuth was down"
    );
    assert!(
        usage.iter().all(|u| u.success),
        "tool calls use cached tokens: {usage:?}"
    );
    // Tokens live 8 s here: the run renewed some from the restarted OAuth.
    let since_restart = log.rsplit("oauth listening").next().unwrap_or_default();
    assert!(
        since_restart.contains("token issued"),
        "new tokens are fetched once OAuth is back:\n{since_restart}"
    );
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_killed_three_times_loses_and_duplicates_nothing() {
    let mut mesh = ProcessMesh::start().await;
    let (code, shown) = fault_run(&mut mesh, "audit", 5, Duration::from_millis(400)).await;
    assert_eq!(code, Some(0), "{shown}");
    let session_id = session_id(&shown);
    let (status, messages, usage) = audit_trail(&mesh, &session_id).await;
    assert_eq!(status, SessionStatus::Completed, "{shown}");
    assert_every_turn_once(&messages);
    let transcript: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(mesh.dir.path().join("transcript.json"))
            .unwrap_or_else(|error| panic!("{error}: {shown}")),
    )
    .unwrap();
    let made: usize = transcript["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|turn| turn["tool_calls"].as_array().unwrap().len())
        .sum();
    assert_eq!(usage.len(), made, "every tool call recorded once");
    let mut keys: Vec<&str> = usage.iter().map(|u| u.idempotency_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), usage.len(), "no tool call recorded twice");
    assert!(
        shown.contains("spool") || shown.contains("Audit"),
        "the summary tells about the outage: {shown}"
    );
    mesh.stop();
}
