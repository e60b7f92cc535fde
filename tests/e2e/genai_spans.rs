//! The orchestrator's spans follow the OpenTelemetry GenAI conventions,
//! proven on real runs of the five binaries exported over OTLP (the
//! receiver and the processes are `tracing_e2e`'s):
//! `invoke_workflow heist` > `invoke_agent {agent}` > `chat {model}` and
//! `execute_tool {tool}`, with their `gen_ai.*` attributes; message content
//! only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, set
//! for one orchestrator process and never for this test process.
//!
//! The default run's checks are called from `tracing_e2e`'s main test (one
//! mesh run serves both); the opt-in run is its own test, against the fake
//! OpenAI-compatible server (which reports token usage), and so is a run
//! whose LLM refuses every call (`error.type` on chat, turn and session).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_e2e::fake_llm::{CHAT, FakeServer, MODEL, MODELS, ok, said, status};
use heist_orchestrator::{config::Config, engine::FRAMING};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    otlp_collector::{Collected, Collector, value_text},
    tracing_e2e::{SERIAL, Services, SessionTrace, run_orchestrator_with, with_scopeless_mole},
};

/// The variable that opts in to content capture.
const CAPTURE: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// The span attributes that carry content.
const CONTENT_KEYS: [&str; 4] = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
];

/// What the fake LLM answers every time: text and a call of every tool
/// (each agent runs the one it has).
const ANSWER: &str = "The vault opens at nine. [TOOL:calculator:6 * 7] \
                      [TOOL:file_reader:bank_layout.md]";

/// The `run` arguments that write the session's transcript (what was said
/// and which tools were called, for the content checks) without reading
/// Audit, whose spans would join the collected ones.
pub(crate) const TRANSCRIPT_ARGS: [&str; 2] = ["--transcript", "transcript.json"];

/// One run's transcript (`--transcript transcript.json`).
pub(crate) struct Transcript {
    turns: Vec<Value>,
}

impl Transcript {
    /// Reads `transcript.json` in `dir`.
    pub(crate) fn read(dir: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(dir.join("transcript.json")).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        Self {
            turns: json["turns"].as_array().unwrap().clone(),
        }
    }

    /// The agent that spoke turn `turn`.
    fn agent_of(&self, turn: i64) -> &str {
        self.turns
            .iter()
            .find(|record| record["turn"] == turn)
            .and_then(|record| record["agent"].as_str())
            .unwrap_or_else(|| panic!("no turn {turn} in the transcript"))
    }

    /// Every tool call of the session.
    fn tool_calls(&self) -> impl Iterator<Item = &Value> {
        self.turns
            .iter()
            .flat_map(|record| record["tool_calls"].as_array().unwrap())
    }
}

/// Asserts `key` of `span` is `expected`.
fn assert_attr(span: &Collected, key: &str, expected: &str) {
    assert_eq!(
        span.attr(key).as_deref(),
        Some(expected),
        "{key} of {}",
        span.describe()
    );
}

/// The span's parent, which must be the orchestrator's `operation` span.
fn parent_operation<'a>(
    session: &'a SessionTrace,
    span: &Collected,
    operation: &str,
) -> &'a Collected {
    let parent = session
        .parent_of(span)
        .unwrap_or_else(|| panic!("{} has no parent", span.describe()));
    assert_attr(parent, "gen_ai.operation.name", operation);
    parent
}

/// On the default (offline) run: the four span names, kinds and required
/// attributes, their shape, and `error.type` on the refused tool call.
pub(crate) fn the_genai_spans_follow_the_conventions(
    session: &SessionTrace,
    transcript: &Transcript,
) {
    let root = &session.root;
    assert_eq!(root.kind(), SpanKind::Internal);
    assert_attr(root, "gen_ai.operation.name", "invoke_workflow");
    assert_attr(root, "gen_ai.workflow.name", "heist");
    assert_attr(root, "gen_ai.conversation.id", &session.session_id);
    assert!(root.attr("error.type").is_none(), "the session succeeded");

    let agents: Vec<&Collected> = session.operation("invoke_agent").collect();
    assert_eq!(
        agents.len(),
        transcript.turns.len(),
        "one agent span per turn"
    );
    for agent in &agents {
        let name = agent.attr("gen_ai.agent.name").unwrap();
        assert_eq!(agent.span.name, format!("invoke_agent {name}"));
        assert_eq!(agent.kind(), SpanKind::Internal, "{}", agent.describe());
        assert_eq!(
            parent_operation(session, agent, "invoke_workflow")
                .span
                .span_id,
            root.span.span_id
        );
        assert_attr(agent, "gen_ai.provider.name", "heist.offline");
        assert_attr(agent, "gen_ai.conversation.id", &session.session_id);
        // The turn's agent, as the orchestrator reported it.
        let turn: i64 = agent.attr("turn.id").unwrap().parse().unwrap();
        assert_eq!(name, transcript.agent_of(turn), "the agent of turn {turn}");
    }

    let chats: Vec<&Collected> = session.operation("chat").collect();
    assert!(chats.len() >= agents.len(), "a chat span per LLM call");
    for chat in &chats {
        assert_eq!(
            chat.span.name, "chat offline",
            "named for the model asked for"
        );
        assert_eq!(
            chat.kind(),
            SpanKind::Internal,
            "the offline model runs in the process"
        );
        assert_attr(chat, "gen_ai.provider.name", "heist.offline");
        assert_attr(chat, "gen_ai.request.model", "offline");
        assert_attr(chat, "gen_ai.conversation.id", &session.session_id);
        parent_operation(session, chat, "invoke_agent");
    }

    let tools: Vec<&Collected> = session.operation("execute_tool").collect();
    assert_eq!(
        tools.len(),
        transcript.tool_calls().count(),
        "a span per tool call"
    );
    for tool in &tools {
        let name = tool.attr("gen_ai.tool.name").unwrap();
        assert_eq!(tool.span.name, format!("execute_tool {name}"));
        assert_eq!(tool.kind(), SpanKind::Internal, "{}", tool.describe());
        assert!(
            tool.attr("gen_ai.tool.call.id")
                .is_some_and(|id| !id.is_empty()),
            "{} has no call id",
            tool.describe()
        );
        assert_attr(tool, "gen_ai.tool.type", "function");
        assert_attr(tool, "gen_ai.conversation.id", &session.session_id);
        let agent = parent_operation(session, tool, "invoke_agent");
        if name == "database_query" {
            // The scopeless mole's query: refused by the tool service.
            assert_attr(tool, "error.type", "PERMISSION_DENIED");
            assert!(tool.is_error(), "{}", tool.describe());
            assert_attr(agent, "gen_ai.agent.name", "mole");
        } else {
            assert!(tool.attr("error.type").is_none(), "{}", tool.describe());
        }
    }
    assert!(
        tools.iter().any(|tool| tool.attr("error.type").is_some()),
        "the refused call has an error.type"
    );
}

/// Every value of an attribute or an event attribute of `span`.
fn values(span: &Collected) -> impl Iterator<Item = (String, String)> + '_ {
    let events = span.span.events.iter().flat_map(|event| &event.attributes);
    span.span
        .attributes
        .iter()
        .chain(events)
        .filter_map(|kv| Some((kv.key.clone(), value_text(kv.value.as_ref()?)?)))
}

/// The session's content: every line of every agent's system prompt, the
/// framing, each answer, each tool call's argument values and each result of
/// a call that succeeded (a refusal's reason is not content).
fn content_of(transcript: &Transcript) -> Vec<String> {
    let config = Config::default_config();
    let prompts = config.agents.iter().flat_map(|agent| {
        agent
            .system_prompt
            .lines()
            .map(str::trim)
            .map(str::to_owned)
    });
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let answers = transcript
        .turns
        .iter()
        .filter_map(|record| text(&record["message"]));
    let tools = transcript.tool_calls().flat_map(|call| {
        let params: serde_json::Map<String, Value> =
            serde_json::from_str(call["params"].as_str().unwrap()).unwrap();
        let arguments = params.into_values().filter_map(|value| text(&value));
        let result = (call["success"] == true)
            .then(|| text(&call["result"]))
            .flatten();
        arguments.chain(result).collect::<Vec<_>>()
    });
    prompts
        .chain([FRAMING.to_owned()])
        .chain(answers)
        .chain(tools)
        .filter(|text| text.chars().count() >= 6)
        .collect()
}

/// With no opt-in, no span or event of any service carries a prompt, an
/// answer, a tool argument or a tool result.
pub(crate) fn no_message_content_is_exported_by_default(
    session: &SessionTrace,
    transcript: &Transcript,
) {
    let content = content_of(transcript);
    assert!(
        content.len() >= 20,
        "only {} content strings",
        content.len()
    );
    assert!(
        transcript.tool_calls().count() > 0,
        "the run made no tool call"
    );
    for span in &session.all {
        for (key, value) in values(span) {
            // A tool's description is its definition (it names the files a
            // reader may ask for), not content.
            if key == "gen_ai.tool.description" {
                continue;
            }
            assert!(
                !CONTENT_KEYS.contains(&key.as_str()),
                "{key} on {}",
                span.describe()
            );
            if let Some(text) = content.iter().find(|text| value.contains(text.as_str())) {
                panic!("{key} of {} carries content {text:?}", span.describe());
            }
        }
    }
}

/// A mesh exporting to `collector`, its config (the mole without its
/// query scope) in `dir`, and a fake LLM answering every chat with `chat`.
async fn mesh_and_fake_llm(
    dir: &TempDir,
    collector: &Collector,
    chat: heist_e2e::fake_llm::Reply,
) -> (Services, FakeServer) {
    let fake = FakeServer::start(vec![
        (CHAT, vec![chat]),
        (
            MODELS,
            vec![ok(json!({"object": "list", "data": [{"id": MODEL}]}))],
        ),
    ])
    .await;
    let endpoint = collector.url();
    let services_env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let services = Services::start(dir.path(), &services_env).await;
    std::fs::write(
        dir.path().join("mesh.yaml"),
        with_scopeless_mole(&services.config()),
    )
    .unwrap();
    (services, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_llm_gives_its_error_type_to_the_chat_the_turn_and_the_session() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    let collector = Collector::start().await;
    let refusal = status(400, json!({"error": {"message": "context too long"}}));
    let (services, fake) = mesh_and_fake_llm(&dir, &collector, refusal).await;
    let endpoint = collector.url();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let args = ["--llm-url", fake.base_url.as_str(), "--model", MODEL];
    let run = run_orchestrator_with(dir.path(), "mesh.yaml", &env, &args).await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "every turn failed: {}",
        run.shown()
    );
    let session_id = run.session_id();
    services.terminate();
    let session = SessionTrace::of(&session_id, collector.spans());

    assert_attr(&session.root, "error.type", "session_failed");
    assert!(session.root.is_error(), "the session span is an error");
    let agents: Vec<&Collected> = session.operation("invoke_agent").collect();
    assert_eq!(agents.len(), 6, "every turn ran");
    for span in agents.into_iter().chain(session.operation("chat")) {
        assert_attr(span, "error.type", "400");
        assert!(span.is_error(), "{} is not an error", span.describe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_opt_in_a_run_exports_its_messages_tool_calls_and_token_usage() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    let collector = Collector::start().await;
    let (services, fake) = mesh_and_fake_llm(&dir, &collector, said(ANSWER)).await;
    let endpoint = collector.url();
    // The opt-in for the orchestrator process alone.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        (CAPTURE, "true"),
    ];
    let mut args = vec!["--llm-url", fake.base_url.as_str(), "--model", MODEL];
    args.extend(TRANSCRIPT_ARGS);
    let run = run_orchestrator_with(dir.path(), "mesh.yaml", &env, &args).await;
    assert!(run.status.success(), "{}", run.shown());
    let session_id = run.session_id();
    services.terminate();
    let transcript = Transcript::read(dir.path());
    let session = SessionTrace::of(&session_id, collector.spans());

    for agent in session.operation("invoke_agent") {
        assert_attr(agent, "gen_ai.provider.name", "openai");
        assert_attr(agent, "gen_ai.request.model", MODEL);
    }
    let chats: Vec<&Collected> = session.operation("chat").collect();
    assert!(
        chats.len() >= transcript.turns.len(),
        "a chat span per LLM call"
    );
    for chat in &chats {
        assert_eq!(chat.span.name, format!("chat {MODEL}"));
        assert_eq!(chat.kind(), SpanKind::Client, "{}", chat.describe());
        assert_attr(chat, "gen_ai.provider.name", "openai");
        assert_attr(chat, "gen_ai.request.model", MODEL);
        assert_attr(chat, "gen_ai.response.model", MODEL);
        // The fake reports 42 prompt and 7 completion tokens.
        assert_attr(chat, "gen_ai.usage.input_tokens", "42");
        assert_attr(chat, "gen_ai.usage.output_tokens", "7");

        let input: Value =
            serde_json::from_str(&chat.attr("gen_ai.input.messages").unwrap()).unwrap();
        let first = &input[0];
        assert_eq!(first["role"], "system", "{input}");
        let agent = parent_operation(&session, chat, "invoke_agent")
            .attr("gen_ai.agent.name")
            .unwrap();
        let prompt = Config::default_config()
            .agent(&agent)
            .unwrap()
            .system_prompt
            .clone();
        assert_eq!(
            first["parts"][0]["content"],
            prompt.as_str(),
            "{agent}'s prompt"
        );
        let output: Value =
            serde_json::from_str(&chat.attr("gen_ai.output.messages").unwrap()).unwrap();
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(output[0]["parts"][0]["content"], ANSWER, "{output}");
    }
    let reads: Vec<&Collected> = session.named("execute_tool file_reader").collect();
    assert!(
        !reads.is_empty(),
        "no file_reader call (the hacker speaks with seed 7)"
    );
    // The hacker's reads succeed (an agent without the tool is refused).
    let succeeded: Vec<&Value> = transcript
        .tool_calls()
        .filter(|call| call["tool"] == "file_reader" && call["success"] == true)
        .collect();
    assert!(!succeeded.is_empty(), "no file_reader call succeeded");
    let mut checked = 0;
    for read in reads {
        let arguments: Value =
            serde_json::from_str(&read.attr("gen_ai.tool.call.arguments").unwrap()).unwrap();
        assert!(
            arguments.to_string().contains("bank_layout.md"),
            "{arguments}"
        );
        if read.attr("error.type").is_some() {
            continue;
        }
        let result = read.attr("gen_ai.tool.call.result").unwrap();
        assert!(result.contains("First National Heist Bank"), "{result}");
        let recorded = succeeded.iter().any(|call| {
            serde_json::from_str::<Value>(call["params"].as_str().unwrap()).unwrap() == arguments
                && call["result"] == result.as_str()
        });
        assert!(
            recorded,
            "{arguments} -> {result} is not a call the run made"
        );
        checked += 1;
    }
    assert_eq!(checked, succeeded.len(), "a span for every read");
    // Exported only: the content is in no log line.
    assert!(
        !run.stderr.contains("gen_ai.input.messages"),
        "{}",
        run.stderr
    );
}
