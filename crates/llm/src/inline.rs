//! The seed's inline tool form: `[TOOL:name:argument]` in the text, `[TOOL RESULT name]: ...` back.

use std::collections::BTreeMap;

use super::types::{ChatMessage, Role, ToolCall, ToolCallMode, ToolSpec};

/// Opens an inline tool call, matched without regard to ASCII case.
const CALL_OPEN: &str = "[tool:";
/// Opens an inline tool result message.
const RESULT_OPEN: &str = "[TOOL RESULT ";
/// The argument key of an inline call to a tool none of the specs names.
const UNKNOWN_TOOL_ARGUMENT: &str = "argument";

/// Parses every well-formed `[TOOL:name:argument]` in `text`, in order.
///
/// The argument runs to the first `]` on the same line, so it may hold `:` and spaces; it is
/// trimmed and must not be empty. A name that matches a spec (ignoring ASCII case) takes the
/// spec's spelling and puts the argument under its `primary_argument`; an unknown name is kept
/// with the argument under `argument`, for the engine to record as a failed call. Malformed
/// forms such as `[TOOL:calculator]` or `[TOOL::x]` are skipped.
pub fn parse_inline_tool_calls(text: &str, tools: &[ToolSpec]) -> Vec<ToolCall> {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut calls = Vec::new();
    let mut resume_at = 0;
    for (start, _) in lower.match_indices(CALL_OPEN) {
        if start < resume_at {
            continue;
        }
        let body_start = start + CALL_OPEN.len();
        if let Some((name, argument, consumed)) = parse_call_body(&text[body_start..]) {
            calls.push(make_call(calls.len(), name, argument, tools));
            resume_at = body_start + consumed;
        }
    }
    calls
}

/// Reads `name:argument]` and returns the trimmed name, the trimmed argument and the bytes used.
fn parse_call_body(body: &str) -> Option<(&str, &str, usize)> {
    let name_end = body.find([':', ']', '\n'])?;
    if !body[name_end..].starts_with(':') {
        return None;
    }
    let name = body[..name_end].trim();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return None;
    }
    let argument_start = name_end + 1;
    let argument_len = body[argument_start..].find([']', '\n'])?;
    let argument_end = argument_start + argument_len;
    if !body[argument_end..].starts_with(']') {
        return None;
    }
    let argument = body[argument_start..argument_end].trim();
    if argument.is_empty() {
        return None;
    }
    Some((name, argument, argument_end + 1))
}

fn make_call(index: usize, name: &str, argument: &str, tools: &[ToolSpec]) -> ToolCall {
    let (name, key) = resolve_tool(name, tools);
    ToolCall {
        id: format!("inline_{index}"),
        name,
        arguments: BTreeMap::from([(key, argument.to_owned())]),
    }
}

/// The tool's canonical name and the key a lone argument goes under: the matching spec's
/// (ignoring ASCII case), or the name as given and `argument` for an unknown tool.
pub(super) fn resolve_tool(name: &str, tools: &[ToolSpec]) -> (String, String) {
    match tools
        .iter()
        .find(|spec| spec.name.eq_ignore_ascii_case(name))
    {
        Some(spec) => (spec.name.clone(), spec.primary_argument.clone()),
        None => (name.to_owned(), UNKNOWN_TOOL_ARGUMENT.to_owned()),
    }
}

/// Writes a call in the inline form, `[TOOL:name:argument]`.
pub(super) fn format_inline_tool_call(name: &str, argument: &str) -> String {
    format!("[TOOL:{name}:{argument}]")
}

/// The message that hands a tool's result back to the model.
///
/// Native mode: a [`Role::Tool`] message answering `call.id`. Inline mode: a user message
/// `[TOOL RESULT name]: result`, as the seed does.
pub fn tool_result_message(call: &ToolCall, result: &str, mode: ToolCallMode) -> ChatMessage {
    match mode {
        ToolCallMode::Native => ChatMessage {
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            ..ChatMessage::new(Role::Tool, result)
        },
        ToolCallMode::Inline => ChatMessage::user(format!("{RESULT_OPEN}{}]: {result}", call.name)),
    }
}

/// Reads a tool result back from a message made by [`tool_result_message`]: `(tool name, result)`.
pub(super) fn read_tool_result(message: &ChatMessage) -> Option<(&str, &str)> {
    match message.role {
        Role::Tool => Some((message.name.as_deref().unwrap_or("tool"), &message.content)),
        Role::User => {
            let rest = message.content.strip_prefix(RESULT_OPEN)?;
            let (name, result) = rest.split_once("]:")?;
            Some((name, result.trim_start()))
        }
        Role::System | Role::Assistant => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ToolSpec> {
        vec![
            ToolSpec::single_string("calculator", "maths", "expression", "an expression"),
            ToolSpec::single_string("file_reader", "reads files", "filename", "a file name"),
            ToolSpec::single_string("database_query", "queries", "query", "a query"),
        ]
    }

    fn argument<'a>(call: &'a ToolCall, key: &str) -> &'a str {
        call.arguments
            .get(key)
            .map(String::as_str)
            .unwrap_or("<missing>")
    }

    #[test]
    fn a_single_call_fills_the_primary_argument() {
        let calls = parse_inline_tool_calls("Drill time: [TOOL:calculator:2 * (3+4)]", &specs());
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "calculator");
        assert_eq!(calls[0].id, "inline_0");
        assert_eq!(argument(&calls[0], "expression"), "2 * (3+4)");
    }

    #[test]
    fn several_calls_are_parsed_in_order() {
        let text = "[TOOL:file_reader:bank_layout.md] then [TOOL:database_query:guard schedule] \
                    and [tool:Calculator:45 * 3 + 20]";
        let calls = parse_inline_tool_calls(text, &specs());
        let names: Vec<_> = calls.iter().map(|call| call.name.as_str()).collect();
        assert_eq!(names, ["file_reader", "database_query", "calculator"]);
        assert_eq!(argument(&calls[1], "query"), "guard schedule");
        assert_eq!(argument(&calls[2], "expression"), "45 * 3 + 20");
        assert_eq!(calls[2].id, "inline_2");
    }

    #[test]
    fn an_argument_may_hold_colons_and_spaces() {
        let text = "[TOOL:database_query: shifts where start = '08:30' ]";
        let calls = parse_inline_tool_calls(text, &specs());
        assert_eq!(argument(&calls[0], "query"), "shifts where start = '08:30'");
    }

    #[test]
    fn malformed_calls_are_ignored() {
        for text in [
            "[TOOL:calculator]",
            "[TOOL::x]",
            "[TOOL:calculator:]",
            "[TOOL:calculator:1+1",
            "[TOOL:calc ulator:1]",
            "[TOOL:calculator:1\n+1]",
            "no tools here",
        ] {
            assert!(
                parse_inline_tool_calls(text, &specs()).is_empty(),
                "parsed a call from {text:?}"
            );
        }
    }

    #[test]
    fn a_malformed_call_does_not_hide_a_good_one_after_it() {
        let calls = parse_inline_tool_calls("[TOOL:calculator] [TOOL:calculator:1+1]", &specs());
        assert_eq!(calls.len(), 1);
        assert_eq!(argument(&calls[0], "expression"), "1+1");
        assert_eq!(calls[0].id, "inline_0");
    }

    #[test]
    fn an_unknown_tool_is_kept_for_the_engine_to_reject() {
        let calls = parse_inline_tool_calls("[TOOL:lockpick:front door]", &specs());
        assert_eq!(calls[0].name, "lockpick");
        assert_eq!(argument(&calls[0], "argument"), "front door");
    }

    #[test]
    fn a_native_result_answers_the_call_by_id() {
        let call = &parse_inline_tool_calls("[TOOL:calculator:1+1]", &specs())[0];
        let message = tool_result_message(call, "2", ToolCallMode::Native);
        assert_eq!(message.role, Role::Tool);
        assert_eq!(message.tool_call_id.as_deref(), Some("inline_0"));
        assert_eq!(message.content, "2");
        assert_eq!(read_tool_result(&message), Some(("calculator", "2")));
    }

    #[test]
    fn an_inline_result_is_a_user_message_in_the_seed_form() {
        let call = &parse_inline_tool_calls("[TOOL:calculator:1+1]", &specs())[0];
        let message = tool_result_message(call, "2", ToolCallMode::Inline);
        assert_eq!(message.role, Role::User);
        assert_eq!(message.content, "[TOOL RESULT calculator]: 2");
        assert_eq!(read_tool_result(&message), Some(("calculator", "2")));
    }

    #[test]
    fn an_ordinary_user_message_is_not_a_tool_result() {
        assert_eq!(read_tool_result(&ChatMessage::user("[planner]: go")), None);
    }
}
