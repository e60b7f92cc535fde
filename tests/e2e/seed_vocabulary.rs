//! The seed's tool vocabulary through the real services (issue 12): the
//! seed's document names, errors that teach, refusals unchanged, every
//! example the tools describe and every call of the offline crew, and a
//! session against the fake OpenAI server that speaks as the seed's agents.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use heist_e2e::{dev_token, fake_llm::*, mesh::TestMesh};
use heist_orchestrator::{
    app,
    config::Config,
    discovery::builtin_spec,
    engine::{RunOptions, SessionOutcome, TurnRecord, TurnSink},
    llm::{LlmBackend, OfflineBackend, ToolCallMode},
    mesh::Mesh,
};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CallToolRequest, CallToolResponse, ListToolsRequest, tool_service_client::ToolServiceClient,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::{Code, Status};

/// The seed's document names and the documents they are.
const SEED_DOCUMENTS: [(&str, &str); 4] = [
    ("bank_layout.txt", "bank_layout.md"),
    ("security_system.txt", "security_system.md"),
    ("timing_specs.txt", "time_lock.md"),
    ("vault_specs.txt", "vault_specs.md"),
];

/// The agent whose development client may call `tool`, and its argument.
fn caller_of(tool: &str) -> (&'static str, &'static str) {
    match tool {
        "calculator" => ("safecracker", "expression"),
        "file_reader" => ("hacker", "filename"),
        _ => ("hacker", "query"),
    }
}

/// Calls `tool` on the mesh's Tool service with `value` as its argument,
/// as an agent allowed to.
async fn call(mesh: &TestMesh, tool: &str, value: &str) -> Result<CallToolResponse, Status> {
    let (agent, argument) = caller_of(tool);
    let token = dev_token(mesh.oauth.addr, agent, &format!("{tool}:use"))
        .await
        .unwrap();
    let mut client =
        ToolServiceClient::with_interceptor(mesh.tools.channel(), BearerInterceptor::new(&token));
    client
        .call_tool(CallToolRequest {
            tool_name: tool.into(),
            arguments: [(argument.to_owned(), value.to_owned())].into(),
            session_id: "heist_vocabulary".into(),
            agent_name: agent.into(),
            turn_id: 1,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn data(answer: &CallToolResponse) -> Value {
    serde_json::from_str(&answer.data_json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_document_name_resolves_through_the_tool_service() {
    let mesh = TestMesh::start().await;
    for (seed, ours) in SEED_DOCUMENTS {
        let answer = call(&mesh, "file_reader", seed)
            .await
            .unwrap_or_else(|status| panic!("{seed}: {status:?}"));
        assert_eq!(data(&answer)["filename"], ours, "{seed}");
        assert_eq!(data(&answer)["requested"], seed, "{seed}");
        assert!(
            answer
                .text
                .starts_with(&format!("(no document is named '{seed}'; this is {ours})")),
            "{seed}: {}",
            answer.text
        );
        let exact = call(&mesh, "file_reader", ours).await.unwrap();
        assert!(answer.text.ends_with(&exact.text), "{seed} serves {ours}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_document_lists_the_documents_closest_first() {
    let mesh = TestMesh::start().await;
    for (name, closest) in [
        ("vault_spec.txt", "vault_specs.md"),
        ("guard_rotations.md", "guard_rotation.txt"),
        ("escape_route", "escape_routes.md"),
    ] {
        let status = call(&mesh, "file_reader", name).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{name}: {status:?}");
        let message = status.message();
        let listed = message
            .split_once("documents (closest first): ")
            .unwrap_or_else(|| panic!("{name}: {message}"))
            .1;
        assert!(listed.starts_with(closest), "{name}: {message}");
        for document in ["bank_layout.md", "time_lock.md", "alarm_codes_memo.txt"] {
            assert!(listed.contains(document), "{name}: {message}");
        }
        assert!(message.len() < 400, "bounded: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_shows_the_position_and_what_is_allowed() {
    let mesh = TestMesh::start().await;
    for (expression, marked, position) in [
        ("45 * x + 20", "⟦x⟧", 5),
        ("45 * 3 +", "⟦⟧", 8),
        ("drill time: 45 min", "time⟦:⟧", 10),
        ("(2 + 3", "⟦(⟧", 0),
    ] {
        let status = call(&mesh, "calculator", expression).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expression}");
        let message = status.message();
        assert!(message.contains(marked), "{expression}: {message}");
        assert!(
            message.contains("allowed: numbers"),
            "{expression}: {message}"
        );
        assert!(
            message.ends_with(&format!("(at position {position})")),
            "{expression}: {message}"
        );
    }
    let long = format!("{} $", "1 + ".repeat(200));
    let status = call(&mesh, "calculator", &long).await.unwrap_err();
    assert!(
        status.message().len() < 400,
        "bounded: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forgiving_names_still_refuse_everything_outside_the_documents() {
    let mesh = TestMesh::start().await;
    let documents = heist_e2e::documents_dir();
    let documents = documents.display();
    let absolute = format!("{documents}/vault_specs.txt");
    let cases = [
        (
            "../vault_specs.md",
            Code::PermissionDenied,
            "path traversal",
        ),
        (
            "../documents/vault_specs.txt",
            Code::PermissionDenied,
            "path traversal",
        ),
        ("../../Cargo.toml", Code::PermissionDenied, "path traversal"),
        ("/etc/passwd", Code::PermissionDenied, "absolute path"),
        (absolute.as_str(), Code::PermissionDenied, "absolute path"),
        (".vault_specs.md", Code::PermissionDenied, "hidden file"),
        (".env", Code::PermissionDenied, "hidden file"),
        (
            "docs/vault_specs.txt",
            Code::InvalidArgument,
            "path separator",
        ),
        ("vault_*.txt", Code::InvalidArgument, "wildcards"),
        ("Cargo.toml", Code::NotFound, "no document named"),
    ];
    for (name, code, why) in cases {
        let status = call(&mesh, "file_reader", name).await.unwrap_err();
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(status.message().contains(why), "{name}: {status:?}");
    }
}

/// The spans of `text` quoted in backticks.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_the_tools_describe_works() {
    let mesh = TestMesh::start().await;
    let token = dev_token(mesh.oauth.addr, "hacker", "file_reader:use")
        .await
        .unwrap();
    let mut client =
        ToolServiceClient::with_interceptor(mesh.tools.channel(), BearerInterceptor::new(&token));
    let listed = client
        .list_tools(ListToolsRequest {})
        .await
        .unwrap()
        .into_inner()
        .tools;
    assert_eq!(listed.len(), 3);
    let mut examples = Vec::new();
    for tool in &listed {
        let schema: Value = serde_json::from_str(&tool.parameters_schema).unwrap();
        let parameter = schema["properties"][&tool.primary_argument]["description"]
            .as_str()
            .unwrap();
        let mut found = backticked(&tool.description);
        found.extend(backticked(parameter));
        // What the orchestrator describes when the service is down.
        let builtin = builtin_spec(&tool.name).unwrap();
        let doc = builtin.parameters_schema["properties"][&tool.primary_argument]["description"]
            .as_str()
            .unwrap()
            .to_owned();
        found.push(doc.strip_prefix("e.g. ").unwrap_or(&doc).to_owned());
        // Function signatures such as `round(x, digits)` are not examples.
        found.retain(|example| !example.contains("(x"));
        assert!(found.len() >= 2, "{}: {found:?}", tool.name);
        examples.extend(found.into_iter().map(|e| (tool.name.clone(), e)));
    }
    let mut failed = Vec::new();
    for (tool, example) in &examples {
        if let Err(status) = call(&mesh, tool, example).await {
            failed.push(format!("{tool} {example:?}: {status:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} examples fail: {failed:#?}",
        failed.len(),
        examples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_offline_crew_may_make_succeeds() {
    let mesh = TestMesh::start().await;
    let vocabulary = OfflineBackend::vocabulary();
    for tool in ["calculator", "file_reader", "database_query"] {
        assert!(
            vocabulary.iter().any(|(t, _)| *t == tool),
            "{tool}: {vocabulary:?}"
        );
    }
    let mut failed = Vec::new();
    for (tool, argument) in &vocabulary {
        if let Err(status) = call(&mesh, tool, argument).await {
            failed.push(format!("{tool} {argument:?}: {status:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} offline calls fail: {failed:#?}",
        failed.len(),
        vocabulary.len()
    );
}

struct Quiet;

impl TurnSink for Quiet {
    fn turn(&self, _session_id: &str, _record: &TurnRecord) {}
}

/// The mesh's config with the safecracker (calculator, file_reader) and the
/// hacker (file_reader, database_query) alternating, the safecracker first.
fn seed_crew_config(mesh: &TestMesh, mode: ToolCallMode) -> Config {
    let mut config = mesh.config();
    config.llm.tool_calls = mode;
    config.session.turn_order = vec!["safecracker".into(), "hacker".into()];
    for agent in &mut config.agents {
        let tools: &[&str] = match agent.name.as_str() {
            "safecracker" => &["calculator", "file_reader"],
            "hacker" => &["file_reader", "database_query"],
            _ => continue,
        };
        agent.tools = tools.iter().map(|t| (*t).to_owned()).collect();
        agent.oauth_scopes = tools.iter().map(|t| format!("{t}:use")).collect();
    }
    config
}

async fn run_session(
    config: Config,
    fake: &FakeServer,
    session_id: &str,
    turns: u64,
) -> SessionOutcome {
    let config = Arc::new(config);
    let mesh = Mesh::connect(&config).await.unwrap();
    let llm: Arc<dyn LlmBackend> = Arc::new(fake.backend());
    let spool_dir = tempfile::TempDir::new().unwrap();
    let spool =
        heist_orchestrator::spool::Spool::open(spool_dir.path().join("audit.spool")).unwrap();
    let (orchestrator, _) = app::prepare(config, mesh, llm, spool).await;
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

/// Every call of `outcome`, and the ones that failed (with their answer).
fn tally(outcome: &SessionOutcome) -> (usize, Vec<String>) {
    let calls: Vec<_> = outcome.turns.iter().flat_map(|t| &t.tool_calls).collect();
    let failed = calls
        .iter()
        .filter(|call| !call.success)
        .map(|call| format!("{} {} -> {}", call.tool, call.params, call.result))
        .collect();
    (calls.len(), failed)
}

/// The seed's tool calls, one turn each (at most three, the engine's limit
/// per round): the safecracker speaks on odd turns, the hacker on even.
const SEED_TURNS: [&[(&str, &str)]; 5] = [
    &[
        ("calculator", "45 * 3 + 20"),
        ("file_reader", "vault_specs.txt"),
    ],
    &[
        ("file_reader", "bank_layout.txt"),
        ("file_reader", "security_system.txt"),
        ("database_query", "SELECT * FROM guards WHERE shift='night'"),
    ],
    &[
        ("file_reader", "timing_specs.txt"),
        ("calculator", "2 * (3 + 4)"),
    ],
    &[
        ("database_query", "SELECT guard schedule"),
        ("database_query", "SELECT access levels"),
        ("database_query", "security employees"),
    ],
    &[("calculator", "4 * 35 + 15")],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_speaking_the_seeds_tool_vocabulary_gets_every_call_answered() {
    let mesh = TestMesh::start().await;
    let expected: usize = SEED_TURNS.iter().map(|turn| turn.len()).sum();

    // Inline, as the seed's agents wrote: [TOOL:name:argument] in the text.
    let mut script = Vec::new();
    for (turn, calls) in SEED_TURNS.iter().enumerate() {
        let inline: Vec<String> = calls
            .iter()
            .map(|(tool, argument)| format!("[TOOL:{tool}:{argument}]"))
            .collect();
        script.push(said(&format!("Let me check. {}", inline.join(" "))));
        script.push(said(&format!("That settles turn {}.", turn + 1)));
    }
    let fake = FakeServer::start(vec![(CHAT, script)]).await;
    let config = seed_crew_config(&mesh, ToolCallMode::Inline);
    let outcome = run_session(config, &fake, "heist_seed_inline", 5).await;
    assert_eq!(outcome.status, "completed");
    let (inline_calls, inline_failed) = tally(&outcome);

    // Native: the same calls as OpenAI tool_calls.
    let mut script = Vec::new();
    for (turn, calls) in SEED_TURNS.iter().enumerate() {
        let tool_calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(index, (tool, argument))| {
                let (_, name) = caller_of(tool);
                json!({
                    "id": format!("call_{turn}_{index}"),
                    "type": "function",
                    "function": {"name": tool, "arguments": json!({ name: argument }).to_string()}
                })
            })
            .collect();
        script.push(ok(chat_answer(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": tool_calls,
        }))));
        script.push(said(&format!("That settles turn {}.", turn + 1)));
    }
    let fake = FakeServer::start(vec![(CHAT, script)]).await;
    let config = seed_crew_config(&mesh, ToolCallMode::Native);
    let outcome = run_session(config, &fake, "heist_seed_native", 5).await;
    assert_eq!(outcome.status, "completed");
    let (native_calls, native_failed) = tally(&outcome);

    println!(
        "seed vocabulary: inline {} of {inline_calls} calls answered, native {} of {native_calls}",
        inline_calls - inline_failed.len(),
        native_calls - native_failed.len()
    );
    assert_eq!(inline_calls, expected, "every inline call was made");
    assert_eq!(native_calls, expected, "every native call was made");
    assert!(
        inline_failed.is_empty() && native_failed.is_empty(),
        "failed inline: {inline_failed:#?}\nfailed native: {native_failed:#?}"
    );
}
