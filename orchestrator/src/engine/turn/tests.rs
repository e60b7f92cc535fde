//! The pure parts of a turn: the agent prepared once, the context the LLM
//! sees, and Memory's answer as text.

use heist_proto::v1::MemoryEntry;

use super::*;
use crate::{config::Config, llm::Role};

fn hacker() -> AgentConfig {
    Config::default_config()
        .agent("hacker")
        .expect("the built-in config has a hacker")
        .clone()
}

fn offered() -> BTreeMap<String, ToolSpec> {
    let spec = ToolSpec::single_string("file_reader", "reads a file", "path", "the file");
    BTreeMap::from([(spec.name.clone(), spec)])
}

fn turn(turn: i64, agent: &str, message: &str) -> TurnRecord {
    TurnRecord {
        turn,
        agent: agent.to_owned(),
        role: "Role".to_owned(),
        message: message.to_owned(),
        is_error: false,
        tool_calls: Vec::new(),
        usage: Default::default(),
    }
}

fn texts(messages: &[ChatMessage]) -> Vec<(Role, &str)> {
    messages
        .iter()
        .map(|message| (message.role, message.content.as_str()))
        .collect()
}

#[test]
fn an_inline_agent_is_told_how_to_call_the_tools_a_service_offers() {
    let prepared = PreparedAgent::new(&hacker(), &offered(), ToolCallMode::Inline);
    assert_eq!(prepared.tools.len(), 1);
    let instructions = prepared
        .tool_instructions
        .expect("inline tool instructions");
    assert!(instructions.starts_with("You can use tools. To call one, write [TOOL:name:argument]"));
    assert!(instructions.ends_with("\n- file_reader (path): reads a file"));
}

#[test]
fn a_native_agent_or_one_without_offered_tools_gets_no_instructions() {
    let native = PreparedAgent::new(&hacker(), &offered(), ToolCallMode::Native);
    assert_eq!(native.tools.len(), 1);
    assert!(native.tool_instructions.is_none());
    let unoffered = PreparedAgent::new(&hacker(), &BTreeMap::new(), ToolCallMode::Inline);
    assert!(unoffered.tools.is_empty());
    assert!(unoffered.tool_instructions.is_none());
}

#[test]
fn the_context_is_prompt_tools_memory_framing_then_the_last_messages() {
    let agent = hacker();
    let prepared = PreparedAgent::new(&agent, &offered(), ToolCallMode::Inline);
    let history = [turn(1, "planner", "first"), turn(2, "mole", "second")];
    let messages = context(&prepared, &history, Some("notes".to_owned()), 10, true);
    let instructions = prepared.tool_instructions.as_deref().unwrap_or_default();
    let framing = format!("[user]: {FRAMING}");
    assert_eq!(
        texts(&messages),
        vec![
            (Role::System, agent.system_prompt.as_str()),
            (Role::System, instructions),
            (Role::System, "notes"),
            (Role::User, framing.as_str()),
            (Role::User, "[planner]: first"),
            (Role::User, "[mole]: second"),
        ]
    );
}

#[test]
fn the_context_keeps_only_the_last_messages() {
    let agent = hacker();
    let prepared = PreparedAgent::new(&agent, &BTreeMap::new(), ToolCallMode::Inline);
    let history = [
        turn(1, "planner", "one"),
        turn(2, "mole", "two"),
        turn(3, "safecracker", "three"),
    ];
    let messages = context(&prepared, &history, None, 2, false);
    assert_eq!(
        texts(&messages),
        vec![
            (Role::System, agent.system_prompt.as_str()),
            (Role::User, "[mole]: two"),
            (Role::User, "[safecracker]: three"),
        ]
    );
    let none = context(&prepared, &history, None, 0, false);
    assert_eq!(none.len(), 1);
}

#[test]
fn the_first_turn_sees_the_prompt_and_the_framing_only() {
    let agent = hacker();
    let prepared = PreparedAgent::new(&agent, &BTreeMap::new(), ToolCallMode::Native);
    let messages = context(&prepared, &[], None, 5, true);
    let framing = format!("[user]: {FRAMING}");
    assert_eq!(
        texts(&messages),
        vec![
            (Role::System, agent.system_prompt.as_str()),
            (Role::User, framing.as_str()),
        ]
    );
}

#[test]
fn memory_that_holds_nothing_adds_no_message() {
    assert_eq!(memory_text(GetCompressedMemoryResponse::default()), None);
    // Memory's count is what says so, whatever else comes with it.
    let stale = GetCompressedMemoryResponse {
        summary: "old".to_owned(),
        ..Default::default()
    };
    assert_eq!(memory_text(stale), None);
}

#[test]
fn memory_is_its_summary_then_its_recent_turns() {
    let answer = GetCompressedMemoryResponse {
        recent: vec![
            MemoryEntry {
                turn_id: 4,
                message: "cut the wire".to_owned(),
                timestamp: String::new(),
            },
            MemoryEntry {
                turn_id: 8,
                message: "open the vault".to_owned(),
                timestamp: String::new(),
            },
        ],
        summary: "planned the entry".to_owned(),
        memories_count: 5,
    };
    assert_eq!(
        memory_text(answer).as_deref(),
        Some(
            "Your notes from earlier turns of this session:\nplanned the entry\n\
             Turn 4: cut the wire\nTurn 8: open the vault\n"
        )
    );
}

#[test]
fn memory_without_a_summary_lists_the_recent_turns_only() {
    let answer = GetCompressedMemoryResponse {
        recent: vec![MemoryEntry {
            turn_id: 1,
            message: "hello".to_owned(),
            timestamp: String::new(),
        }],
        summary: String::new(),
        memories_count: 1,
    };
    assert_eq!(
        memory_text(answer).as_deref(),
        Some("Your notes from earlier turns of this session:\nTurn 1: hello\n")
    );
}

#[test]
fn turn_and_tool_errors_keep_their_texts() {
    assert_eq!(
        TurnError::NotConfigured("ghost".to_owned()).to_string(),
        "agent ghost is not configured"
    );
    assert_eq!(
        ToolError::NotConfigured("lockpick".to_owned()).to_string(),
        "tool \"lockpick\" is not configured (no tool_services entry)"
    );
    let no_token = ToolError::NoToken {
        agent: "hacker".to_owned(),
        status: tonic::Status::unavailable("oauth down"),
    };
    assert_eq!(no_token.to_string(), "no token for hacker: oauth down");
    let refused = ToolError::Call(tonic::Status::permission_denied("not yours"));
    assert_eq!(refused.to_string(), "PermissionDenied: not yours");
}
