//! The orchestrator's real LLM path: the whole mesh in-process and a fake
//! OpenAI-compatible server: inline and native tool calls, a 500 retried, a
//! timeout that fails one turn while the run goes on.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{sync::Arc, time::Duration};

use heist_e2e::{audit_trail, fake_llm::*, mesh::TestMesh};
use heist_orchestrator::{
    app,
    config::Config,
    engine::{RunOptions, SessionOutcome, TurnRecord, TurnSink},
    llm::{LlmBackend, OpenAiBackend, ToolCallMode},
    mesh::Mesh,
};
use heist_proto::v1::{
    ListMessagesRequest, ListToolUsageRequest, audit_service_client::AuditServiceClient,
};
use serde_json::json;
use tokio::sync::watch;

/// A fresh audit spool in its own directory (kept for the test's life).
fn spool() -> heist_orchestrator::spool::Spool {
    let dir = tempfile::TempDir::new().unwrap().keep();
    heist_orchestrator::spool::Spool::open(dir.join("audit.spool")).unwrap()
}

struct Quiet;

impl TurnSink for Quiet {
    fn turn(&self, _session_id: &str, _record: &TurnRecord) {}
}

/// The planner and the safecracker alternate, the planner first.
fn two_agent_config(mesh: &TestMesh, mode: ToolCallMode) -> Config {
    let mut config = mesh.config();
    config.session.turn_order = vec!["planner".into(), "safecracker".into()];
    config.llm.tool_calls = mode;
    config
}

async fn run(
    config: Config,
    backend: OpenAiBackend,
    session_id: &str,
    turns: u64,
) -> SessionOutcome {
    let config = Arc::new(config);
    let mesh = Mesh::connect(&config).await.unwrap();
    let llm: Arc<dyn LlmBackend> = Arc::new(backend);
    let (orchestrator, _) = app::prepare(config, mesh, llm, spool()).await;
    let (_stop, stop) = watch::channel(false);
    orchestrator
        .run_session(
            session_id,
            &RunOptions {
                max_turns: turns,
                seed: 1,
            },
            stop,
            &Quiet,
        )
        .await
        .unwrap()
}

async fn audit_client(mesh: &TestMesh) -> AuditServiceClient<heist_e2e::mesh::Bearer> {
    mesh.audit_client("audit:read").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_tool_call_is_run_recorded_and_answered() {
    let mesh = TestMesh::start().await;
    let fake = FakeServer::start(vec![(
        CHAT,
        vec![
            said("We go in at 02:10, when the guards change."),
            said("Let me time the drill. [TOOL:calculator:45 * 3 + 20]"),
            said("Drilling takes 155 minutes, so we need the whole night."),
        ],
    )])
    .await;
    let outcome = run(
        two_agent_config(&mesh, ToolCallMode::Inline),
        fake.backend(),
        "heist_inline",
        2,
    )
    .await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns[1].agent, "safecracker");
    assert_eq!(
        outcome.turns[1].message,
        "Drilling takes 155 minutes, so we need the whole night."
    );
    let call = &outcome.turns[1].tool_calls[0];
    assert!(call.success, "{call:?}");
    assert_eq!(call.result, "45 * 3 + 20 = 155");
    // The tool's answer went back to the model before the final answer.
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let follow_up = requests[2].json();
    assert!(
        follow_up.to_string().contains("45 * 3 + 20 = 155"),
        "{follow_up}"
    );
    assert!(
        follow_up.get("tools").is_none(),
        "inline mode declares no tools"
    );

    let mut audit = audit_client(&mesh).await;
    let usage = audit
        .list_tool_usage(ListToolUsageRequest {
            session_id: "heist_inline".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tool_usage;
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].tool_name.as_str(), usage[0].success),
        ("calculator", true)
    );
    assert_eq!(usage[0].tool_params, r#"{"expression":"45 * 3 + 20"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_row_audit_refuses_costs_that_row_and_not_the_turns_message() {
    let mesh = TestMesh::start().await;
    // Arguments over Audit's 64 KiB field limit: the calculator refuses
    // them, and Audit refuses to store them, so the turn's one StoreTurn
    // write is refused and the orchestrator stores its rows one by one.
    let huge = vec!["1"; 40_000].join("+");
    let fake = FakeServer::start(vec![(
        CHAT,
        vec![
            said("We go in at 02:10."),
            said(&format!("Let me add it all up. [TOOL:calculator:{huge}]")),
            said("Too long to add up by hand; we round it."),
        ],
    )])
    .await;
    let outcome = run(
        two_agent_config(&mesh, ToolCallMode::Inline),
        fake.backend(),
        "heist_refused_row",
        2,
    )
    .await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns[1].tool_calls.len(), 1);
    assert!(!outcome.turns[1].tool_calls[0].success);
    assert_eq!(outcome.audit_failures, 0, "the message was stored");
    let trail = audit_trail(mesh.oauth.addr, mesh.audit.addr, "heist_refused_row").await;
    let said: Vec<_> = trail
        .messages
        .iter()
        .map(|m| (m.turn_id, m.message.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (1, "We go in at 02:10."),
            (2, "Too long to add up by hand; we round it.")
        ]
    );
    assert!(
        trail.tool_usage.is_empty(),
        "the refused row is not stored: {:?}",
        trail.tool_usage
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tool_calls_declare_the_tools_and_send_results_back() {
    let mesh = TestMesh::start().await;
    let fake = FakeServer::start(vec![(
        CHAT,
        vec![
            said("Safecracker, how long for the vault door?"),
            ok(chat_answer(json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": "{\"expression\": \"2 * 60 + 45\"}"}
                }]
            }))),
            said("Two hours and forty-five minutes: 165 minutes."),
        ],
    )])
    .await;
    let outcome = run(
        two_agent_config(&mesh, ToolCallMode::Native),
        fake.backend(),
        "heist_native",
        2,
    )
    .await;
    assert_eq!(outcome.status, "completed");
    let call = &outcome.turns[1].tool_calls[0];
    assert!(call.success);
    assert_eq!(call.result, "2 * 60 + 45 = 165");
    let requests = fake.requests();
    let first_safecracker = requests[1].json();
    assert_eq!(
        first_safecracker["tools"][0]["function"]["name"], "calculator",
        "{first_safecracker}"
    );
    let follow_up = requests[2].json();
    let messages = follow_up["messages"].as_array().unwrap();
    let tool_message = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert_eq!(tool_message["tool_call_id"], "call_1");
    assert!(tool_message["content"].as_str().unwrap().contains("165"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_and_the_turn_succeeds() {
    let mesh = TestMesh::start().await;
    let fake = FakeServer::start(vec![(
        CHAT,
        vec![
            status(500, json!({"error": "overloaded"})),
            said("Back online: we go at dawn."),
        ],
    )])
    .await;
    let outcome = run(
        two_agent_config(&mesh, ToolCallMode::Inline),
        fake.backend(),
        "heist_retry",
        1,
    )
    .await;
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!(outcome.turns[0].message, "Back online: we go at dawn.");
    assert_eq!(fake.count(CHAT), 2, "one failure, one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fails_its_turn_is_recorded_and_the_run_goes_on() {
    let mesh = TestMesh::start().await;
    let fake = FakeServer::start(vec![(
        CHAT,
        vec![Reply::Hang, said("Still here. Next step: the vault.")],
    )])
    .await;
    let mut settings = fake.settings();
    settings.timeout = Duration::from_millis(300);
    let backend = fast(OpenAiBackend::new(settings));
    let started = std::time::Instant::now();
    let outcome = run(
        two_agent_config(&mesh, ToolCallMode::Inline),
        backend,
        "heist_timeout",
        3,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a hung LLM must not stall the run"
    );
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns.len(), 3);
    assert_eq!(outcome.failed_turns, 1);
    assert!(outcome.turns[0].is_error);
    assert!(
        outcome.turns[0]
            .message
            .starts_with("Error generating response:"),
        "{}",
        outcome.turns[0].message
    );
    assert!(!outcome.turns[1].is_error && !outcome.turns[2].is_error);

    let mut audit = audit_client(&mesh).await;
    let messages = audit
        .list_messages(ListMessagesRequest {
            session_id: "heist_timeout".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 3, "the failed turn is recorded too");
    assert!(messages[0].is_error);
    assert!(messages[0].message.contains("Error generating response"));
}
