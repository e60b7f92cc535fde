//! A session's seal: what Audit's `VerifySession` says of its hash chain
//! (integrity, rows, head, the signed checkpoint), kept with a run's
//! outcome and transcript, and printed by `sessions verify` and `show`.

use heist_proto::v1::{Integrity, SessionVerification};
use serde::Serialize;

/// The chain seal of a session as Audit vouched for it when the session
/// ended (`SessionOutcome::chain_seal`, the transcript's `chain_seal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSeal {
    /// `intact`, `unchained` or `tampered`.
    pub integrity: &'static str,
    /// The rows of the chain (start and end included).
    pub rows: i64,
    /// The hash of the chain's last row, hex (empty unless intact).
    pub chain_head: String,
    /// The key that signed the latest checkpoint (`None` when unsigned).
    pub key_id: Option<String>,
    /// The checkpoint's Ed25519 signature, hex.
    pub signature: Option<String>,
    /// When the checkpoint was signed (RFC 3339, UTC).
    pub signed_at: Option<String>,
    /// The verdict in words, as `orchestrator sessions verify` prints it.
    pub verdict: String,
}

impl From<&SessionVerification> for ChainSeal {
    fn from(verification: &SessionVerification) -> Self {
        let checkpoint = verification.checkpoint.as_ref();
        Self {
            integrity: integrity_name(verification.integrity()),
            rows: verification.rows,
            chain_head: verification.chain_head.clone(),
            key_id: checkpoint.map(|signed| signed.key_id.clone()),
            signature: checkpoint.map(|signed| signed.signature.clone()),
            signed_at: checkpoint.map(|signed| signed.signed_at.clone()),
            verdict: verification.to_string(),
        }
    }
}

/// The lowercase name of a verdict, as the seal and the verdict line say it.
pub fn integrity_name(integrity: Integrity) -> &'static str {
    match integrity {
        Integrity::Intact => "intact",
        Integrity::Unchained => "unchained",
        Integrity::Tampered => "tampered",
        Integrity::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use heist_proto::v1::{ChainCheckpoint, ChainRow};

    use super::*;

    #[test]
    fn an_intact_session_is_sealed_with_its_head_and_checkpoint() {
        let verification = SessionVerification {
            session_id: "s1".into(),
            integrity: Integrity::Intact.into(),
            rows: 4,
            chain_head: "ab".into(),
            checkpoint: Some(ChainCheckpoint {
                rows: 4,
                head: "ab".into(),
                key_id: "k1".into(),
                signature: "5151".into(),
                signed_at: "2026-12-01T00:00:00Z".into(),
            }),
            ..SessionVerification::default()
        };
        let seal = ChainSeal::from(&verification);
        assert_eq!(seal.integrity, "intact");
        assert_eq!(seal.rows, 4);
        assert_eq!(seal.chain_head, "ab");
        assert_eq!(seal.key_id.as_deref(), Some("k1"));
        assert_eq!(seal.signature.as_deref(), Some("5151"));
        assert_eq!(seal.signed_at.as_deref(), Some("2026-12-01T00:00:00Z"));
        assert_eq!(seal.verdict, verification.to_string());
        let json = serde_json::to_value(&seal).unwrap();
        assert_eq!(json["integrity"], "intact");
        assert_eq!(json["chain_head"], "ab");
    }

    #[test]
    fn a_tampered_session_is_sealed_without_a_checkpoint_naming_the_row() {
        let verification = SessionVerification {
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
        let seal = ChainSeal::from(&verification);
        assert_eq!(seal.integrity, "tampered");
        assert_eq!(seal.key_id, None);
        assert!(seal.verdict.contains("messages id 7, turn 3"), "{seal:?}");
    }

    #[test]
    fn every_verdict_has_a_lowercase_name() {
        assert_eq!(integrity_name(Integrity::Unchained), "unchained");
        assert_eq!(integrity_name(Integrity::Unspecified), "unspecified");
    }
}
