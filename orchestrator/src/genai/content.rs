//! Message content as the GenAI conventions' JSON schemas write it
//! (`gen-ai-input-messages.json`, `gen-ai-output-messages.json`): each
//! message a `role` and its `parts` (`text`, `tool_call`,
//! `tool_call_response`). Only made when content capture is on.

use serde_json::{Value, json};

use crate::llm::{ChatMessage, Completion, Role, ToolCall};

/// `gen_ai.input.messages`: the messages sent, in order, as a JSON string.
pub(super) fn input_messages(messages: &[ChatMessage]) -> String {
    Value::Array(messages.iter().map(input_message).collect()).to_string()
}

/// `gen_ai.output.messages`: the one answer (choice), as a JSON string.
pub(super) fn output_messages(completion: &Completion) -> String {
    let finish_reason = if completion.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_call"
    };
    json!([{
        "role": "assistant",
        "parts": parts(&completion.content, &completion.tool_calls),
        "finish_reason": finish_reason,
    }])
    .to_string()
}

/// `gen_ai.tool.call.arguments`: the arguments as a JSON object string.
pub(super) fn tool_arguments(call: &ToolCall) -> String {
    json!(call.arguments).to_string()
}

fn input_message(message: &ChatMessage) -> Value {
    let parts = match (message.role, &message.tool_call_id) {
        (Role::Tool, Some(id)) => vec![json!({
            "type": "tool_call_response",
            "id": id,
            "result": message.content,
        })],
        _ => parts(&message.content, &message.tool_calls),
    };
    let mut value = json!({ "role": message.role.as_str(), "parts": parts });
    if let Some(name) = &message.name {
        value["name"] = json!(name);
    }
    value
}

/// A text part (unless empty), then a part per tool call.
fn parts(text: &str, calls: &[ToolCall]) -> Vec<Value> {
    let text = (!text.is_empty()).then(|| json!({ "type": "text", "content": text }));
    text.into_iter()
        .chain(calls.iter().map(|call| {
            json!({
                "type": "tool_call",
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            })
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn call() -> ToolCall {
        ToolCall {
            id: "call_2_0".to_owned(),
            name: "calculator".to_owned(),
            arguments: BTreeMap::from([("expression".to_owned(), "2*21".to_owned())]),
        }
    }

    #[test]
    fn input_messages_keep_their_order_roles_and_tool_parts() {
        let assistant = ChatMessage {
            tool_calls: vec![call()],
            ..ChatMessage::assistant("")
        };
        let result = ChatMessage {
            tool_call_id: Some("call_2_0".to_owned()),
            ..ChatMessage::new(Role::Tool, "42").with_name("calculator")
        };
        let messages = [ChatMessage::system("You plan."), assistant, result];
        let json: Value = serde_json::from_str(&input_messages(&messages)).unwrap();
        assert_eq!(
            json,
            json!([
                {"role": "system", "parts": [{"type": "text", "content": "You plan."}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_2_0",
                    "name": "calculator", "arguments": {"expression": "2*21"}}]},
                {"role": "tool", "name": "calculator", "parts": [
                    {"type": "tool_call_response", "id": "call_2_0", "result": "42"}]},
            ])
        );
    }

    #[test]
    fn an_answer_that_calls_a_tool_finishes_with_tool_call() {
        let mut completion = Completion {
            content: "Let me check.".to_owned(),
            tool_calls: vec![call()],
            model: "offline".to_owned(),
            prompt_tokens: None,
            completion_tokens: None,
        };
        let json: Value = serde_json::from_str(&output_messages(&completion)).unwrap();
        assert_eq!(json[0]["finish_reason"], "tool_call");
        assert_eq!(json[0]["parts"][0]["content"], "Let me check.");
        assert_eq!(json[0]["parts"][1]["name"], "calculator");
        completion.tool_calls.clear();
        let json: Value = serde_json::from_str(&output_messages(&completion)).unwrap();
        assert_eq!(json[0]["finish_reason"], "stop");
    }

    #[test]
    fn tool_arguments_are_a_json_object() {
        assert_eq!(tool_arguments(&call()), r#"{"expression":"2*21"}"#);
    }
}
