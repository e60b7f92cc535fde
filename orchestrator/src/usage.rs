//! Token accounting as the user reads it: a session's LLM usage per agent
//! and in total, summed from the turns a run spoke ([`SessionTokens::from_turns`],
//! for the run summary) or read from Audit's `GetSessionUsage`
//! ([`SessionTokens::from_audit`], for `sessions show`), and printed the
//! same way by both ([`SessionTokens::lines`]).

use std::collections::BTreeMap;

use heist_proto::v1 as pb;

use crate::{engine::TurnRecord, llm::TokenUsage};

/// Token usage summed over some turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Input tokens of the turns whose usage is known.
    pub input: u64,
    /// Output tokens of the turns whose usage is known.
    pub output: u64,
    /// Turns that carry a count.
    pub turns_with_usage: u64,
    /// Turns that carry none.
    pub turns_without_usage: u64,
    /// Turns with usage whose counts are estimated.
    pub estimated_turns: u64,
}

impl Tally {
    /// Adds one turn's usage.
    fn add(&mut self, usage: &TokenUsage) {
        if !usage.is_known() {
            self.turns_without_usage += 1;
            return;
        }
        self.input = self.input.saturating_add(usage.input.unwrap_or(0));
        self.output = self.output.saturating_add(usage.output.unwrap_or(0));
        self.turns_with_usage += 1;
        if usage.estimated {
            self.estimated_turns += 1;
        }
    }

    /// Audit's sums (negative numbers, which Audit never sends, read as 0).
    fn from_audit(usage: Option<&pb::TokenUsage>) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        usage.map_or_else(Tally::default, |usage| Tally {
            input: count(usage.input_tokens),
            output: count(usage.output_tokens),
            turns_with_usage: count(usage.turns_with_usage),
            turns_without_usage: count(usage.turns_without_usage),
            estimated_turns: count(usage.estimated_turns),
        })
    }

    /// `1200 in, 340 out (3 turns, 1 without usage, 1 estimated)`, or
    /// `unknown (...)` when no turn reported usage.
    pub fn text(&self) -> String {
        let turns = |n: u64| {
            if n == 1 {
                "1 turn".to_owned()
            } else {
                format!("{n} turns")
            }
        };
        if self.turns_with_usage == 0 {
            return format!(
                "unknown ({} without usage reported)",
                turns(self.turns_without_usage)
            );
        }
        let mut notes = vec![turns(self.turns_with_usage)];
        if self.turns_without_usage > 0 {
            notes.push(format!("{} without usage", self.turns_without_usage));
        }
        if self.estimated_turns > 0 {
            notes.push(format!("{} estimated", self.estimated_turns));
        }
        format!(
            "{} in, {} out ({})",
            self.input,
            self.output,
            notes.join(", ")
        )
    }
}

/// A session's token usage, per agent (by name) and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTokens {
    /// Each agent that spoke.
    pub agents: BTreeMap<String, Tally>,
    /// The whole session.
    pub total: Tally,
}

impl SessionTokens {
    /// Sums the usage of `turns`, as the run that spoke them saw it.
    pub fn from_turns(turns: &[TurnRecord]) -> Self {
        let mut tokens = SessionTokens::default();
        for turn in turns {
            tokens
                .agents
                .entry(turn.agent.clone())
                .or_default()
                .add(&turn.usage);
            tokens.total.add(&turn.usage);
        }
        tokens
    }

    /// Audit's answer to `GetSessionUsage`.
    pub fn from_audit(usage: &pb::SessionUsage) -> Self {
        SessionTokens {
            agents: usage
                .agents
                .iter()
                .map(|agent| {
                    (
                        agent.agent_name.clone(),
                        Tally::from_audit(agent.usage.as_ref()),
                    )
                })
                .collect(),
            total: Tally::from_audit(usage.total.as_ref()),
        }
    }

    /// `Tokens: <total>`, then one line per agent (indented by two spaces).
    pub fn lines(&self) -> Vec<String> {
        let width = self.agents.keys().map(String::len).max().unwrap_or(0);
        let mut lines = vec![format!("Tokens: {}", self.total.text())];
        for (agent, tally) in &self.agents {
            lines.push(format!("  {agent:<width$}  {}", tally.text()));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(agent: &str, input: Option<u64>, output: Option<u64>) -> TurnRecord {
        TurnRecord {
            turn: 1,
            agent: agent.into(),
            role: "Role".into(),
            message: "m".into(),
            is_error: false,
            tool_calls: Vec::new(),
            usage: TokenUsage {
                input,
                output,
                estimated: false,
            },
        }
    }

    #[test]
    fn turns_are_summed_per_agent_and_in_total() {
        let tokens = SessionTokens::from_turns(&[
            turn("planner", Some(100), Some(10)),
            turn("hacker", Some(50), Some(5)),
            turn("planner", Some(1), Some(2)),
            turn("hacker", None, None),
        ]);
        assert_eq!(
            tokens.agents["planner"],
            Tally {
                input: 101,
                output: 12,
                turns_with_usage: 2,
                ..Tally::default()
            }
        );
        assert_eq!(tokens.agents["hacker"].turns_without_usage, 1);
        assert_eq!((tokens.total.input, tokens.total.output), (151, 17));
        assert_eq!(
            tokens.lines(),
            [
                "Tokens: 151 in, 17 out (3 turns, 1 without usage)",
                "  hacker   50 in, 5 out (1 turn, 1 without usage)",
                "  planner  101 in, 12 out (2 turns)",
            ]
        );
    }

    #[test]
    fn a_session_without_reported_usage_reads_unknown_not_zero() {
        let tokens = SessionTokens::from_turns(&[turn("mole", None, None)]);
        assert_eq!(
            tokens.lines(),
            [
                "Tokens: unknown (1 turn without usage reported)",
                "  mole  unknown (1 turn without usage reported)",
            ]
        );
    }

    #[test]
    fn audits_answer_reads_as_the_same_tallies() {
        let usage = |input, output| pb::TokenUsage {
            input_tokens: input,
            output_tokens: output,
            turns_with_usage: 1,
            turns_without_usage: 0,
            estimated_turns: 1,
        };
        let answer = pb::SessionUsage {
            session_id: "s1".into(),
            agents: vec![pb::AgentUsage {
                agent_name: "planner".into(),
                usage: Some(usage(42, 7)),
            }],
            total: Some(usage(42, 7)),
        };
        let tokens = SessionTokens::from_audit(&answer);
        assert_eq!(
            tokens.lines(),
            [
                "Tokens: 42 in, 7 out (1 turn, 1 estimated)",
                "  planner  42 in, 7 out (1 turn, 1 estimated)",
            ]
        );
    }
}
