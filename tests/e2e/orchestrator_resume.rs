//! An orchestrator killed mid-session (SIGKILL, at three seeded turns of a
//! 100-turn session, the resumed run killed again) leaves its session
//! active; `sessions list` shows it as interrupted, and `orchestrator resume`
//! runs it on to exactly `max_turns` messages, with no gap, no duplicate, and
//! the speakers an uninterrupted run would have had.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use heist_e2e::{binary, dev_token, mesh::TestMesh};
use heist_orchestrator::turn_order::TurnOrder;
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    GetCompressedMemoryRequest, GetSessionRequest, ListMessagesRequest, SessionStatus,
    StoreMemoryRequest, memory_service_client::MemoryServiceClient,
};
use tempfile::TempDir;

const TURNS: u64 = 100;
const SEED: &str = "77";

fn orchestrator(dir: &std::path::Path) -> Command {
    let mut command = Command::new(binary("orchestrator"));
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .args(["--config", "mesh.yaml"]);
    command
}

/// Runs `args` and SIGKILLs the orchestrator when it prints `[Turn kill_at]`;
/// returns the session ID it printed, if any.
fn run_until_killed(dir: &std::path::Path, args: &[&str], kill_at: u64) -> String {
    let mut child = orchestrator(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut session_id = String::new();
    let marker = format!("[Turn {kill_at}]");
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("Session ID: ") {
            session_id = id.trim().to_owned();
        }
        if line.starts_with(&marker) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    session_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_three_times_resumes_to_exactly_max_turns() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();
    let workdir = dir.path().to_owned();
    // Seeded kill points (turns), one per run.
    let points: Vec<u64> = {
        let mut state = 2025_u64;
        let mut points: Vec<u64> = (0..3)
            .map(|_| {
                state = heist_orchestrator::turn_order::mix(state);
                5 + state % (TURNS - 10)
            })
            .collect();
        points.sort_unstable();
        points.dedup();
        points
    };
    let (session_id, listed, resumed) = tokio::task::spawn_blocking(move || {
        let turns = TURNS.to_string();
        let session_id = run_until_killed(
            &workdir,
            &["run", "--turns", &turns, "--seed", SEED],
            points[0],
        );
        for point in &points[1..] {
            run_until_killed(&workdir, &["resume", &session_id], *point);
        }
        let listed = orchestrator(&workdir)
            .args(["sessions", "list"])
            .output()
            .unwrap();
        let resumed = orchestrator(&workdir)
            .args(["resume", &session_id, "--quiet"])
            .output()
            .unwrap();
        (session_id, listed, resumed)
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let line = listed
        .lines()
        .find(|line| line.contains(&session_id))
        .unwrap_or_default();
    assert!(line.contains("interrupted*"), "{listed}");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(resumed.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("Resuming") && shown.contains(": completed"),
        "{shown}"
    );

    let mut audit = mesh.audit_client("audit:read").await;
    let session = audit
        .get_session(GetSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.status(), SessionStatus::Completed);
    assert_eq!(session.num_turns, TURNS as i64);
    let messages = audit
        .list_messages(ListMessagesRequest {
            session_id: session_id.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let turns: Vec<i64> = messages.iter().map(|m| m.turn_id).collect();
    assert_eq!(
        turns,
        (1..=TURNS as i64).collect::<Vec<_>>(),
        "exactly max_turns messages, no gap, no duplicate"
    );
    let order = TurnOrder::new(
        ["planner", "hacker", "safecracker", "mole"]
            .map(String::from)
            .to_vec(),
        SEED.parse().unwrap(),
    );
    let mut last: Option<String> = None;
    for message in &messages {
        let expected = order
            .speaker(message.turn_id as u64, last.as_deref())
            .to_owned();
        assert_eq!(message.agent_name, expected, "turn {}", message.turn_id);
        last = Some(expected);
    }
    // Four runs, three of them killed mid-turn, wrote one intact chain.
    heist_e2e::integrity::assert_chain_intact(mesh.oauth.addr, mesh.audit.addr, &session_id).await;

    // A completed session cannot be resumed again.
    let workdir = dir.path().to_owned();
    let again = tokio::task::spawn_blocking(move || {
        orchestrator(&workdir)
            .args(["resume", &session_id])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_ne!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("completed"));
}

/// The messages of the session, by agent: (turn, text) of each turn that
/// belongs in Memory (failed turns do not), as Audit holds them.
fn audit_turns_by_agent(
    messages: &[heist_proto::v1::Message],
) -> std::collections::BTreeMap<String, Vec<(i64, String)>> {
    let mut by_agent: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for message in messages.iter().filter(|m| m.turn_id > 0 && !m.is_error) {
        by_agent
            .entry(message.agent_name.clone())
            .or_default()
            .push((message.turn_id, message.message.clone()));
    }
    by_agent
}

/// What Memory holds of `agent` in `session_id`: (turn, text), oldest first.
async fn memory_entries(
    memory: &mut MemoryServiceClient<heist_e2e::mesh::Bearer>,
    agent: &str,
    session_id: &str,
) -> Vec<(i64, String)> {
    let answer = memory
        .get_compressed_memory(GetCompressedMemoryRequest {
            agent_id: agent.to_owned(),
            session_id: session_id.to_owned(),
            recent_count: 100,
            max_chars: 65536,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer.summary.is_empty(),
        "every turn is recent: {answer:?}"
    );
    answer
        .recent
        .into_iter()
        .map(|entry| (entry.turn_id, entry.message))
        .collect()
}

/// Memory holds a turn Audit never got (the crashed run stored it in Memory
/// only); the resumed run speaks that turn with other text. Afterwards
/// Memory agrees with Audit, turn for turn and word for word, and the turns
/// after it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_brings_memory_into_line_with_audit_for_a_turn_only_memory_held() {
    const RUN_TURNS: u64 = 24;
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();
    let workdir = dir.path().to_owned();
    let session_id = tokio::task::spawn_blocking(move || {
        let turns = RUN_TURNS.to_string();
        run_until_killed(&workdir, &["run", "--turns", &turns, "--seed", SEED], 9)
    })
    .await
    .unwrap();
    let before = heist_e2e::audit_trail(mesh.oauth.addr, mesh.audit.addr, &session_id).await;
    let last = before.messages.iter().rfind(|m| m.turn_id > 0);
    let next = last.map_or(1, |m| m.turn_id + 1);
    let order = TurnOrder::new(
        ["planner", "hacker", "safecracker", "mole"]
            .map(String::from)
            .to_vec(),
        SEED.parse().unwrap(),
    );
    let speaker = order
        .speaker(next as u64, last.map(|m| m.agent_name.as_str()))
        .to_owned();
    let token = dev_token(
        mesh.oauth.addr,
        "orchestrator",
        "memory:read memory:write agents:act_for_any",
    )
    .await
    .unwrap();
    let mut memory = MemoryServiceClient::with_interceptor(
        mesh.memory.channel(),
        BearerInterceptor::new(&token),
    );
    // What the crashed run stored in Memory and never in Audit.
    let injected = memory
        .store_memory(StoreMemoryRequest {
            agent_id: speaker.clone(),
            session_id: session_id.clone(),
            turn_id: next,
            message: "words the audit trail never got".into(),
            idempotency_key: String::new(),
        })
        .await;
    if let Err(status) = &injected {
        // The crashed run got there first (it stored turn `next` in Memory only).
        assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    }

    let workdir = dir.path().to_owned();
    let id = session_id.clone();
    let resumed = tokio::task::spawn_blocking(move || {
        orchestrator(&workdir)
            .args(["resume", &id, "--quiet"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(resumed.status.code(), Some(0), "{shown}");

    let after = heist_e2e::audit_trail(mesh.oauth.addr, mesh.audit.addr, &session_id).await;
    assert_eq!(after.session.status(), SessionStatus::Completed, "{shown}");
    assert_eq!(after.session.num_turns, RUN_TURNS as i64);
    let audit = audit_turns_by_agent(&after.messages);
    assert!(
        audit
            .values()
            .flatten()
            .all(|(turn, text)| *turn != next || text != "words the audit trail never got"),
        "the resumed run spoke turn {next} itself"
    );
    for (agent, turns) in &audit {
        let held = memory_entries(&mut memory, agent, &session_id).await;
        assert_eq!(&held, turns, "memory of {agent} equals audit\n{shown}");
    }
    assert!(
        audit.values().flatten().any(|(turn, _)| *turn > next),
        "later turns were spoken"
    );
    assert!(
        !shown.contains("memory refused"),
        "nothing left to refuse after the alignment: {shown}"
    );
}

/// A memory write that can never succeed (the turn is held with other text,
/// or the write is invalid) is dropped and counted; the writes behind it
/// are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_memory_refuses_for_good_does_not_block_the_writes_behind_it() {
    use heist_orchestrator::{
        clients::{CallGuard, MemoryClient},
        engine::TurnRecord,
        memory_sync::MemorySync,
        mesh::Mesh,
        resilience::{BreakerSettings, CircuitBreaker, TokioClock},
    };
    let mesh = TestMesh::start().await;
    let breaker = CircuitBreaker::new(
        "memory",
        BreakerSettings::default(),
        std::sync::Arc::new(TokioClock),
    );
    let deadline = std::time::Duration::from_secs(2);
    let client = MemoryClient::new(
        Mesh::connect(&mesh.config()).await.unwrap().memory,
        CallGuard::once(breaker, deadline),
    );
    let token = dev_token(
        mesh.oauth.addr,
        "orchestrator",
        "memory:read memory:write agents:act_for_any",
    )
    .await
    .unwrap();
    let mut memory = MemoryServiceClient::with_interceptor(
        mesh.memory.channel(),
        BearerInterceptor::new(&token),
    );
    let session = "heist_20261201_000000_0001";
    memory
        .store_memory(StoreMemoryRequest {
            agent_id: "planner".into(),
            session_id: session.into(),
            turn_id: 1,
            message: "what Memory already holds".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let turn = |turn: i64, agent: &str, text: &str| TurnRecord {
        turn,
        agent: agent.into(),
        role: "Role".into(),
        message: text.into(),
        is_error: false,
        tool_calls: Vec::new(),
        usage: Default::default(),
    };
    let mut sync = MemorySync::new(session, 8);
    let mut history = Vec::new();
    // The invalid write stands for any write Memory refuses as bad input;
    // no session history holds such a turn, so it is not added to it.
    for (record, refused, in_history) in [
        (turn(1, "planner", "other words for turn 1"), 1, true), // ALREADY_EXISTS
        (turn(-2, "mole", "a turn that cannot be"), 2, false),   // INVALID_ARGUMENT
        (turn(3, "mole", "turn three"), 2, true),
        (turn(4, "planner", "turn four"), 2, true),
    ] {
        let done = sync.store(&client, &history, &record, Some(&token)).await;
        assert!(
            done,
            "nothing waits behind a refused write (turn {})",
            record.turn
        );
        assert_eq!(sync.refused(), refused, "turn {}", record.turn);
        assert_eq!(sync.pending(), 0);
        if in_history {
            history.push(record);
        }
    }
    let refusals: Vec<(String, i64, String)> = sync
        .take_refusals()
        .into_iter()
        .map(|r| {
            (
                r.agent,
                r.turn,
                r.reason.split(':').next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [
            ("planner".to_owned(), 1, "AlreadyExists".to_owned()),
            ("mole".to_owned(), -2, "InvalidArgument".to_owned())
        ],
        "each refusal is kept for the session's record"
    );
    assert_eq!(
        memory_entries(&mut memory, "mole", session).await,
        [(3, "turn three".to_owned())]
    );
    assert_eq!(
        memory_entries(&mut memory, "planner", session).await,
        [
            (1, "what Memory already holds".to_owned()),
            (4, "turn four".to_owned())
        ]
    );
}

/// Reads `child`'s stdout on a thread: each line with the instant it came.
fn lines_of(
    child: &mut std::process::Child,
) -> std::sync::mpsc::Receiver<(std::time::Instant, String)> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send((std::time::Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    receive
}

/// The turn of a `[Turn N] role (agent):` line.
fn turn_of(line: &str) -> Option<i64> {
    line.strip_prefix("[Turn ")?.split(']').next()?.parse().ok()
}

/// Audit is killed mid-run; the orchestrator spools turns until it pauses,
/// and is killed there; Audit comes back; `resume` replays the dead run's
/// spool before it asks Audit where the session stands, so it speaks none
/// of the spooled turns again: Audit holds every turn once, the spooled
/// ones with the words the first run said, and the session reaches
/// max_turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_the_spool_of_the_crashed_run_and_speaks_no_turn_twice() {
    use std::time::{Duration, Instant};
    const RUN_TURNS: i64 = 40;
    let mut mesh = heist_e2e::processes::ProcessMesh::start().await;
    // Memory through a pacing proxy, so the turns do not outrun the test.
    let proxy =
        heist_e2e::proxy::DelayProxy::start(mesh.addr("memory"), Duration::from_millis(10)).await;
    let config = mesh.write_config_with("mesh.yaml", &[("memory", &proxy.url())]);
    let dir = mesh.dir.path().to_owned();
    let run = move |args: &[&str], log: &str| {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let mut command = Command::new(binary("orchestrator"));
        command
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log);
        command.spawn().unwrap()
    };
    let turns = RUN_TURNS.to_string();
    let mut first = run(&["run", "--turns", &turns, "--seed", SEED], "first.log");
    let lines = lines_of(&mut first);
    let limit = Instant::now() + Duration::from_secs(60);
    let (mut session_id, mut said, mut audit_killed_after) = (String::new(), BTreeMap::new(), None);
    let mut current: Option<i64> = None;
    let mut paused = false;
    while Instant::now() < limit {
        let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(id) = line.strip_prefix("Session ID: ") {
            session_id = id.trim().to_owned();
        }
        if let Some(turn) = turn_of(&line) {
            current = Some(turn);
            if turn == 5 && audit_killed_after.is_none() {
                mesh.kill("audit");
                audit_killed_after = Some(turn);
            }
        } else if let (Some(turn), Some(text)) = (current, line.strip_prefix("  "))
            && !text.starts_with("🛠")
            && !text.starts_with("⚠")
        {
            said.entry(turn).or_insert_with(|| text.to_owned());
        }
        if line.contains("Audit is unreachable") {
            paused = true;
            break;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(paused, "the run paused for Audit (turns spooled)");
    let last_said = current.unwrap();
    mesh.restart("audit");
    mesh.wait_serving("audit").await;

    let mut second = run(&["resume", &session_id], "resume.log");
    let lines = lines_of(&mut second);
    let resumed = tokio::task::spawn_blocking(move || {
        let mut shown = Vec::new();
        while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(90)) {
            shown.push(line);
        }
        (second.wait().unwrap(), shown)
    })
    .await
    .unwrap();
    let (status, shown) = resumed;
    let stderr = std::fs::read_to_string(mesh.dir.path().join("resume.log")).unwrap();
    let text = format!("{}\n{stderr}", shown.join("\n"));
    assert_eq!(status.code(), Some(0), "{text}");
    let spoken_again: Vec<i64> = shown.iter().filter_map(|line| turn_of(line)).collect();
    let first_resumed = *spoken_again.first().unwrap();
    // The run spoke `last_said` and was killed before writing it: only that
    // turn may be spoken again, never one it had spooled.
    assert!(
        first_resumed >= last_said,
        "resume spoke turn {first_resumed} again; the first run had spooled up to {}\n{text}",
        last_said - 1
    );
    assert!(
        !text.contains("audit refused"),
        "Audit refused nothing (no second version of a turn): {text}"
    );
    assert!(
        text.contains("Replayed"),
        "the resume said it replayed the spool: {text}"
    );

    let trail = heist_e2e::audit_trail(mesh.addr("oauth"), mesh.addr("audit"), &session_id).await;
    assert_eq!(trail.session.status(), SessionStatus::Completed, "{text}");
    assert_eq!(trail.session.num_turns, RUN_TURNS);
    let turns: Vec<i64> = trail.messages.iter().map(|m| m.turn_id).collect();
    assert_eq!(turns, (1..=RUN_TURNS).collect::<Vec<_>>(), "each turn once");
    for message in trail.messages.iter().filter(|m| m.turn_id < first_resumed) {
        if let Some(words) = said.get(&message.turn_id) {
            assert_eq!(
                message.message.lines().next().unwrap_or_default(),
                words.as_str(),
                "turn {} holds what the first run said",
                message.turn_id
            );
        }
    }
    let mut keys: Vec<&str> = trail
        .tool_usage
        .iter()
        .map(|u| u.idempotency_key.as_str())
        .collect();
    let calls = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), calls, "no tool call recorded twice");
    // Written by a run, its spool replayed by the resume, then the resume:
    // one intact chain, signed to its end.
    heist_e2e::integrity::assert_chain_intact(mesh.addr("oauth"), mesh.addr("audit"), &session_id)
        .await;
    mesh.stop();
}
