//! The OpenAI-compatible backend against a fake OpenAI server on `127.0.0.1:0`.
//!
//! The fake is `heist_e2e::fake_llm`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use heist_e2e::fake_llm::*;
use heist_orchestrator::llm::{
    AgentPersona, ChatMessage, Completion, CompletionRequest, LlmBackend, LlmError, OpenAiBackend,
    OpenAiSettings, ToolCallMode, ToolSpec,
};
use serde_json::json;
use tokio::net::TcpListener;

fn hacker() -> AgentPersona {
    AgentPersona {
        name: "hacker".to_owned(),
        role: "Security Expert".to_owned(),
        system_prompt: "You are the hacker.".to_owned(),
        tools: vec!["file_reader".to_owned()],
        is_saboteur: false,
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec::single_string(
        "file_reader",
        "Reads a file about the bank.",
        "filename",
        "the file to read",
    )]
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are the hacker."),
        ChatMessage::user("[planner]: What do we know about the vault?"),
    ]
}

async fn ask(backend: &OpenAiBackend, mode: ToolCallMode) -> Result<Completion, LlmError> {
    let persona = hacker();
    let messages = messages();
    let tools = tools();
    let request = CompletionRequest {
        persona: &persona,
        messages: &messages,
        tools: &tools,
        mode,
        turn_id: 1,
        round: 0,
    };
    backend.complete(request).await
}

#[tokio::test]
async fn a_plain_answer_is_returned_with_its_model() {
    let server = FakeServer::start(vec![(CHAT, vec![said("We go in at 16:50.")])]).await;
    let completion = ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert_eq!(completion.content, "We go in at 16:50.");
    assert!(completion.tool_calls.is_empty());
    assert_eq!(completion.model, MODEL);
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", CHAT)
    );
    let body = request.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 500);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(
        body["messages"][1]["content"],
        "[planner]: What do we know about the vault?"
    );
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn token_usage_is_read_from_the_answer() {
    let server = FakeServer::start(vec![(CHAT, vec![said("Done.")])]).await;
    let completion = ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert_eq!(completion.prompt_tokens, Some(42));
    assert_eq!(completion.completion_tokens, Some(7));
}

#[tokio::test]
async fn an_inline_tool_call_is_parsed_from_the_content() {
    let content = "Let me look. [TOOL:file_reader:vault_specs.md]";
    let server = FakeServer::start(vec![(CHAT, vec![said(content)])]).await;
    let completion = ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert_eq!(completion.content, content);
    assert_eq!(completion.tool_calls.len(), 1);
    assert_eq!(completion.tool_calls[0].name, "file_reader");
    assert_eq!(
        completion.tool_calls[0].arguments["filename"],
        "vault_specs.md"
    );
}

#[tokio::test]
async fn native_tool_calls_are_parsed_and_the_tools_declared() {
    let message = json!({"role": "assistant", "content": null, "tool_calls": [{
        "id": "call_abc",
        "type": "function",
        "function": {"name": "file_reader", "arguments": "{\"filename\": \"time_lock.md\"}"}
    }]});
    let server = FakeServer::start(vec![(CHAT, vec![ok(chat_answer(message))])]).await;
    let completion = ask(&server.backend(), ToolCallMode::Native).await.unwrap();
    assert_eq!(completion.content, "");
    let call = &completion.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.name.as_str()),
        ("call_abc", "file_reader")
    );
    assert_eq!(call.arguments["filename"], "time_lock.md");
    let body = server.requests()[0].json();
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "file_reader");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["filename"]["type"],
        "string"
    );
}

#[tokio::test]
async fn a_500_is_retried_and_then_succeeds() {
    let server = FakeServer::start(vec![(
        CHAT,
        vec![status(500, json!({"error": "busy"})), said("Recovered.")],
    )])
    .await;
    let completion = ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert_eq!(completion.content, "Recovered.");
    assert_eq!(server.count(CHAT), 2);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let too_many = Reply::Answer {
        status: 429,
        headers: vec![("retry-after", "0")],
        body: json!({"error": "slow down"}).to_string(),
    };
    let server = FakeServer::start(vec![(CHAT, vec![too_many, said("Now then.")])]).await;
    let completion = ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert_eq!(completion.content, "Now then.");
    assert_eq!(server.count(CHAT), 2);
}

#[tokio::test]
async fn a_lasting_500_gives_up_after_the_retries() {
    let failing = status(503, json!({"error": {"message": "model is loading"}}));
    let server = FakeServer::start(vec![(CHAT, vec![failing])]).await;
    let error = ask(&server.backend(), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Http { status: 503, body, .. } if body == "model is loading"),
        "{error}"
    );
    assert_eq!(server.count(CHAT), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let bad = status(
        400,
        json!({"error": {"message": "max_tokens is too large"}}),
    );
    let server = FakeServer::start(vec![(CHAT, vec![bad, said("never sent")])]).await;
    let error = ask(&server.backend(), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Http { status: 400, body, .. } if body == "max_tokens is too large"),
        "{error}"
    );
    assert_eq!(server.count(CHAT), 1);
    assert!(error.to_string().contains("HTTP 400"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let settings = OpenAiSettings::new(format!("http://{address}/v1"), MODEL);
    let backend = fast(OpenAiBackend::new(settings));
    let error = ask(&backend, ToolCallMode::Inline).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Connect { attempts: 3, .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_promptly() {
    let server = FakeServer::start(vec![(CHAT, vec![Reply::Hang])]).await;
    let settings = OpenAiSettings {
        timeout: Duration::from_millis(150),
        ..server.settings()
    };
    let started = Instant::now();
    let error = ask(&fast(OpenAiBackend::new(settings)), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.count(CHAT), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_missing_model_names_the_models_the_server_has() {
    let missing = status(
        404,
        json!({"error": {"message": format!("The model `{MODEL}` does not exist."), "code": "model_not_found"}}),
    );
    let models = ok(json!({"object": "list", "data": [{"id": "gemma-3-12b"}, {"id": "qwen3-8b"}]}));
    let server = FakeServer::start(vec![(CHAT, vec![missing]), (MODELS, vec![models])]).await;
    let error = ask(&server.backend(), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LlmError::ModelNotFound {
            model: MODEL.to_owned(),
            available: vec!["gemma-3-12b".to_owned(), "qwen3-8b".to_owned()],
        }
    );
    assert!(
        error
            .to_string()
            .contains("available models: gemma-3-12b, qwen3-8b")
    );
    assert_eq!(server.count(CHAT), 1);
}

#[tokio::test]
async fn a_missing_model_is_reported_even_without_a_model_list() {
    let missing = status(
        404,
        json!({"error": format!("model \"{MODEL}\" not found, try pulling it first")}),
    );
    let server = FakeServer::start(vec![(CHAT, vec![missing])]).await;
    let error = ask(&server.backend(), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::ModelNotFound { available, .. } if available.is_empty()),
        "{error}"
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let server = FakeServer::start(vec![(CHAT, vec![said("ok")])]).await;
    let settings = OpenAiSettings {
        api_key: Some("sk-heist".to_owned()),
        ..server.settings()
    };
    ask(&fast(OpenAiBackend::new(settings)), ToolCallMode::Inline)
        .await
        .unwrap();
    let headers = &server.requests()[0].headers;
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer sk-heist")
    );
}

#[tokio::test]
async fn no_authorization_is_sent_without_a_key() {
    let server = FakeServer::start(vec![(CHAT, vec![said("ok")])]).await;
    ask(&server.backend(), ToolCallMode::Inline).await.unwrap();
    assert!(!server.requests()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn a_success_that_is_not_a_completion_is_a_bad_response() {
    let server = FakeServer::start(vec![(CHAT, vec![ok(json!({"status": "ok"}))])]).await;
    let error = ask(&server.backend(), ToolCallMode::Inline)
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::BadResponse(_)), "{error}");
}

#[tokio::test]
async fn probe_lists_the_served_models() {
    let models = ok(json!({"object": "list", "data": [{"id": MODEL}]}));
    let server = FakeServer::start(vec![(MODELS, vec![models])]).await;
    let listed = server.backend().probe().await.unwrap();
    assert_eq!(listed, [MODEL]);
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", MODELS)
    );
}

#[tokio::test]
async fn probe_reports_an_error_status() {
    let server = FakeServer::start(vec![(
        MODELS,
        vec![status(401, json!({"error": "bad key"}))],
    )])
    .await;
    let error = server.backend().probe().await.unwrap_err();
    assert!(
        matches!(error, LlmError::Http { status: 401, .. }),
        "{error}"
    );
}
