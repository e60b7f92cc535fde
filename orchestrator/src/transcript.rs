//! Transcripts of a session: JSON (every turn, with its tool calls) and
//! Markdown (the seed's `## Turn N: Role (name)` layout).

use std::{io, path::Path};

use crate::engine::SessionOutcome;

/// Writes the transcript to `path`: `.json`, `.md`, or both when the path
/// has no extension (`PATH.json` and `PATH.md`).
pub fn write(path: &Path, outcome: &SessionOutcome) -> io::Result<Vec<std::path::PathBuf>> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut written = Vec::new();
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("json") => {
            std::fs::write(path, to_json(outcome)?)?;
            written.push(path.to_owned());
        }
        Some("md") => {
            std::fs::write(path, to_markdown(outcome))?;
            written.push(path.to_owned());
        }
        Some(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "transcript {}: unknown extension .{other}; use .json, .md or none for both",
                    path.display()
                ),
            ));
        }
        None => {
            let json = path.with_extension("json");
            let markdown = path.with_extension("md");
            std::fs::write(&json, to_json(outcome)?)?;
            std::fs::write(&markdown, to_markdown(outcome))?;
            written.extend([json, markdown]);
        }
    }
    Ok(written)
}

/// The session as pretty JSON.
pub fn to_json(outcome: &SessionOutcome) -> io::Result<String> {
    serde_json::to_string_pretty(outcome).map_err(io::Error::other)
}

/// The session as Markdown, in the seed's layout.
pub fn to_markdown(outcome: &SessionOutcome) -> String {
    let mut text = format!(
        "# Heist Conversation Log\n\nSession `{}`: {} turns, {}.\n\n",
        outcome.session_id,
        outcome.turns.len(),
        outcome.status
    );
    for turn in &outcome.turns {
        text.push_str(&format!(
            "## Turn {}: {} ({})\n\n",
            turn.turn, turn.role, turn.agent
        ));
        let quoted = turn.message.replace('\n', "  \n> ");
        text.push_str(&format!("> {quoted}\n\n"));
        for call in &turn.tool_calls {
            let verdict = if call.success { "ok" } else { "failed" };
            let result: String = call
                .result
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            text.push_str(&format!(
                "- tool `{}` {} ({verdict}, {} ms): {}\n",
                call.tool, call.params, call.duration_ms, result
            ));
        }
        if !turn.tool_calls.is_empty() {
            text.push('\n');
        }
    }
    match &outcome.chain_seal {
        Some(seal) => text.push_str(&format!("Audit seal: {seal}\n")),
        None => text.push_str(
            "Audit seal: none (Audit could not answer at the end, or the session is unchained)\n",
        ),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ToolRecord, TurnRecord};

    fn outcome() -> SessionOutcome {
        SessionOutcome {
            session_id: "heist_20250116_143052_a1b2".into(),
            status: crate::engine::SessionEnd::Completed,
            turns: vec![TurnRecord {
                turn: 1,
                agent: "safecracker".into(),
                role: "Safe Specialist".into(),
                message: "Drilling takes 155 minutes.\nWe need two shifts.".into(),
                is_error: false,
                tool_calls: vec![ToolRecord {
                    tool: "calculator".into(),
                    params: r#"{"expression":"45 * 3 + 20"}"#.into(),
                    result: "45 * 3 + 20 = 155".into(),
                    success: true,
                    duration_ms: 2,
                }],
                usage: Default::default(),
            }],
            failed_turns: 0,
            failed_tool_calls: 0,
            memory_failures: 0,
            audit_failures: 0,
            memory_pending: 0,
            audit_spooled_writes: 0,
            audit_spooled: 0,
            breaker_events: Vec::new(),
            elapsed_ms: 10,
            chain_seal: None,
        }
    }

    #[test]
    fn markdown_follows_the_seeds_layout() {
        let text = to_markdown(&outcome());
        assert!(text.starts_with("# Heist Conversation Log"));
        assert!(text.contains("## Turn 1: Safe Specialist (safecracker)"));
        assert!(text.contains("> Drilling takes 155 minutes.  \n> We need two shifts."));
        assert!(text.contains("tool `calculator`"));
    }

    #[test]
    fn markdown_ends_with_the_audit_seal_line() {
        let mut sealed = outcome();
        assert!(to_markdown(&sealed).ends_with(
            "Audit seal: none (Audit could not answer at the end, or the session is unchained)\n"
        ));
        let session = heist_proto::v1::Session {
            session_id: sealed.session_id.clone(),
            chain_rows: 4,
            chain_head: "ab".into(),
            ..Default::default()
        };
        sealed.chain_seal = crate::seal::ChainSeal::of(&session);
        let text = to_markdown(&sealed);
        assert!(
            text.ends_with("Audit seal: 4 rows, head ab; not signed\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&to_json(&sealed).unwrap()).unwrap();
        assert_eq!(json["chain_seal"]["chain_head"], "ab");
        assert_eq!(json["chain_seal"]["rows"], 4);
    }

    #[test]
    fn a_path_without_extension_writes_both_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let written = write(&dir.path().join("run"), &outcome()).unwrap();
        assert_eq!(written.len(), 2);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap())
                .unwrap();
        assert_eq!(json["turns"][0]["agent"], "safecracker");
        assert!(write(&dir.path().join("run.txt"), &outcome()).is_err());
    }
}
