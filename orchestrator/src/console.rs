//! What the user sees: the banner, each turn as `[Turn N] Role (name):`,
//! and the summary (with the session's tokens). Colour only on a terminal.

use std::io::IsTerminal;

use crate::{
    engine::{SessionEnd, SessionOutcome, TurnRecord, TurnSink},
    usage::SessionTokens,
};

/// Prints turns and summaries to standard output.
#[derive(Debug, Clone)]
pub struct Console {
    quiet: bool,
    colour: bool,
    /// Prefix lines with the session ID (several sessions at once).
    tag_sessions: bool,
}

impl Console {
    /// A console; `quiet` prints only summaries; colour when stdout is a TTY
    /// and `NO_COLOR` is unset.
    pub fn new(quiet: bool, tag_sessions: bool) -> Self {
        Self {
            quiet,
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            tag_sessions,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Prints a line unless quiet.
    pub fn say(&self, text: &str) {
        if !self.quiet {
            crate::stdout::line(text);
        }
    }

    /// Prints a line even when quiet.
    pub fn always(&self, text: &str) {
        crate::stdout::line(text);
    }

    /// The end-of-session summary.
    pub fn summary(&self, outcome: &SessionOutcome) {
        let status = match outcome.status {
            SessionEnd::Completed => self.paint("32", SessionEnd::Completed.as_str()),
            other => self.paint("33", other.as_str()),
        };
        let mut lines = vec![
            format!("📊 Session {}: {status}", outcome.session_id),
            format!(
                "   Turns: {} ({} failed), tool calls: {} ({} failed), {:.1} s",
                outcome.turns.len(),
                outcome.failed_turns,
                outcome.tool_calls(),
                outcome.failed_tool_calls,
                outcome.elapsed_ms as f64 / 1000.0
            ),
        ];
        for line in SessionTokens::from_turns(&outcome.turns).lines() {
            lines.push(format!("   {line}"));
        }
        if outcome.memory_failures > 0 || outcome.audit_failures > 0 {
            lines.push(format!(
                "   Degraded: {} memory writes and {} audit writes failed",
                outcome.memory_failures, outcome.audit_failures
            ));
        }
        if outcome.audit_spooled_writes > 0 {
            lines.push(format!(
                "   Audit was unreachable: {} writes waited in the spool{}",
                outcome.audit_spooled_writes,
                if outcome.audit_spooled > 0 {
                    format!(
                        ", {} still there (the next run replays them)",
                        outcome.audit_spooled
                    )
                } else {
                    ", all replayed".to_owned()
                }
            ));
        }
        if !outcome.breaker_events.is_empty() {
            lines.push("   Circuit breakers:".to_owned());
            for event in &outcome.breaker_events {
                lines.push(format!("     {event}"));
            }
        }
        if let Some(seal) = &outcome.chain_seal {
            lines.push(format!("   Audit seal: {seal}"));
        }
        if outcome.memory_pending > 0 {
            lines.push(format!(
                "   Memory never came back: {} writes could not be replayed (Audit has them all)",
                outcome.memory_pending
            ));
        }
        lines.push(String::new());
        crate::stdout::write(&lines.join("\n"));
    }
}

impl TurnSink for Console {
    fn notice(&self, session_id: &str, text: &str) {
        if self.tag_sessions {
            self.always(&format!("[{session_id}] {text}"));
        } else {
            self.always(text);
        }
    }

    fn turn(&self, session_id: &str, record: &TurnRecord) {
        if self.quiet {
            return;
        }
        let tag = if self.tag_sessions {
            format!("[{session_id}] ")
        } else {
            String::new()
        };
        let header = self.paint(
            "1;36",
            &format!("[Turn {}] {} ({}):", record.turn, record.role, record.agent),
        );
        let mut text = format!("{tag}{header}\n");
        for call in &record.tool_calls {
            let mark = if call.success { "🛠️ " } else { "⚠️ " };
            let first = call.result.lines().next().unwrap_or_default();
            let line = format!("  {mark} {} {} -> {}", call.tool, call.params, first);
            text.push_str(&format!("{tag}{}\n", self.paint("2", &line)));
        }
        let body = if record.is_error {
            self.paint("31", &record.message)
        } else {
            record.message.clone()
        };
        text.push_str(&format!("{tag}  {body}\n\n"));
        crate::stdout::write(&text);
    }
}
