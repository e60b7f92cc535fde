//! How a session ended: one type for the summary, Audit's status and the
//! process's exit code.

use heist_proto::v1::SessionStatus;
use serde::Serialize;

use crate::app::exit;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionEnd {
    /// Every turn asked for ran (some may have failed).
    Completed,
    /// Every turn that ran failed.
    Failed,
    /// Stopped (Ctrl-C / SIGTERM) before the last turn.
    Interrupted,
}

impl SessionEnd {
    /// The end of a session that was `interrupted` or not, of whose `turns`
    /// (those resumed included) `failed_turns` failed: failed when there
    /// were turns and all of them failed.
    pub fn of(interrupted: bool, failed_turns: usize, turns: usize) -> Self {
        if interrupted {
            Self::Interrupted
        } else if turns > 0 && failed_turns == turns {
            Self::Failed
        } else {
            Self::Completed
        }
    }

    /// Its name: `completed`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status Audit records for it.
    pub fn proto(self) -> SessionStatus {
        match self {
            Self::Completed => SessionStatus::Completed,
            Self::Failed => SessionStatus::Failed,
            Self::Interrupted => SessionStatus::Interrupted,
        }
    }

    /// The orchestrator's exit code for it.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Completed => exit::OK,
            Self::Failed => exit::FAILED,
            Self::Interrupted => exit::INTERRUPTED,
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for SessionEnd {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SessionEnd {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_with_a_turn_that_spoke_completed() {
        assert_eq!(SessionEnd::of(false, 0, 3), SessionEnd::Completed);
        assert_eq!(SessionEnd::of(false, 2, 3), SessionEnd::Completed);
    }

    #[test]
    fn a_session_whose_every_turn_failed_failed() {
        assert_eq!(SessionEnd::of(false, 3, 3), SessionEnd::Failed);
        assert_eq!(SessionEnd::of(false, 1, 1), SessionEnd::Failed);
    }

    #[test]
    fn a_session_without_turns_completed() {
        assert_eq!(SessionEnd::of(false, 0, 0), SessionEnd::Completed);
    }

    #[test]
    fn a_stopped_session_is_interrupted_whatever_its_turns() {
        assert_eq!(SessionEnd::of(true, 0, 0), SessionEnd::Interrupted);
        assert_eq!(SessionEnd::of(true, 2, 2), SessionEnd::Interrupted);
        assert_eq!(SessionEnd::of(true, 0, 5), SessionEnd::Interrupted);
    }

    #[test]
    fn each_end_has_its_name_status_and_exit_code() {
        let ends = [
            (
                SessionEnd::Completed,
                "completed",
                SessionStatus::Completed,
                0,
            ),
            (SessionEnd::Failed, "failed", SessionStatus::Failed, 1),
            (
                SessionEnd::Interrupted,
                "interrupted",
                SessionStatus::Interrupted,
                130,
            ),
        ];
        for (end, name, status, code) in ends {
            assert_eq!(end.as_str(), name);
            assert_eq!(end.to_string(), name);
            assert_eq!(end, name);
            assert_eq!(end.proto(), status);
            assert_eq!(end.exit_code(), code);
            assert_eq!(serde_json::to_string(&end).unwrap(), format!("\"{name}\""));
        }
    }

    #[test]
    fn an_end_is_not_equal_to_another_name() {
        assert_ne!(SessionEnd::Completed, "failed");
        assert_ne!(SessionEnd::Interrupted, "Interrupted");
    }
}
