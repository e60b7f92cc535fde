//! The offline backend: a deterministic crew that plays the heist without any LLM.
//!
//! Every choice comes from an FNV hash of the seed, the persona, the turn, the round and the
//! messages, so the same inputs always give the same answer and different seeds give different
//! conversations. Round 0 of an agent with tools asks for one tool; a later round reports the
//! tool's result; an agent without tools just answers. A saboteur adds one misleading sentence.

use std::collections::BTreeMap;
use std::future::ready;

use super::backend::{BoxFuture, LlmBackend, OFFLINE_PROVIDER};
use super::error::LlmError;
use super::fnv::Fnv64;
use super::inline::{format_inline_tool_call, parse_inline_tool_calls, read_tool_result};
use super::offline_lines::{
    DETAILS, FAILURE_LINES, Kind, MISDIRECTIONS, OPENERS, REPLIES, result_lines, tool_arguments,
};
use super::text::cut;
use super::types::{
    ChatMessage, Completion, CompletionRequest, Role, ToolCall, ToolCallMode, ToolSpec,
};

/// The model name offline completions report.
const MODEL: &str = "offline";
/// The longest tool-result excerpt quoted back.
const RESULT_CHARS: usize = 100;
/// How many words of a message are quoted when it names no known detail.
const QUOTED_WORDS: usize = 5;

/// A backend that answers every turn itself, deterministically, from a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineBackend {
    seed: u64,
}

impl OfflineBackend {
    /// A backend whose conversation is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Every (tool, argument) the offline crew may call, whatever the seed
    /// and persona: the vocabulary to check against the tools' own.
    pub fn vocabulary() -> Vec<(&'static str, &'static str)> {
        let kinds = [
            Kind::Planner,
            Kind::Hacker,
            Kind::Safecracker,
            Kind::Mole,
            Kind::Crew,
        ];
        let mut calls: Vec<(&'static str, &'static str)> = kinds
            .into_iter()
            .flat_map(|kind| {
                ["calculator", "file_reader", "database_query"]
                    .into_iter()
                    .flat_map(move |tool| {
                        tool_arguments(kind, tool)
                            .iter()
                            .map(move |argument| (tool, *argument))
                    })
            })
            .collect();
        calls.sort_unstable();
        calls.dedup();
        calls
    }

    /// Builds the answer: its sentences and, on round 0 for an agent with tools, one tool call.
    fn compose<'a>(&self, request: &CompletionRequest<'a>) -> Reply<'a> {
        let persona = request.persona;
        let kind = Kind::of(&persona.name, &persona.role);
        let dice = Dice::new(self.seed, request);
        let mut reply = Reply::default();
        let result = request
            .messages
            .last()
            .and_then(read_tool_result)
            .filter(|_| request.round > 0);
        if let Some((tool, result)) = result {
            let argument = called_argument(request, tool).unwrap_or_else(|| tool.to_owned());
            reply.say(result_sentence(&dice, kind, tool, &argument, result));
            reply.say(dice.pick("line", kind.lines()).to_owned());
        } else {
            reply.say(opener(&dice, request));
            match chosen_tool(request.tools, kind).filter(|_| request.round == 0) {
                Some(tool) => {
                    let argument = dice.pick("argument", tool_arguments(kind, &tool.name));
                    let intro = dice.pick("intro", kind.tool_intros(&tool.name));
                    reply.say(fill(
                        intro,
                        &[("{argument}", argument), ("{tool}", &tool.name)],
                    ));
                    reply.call = Some((tool, argument));
                }
                None => reply.say(dice.pick("line", kind.lines()).to_owned()),
            }
        }
        // The misdirection goes into the message the crew will hear, not the tool request.
        if persona.is_saboteur && reply.call.is_none() {
            reply.say(dice.pick("misdirection", MISDIRECTIONS).to_owned());
        }
        reply
    }

    fn answer(&self, request: &CompletionRequest<'_>) -> Completion {
        let reply = self.compose(request);
        let mut content = reply.sentences.join(" ");
        let tool_calls = match (reply.call, request.mode) {
            (None, _) => Vec::new(),
            (Some((tool, argument)), ToolCallMode::Inline) => {
                content.push(' ');
                content.push_str(&format_inline_tool_call(&tool.name, argument));
                parse_inline_tool_calls(&content, request.tools)
            }
            (Some((tool, argument)), ToolCallMode::Native) => vec![ToolCall {
                id: format!("call_{}_{}", request.turn_id, request.round),
                name: tool.name.clone(),
                arguments: BTreeMap::from([(tool.primary_argument.clone(), argument.to_owned())]),
            }],
        };
        Completion {
            content,
            tool_calls,
            model: MODEL.to_owned(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }
}

impl LlmBackend for OfflineBackend {
    fn complete<'a>(
        &'a self,
        request: CompletionRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(ready(Ok(self.answer(&request))))
    }

    fn describe(&self) -> String {
        "offline (deterministic, no LLM)".to_owned()
    }

    fn is_offline(&self) -> bool {
        true
    }

    fn model(&self) -> &str {
        MODEL
    }

    fn provider_name(&self) -> &'static str {
        OFFLINE_PROVIDER
    }
}

/// An answer before it is rendered for a tool-call mode.
#[derive(Debug, Default)]
struct Reply<'a> {
    sentences: Vec<String>,
    /// The tool to call and its argument, if any.
    call: Option<(&'a ToolSpec, &'static str)>,
}

impl Reply<'_> {
    fn say(&mut self, sentence: String) {
        self.sentences.push(sentence);
    }
}

/// Deterministic choices for one request.
struct Dice(u64);

impl Dice {
    fn new(seed: u64, request: &CompletionRequest<'_>) -> Self {
        let persona = request.persona;
        let mut hash = Fnv64::new()
            .u64(seed)
            .str(&persona.name)
            .str(&persona.role)
            .u64(request.turn_id as u64)
            .u64(u64::from(request.round));
        for message in request.messages {
            hash = hash
                .str(message.role.as_str())
                .str(message.name.as_deref().unwrap_or(""))
                .str(&message.content);
        }
        Self(hash.finish())
    }

    /// One entry of `options`, chosen by the hash and `purpose` (so two picks differ).
    fn pick<'a>(&self, purpose: &str, options: &[&'a str]) -> &'a str {
        let roll = Fnv64::new().u64(self.0).str(purpose).finish();
        let index = usize::try_from(roll % options.len().max(1) as u64).unwrap_or(0);
        options.get(index).copied().unwrap_or("")
    }
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(key, value)
        })
}

/// A reply to the last other speaker, or a general opener if nobody else has spoken.
fn opener(dice: &Dice, request: &CompletionRequest<'_>) -> String {
    match last_other_speaker(request) {
        Some((speaker, body)) => {
            let detail = detail_of(body);
            let reply = fill(
                dice.pick("reply", REPLIES),
                &[("{speaker}", speaker), ("{detail}", &detail)],
            );
            capitalised(&reply)
        }
        None => dice.pick("opener", OPENERS).to_owned(),
    }
}

/// The text with its first letter in upper case (agent names are often lowercase).
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The latest message by another agent: its author (the message's name, or the seed's
/// `[agent]: text` prefix) and its text. The person running the session (`user`) is no agent.
fn last_other_speaker<'a>(request: &CompletionRequest<'a>) -> Option<(&'a str, &'a str)> {
    let own_name = request.persona.name.as_str();
    request
        .messages
        .iter()
        .rev()
        .filter(|message| message.role == Role::User && read_tool_result(message).is_none())
        .filter_map(speaker_and_body)
        .find(|(speaker, _)| {
            !speaker.eq_ignore_ascii_case(own_name) && !speaker.eq_ignore_ascii_case("user")
        })
}

fn speaker_and_body(message: &ChatMessage) -> Option<(&str, &str)> {
    let text = message.content.as_str();
    let prefixed = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("]:"))
        .map(|(speaker, body)| (speaker.trim(), body.trim()));
    match (message.name.as_deref(), prefixed) {
        (Some(name), Some((_, body))) => Some((name, body)),
        (Some(name), None) => Some((name, text.trim())),
        (None, prefixed) => prefixed.filter(|(speaker, _)| !speaker.is_empty()),
    }
}

/// A known heist detail the text names, or a short quote of its first words.
fn detail_of(text: &str) -> String {
    let lower = text.to_lowercase();
    if let Some((_, phrase)) = DETAILS.iter().find(|(term, _)| lower.contains(term)) {
        return (*phrase).to_owned();
    }
    let words: Vec<_> = text.split_whitespace().take(QUOTED_WORDS).collect();
    let quote = words.join(" ");
    let quote = quote.trim_matches(|c: char| !c.is_alphanumeric());
    if quote.is_empty() {
        "the plan".to_owned()
    } else {
        format!("\"{quote}\"")
    }
}

/// The tool to call: the kind's favourite if the agent has it, else its first tool.
fn chosen_tool(tools: &[ToolSpec], kind: Kind) -> Option<&ToolSpec> {
    let preferred = kind.preferred_tool();
    tools
        .iter()
        .find(|spec| spec.name == preferred)
        .or_else(|| tools.first())
}

/// The argument this agent last passed to `tool`, read from its latest assistant message.
fn called_argument(request: &CompletionRequest<'_>, tool: &str) -> Option<String> {
    let message = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == Role::Assistant)?;
    let inline;
    let calls = if message.tool_calls.is_empty() {
        inline = parse_inline_tool_calls(&message.content, request.tools);
        &inline
    } else {
        &message.tool_calls
    };
    calls
        .iter()
        .find(|call| call.name.eq_ignore_ascii_case(tool))
        .and_then(|call| call.arguments.values().next().cloned())
}

fn result_sentence(dice: &Dice, kind: Kind, tool: &str, argument: &str, result: &str) -> String {
    let line = if looks_failed(result) {
        first_meaningful_line(result)
    } else {
        result_detail(tool, result)
    };
    let line = line.as_deref().unwrap_or("nothing useful");
    let templates = if looks_failed(result) {
        FAILURE_LINES
    } else {
        result_lines(kind, tool)
    };
    fill(
        dice.pick("result", templates),
        &[
            ("{tool}", tool),
            ("{argument}", argument),
            ("{result}", line),
        ],
    )
}

/// What is worth repeating from a tool's answer: a calculator's number, a
/// query's first row (its cells joined), or a document's first meaningful
/// line without markdown emphasis.
fn result_detail(tool: &str, text: &str) -> Option<String> {
    match tool {
        "calculator" => text
            .rsplit_once(" = ")
            .map(|(_, value)| value.trim().to_owned())
            .or_else(|| first_meaningful_line(text)),
        "database_query" => first_row(text).or_else(|| first_meaningful_line(text)),
        _ => first_meaningful_line(&text.replace(['*', '`'], "")),
    }
}

/// The first data row of a rendered table (`Title:` / header / `---+---` /
/// rows), its cells joined with commas.
fn first_row(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.ends_with(':'));
    let header = lines.next()?;
    if !header.contains('|') {
        return None;
    }
    let row = lines.find(|line| line.contains('|') && !line.starts_with('-'))?;
    let cells: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    Some(cut(&cells.join(", "), RESULT_CHARS))
}

/// The first line with a letter or digit (a heading only if nothing else has one), without
/// list or heading marks and closing punctuation, cut to [`RESULT_CHARS`].
fn first_meaningful_line(text: &str) -> Option<String> {
    let meaningful = |line: &&str| line.chars().any(char::is_alphanumeric);
    let lines = text.lines().map(str::trim);
    let line = lines
        .clone()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.trim_start_matches(['-', '*', '>', '`']).trim())
        .find(meaningful)
        .or_else(|| {
            lines
                .map(|line| line.trim_start_matches('#').trim())
                .find(meaningful)
        })?;
    Some(cut(
        line.trim_end_matches(['.', ':', ';', ',']),
        RESULT_CHARS,
    ))
}

/// Whether a tool result reports a failure rather than an answer.
fn looks_failed(result: &str) -> bool {
    let lower = result.trim().to_lowercase();
    lower.starts_with("error")
        || lower.starts_with("failed")
        || [
            "tool failed",
            "error:",
            "unavailable",
            "permission denied",
            "timed out",
        ]
        .iter()
        .any(|marker| lower.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inline::tool_result_message;
    use crate::types::{AgentPersona, ToolSpec};

    fn persona(name: &str, role: &str, tools: &[&str], is_saboteur: bool) -> AgentPersona {
        AgentPersona {
            name: name.to_owned(),
            role: role.to_owned(),
            system_prompt: format!("You are the {role}."),
            tools: tools.iter().map(|tool| (*tool).to_owned()).collect(),
            is_saboteur,
        }
    }

    fn spec(name: &str) -> ToolSpec {
        let argument = match name {
            "calculator" => "expression",
            "file_reader" => "filename",
            "database_query" => "query",
            _ => "argument",
        };
        ToolSpec::single_string(name, "a tool", argument, "the argument")
    }

    fn crew() -> Vec<AgentPersona> {
        vec![
            persona("planner", "Strategic Planner", &["calculator"], false),
            persona("hacker", "Security Expert", &["file_reader"], false),
            persona("safecracker", "Vault Specialist", &["calculator"], false),
            persona("mole", "Inside Contact", &["database_query"], true),
            persona("driver", "Getaway Driver", &[], false),
        ]
    }

    fn specs_for(persona: &AgentPersona) -> Vec<ToolSpec> {
        persona.tools.iter().map(|tool| spec(tool)).collect()
    }

    fn request<'a>(
        persona: &'a AgentPersona,
        messages: &'a [ChatMessage],
        tools: &'a [ToolSpec],
        mode: ToolCallMode,
        round: u32,
    ) -> CompletionRequest<'a> {
        CompletionRequest {
            persona,
            messages,
            tools,
            mode,
            turn_id: 3,
            round,
        }
    }

    fn opening_messages() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("Plan the heist."),
            ChatMessage::user("[planner]: We hit the vault at 16:50, right before the time lock."),
        ]
    }

    /// Runs `turns` turns round-robin through the crew, each turn through its tool round.
    fn transcript(seed: u64, turns: usize, mode: ToolCallMode) -> Vec<Vec<String>> {
        let backend = OfflineBackend::new(seed);
        let crew = crew();
        let mut conversation: Vec<ChatMessage> = vec![ChatMessage::user("Plan the heist.")];
        let mut out = Vec::new();
        for turn in 0..turns {
            let persona = &crew[turn % crew.len()];
            let tools = specs_for(persona);
            let mut messages = conversation.clone();
            let mut round = 0;
            loop {
                let request = CompletionRequest {
                    persona,
                    messages: &messages,
                    tools: &tools,
                    mode,
                    turn_id: turn as i64,
                    round,
                };
                let reply = backend.compose(&request);
                assert!(
                    (1..=3).contains(&reply.sentences.len()),
                    "{:?}",
                    reply.sentences
                );
                let completion = backend.answer(&request);
                out.push(reply.sentences);
                if completion.tool_calls.is_empty() {
                    conversation.push(ChatMessage::user(format!(
                        "[{}]: {}",
                        persona.name, completion.content
                    )));
                    break;
                }
                messages.push(completion.assistant_message(mode));
                for call in &completion.tool_calls {
                    let result = format!("result of {}", call.name);
                    messages.push(tool_result_message(call, &result, mode));
                }
                round += 1;
            }
        }
        out
    }

    #[test]
    fn the_same_inputs_give_the_same_answer() {
        let crew = crew();
        let messages = opening_messages();
        let tools = specs_for(&crew[1]);
        let ask = |seed| {
            OfflineBackend::new(seed).answer(&request(
                &crew[1],
                &messages,
                &tools,
                ToolCallMode::Inline,
                0,
            ))
        };
        assert_eq!(ask(7), ask(7));
        assert_eq!(
            transcript(7, 20, ToolCallMode::Native),
            transcript(7, 20, ToolCallMode::Native)
        );
    }

    #[test]
    fn different_seeds_give_different_transcripts_over_twenty_turns() {
        assert_ne!(
            transcript(1, 20, ToolCallMode::Inline),
            transcript(2, 20, ToolCallMode::Inline)
        );
    }

    #[test]
    fn a_tool_agent_calls_a_tool_inline_on_round_zero() {
        let crew = crew();
        let messages = opening_messages();
        for persona in crew.iter().filter(|persona| !persona.tools.is_empty()) {
            let tools = specs_for(persona);
            let completion = OfflineBackend::new(5).answer(&request(
                persona,
                &messages,
                &tools,
                ToolCallMode::Inline,
                0,
            ));
            assert_eq!(completion.tool_calls.len(), 1, "{}", completion.content);
            let call = &completion.tool_calls[0];
            assert_eq!(call.name, persona.tools[0]);
            let argument = &call.arguments[&tools[0].primary_argument];
            assert!(
                completion
                    .content
                    .contains(&format!("[TOOL:{}:{argument}]", call.name))
            );
        }
    }

    #[test]
    fn a_tool_agent_calls_a_tool_natively_on_round_zero() {
        let crew = crew();
        let messages = opening_messages();
        let tools = specs_for(&crew[3]);
        let completion = OfflineBackend::new(5).answer(&request(
            &crew[3],
            &messages,
            &tools,
            ToolCallMode::Native,
            0,
        ));
        assert!(!completion.content.contains("[TOOL:"));
        let call = &completion.tool_calls[0];
        assert_eq!(call.name, "database_query");
        assert_eq!(call.id, "call_3_0");
        let query = call.arguments["query"].as_str();
        assert!(tool_arguments(Kind::Mole, "database_query").contains(&query));
    }

    #[test]
    fn arguments_come_from_the_personas_own_list() {
        let crew = crew();
        let messages = opening_messages();
        for (persona, kind) in [(&crew[1], Kind::Hacker), (&crew[2], Kind::Safecracker)] {
            let tools = specs_for(persona);
            for seed in 0..10 {
                let completion = OfflineBackend::new(seed).answer(&request(
                    persona,
                    &messages,
                    &tools,
                    ToolCallMode::Native,
                    0,
                ));
                let call = &completion.tool_calls[0];
                let argument = call.arguments.values().next().map(String::as_str);
                let allowed = tool_arguments(kind, &call.name);
                assert!(argument.is_some_and(|argument| allowed.contains(&argument)));
            }
        }
    }

    #[test]
    fn the_final_answer_uses_the_first_meaningful_line_of_the_result() {
        for mode in [ToolCallMode::Inline, ToolCallMode::Native] {
            let crew = crew();
            let tools = specs_for(&crew[1]);
            let backend = OfflineBackend::new(9);
            let mut messages = opening_messages();
            let first = backend.answer(&request(&crew[1], &messages, &tools, mode, 0));
            messages.push(first.assistant_message(mode));
            let result = "\n# Vault specs\n\nDoor: 40 cm hardened steel.";
            messages.push(tool_result_message(&first.tool_calls[0], result, mode));
            let last = backend.answer(&request(&crew[1], &messages, &tools, mode, 1));
            assert!(last.tool_calls.is_empty());
            assert!(
                last.content.contains("Door: 40 cm hardened steel"),
                "{}",
                last.content
            );
            let filename = &first.tool_calls[0].arguments["filename"];
            assert!(last.content.contains(filename.as_str()), "{}", last.content);
        }
    }

    #[test]
    fn a_failed_tool_is_reported_as_failed() {
        let crew = crew();
        let tools = specs_for(&crew[2]);
        let backend = OfflineBackend::new(4);
        let mode = ToolCallMode::Inline;
        let mut messages = opening_messages();
        let first = backend.answer(&request(&crew[2], &messages, &tools, mode, 0));
        messages.push(first.assistant_message(mode));
        let result = "Error: tool service unavailable";
        messages.push(tool_result_message(&first.tool_calls[0], result, mode));
        let last = backend.answer(&request(&crew[2], &messages, &tools, mode, 1));
        let content = last.content.to_lowercase();
        assert!(
            content.contains("failed") || content.contains("could not"),
            "{content}"
        );
        assert!(content.contains("tool service unavailable"), "{content}");
    }

    #[test]
    fn an_agent_without_tools_answers_without_a_tool_call() {
        let crew = crew();
        let messages = opening_messages();
        for mode in [ToolCallMode::Inline, ToolCallMode::Native] {
            let completion =
                OfflineBackend::new(1).answer(&request(&crew[4], &messages, &[], mode, 0));
            assert!(completion.tool_calls.is_empty());
            assert!(!completion.content.contains("[TOOL:"));
            assert!(!completion.content.is_empty());
        }
    }

    #[test]
    fn an_agent_whose_tools_are_unavailable_answers_without_a_tool_call() {
        let crew = crew();
        let messages = opening_messages();
        let completion = OfflineBackend::new(1).answer(&request(
            &crew[2],
            &messages,
            &[],
            ToolCallMode::Inline,
            0,
        ));
        assert!(completion.tool_calls.is_empty());
        assert!(!completion.content.contains("[TOOL:"));
    }

    #[test]
    fn the_sessions_framing_is_not_answered_as_a_crew_member() {
        let crew = crew();
        let messages = [ChatMessage::user(
            "[user]: This is a heist simulation. Only respond to heist-related prompts.",
        )];
        let request = request(&crew[1], &messages, &[], ToolCallMode::Inline, 0);
        assert_eq!(last_other_speaker(&request), None);
        let content = OfflineBackend::new(3).answer(&request).content;
        assert!(!content.contains("simulation"), "{content}");
    }

    #[test]
    fn the_reply_picks_up_the_last_speaker_and_a_detail() {
        let crew = crew();
        let messages = opening_messages();
        for seed in 0..8 {
            let completion = OfflineBackend::new(seed).answer(&request(
                &crew[4],
                &messages,
                &[],
                ToolCallMode::Inline,
                0,
            ));
            assert!(
                completion.content.contains("lanner"),
                "{}",
                completion.content
            );
            assert!(
                completion.content.contains("the time lock"),
                "{}",
                completion.content
            );
        }
    }

    #[test]
    fn an_agent_does_not_reply_to_itself() {
        let crew = crew();
        let messages = opening_messages();
        let request = request(&crew[0], &messages, &[], ToolCallMode::Inline, 0);
        assert_eq!(last_other_speaker(&request), None);
    }

    #[test]
    fn a_saboteur_slips_in_misdirection_and_others_do_not() {
        let crew = [
            persona("mole", "Inside Contact", &[], true),
            persona("driver", "Getaway Driver", &[], false),
        ];
        let messages = opening_messages();
        let misleads = |persona: &AgentPersona| {
            let completion = OfflineBackend::new(2).answer(&request(
                persona,
                &messages,
                &[],
                ToolCallMode::Inline,
                0,
            ));
            MISDIRECTIONS
                .iter()
                .any(|line| completion.content.contains(line))
        };
        assert!(misleads(&crew[0]));
        assert!(!misleads(&crew[1]));
        let mole = persona("mole", "Inside Contact", &["database_query"], true);
        let tools = specs_for(&mole);
        let tool_request = OfflineBackend::new(2).answer(&request(
            &mole,
            &messages,
            &tools,
            ToolCallMode::Inline,
            0,
        ));
        assert!(
            !MISDIRECTIONS
                .iter()
                .any(|line| tool_request.content.contains(line))
        );
    }

    #[test]
    fn no_answer_says_it_comes_from_a_machine() {
        for mode in [ToolCallMode::Inline, ToolCallMode::Native] {
            for sentence in transcript(11, 20, mode).concat() {
                let lower = sentence.to_lowercase();
                for word in ["llm", "offline", "language model", "as an ai", "simulat"] {
                    assert!(!lower.contains(word), "{sentence}");
                }
            }
        }
    }

    #[test]
    fn the_backend_describes_itself_as_offline() {
        let backend = OfflineBackend::new(0);
        assert_eq!(backend.describe(), "offline (deterministic, no LLM)");
        assert!(backend.is_offline());
    }

    #[test]
    fn results_are_reduced_to_what_is_worth_repeating() {
        assert_eq!(
            result_detail("calculator", "45 * 3 + 20 = 155").as_deref(),
            Some("155")
        );
        let table = "Cameras:\nid     | location\n-------+---------\nCAM-01 | Lobby\nCAM-02 | Vault\n(2 rows)";
        assert_eq!(
            result_detail("database_query", table).as_deref(),
            Some("CAM-01, Lobby")
        );
        assert_eq!(
            result_detail("file_reader", "# Vault\n**Site:** First National").as_deref(),
            Some("Site: First National")
        );
    }

    #[test]
    fn meaningful_lines_skip_marks_and_blank_lines() {
        assert_eq!(
            first_meaningful_line("\n---\n## Guard rotation:\n- 08:00 east.").as_deref(),
            Some("08:00 east")
        );
        assert_eq!(
            first_meaningful_line("# Guard rotation:\n\n").as_deref(),
            Some("Guard rotation")
        );
        assert_eq!(first_meaningful_line("```\n\n```"), None);
        let long = "x".repeat(RESULT_CHARS + 5);
        assert_eq!(
            first_meaningful_line(&long).map(|line| line.chars().count()),
            Some(RESULT_CHARS + 3)
        );
    }

    #[test]
    fn details_prefer_known_terms_then_quote_the_start() {
        assert_eq!(detail_of("watch out for cam-07 tonight"), "CAM-07");
        assert_eq!(detail_of("Two guards at the door"), "the guards");
        assert_eq!(
            detail_of("We need more people, honestly, for this"),
            "\"We need more people, honestly\""
        );
        assert_eq!(detail_of("..."), "the plan");
    }
}
