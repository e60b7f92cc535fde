//! A session's seal: the head of its hash chain and the checkpoint Audit
//! signed over it, as `GetSession` answers them when the session has ended
//! (one read of two rows, no walk of the chain), kept with a run's outcome
//! and transcript. Held outside the database, it is what a later
//! `orchestrator sessions verify` (or `heist-audit verify`) can be set
//! against.

use std::fmt;

use heist_proto::v1::Session;
use serde::Serialize;

/// The chain seal of an ended session (`SessionOutcome::chain_seal`, the
/// transcript's `chain_seal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSeal {
    /// The rows of the chain (start and end included).
    pub rows: i64,
    /// The hash of the chain's last row, hex.
    pub chain_head: String,
    /// The key that signed the latest checkpoint (`None` when unsigned).
    pub key_id: Option<String>,
    /// How many rows that checkpoint covers.
    pub signed_rows: Option<i64>,
    /// The checkpoint's Ed25519 signature, hex.
    pub signature: Option<String>,
    /// When the checkpoint was signed (RFC 3339, UTC).
    pub signed_at: Option<String>,
}

impl ChainSeal {
    /// The seal `GetSession` answered for `session`; `None` for a session
    /// stored unchained.
    pub fn of(session: &Session) -> Option<Self> {
        if session.chain_head.is_empty() {
            return None;
        }
        let checkpoint = session.checkpoint.as_ref();
        Some(Self {
            rows: session.chain_rows,
            chain_head: session.chain_head.clone(),
            key_id: checkpoint.map(|signed| signed.key_id.clone()),
            signed_rows: checkpoint.map(|signed| signed.rows),
            signature: checkpoint.map(|signed| signed.signature.clone()),
            signed_at: checkpoint.map(|signed| signed.signed_at.clone()),
        })
    }
}

impl fmt::Display for ChainSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, head {}", self.rows, self.chain_head)?;
        match (&self.key_id, &self.signed_at, &self.signature) {
            (Some(key), Some(at), Some(signature)) => {
                if self.signed_rows != Some(self.rows) {
                    let signed = self.signed_rows.unwrap_or(0);
                    write!(f, "; the first {signed} rows")?;
                }
                write!(f, "; signed by key {key} at {at}, signature {signature}")
            }
            _ => write!(f, "; not signed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use heist_proto::v1::ChainCheckpoint;

    use super::*;

    fn session(checkpoint: Option<ChainCheckpoint>) -> Session {
        Session {
            session_id: "s1".into(),
            chain_head: "ab".into(),
            chain_rows: 4,
            checkpoint,
            ..Session::default()
        }
    }

    #[test]
    fn an_ended_session_is_sealed_with_its_head_and_checkpoint() {
        let seal = ChainSeal::of(&session(Some(ChainCheckpoint {
            rows: 4,
            head: "ab".into(),
            key_id: "k1".into(),
            signature: "5151".into(),
            signed_at: "2026-12-01T00:00:00Z".into(),
        })))
        .unwrap();
        assert_eq!(
            seal.to_string(),
            "4 rows, head ab; signed by key k1 at 2026-12-01T00:00:00Z, signature 5151"
        );
        let json = serde_json::to_value(&seal).unwrap();
        assert_eq!(json["chain_head"], "ab");
        assert_eq!(json["signature"], "5151");
    }

    #[test]
    fn an_unsigned_or_unchained_session_says_so() {
        let unsigned = ChainSeal::of(&session(None)).unwrap();
        assert_eq!(unsigned.to_string(), "4 rows, head ab; not signed");
        assert_eq!(ChainSeal::of(&Session::default()), None, "unchained");
    }
}
