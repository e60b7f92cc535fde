//! The words for a [`SessionVerification`]: one line per session, shared by
//! `orchestrator sessions verify` (over gRPC) and `heist-audit verify`
//! (offline), so both say the same thing about the same chain.

use std::fmt;

use crate::v1::{ChainRow, Integrity, SessionVerification};

impl SessionVerification {
    /// True when the session was tampered with (the verifiers exit 1).
    pub fn is_tampered(&self) -> bool {
        self.integrity() == Integrity::Tampered
    }
}

impl fmt::Display for ChainRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} ({}", self.kind, self.table)?;
        if self.id != 0 {
            write!(f, " id {}", self.id)?;
        }
        if self.turn != 0 {
            write!(f, ", turn {}", self.turn)?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for SessionVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.session_id;
        match self.integrity() {
            Integrity::Intact => {
                write!(
                    f,
                    "{id}: intact, {} rows, head {}",
                    self.rows, self.chain_head
                )?;
                match &self.checkpoint {
                    Some(signed) if signed.rows == self.rows => write!(
                        f,
                        "; signed by key {} at {}, signature {}",
                        signed.key_id, signed.signed_at, signed.signature
                    ),
                    Some(signed) => write!(
                        f,
                        "; the first {} rows signed by key {} at {}, signature {} \
                         (the rest is signed when the session ends)",
                        signed.rows, signed.key_id, signed.signed_at, signed.signature
                    ),
                    None => write!(f, "; not signed yet (the session is signed when it ends)"),
                }
            }
            Integrity::Unchained => write!(
                f,
                "{id}: unchained, {} rows stored before the hash chain existed \
                 (not evidence of tampering, nor proof against it)",
                self.rows
            ),
            Integrity::Tampered => {
                write!(f, "{id}: TAMPERED at ")?;
                match &self.first_bad_row {
                    Some(row) => write!(f, "{row}")?,
                    None => write!(f, "an unnamed row")?,
                }
                write!(f, ": {}", self.problem)
            }
            Integrity::Unspecified => write!(f, "{id}: no verdict"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ChainCheckpoint;

    #[test]
    fn a_tampered_row_is_named_with_its_table_id_and_turn() {
        let verdict = SessionVerification {
            session_id: "s1".into(),
            integrity: Integrity::Tampered.into(),
            first_bad_row: Some(ChainRow {
                table: "messages".into(),
                kind: "message".into(),
                id: 7,
                turn: 3,
            }),
            problem: "its content does not give its stored hash".into(),
            ..SessionVerification::default()
        };
        assert!(verdict.is_tampered());
        assert_eq!(
            verdict.to_string(),
            "s1: TAMPERED at the message (messages id 7, turn 3): \
             its content does not give its stored hash"
        );
    }

    #[test]
    fn an_intact_session_shows_its_head_and_signature() {
        let verdict = SessionVerification {
            session_id: "s1".into(),
            integrity: Integrity::Intact.into(),
            rows: 4,
            chain_head: "ab".into(),
            checkpoint: Some(ChainCheckpoint {
                rows: 4,
                head: "ab".into(),
                key_id: "k".into(),
                signature: "5151".into(),
                signed_at: "t".into(),
            }),
            ..SessionVerification::default()
        };
        assert!(!verdict.is_tampered());
        assert_eq!(
            verdict.to_string(),
            "s1: intact, 4 rows, head ab; signed by key k at t, signature 5151"
        );
    }
}
