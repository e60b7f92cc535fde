//! Signed checkpoints of a session's chain (issue 18): Audit signs the chain
//! head with its own Ed25519 key at the session's end and whenever
//! [`Integrity::checkpoint_every`] rows have been chained since the last
//! checkpoint, inside the transaction that chained the row. A verifier
//! holding Audit's public key can then tell the real chain from one
//! rewritten and re-hashed by someone with write access to the database.
//!
//! The signed statement, version 1:
//!
//! ```text
//! "heist-audit checkpoint"   22 bytes (ASCII)
//! version                    1 byte   (0x01)
//! session_id                 4-byte big-endian length, then its UTF-8 bytes
//! rows                       8 bytes  (unsigned, big-endian: positions 0..rows-1 are covered)
//! head                       32 bytes (the row_hash at position rows-1)
//! ```
//!
//! The signature is Ed25519 (RFC 8032) over those bytes; the key is named by
//! its RFC 7638 thumbprint (`key_id`), as OAuth names its token keys.

use std::sync::Arc;

use heist_tokens::{KeyRing, KeySet, PublicKey, SigningKey};

use super::chain::{Hash, Head, RowRef};
use super::types::SessionStatus;
use super::writer::Stamp;

/// The rows chained between two checkpoints of a session unless configured.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 100;

/// The prefix of every signed statement.
const DOMAIN: &[u8] = b"heist-audit checkpoint";

/// The version byte of the statement this build signs and verifies.
const STATEMENT_VERSION: u8 = 1;

/// How Audit protects its chains: whether new sessions are chained, the key
/// that signs checkpoints, the keys trusted to have signed older ones, and
/// how often a long session is signed.
#[derive(Clone, Debug)]
pub struct Integrity {
    /// Whether new sessions are chained (the benchmark turns it off to
    /// measure the chain's cost; sessions stored without it are unchained).
    pub chain: bool,
    /// The rows chained between two checkpoints of one session (at least 1).
    pub checkpoint_every: u64,
    signer: Arc<SigningKey>,
    trusted: Arc<KeySet>,
}

impl Integrity {
    /// Chains every session and signs with the active key of `ring`,
    /// trusting every key of the ring (older keys signed older checkpoints).
    pub fn from_ring(ring: &KeyRing) -> Self {
        Integrity {
            chain: true,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            signer: Arc::new(ring.active().clone()),
            trusted: Arc::new(ring_keys(ring)),
        }
    }

    /// A fresh key that lives as long as the process (tests, embedded uses):
    /// its checkpoints verify only while this store runs.
    pub fn ephemeral() -> Self {
        let key = SigningKey::generate().expect("the system random number generator works");
        let trusted = std::iter::once(key.public_key().clone()).collect();
        Integrity {
            chain: true,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            signer: Arc::new(key),
            trusted: Arc::new(trusted),
        }
    }

    /// The public keys whose checkpoints this store accepts, the signing key first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        let mut keys = vec![self.signer.public_key().clone()];
        keys.extend(
            self.trusted
                .iter()
                .filter(|key| key.kid() != self.signer.kid())
                .cloned(),
        );
        keys
    }

    /// The rules a verifier of this store's chains applies.
    pub fn rules(&self) -> Rules {
        Rules {
            trusted: Arc::clone(&self.trusted),
            checkpoint_every: self.checkpoint_every,
        }
    }

    /// The checkpoint to write after a row moved the session's chain to
    /// `next` rows ending in `head`, if one is due: at the session end, or
    /// when `checkpoint_every` rows were chained since `signed_next`.
    pub(crate) fn due(&self, due: Due<'_>) -> Option<Checkpoint> {
        let unsigned = due.next.saturating_sub(due.signed_next);
        if !due.ends && unsigned < self.checkpoint_every.max(1) {
            return None;
        }
        let message = statement(due.session_id, due.next, due.head);
        Some(Checkpoint {
            rows: due.next,
            head: *due.head,
            key_id: self.signer.kid().to_owned(),
            signature: self.signer.sign(&message),
            signed_at: due.now.to_owned(),
        })
    }
}

/// A chained session's tip as stored: the hash of its last row, the next
/// position, and how many rows its latest checkpoint covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tip {
    /// `chain_head`.
    pub(crate) hash: Hash,
    /// `chain_next`.
    pub(crate) next: u64,
    /// `signed_next` (0 when no checkpoint was written).
    pub(crate) signed_next: u64,
}

impl Tip {
    /// The tip of a session with `head` (`None`: unchained) and `signed_next`.
    pub(crate) fn read(head: Head, signed_next: Option<i64>) -> Option<Tip> {
        let (hash, next) = head?;
        let signed_next = signed_next.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Some(Tip {
            hash,
            next,
            signed_next,
        })
    }

    /// The tip once the row hashing to `hash` is chained here, signed or not.
    pub(crate) fn moved(&self, hash: Hash, signed: bool) -> Tip {
        let next = self.next + 1;
        Tip {
            hash,
            next,
            signed_next: if signed { next } else { self.signed_next },
        }
    }

    /// The chain once the row hashing to `hash` is chained at this tip.
    pub(crate) fn after<'a>(
        &self,
        session_id: &'a str,
        hash: &'a Hash,
        ends: bool,
        now: &'a str,
    ) -> Due<'a> {
        Due {
            session_id,
            next: self.next + 1,
            head: hash,
            signed_next: self.signed_next,
            ends,
            now,
        }
    }
}

/// Every public key of `ring`: checkpoints stay verifiable after a rotation.
pub fn ring_keys(ring: &KeyRing) -> KeySet {
    ring.published(heist_tokens::unix_now(), std::time::Duration::MAX)
        .into_iter()
        .collect()
}

/// The chain tip of the session one write extends, once read or moved
/// within that write: a turn chains its message and each tool call one
/// after another, and PostgreSQL reads the tip with the session's lock, so
/// no row reads it back (nor locks the session again: the lock is held to
/// the commit, and the status a write checks does not change within it).
/// One per write: a refused write's is dropped with its savepoint.
#[derive(Debug, Default)]
pub(crate) struct TipCache(std::sync::Mutex<Option<Known>>);

/// What one write knows of its session.
#[derive(Debug)]
struct Known {
    session_id: String,
    /// Its status, once the write locked it (PostgreSQL).
    status: Option<SessionStatus>,
    /// Its chain tip (`None`: unchained).
    tip: Option<Tip>,
}

impl TipCache {
    fn known<T>(&self, session_id: &str, read: impl FnOnce(&Known) -> Option<T>) -> Option<T> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .as_ref()
            .filter(|known| known.session_id == session_id)
            .and_then(read)
    }

    /// The session's tip if this write knows it (`Some(None)`: unchained).
    pub(crate) fn get(&self, session_id: &str) -> Option<Option<Tip>> {
        self.known(session_id, |known| Some(known.tip))
    }

    /// The session's status if this write locked it already.
    pub(crate) fn locked(&self, session_id: &str) -> Option<SessionStatus> {
        self.known(session_id, |known| known.status)
    }

    /// Records the session's tip (keeping its status when known).
    pub(crate) fn set(&self, session_id: &str, tip: Option<Tip>) {
        let status = self.locked(session_id);
        self.remember(session_id, status, tip);
    }

    /// Records the session's status and tip as the write's lock read them.
    pub(crate) fn lock(&self, session_id: &str, status: SessionStatus, tip: Option<Tip>) {
        self.remember(session_id, Some(status), tip);
    }

    fn remember(&self, session_id: &str, status: Option<SessionStatus>, tip: Option<Tip>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Known {
            session_id: session_id.to_owned(),
            status,
            tip,
        });
    }
}

/// Records that the row hashing to `hash` was chained at `tip` of
/// `session_id` (`ends`: it is the session's end) and answers the
/// checkpoint now due, if any, for the backend to store.
pub(crate) fn chained(
    at: &Stamp<'_>,
    (session_id, tip): (&str, Tip),
    hash: &Hash,
    ends: bool,
) -> Option<Checkpoint> {
    let checkpoint = at.integrity.due(tip.after(session_id, hash, ends, at.now));
    at.tips
        .set(session_id, Some(tip.moved(*hash, checkpoint.is_some())));
    checkpoint
}

/// A session's chain just after a row was chained.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Due<'a> {
    /// The session.
    pub(crate) session_id: &'a str,
    /// Its chain's length, the row just chained included.
    pub(crate) next: u64,
    /// The hash of the row just chained.
    pub(crate) head: &'a Hash,
    /// How many rows its latest checkpoint covers (0 when none).
    pub(crate) signed_next: u64,
    /// Whether the row is the session's end.
    pub(crate) ends: bool,
    /// The write's timestamp.
    pub(crate) now: &'a str,
}

/// A signed head of a session's chain, as stored in `checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The rows it covers: positions `0..rows`.
    pub rows: u64,
    /// The `row_hash` at position `rows - 1`.
    pub head: Hash,
    /// The key that signed it (RFC 7638 thumbprint).
    pub key_id: String,
    /// The Ed25519 signature of the statement.
    pub signature: [u8; 64],
    /// When it was signed (RFC 3339, UTC).
    pub signed_at: String,
}

impl Checkpoint {
    /// A checkpoint from its stored columns; a malformed head or signature
    /// reads as zeros, which never verifies.
    pub(crate) fn read(
        rows: i64,
        head: Vec<u8>,
        key_id: String,
        signature: Vec<u8>,
        signed_at: String,
    ) -> Self {
        Checkpoint {
            rows: u64::try_from(rows).unwrap_or(0),
            head: Hash::try_from(head.as_slice()).unwrap_or([0; 32]),
            key_id,
            signature: <[u8; 64]>::try_from(signature.as_slice()).unwrap_or([0; 64]),
            signed_at,
        }
    }
}

/// A session's seal as stored: its chain's length and head and its latest
/// checkpoint, read without walking the chain (what `GetSession` answers;
/// `VerifySession` checks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// How many rows the chain has.
    pub rows: u64,
    /// The hash of its last row.
    pub head: Hash,
    /// Its latest checkpoint, if one was signed.
    pub checkpoint: Option<Checkpoint>,
}

impl Seal {
    /// The seal of a session whose row holds `head` and whose latest
    /// checkpoint is `checkpoint`; `None` for an unchained session.
    pub(crate) fn of(head: Head, checkpoint: Option<Checkpoint>) -> Option<Seal> {
        let (head, rows) = head?;
        Some(Seal {
            rows,
            head,
            checkpoint,
        })
    }
}

/// What a verifier trusts: the public keys and the checkpoint interval
/// the Audit that wrote the chains used.
#[derive(Clone, Debug)]
pub struct Rules {
    trusted: Arc<KeySet>,
    checkpoint_every: u64,
}

impl Rules {
    /// Trusts `keys` for chains checkpointed every `checkpoint_every` rows.
    pub fn new(keys: KeySet, checkpoint_every: u64) -> Self {
        Rules {
            trusted: Arc::new(keys),
            checkpoint_every: checkpoint_every.max(1),
        }
    }
}

/// Why a session's checkpoints do not vouch for its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointBreak {
    /// Signed by a key the verifier does not trust.
    UnknownKey {
        /// The rows the checkpoint covers.
        rows: u64,
    },
    /// The signature does not verify.
    BadSignature {
        /// The rows the checkpoint covers.
        rows: u64,
    },
    /// The signed head is not the chain's hash at that position: the rows
    /// up to it were rewritten (and re-hashed), or the chain was cut.
    HeadMismatch {
        /// The rows the checkpoint covers.
        rows: u64,
    },
    /// Rows that should be signed are not: an ended session whose end is
    /// not covered, or more unsigned rows than the interval allows.
    Unsigned {
        /// The rows the latest valid checkpoint covers.
        signed: u64,
        /// The rows of the chain.
        rows: u64,
    },
}

/// Checks `checkpoints` against the verified chain `chain` (position order,
/// each row and its hash): every checkpoint must be signed by a trusted key
/// and match the chain at its position, the end of an ended session must be
/// signed, and fewer than the interval's rows may follow the latest one.
/// Answers the latest checkpoint (`None` for a chain too short to need one).
pub(crate) fn check(
    session_id: &str,
    chain: &[(RowRef, Hash)],
    ended: bool,
    mut checkpoints: Vec<Checkpoint>,
    rules: &Rules,
) -> Result<Option<Checkpoint>, (RowRef, CheckpointBreak)> {
    checkpoints.sort_by_key(|checkpoint| checkpoint.rows);
    let rows = u64::try_from(chain.len()).unwrap_or(u64::MAX);
    let mut latest: Option<Checkpoint> = None;
    for checkpoint in checkpoints {
        let rows = checkpoint.rows;
        let at = row_at(chain, rows.saturating_sub(1).min(chain_end(chain)));
        let Some(key) = rules.trusted.get(&checkpoint.key_id) else {
            return Err((at, CheckpointBreak::UnknownKey { rows }));
        };
        let message = statement(session_id, rows, &checkpoint.head);
        if !key.verifies(&message, &checkpoint.signature) {
            return Err((at, CheckpointBreak::BadSignature { rows }));
        }
        let on_chain = rows
            .checked_sub(1)
            .and_then(|last| usize::try_from(last).ok())
            .and_then(|last| chain.get(last))
            .map(|(_, hash)| hash);
        if on_chain != Some(&checkpoint.head) {
            return Err((at, CheckpointBreak::HeadMismatch { rows }));
        }
        latest = Some(checkpoint);
    }
    let signed = latest.as_ref().map_or(0, |checkpoint| checkpoint.rows);
    let unsigned = rows.saturating_sub(signed);
    if (ended && unsigned > 0) || unsigned >= rules.checkpoint_every {
        return Err((
            row_at(chain, signed),
            CheckpointBreak::Unsigned { signed, rows },
        ));
    }
    Ok(latest)
}

/// The last position of `chain` (0 for an empty one).
fn chain_end(chain: &[(RowRef, Hash)]) -> u64 {
    u64::try_from(chain.len().saturating_sub(1)).unwrap_or(u64::MAX)
}

/// The row at `position` of `chain`, or the session start past its end.
fn row_at(chain: &[(RowRef, Hash)], position: u64) -> RowRef {
    usize::try_from(position)
        .ok()
        .and_then(|index| chain.get(index))
        .map_or(RowRef::start(), |(row, _)| *row)
}

/// The bytes a checkpoint of `session_id` over `rows` rows ending in `head`
/// signs (see the module doc): what a verifier checks a signature against.
pub fn statement(session_id: &str, rows: u64, head: &Hash) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN.len() + 1 + 4 + session_id.len() + 8 + 32);
    bytes.extend_from_slice(DOMAIN);
    bytes.push(STATEMENT_VERSION);
    // Session IDs are bounded far below 4 GiB by validation; saturate anyway.
    let len = u32::try_from(session_id.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(session_id.as_bytes());
    bytes.extend_from_slice(&rows.to_be_bytes());
    bytes.extend_from_slice(head);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::RowKind;

    #[test]
    fn the_statement_is_the_documented_byte_layout() {
        let head = [7u8; 32];
        let mut expected = b"heist-audit checkpoint".to_vec();
        expected.push(1);
        expected.extend_from_slice(&[0, 0, 0, 2, b's', b'1']);
        expected.extend_from_slice(&5u64.to_be_bytes());
        expected.extend_from_slice(&head);
        assert_eq!(statement("s1", 5, &head), expected);
    }

    fn chain(rows: u64) -> Vec<(RowRef, Hash)> {
        (0..rows)
            .map(|n| {
                let row = RowRef {
                    kind: RowKind::Message,
                    id: Some(i64::try_from(n).unwrap()),
                    turn: None,
                };
                (row, [u8::try_from(n).unwrap(); 32])
            })
            .collect()
    }

    fn signed_by(integrity: &Integrity, rows: u64, chain: &[(RowRef, Hash)]) -> Checkpoint {
        let head = chain[usize::try_from(rows - 1).unwrap()].1;
        let due = Due {
            session_id: "s1",
            next: rows,
            head: &head,
            signed_next: 0,
            ends: true,
            now: "t",
        };
        integrity.due(due).unwrap()
    }

    #[test]
    fn checkpoints_of_an_older_key_of_the_ring_still_verify_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let before = Integrity::from_ring(&KeyRing::load_or_generate(&path, 1).unwrap());
        let chain = chain(3);
        let old = signed_by(&before, 3, &chain);
        let rotated =
            Integrity::from_ring(&KeyRing::rotate(&path, 2, std::time::Duration::MAX).unwrap());
        assert_ne!(
            rotated.public_keys()[0].kid(),
            old.key_id,
            "a new key signs"
        );
        assert_eq!(rotated.public_keys().len(), 2);
        let checked = check("s1", &chain, true, vec![old.clone()], &rotated.rules());
        assert_eq!(checked, Ok(Some(old)));
    }

    #[test]
    fn an_unsigned_tail_of_the_interval_is_refused_and_a_shorter_one_is_not() {
        let integrity = Integrity {
            checkpoint_every: 4,
            ..Integrity::ephemeral()
        };
        let chain = chain(7);
        let at_four = signed_by(&integrity, 4, &chain);
        let rules = integrity.rules();
        assert_eq!(
            check("s1", &chain, false, vec![at_four.clone()], &rules),
            Ok(Some(at_four.clone())),
            "3 unsigned rows < 4"
        );
        assert_eq!(
            check("s1", &chain, true, vec![at_four], &rules),
            Err((chain[4].0, CheckpointBreak::Unsigned { signed: 4, rows: 7 })),
            "an ended session must be signed to its end"
        );
        assert_eq!(
            check("s1", &chain, false, Vec::new(), &rules),
            Err((chain[0].0, CheckpointBreak::Unsigned { signed: 0, rows: 7 }))
        );
    }

    #[test]
    fn a_checkpoint_past_the_end_of_the_chain_is_a_head_mismatch() {
        let integrity = Integrity::ephemeral();
        let long = chain(5);
        let signed = signed_by(&integrity, 5, &long);
        assert_eq!(
            check("s1", &long[..3], true, vec![signed], &integrity.rules()),
            Err((long[2].0, CheckpointBreak::HeadMismatch { rows: 5 }))
        );
    }
}
