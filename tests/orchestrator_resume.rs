//! An orchestrator killed mid-session (SIGKILL, at three seeded turns of a
//! 100-turn session, the resumed run killed again) leaves its session
//! active; `sessions list` shows it as interrupted, and `orchestrator resume`
//! runs it on to exactly `max_turns` messages, with no gap, no duplicate, and
//! the speakers an uninterrupted run would have had.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use heist_mesh::{binary, dev_token, mesh::TestMesh};
use heist_orchestrator::turn_order::TurnOrder;
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    GetSessionRequest, ListMessagesRequest, SessionStatus, audit_service_client::AuditServiceClient,
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

    let token = dev_token(mesh.oauth.addr, "orchestrator", "audit:read")
        .await
        .unwrap();
    let mut audit =
        AuditServiceClient::with_interceptor(mesh.audit.channel(), BearerInterceptor::new(&token));
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
