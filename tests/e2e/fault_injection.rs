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

use heist_e2e::{
    binary, channel_to, dev_token,
    processes::{MeshOptions, ProcessMesh, SERVICES, fault_points},
    proxy::DelayProxy,
    stores::{StoreBackend, fresh_postgres_url},
};
use heist_engines::RedisServer;
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
    let points = fault_points(seed, 3, Duration::from_millis(300), Duration::from_secs(4));
    fault_run_at(mesh, service, seed, &points, down_for).await
}

/// [`fault_run`] with the kill points (from the start of the run) given.
async fn fault_run_at(
    mesh: &mut ProcessMesh,
    service: &str,
    seed: u64,
    points: &[Duration],
    down_for: Duration,
) -> (Option<i32>, String) {
    let fault = |mesh: &mut ProcessMesh, down: bool| {
        if down {
            mesh.kill(service);
        } else {
            mesh.restart(service);
        }
    };
    fault_run_with(mesh, service, seed, points, down_for, fault).await
}

/// [`fault_run_at`] with the fault given: `fault(mesh, true)` takes `service`
/// down, `fault(mesh, false)` brings it back (`service` may be one the mesh
/// does not run, e.g. the Redis under Memory).
async fn fault_run_with(
    mesh: &mut ProcessMesh,
    service: &str,
    seed: u64,
    points: &[Duration],
    down_for: Duration,
    mut fault: impl FnMut(&mut ProcessMesh, bool),
) -> (Option<i32>, String) {
    let (paced, pace) = if service == "audit" {
        ("memory", PACE / 4)
    } else {
        ("audit", PACE)
    };
    let proxy = DelayProxy::start(mesh.addr(paced), pace).await;
    let started = Instant::now();
    let mut run = start_run(mesh, seed, paced, &proxy);
    for point in points.iter().copied() {
        if let Some(wait) = point.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if run.try_wait().unwrap().is_some() {
            break;
        }
        fault(mesh, true);
        tokio::time::sleep(down_for).await;
        fault(mesh, false);
    }
    if SERVICES.contains(&service) {
        mesh.wait_serving(service).await;
    }
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
    heist_e2e::session_id_in(shown)
}

/// The session's messages and tool calls, read from Audit.
async fn audit_trail(
    mesh: &ProcessMesh,
    session_id: &str,
) -> (SessionStatus, Vec<Message>, Vec<ToolUsage>) {
    let trail = heist_e2e::audit_trail(mesh.addr("oauth"), mesh.addr("audit"), session_id).await;
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
    assert_memory_holds_every_turn(&mut mesh, &shown, "3 memory restarts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_on_redis_killed_three_times_loses_no_entry_of_the_session() {
    let redis = RedisServer::start().expect("the private Redis must start");
    let mut mesh = memory_on_redis(&redis).await;
    let (code, shown) = fault_run(&mut mesh, "memory", 11, Duration::from_millis(300)).await;
    assert_eq!(code, Some(0), "{shown}");
    assert_memory_holds_every_turn(&mut mesh, &shown, "3 memory restarts on Redis").await;
}

/// Redis keeps nothing across a restart (no RDB, no AOF): each restart
/// empties Memory, which names a new instance, and the orchestrator re-sends
/// the session's turns from its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_under_memory_restarted_empty_three_times_loses_no_entry_of_the_session() {
    let mut redis = RedisServer::start().expect("the private Redis must start");
    let mut mesh = memory_on_redis(&redis).await;
    let points = fault_points(17, 3, Duration::from_millis(300), Duration::from_secs(4));
    let fault = |_: &mut ProcessMesh, down: bool| {
        if down {
            redis.kill();
        } else {
            redis.start_again().expect("Redis starts again");
        }
    };
    let down_for = Duration::from_millis(300);
    let (code, shown) = fault_run_with(&mut mesh, "redis", 17, &points, down_for, fault).await;
    assert_eq!(code, Some(0), "{shown}");
    assert_memory_holds_every_turn(&mut mesh, &shown, "3 Redis restarts").await;
}

/// A mesh whose Memory keeps its turns in `redis`.
async fn memory_on_redis(redis: &RedisServer) -> ProcessMesh {
    ProcessMesh::start_with(MeshOptions {
        memory_store: Some(redis.url()),
        ..MeshOptions::for_tests()
    })
    .await
}

/// Checks that the session of the run that printed `shown` completed with
/// every turn once in Audit, and that Memory holds every turn each agent spoke.
async fn assert_memory_holds_every_turn(mesh: &mut ProcessMesh, shown: &str, after: &str) {
    let session_id = session_id(shown);
    let (status, messages, _) = audit_trail(mesh, &session_id).await;
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
        assert_eq!(kept, turns, "memory of {agent} after {after}");
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

/// Tokens live 3 s here: renewed at 60% (1.8 s), usable until 2.7 s. Each
/// outage lasts 2 s (plus OAuth's restart), longer than the time between
/// two renewals, so every outage holds a renewal of the orchestrator's own
/// token (used on every turn): the cached-token fallback must serve, and
/// once the cached token is no longer usable, calls wait for OAuth instead
/// of going out without a token.
const OAUTH_TEST_TOKEN_LIFETIME: &str = "3s";
const OAUTH_OUTAGE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_killed_three_times_and_the_turns_go_on_with_cached_tokens() {
    let mut options = MeshOptions::for_tests();
    options.token_lifetime = Some(OAUTH_TEST_TOKEN_LIFETIME.to_owned());
    let mut mesh = ProcessMesh::start_with(options).await;
    // Three outages 3.5 s apart (seeded jitter), all inside the ~10 s run.
    let points: Vec<Duration> = fault_points(37, 3, Duration::ZERO, Duration::from_millis(500))
        .into_iter()
        .enumerate()
        .map(|(index, jitter)| Duration::from_millis(800 + 3500 * index as u64) + jitter)
        .collect();
    let (code, shown) = fault_run_at(&mut mesh, "oauth", 37, &points, OAUTH_OUTAGE).await;
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
        "tool calls use cached tokens or wait for OAuth: {usage:?}"
    );
    // Renewals fell inside the outages and the cached tokens served.
    let fallbacks = shown.matches("using the cached token").count();
    assert!(
        fallbacks > 0,
        "the cached-token fallback was used:\n{shown}"
    );
    // No call went out without a token (or with one that had expired): no
    // write was refused or spooled as unauthenticated, no tool call failed
    // for lack of a token.
    for refused in ["Unauthenticated", "UNAUTHENTICATED"] {
        assert!(
            !shown.contains(refused),
            "no call was refused for lack of a token ({refused}):\n{shown}"
        );
    }
    for refused in ["Unauthenticated", "no token"] {
        assert!(
            usage.iter().all(|u| !u.tool_result.contains(refused)),
            "no tool call failed for lack of a token ({refused})"
        );
    }
    // The run renewed its tokens from the restarted OAuth.
    let since_restart = log.rsplit("oauth listening").next().unwrap_or_default();
    assert!(
        since_restart.contains("token issued"),
        "new tokens are fetched once OAuth is back:\n{since_restart}"
    );
    eprintln!("oauth fault run: {fallbacks} cached-token fallbacks");
    mesh.stop();
}

/// The longest an Audit breaker stays open in the quick-restart test: far
/// longer than the restart, so a pause that follows the timer shows.
const LONG_OPEN_FOR: Duration = Duration::from_secs(10);

/// Audit is SIGKILLed and started again as soon as its breaker opens; the
/// breaker closes when Audit's health says SERVING, not after `open_for`
/// (10 s here): the conversation's longest pause is far shorter than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_audit_restart_pauses_the_conversation_far_less_than_open_for() {
    const RUN_TURNS: u64 = 60;
    let mut mesh = ProcessMesh::start().await;
    let proxy = DelayProxy::start(mesh.addr("memory"), PACE / 4).await;
    let config = mesh.write_config_with("quick.yaml", &[("memory", &proxy.url())]);
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "open_for: 1s",
        &format!("open_for: {}s", LONG_OPEN_FOR.as_secs()),
    );
    assert!(yaml.contains("open_for: 10s"));
    std::fs::write(&config, yaml).unwrap();
    let log = std::fs::File::create(mesh.dir.path().join("quick.log")).unwrap();
    let mut run = Command::new(binary("orchestrator"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--turns", &RUN_TURNS.to_string(), "--seed", "41"])
        .current_dir(mesh.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = run.stdout.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let limit = Instant::now() + RUN_LIMIT;
    let mut turn_times: Vec<Instant> = Vec::new();
    let mut shown = Vec::new();
    let (mut killed, mut restarted_at) = (None, None);
    loop {
        let (at, line) = match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(got) => got,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < limit => continue,
            Err(_) => break,
        };
        if line.starts_with("[Turn ") {
            turn_times.push(at);
            if turn_times.len() == 10 && killed.is_none() {
                mesh.kill("audit");
                killed = Some(Instant::now());
            }
        }
        // Back as soon as the run knows Audit is gone (its breaker opened,
        // or the conversation paused with turns spooled).
        if killed.is_some()
            && restarted_at.is_none()
            && (line.contains("circuit audit") || line.contains("Audit is unreachable"))
        {
            mesh.restart("audit");
            restarted_at = Some(Instant::now());
        }
        shown.push(line);
    }
    let status = run.wait().unwrap();
    let stderr = std::fs::read_to_string(mesh.dir.path().join("quick.log")).unwrap();
    let text = format!("{}\n{stderr}", shown.join("\n"));
    assert_eq!(status.code(), Some(0), "{text}");
    let (killed, restarted_at) = (killed.unwrap(), restarted_at.expect("the breaker opened"));
    let longest = turn_times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap();
    eprintln!(
        "audit down {:?} (kill to restart); longest pause between two turns {longest:?} (open_for {LONG_OPEN_FOR:?})",
        restarted_at - killed
    );
    assert!(
        text.contains("health check says SERVING"),
        "the breaker closed on Audit's health: {text}"
    );
    assert!(
        longest < LONG_OPEN_FOR / 2,
        "the pause follows Audit, not open_for: {longest:?}\n{text}"
    );
    let session_id = session_id(&text);
    let (status, messages, _) = audit_trail(&mesh, &session_id).await;
    assert_eq!(status, SessionStatus::Completed, "{text}");
    let turns: Vec<i64> = messages.iter().map(|m| m.turn_id).collect();
    assert_eq!(turns, (1..=RUN_TURNS as i64).collect::<Vec<_>>());
    mesh.stop();
}

/// On SQLite and on PostgreSQL (Audit's process killed, its database not).
async fn audit_killed_three_times_loses_and_duplicates_nothing_on(backend: StoreBackend) {
    let options = MeshOptions {
        audit_store: match backend {
            StoreBackend::Sqlite => None,
            StoreBackend::Postgres => Some(fresh_postgres_url()),
        },
        ..MeshOptions::for_tests()
    };
    let mut mesh = ProcessMesh::start_with(options).await;
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
    // Retried, spooled and replayed writes make one intact chain, and the
    // transcript carries the head Audit vouches for.
    let verdict = heist_e2e::integrity::assert_chain_intact(
        mesh.addr("oauth"),
        mesh.addr("audit"),
        &session_id,
    )
    .await;
    assert_eq!(
        transcript["chain_seal"]["chain_head"],
        verdict.chain_head.as_str(),
        "{}",
        transcript["chain_seal"]
    );
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_killed_three_times_loses_and_duplicates_nothing() {
    audit_killed_three_times_loses_and_duplicates_nothing_on(StoreBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_on_postgres_killed_three_times_loses_and_duplicates_nothing() {
    audit_killed_three_times_loses_and_duplicates_nothing_on(StoreBackend::Postgres).await;
}
