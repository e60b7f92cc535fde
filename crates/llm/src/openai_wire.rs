//! The OpenAI chat-completions JSON: building requests, reading answers and error bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::LlmError;
use super::inline::{parse_inline_tool_calls, resolve_tool};
use super::text::cut;
use super::types::{ChatMessage, Completion, Role, ToolCall, ToolCallMode, ToolSpec};

/// How much of an error body a message quotes.
const EXCERPT_CHARS: usize = 300;

/// The body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
}

/// The generation knobs of a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sampling<'a> {
    /// The model asked for.
    pub(super) model: &'a str,
    /// Sampling temperature.
    pub(super) temperature: f32,
    /// Most tokens to generate.
    pub(super) max_tokens: u32,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` only for an assistant message that just calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    /// The arguments as a JSON object, encoded as a string (as OpenAI sends them).
    arguments: String,
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    r#type: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

impl<'a> ChatRequest<'a> {
    /// The request for this conversation. Native mode declares the tools; inline mode sends none
    /// and turns any tool-role message into a user message, since the server knows no tools.
    pub(super) fn new(
        sampling: Sampling<'a>,
        messages: &'a [ChatMessage],
        tools: &'a [ToolSpec],
        mode: ToolCallMode,
    ) -> Self {
        let tools: Vec<_> = match mode {
            ToolCallMode::Native => tools.iter().map(wire_tool).collect(),
            ToolCallMode::Inline => Vec::new(),
        };
        Self {
            model: sampling.model,
            messages: messages.iter().map(|m| wire_message(m, mode)).collect(),
            temperature: sampling.temperature,
            max_tokens: sampling.max_tokens,
            stream: false,
            tool_choice: (!tools.is_empty()).then_some("auto"),
            tools,
        }
    }
}

fn wire_tool(spec: &ToolSpec) -> WireTool<'_> {
    WireTool {
        r#type: "function",
        function: WireFunction {
            name: &spec.name,
            description: &spec.description,
            parameters: &spec.parameters_schema,
        },
    }
}

fn wire_message(message: &ChatMessage, mode: ToolCallMode) -> WireMessage<'_> {
    let native = mode == ToolCallMode::Native;
    let role = match message.role {
        Role::Tool if !native => Role::User,
        role => role,
    };
    let tool_calls: Vec<_> = if native {
        message.tool_calls.iter().map(wire_tool_call).collect()
    } else {
        Vec::new()
    };
    let calls_only = message.content.is_empty() && !tool_calls.is_empty();
    let content = (!calls_only).then_some(message.content.as_str());
    WireMessage {
        role: role.as_str(),
        content,
        name: message.name.as_deref(),
        tool_call_id: message.tool_call_id.as_deref().filter(|_| native),
        tool_calls,
    }
}

fn wire_tool_call(call: &ToolCall) -> WireToolCall<'_> {
    let arguments = serde_json::Map::from_iter(
        call.arguments
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone()))),
    );
    WireToolCall {
        id: &call.id,
        r#type: "function",
        function: WireFunctionCall {
            name: &call.name,
            arguments: Value::Object(arguments).to_string(),
        },
    }
}

/// The 2xx body of `POST /chat/completions`.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Debug, Deserialize)]
struct ResponseMessage {
    content: Option<String>,
    tool_calls: Option<Vec<ResponseToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ResponseToolCall {
    id: Option<String>,
    function: ResponseFunction,
}

#[derive(Debug, Deserialize)]
struct ResponseFunction {
    name: String,
    /// Usually a JSON object encoded as a string; some servers send the object itself.
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Reads a chat-completion body into a [`Completion`].
///
/// Native mode takes `choices[0].message.tool_calls`; inline mode parses `[TOOL:...]` from the
/// content. `fallback_model` names the model when the server does not.
pub(super) fn read_completion(
    body: &str,
    mode: ToolCallMode,
    tools: &[ToolSpec],
    fallback_model: &str,
) -> Result<Completion, LlmError> {
    let response: ChatResponse = serde_json::from_str(body).map_err(|error| {
        LlmError::BadResponse(format!(
            "not a chat completion ({error}): {}",
            excerpt(body)
        ))
    })?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(LlmError::BadResponse(
            "the answer has no choices".to_owned(),
        ));
    };
    let content = choice.message.content.unwrap_or_default();
    let tool_calls = match mode {
        ToolCallMode::Native => choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, call)| native_call(index, call, tools))
            .collect(),
        ToolCallMode::Inline => parse_inline_tool_calls(&content, tools),
    };
    let usage = response.usage;
    Ok(Completion {
        content,
        tool_calls,
        model: response.model.unwrap_or_else(|| fallback_model.to_owned()),
        prompt_tokens: usage.as_ref().and_then(|usage| usage.prompt_tokens),
        completion_tokens: usage.and_then(|usage| usage.completion_tokens),
    })
}

/// A native call with its arguments as strings. Arguments that are not a JSON object (a bare
/// string, or text that is not JSON at all) go whole under the tool's primary argument.
fn native_call(index: usize, call: ResponseToolCall, tools: &[ToolSpec]) -> ToolCall {
    let (name, primary) = resolve_tool(&call.function.name, tools);
    let decoded = match call.function.arguments {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Some(value) => value,
        None => Value::Null,
    };
    let arguments = match decoded {
        Value::Object(map) => map
            .into_iter()
            .map(|(key, value)| (key, value_as_string(value)))
            .collect(),
        Value::Null => BTreeMap::new(),
        Value::String(text) if text.trim().is_empty() => BTreeMap::new(),
        other => BTreeMap::from([(primary, value_as_string(other))]),
    };
    ToolCall {
        id: call.id.unwrap_or_else(|| format!("call_{index}")),
        name,
        arguments,
    }
}

fn value_as_string(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// The body of `GET /models`.
#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
struct ModelEntry {
    id: String,
}

/// Reads the model ids from a `GET /models` body.
pub(super) fn read_model_ids(body: &str) -> Result<Vec<String>, LlmError> {
    let list: ModelList = serde_json::from_str(body).map_err(|error| {
        LlmError::BadResponse(format!("not a model list ({error}): {}", excerpt(body)))
    })?;
    Ok(list.data.into_iter().map(|entry| entry.id).collect())
}

/// The readable part of an error body: `error.message`, `error` or `message` if it is JSON
/// that has one, else the body itself; cut to a short excerpt.
pub(super) fn error_excerpt(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value
            .pointer("/error/message")
            .or_else(|| value.get("error"))
            .or_else(|| value.get("message"))
            .and_then(Value::as_str)
    });
    excerpt(message.unwrap_or(body))
}

/// Whether an error answer says the model does not exist (Ollama, vLLM, LM Studio and OpenAI
/// each word it differently).
pub(super) fn says_model_missing(status: u16, body: &str, model: &str) -> bool {
    if status != 400 && status != 404 {
        return false;
    }
    let body = body.to_lowercase();
    let missing = [
        "not found",
        "does not exist",
        "model_not_found",
        "no such model",
    ]
    .iter()
    .any(|phrase| body.contains(phrase));
    (body.contains("model") && missing) || (status == 404 && body.contains(&model.to_lowercase()))
}

fn excerpt(text: &str) -> String {
    cut(text.trim(), EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Vec<ToolSpec> {
        vec![ToolSpec::single_string(
            "calculator",
            "maths",
            "expression",
            "an expression",
        )]
    }

    fn sampling() -> Sampling<'static> {
        Sampling {
            model: "m",
            temperature: 0.5,
            max_tokens: 64,
        }
    }

    fn request_json(messages: &[ChatMessage], mode: ToolCallMode) -> Value {
        let tools = specs();
        let request = ChatRequest::new(sampling(), messages, &tools, mode);
        serde_json::to_value(&request).unwrap()
    }

    fn conversation_with_a_native_call() -> Vec<ChatMessage> {
        let call = ToolCall {
            id: "c1".to_owned(),
            name: "calculator".to_owned(),
            arguments: BTreeMap::from([("expression".to_owned(), "1+1".to_owned())]),
        };
        vec![
            ChatMessage::system("be brief"),
            ChatMessage {
                tool_calls: vec![call],
                ..ChatMessage::assistant("")
            },
            ChatMessage {
                tool_call_id: Some("c1".to_owned()),
                name: Some("calculator".to_owned()),
                ..ChatMessage::new(Role::Tool, "2")
            },
        ]
    }

    #[test]
    fn native_requests_declare_the_tools_and_replay_calls() {
        let body = request_json(&conversation_with_a_native_call(), ToolCallMode::Native);
        assert_eq!(body["tools"][0]["function"]["name"], "calculator");
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["stream"], false);
        let assistant = &body["messages"][1];
        assert_eq!(assistant["content"], Value::Null);
        assert_eq!(
            assistant["tool_calls"][0]["function"]["arguments"],
            "{\"expression\":\"1+1\"}"
        );
        assert_eq!(body["messages"][2]["role"], "tool");
        assert_eq!(body["messages"][2]["tool_call_id"], "c1");
    }

    #[test]
    fn inline_requests_send_no_tools_and_no_tool_roles() {
        let body = request_json(&conversation_with_a_native_call(), ToolCallMode::Inline);
        assert!(body.get("tools").is_none());
        assert!(body.get("tool_choice").is_none());
        assert!(body["messages"][1].get("tool_calls").is_none());
        assert_eq!(body["messages"][1]["content"], "");
        assert_eq!(body["messages"][2]["role"], "user");
        assert!(body["messages"][2].get("tool_call_id").is_none());
    }

    #[test]
    fn native_arguments_become_strings() {
        let body = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "a", "function": {"name": "calculator", "arguments": "{\"expression\": \"2*3\", \"precision\": 2}"}},
            {"function": {"name": "Calculator", "arguments": {"expression": "4"}}},
            {"id": "c", "function": {"name": "calculator", "arguments": "7 * 6"}},
            {"id": "d", "function": {"name": "calculator", "arguments": ""}}
        ]}}]});
        let completion =
            read_completion(&body.to_string(), ToolCallMode::Native, &specs(), "m").unwrap();
        let calls = completion.tool_calls;
        assert_eq!(calls[0].arguments["expression"], "2*3");
        assert_eq!(calls[0].arguments["precision"], "2");
        assert_eq!(calls[1].id, "call_1");
        assert_eq!(calls[1].name, "calculator");
        assert_eq!(calls[2].arguments["expression"], "7 * 6");
        assert!(calls[3].arguments.is_empty());
        assert_eq!(completion.content, "");
        assert_eq!(completion.model, "m");
    }

    #[test]
    fn a_body_without_choices_is_a_bad_response() {
        let error = read_completion("{\"choices\": []}", ToolCallMode::Inline, &[], "m");
        assert!(matches!(error, Err(LlmError::BadResponse(_))));
        let error = read_completion("<html>", ToolCallMode::Inline, &[], "m");
        assert!(matches!(error, Err(LlmError::BadResponse(message)) if message.contains("<html>")));
    }

    #[test]
    fn model_ids_are_read_from_the_list() {
        let ids = read_model_ids(r#"{"object": "list", "data": [{"id": "a"}, {"id": "b"}]}"#);
        assert_eq!(ids, Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert!(read_model_ids("[]").is_err());
    }

    #[test]
    fn error_excerpts_prefer_the_json_message_and_stay_short() {
        assert_eq!(error_excerpt(r#"{"error": {"message": "boom"}}"#), "boom");
        assert_eq!(error_excerpt(r#"{"error": "bang"}"#), "bang");
        assert_eq!(error_excerpt(" plain text \n"), "plain text");
        let long = "é".repeat(EXCERPT_CHARS + 10);
        assert_eq!(error_excerpt(&long).chars().count(), EXCERPT_CHARS + 3);
    }

    #[test]
    fn missing_models_are_recognised_in_each_servers_wording() {
        assert!(says_model_missing(
            404,
            r#"{"error":"model \"x\" not found, try pulling it first"}"#,
            "x"
        ));
        assert!(says_model_missing(
            404,
            "The model `x` does not exist.",
            "x"
        ));
        assert!(says_model_missing(
            400,
            r#"{"error":{"code":"model_not_found"}}"#,
            "x"
        ));
        assert!(says_model_missing(404, "unknown: llama-9", "llama-9"));
        assert!(!says_model_missing(404, "Not Found", "x"));
        assert!(!says_model_missing(500, "model not found", "x"));
        assert!(!says_model_missing(400, "max_tokens too large", "x"));
    }
}
