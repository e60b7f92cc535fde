//! The hash chain of a session (issue 18): a canonical, versioned encoding
//! of each row and SHA-256 over it.
//!
//! Every chained row of a session has a position (`chain_seq`, 0 for the
//! session start, then 1, 2, ... in the order Audit stored them), the hash
//! of the row before it (`prev_hash`; 32 zero bytes for the start) and its
//! own hash (`row_hash`) = SHA-256 of its encoding, version 1:
//!
//! ```text
//! prev_hash   32 bytes (the previous row's row_hash; zeros for the start)
//! version     1 byte   (0x01)
//! kind        1 byte   (0x01 start, 0x02 message, 0x03 tool call,
//!                       0x04 session event, 0x05 session end)
//! chain_seq   8 bytes  (unsigned, big-endian)
//! fields      in the fixed order of the kind, each encoded as:
//!   text      4-byte big-endian length in bytes, then its UTF-8 bytes
//!             (a NULL text column, e.g. written_by, is the empty text)
//!   integer   8 bytes, signed two's complement, big-endian
//!   bool      1 byte, 0x00 or 0x01
//!   optional integer  1 byte 0x00 (NULL), or 0x01 then the integer
//! ```
//!
//! The fields of each kind:
//! - start (table `sessions`): session_id, start_time, metadata,
//!   written_by, written_via;
//! - message (`messages`): id, session_id, turn_id, agent_name, agent_role,
//!   message, timestamp, is_error, idempotency_key, trace_id, written_by,
//!   written_via, input_tokens (optional), output_tokens (optional),
//!   tokens_estimated;
//! - tool call (`tool_usage`): id, session_id, turn_id, agent_name,
//!   tool_name, tool_params, tool_result, timestamp, success, duration_ms,
//!   idempotency_key, trace_id, written_by, written_via;
//! - session event (`session_events`): id, session_id, kind, detail,
//!   timestamp, idempotency_key, written_by, written_via;
//! - end (the `end_*` columns of `sessions`): session_id, end_time, status
//!   (its lowercase name), num_turns.

use sha2::{Digest, Sha256};

use super::checkpoint::{self, Checkpoint, CheckpointBreak, Rules};
use super::error::StoreError;
use super::types::{MessageRow, SessionEventRow, SessionRow, SessionStatus, ToolUsageRow};

/// The version byte of the encoding this build writes and verifies.
pub(crate) const VERSION: u8 = 1;

/// The `prev_hash` of a session's first row.
pub(crate) const GENESIS: Hash = [0; 32];

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The kind of a chained row, its byte in the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// The session start (its `sessions` row).
    Start = 1,
    /// A row of `messages`.
    Message = 2,
    /// A row of `tool_usage`.
    ToolCall = 3,
    /// A row of `session_events`.
    Event = 4,
    /// The session end (the `end_*` columns of its `sessions` row).
    End = 5,
}

impl RowKind {
    /// What the row is, in words: `start`, `message`, `tool call`, `event` or `end`.
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Start => "start",
            RowKind::Message => "message",
            RowKind::ToolCall => "tool call",
            RowKind::Event => "event",
            RowKind::End => "end",
        }
    }

    /// The table that stores rows of this kind.
    pub fn table(self) -> &'static str {
        match self {
            RowKind::Start | RowKind::End => "sessions",
            RowKind::Message => "messages",
            RowKind::ToolCall => "tool_usage",
            RowKind::Event => "session_events",
        }
    }
}

/// `bytes` in lowercase hex, as hashes and signatures are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A row's encoding under construction (see the module doc for the layout).
struct Encoder(Vec<u8>);

impl Encoder {
    fn new(prev: &Hash, kind: RowKind, seq: u64) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(prev);
        bytes.push(VERSION);
        bytes.push(kind as u8);
        bytes.extend_from_slice(&seq.to_be_bytes());
        Encoder(bytes)
    }

    fn text(mut self, text: &str) -> Self {
        // Texts are bounded far below 4 GiB by validation; saturate anyway.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    fn int(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn flag(mut self, value: bool) -> Self {
        self.0.push(u8::from(value));
        self
    }

    fn optional(mut self, value: Option<i64>) -> Self {
        match value {
            None => self.0.push(0),
            Some(value) => {
                self.0.push(1);
                self = self.int(value);
            }
        }
        self
    }

    fn hash(self) -> Hash {
        Sha256::digest(&self.0).into()
    }

    #[cfg(test)]
    fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The hash of a session's start at position `seq` after `prev`.
pub(crate) fn start_hash(prev: &Hash, seq: u64, row: &SessionRow) -> Hash {
    start(prev, seq, row).hash()
}

/// The chain columns of a new session's row: its start at position 0
/// after [`GENESIS`], the head on it, nothing signed yet; all NULL when
/// the chain is off (the session is stored unchained).
#[derive(Debug)]
pub(crate) struct StartColumns {
    /// `chain_seq` and `signed_next`: 0.
    pub(crate) seq: Option<i64>,
    /// `prev_hash`: [`GENESIS`].
    pub(crate) prev: Option<Vec<u8>>,
    /// `row_hash` and `chain_head`: the start's hash.
    pub(crate) hash: Option<Vec<u8>>,
    /// `chain_next`: 1.
    pub(crate) next: Option<i64>,
}

impl StartColumns {
    /// The columns of `row` when `chained`, else NULLs.
    pub(crate) fn of(row: &SessionRow, chained: bool) -> Self {
        if !chained {
            return StartColumns {
                seq: None,
                prev: None,
                hash: None,
                next: None,
            };
        }
        StartColumns {
            seq: Some(0),
            prev: Some(GENESIS.to_vec()),
            hash: Some(start_hash(&GENESIS, 0, row).to_vec()),
            next: Some(1),
        }
    }
}

fn start(prev: &Hash, seq: u64, row: &SessionRow) -> Encoder {
    Encoder::new(prev, RowKind::Start, seq)
        .text(&row.session_id)
        .text(&row.start_time)
        .text(&row.metadata)
        .text(&row.written_by)
        .text(&row.written_via)
}

/// The hash of a message at position `seq` after `prev`.
pub(crate) fn message_hash(prev: &Hash, seq: u64, row: &MessageRow) -> Hash {
    Encoder::new(prev, RowKind::Message, seq)
        .int(row.id)
        .text(&row.session_id)
        .int(row.turn_id)
        .text(&row.agent_name)
        .text(&row.agent_role)
        .text(&row.message)
        .text(&row.timestamp)
        .flag(row.is_error)
        .text(&row.idempotency_key)
        .text(&row.trace_id)
        .text(&row.written_by)
        .text(&row.written_via)
        .optional(row.tokens.input)
        .optional(row.tokens.output)
        .flag(row.tokens.estimated)
        .hash()
}

/// The hash of a tool call at position `seq` after `prev`.
pub(crate) fn tool_call_hash(prev: &Hash, seq: u64, row: &ToolUsageRow) -> Hash {
    Encoder::new(prev, RowKind::ToolCall, seq)
        .int(row.id)
        .text(&row.session_id)
        .int(row.turn_id)
        .text(&row.agent_name)
        .text(&row.tool_name)
        .text(&row.tool_params)
        .text(&row.tool_result)
        .text(&row.timestamp)
        .flag(row.success)
        .int(row.duration_ms)
        .text(&row.idempotency_key)
        .text(&row.trace_id)
        .text(&row.written_by)
        .text(&row.written_via)
        .hash()
}

/// The hash of a session event at position `seq` after `prev`.
pub(crate) fn event_hash(prev: &Hash, seq: u64, row: &SessionEventRow) -> Hash {
    Encoder::new(prev, RowKind::Event, seq)
        .int(row.id)
        .text(&row.session_id)
        .text(&row.kind)
        .text(&row.detail)
        .text(&row.timestamp)
        .text(&row.idempotency_key)
        .text(&row.written_by)
        .text(&row.written_via)
        .hash()
}

/// The hash of a session's end at position `seq` after `prev`.
pub(crate) fn end_hash(
    prev: &Hash,
    seq: u64,
    session_id: &str,
    end_time: &str,
    status: SessionStatus,
    num_turns: i64,
) -> Hash {
    Encoder::new(prev, RowKind::End, seq)
        .text(session_id)
        .text(end_time)
        .text(status.as_str())
        .int(num_turns)
        .hash()
}

/// A row kind stored in its own table with an ID: messages, tool calls, session events.
pub(crate) trait Chained {
    /// Its kind in the chain.
    const KIND: RowKind;
    /// Its row ID.
    fn id(&self) -> i64;
    /// Its turn, if it belongs to one.
    fn turn(&self) -> Option<i64>;
    /// Its hash at position `seq` after `prev`.
    fn chain_hash(&self, prev: &Hash, seq: u64) -> Hash;
}

impl Chained for MessageRow {
    const KIND: RowKind = RowKind::Message;
    fn id(&self) -> i64 {
        self.id
    }
    fn turn(&self) -> Option<i64> {
        Some(self.turn_id)
    }
    fn chain_hash(&self, prev: &Hash, seq: u64) -> Hash {
        message_hash(prev, seq, self)
    }
}

impl Chained for ToolUsageRow {
    const KIND: RowKind = RowKind::ToolCall;
    fn id(&self) -> i64 {
        self.id
    }
    fn turn(&self) -> Option<i64> {
        Some(self.turn_id)
    }
    fn chain_hash(&self, prev: &Hash, seq: u64) -> Hash {
        tool_call_hash(prev, seq, self)
    }
}

impl Chained for SessionEventRow {
    const KIND: RowKind = RowKind::Event;
    fn id(&self) -> i64 {
        self.id
    }
    fn turn(&self) -> Option<i64> {
        None
    }
    fn chain_hash(&self, prev: &Hash, seq: u64) -> Hash {
        event_hash(prev, seq, self)
    }
}

/// The chain columns of one stored row, as read (any may be NULL or malformed).
#[derive(Clone, Debug, Default)]
pub(crate) struct StoredLink {
    /// `chain_seq` (`end_seq` for an end).
    pub(crate) seq: Option<i64>,
    /// `prev_hash` (`end_prev_hash`).
    pub(crate) prev: Option<Vec<u8>>,
    /// `row_hash` (`end_hash`).
    pub(crate) hash: Option<Vec<u8>>,
}

/// One stored row as the verifier sees it: where it is, its chain columns,
/// and the hash its content gives under its stored link.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    row: RowRef,
    /// Its position, previous hash and hash; `None` when any is NULL or malformed.
    chain: Option<(u64, Hash, Hash)>,
    /// The hash its content gives at its stored position after its stored previous hash.
    computed: Option<Hash>,
}

impl Link {
    /// The link of a row whose content hashes with `hash_of`.
    pub(crate) fn new(
        row: RowRef,
        stored: StoredLink,
        hash_of: impl FnOnce(&Hash, u64) -> Hash,
    ) -> Self {
        let seq = stored.seq.and_then(|seq| u64::try_from(seq).ok());
        let chain = seq
            .zip(self::stored(stored.prev))
            .zip(self::stored(stored.hash))
            .map(|((seq, prev), hash)| (seq, prev, hash));
        let computed = chain.map(|(seq, prev, _)| hash_of(&prev, seq));
        Link {
            row,
            chain,
            computed,
        }
    }

    /// The link of a row of a [`Chained`] table.
    pub(crate) fn of<T: Chained>(row: &T, stored: StoredLink) -> Self {
        let at = RowRef {
            kind: T::KIND,
            id: Some(row.id()),
            turn: row.turn(),
        };
        Link::new(at, stored, |prev, seq| row.chain_hash(prev, seq))
    }

    fn is_chained(&self) -> bool {
        self.chain.is_some()
    }
}

/// Which stored row: its kind (and so its table), its ID and its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRef {
    /// The kind of row; [`RowKind::table`] names its table.
    pub kind: RowKind,
    /// Its ID (`None` for a session's start and end: the session ID names them).
    pub id: Option<i64>,
    /// Its turn (`None` for rows outside turns).
    pub turn: Option<i64>,
}

impl RowRef {
    /// A session's start.
    pub(crate) fn start() -> Self {
        RowRef::of_session(RowKind::Start)
    }

    /// A session's start or end (named by the session, not by an ID).
    fn of_session(kind: RowKind) -> Self {
        RowRef {
            kind,
            id: None,
            turn: None,
        }
    }
}

/// How a row breaks its session's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// Its content does not give its stored hash (changed in place).
    HashMismatch,
    /// Its `prev_hash` is not the hash of the row before it (reordered, or a row before it replaced).
    LinkMismatch,
    /// Its position is not the next one (a row before it deleted, or a row inserted).
    Gap {
        /// The position the walk expected.
        expected: u64,
        /// The position the row holds.
        found: u64,
    },
    /// It carries no chain in a chained session (inserted from outside Audit).
    Unchained,
    /// The session's chain head is not its last row (rows at the end deleted).
    HeadMismatch {
        /// How many rows the head says the chain has.
        expected: u64,
        /// How many rows were found.
        found: u64,
    },
    /// The chain is consistent but its signed checkpoints do not vouch for
    /// it (the row named is the last one the checkpoint covers, or the
    /// first unsigned one).
    Checkpoint(CheckpointBreak),
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::HashMismatch => write!(f, "its content does not give its stored hash"),
            Break::LinkMismatch => write!(
                f,
                "its previous hash is not the hash of the row before it (rows reordered or replaced)"
            ),
            Break::Gap { expected, found } => write!(
                f,
                "it holds position {found} where {expected} was next (a row deleted or inserted)"
            ),
            Break::Unchained => write!(
                f,
                "it carries no chain in a chained session (inserted, or its chain removed)"
            ),
            Break::HeadMismatch { expected, found } => write!(
                f,
                "the session's head says {expected} rows, the chain has {found} (rows at its end deleted)"
            ),
            Break::Checkpoint(CheckpointBreak::UnknownKey { rows }) => write!(
                f,
                "the checkpoint over {rows} rows is signed by a key that is not trusted"
            ),
            Break::Checkpoint(CheckpointBreak::BadSignature { rows }) => {
                write!(
                    f,
                    "the signature of the checkpoint over {rows} rows is not valid"
                )
            }
            Break::Checkpoint(CheckpointBreak::HeadMismatch { rows }) => write!(
                f,
                "the signed head over {rows} rows is not the chain's (rows up to it rewritten)"
            ),
            Break::Checkpoint(CheckpointBreak::Unsigned { signed, rows }) => write!(
                f,
                "only {signed} of its {rows} rows are signed (a checkpoint removed, or rows added after the end)"
            ),
        }
    }
}

/// What walking a session's chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Every row is chained and matches, and the checkpoints vouch for it;
    /// `rows` rows end in `head`.
    Intact {
        /// How many rows the chain has (start and end included).
        rows: u64,
        /// The hash of the last row.
        head: Hash,
        /// The latest signed checkpoint (`None` while a session is too short to need one).
        checkpoint: Option<Checkpoint>,
    },
    /// The session was started before the chain existed (schema v6) or
    /// with the chain off: its `rows` rows carry no chain, which is not
    /// evidence of tampering.
    Unchained {
        /// How many rows the session has (start and end included).
        rows: u64,
    },
    /// The first row, in chain order, that does not match.
    Broken {
        /// The row.
        row: RowRef,
        /// How it breaks the chain.
        what: Break,
    },
}

/// The head a session's row records: the last hash and the next position.
pub(crate) type Head = Option<(Hash, u64)>;

/// Everything stored about one session's chain, as read for verification.
pub(crate) struct StoredChain {
    /// The session row.
    pub(crate) session: SessionRow,
    /// Its start's chain columns.
    pub(crate) start: StoredLink,
    /// Its end's chain columns.
    pub(crate) end: StoredLink,
    /// Its messages, tool calls and events (any order).
    pub(crate) rows: Vec<Link>,
    /// Its recorded head.
    pub(crate) head: Head,
    /// Its checkpoints (any order).
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// Walks a session's chain (its start and end from the session row and
/// their stored columns, its other rows in any order) against its head,
/// then checks its checkpoints under `rules`.
pub(crate) fn verify(stored: StoredChain, rules: &Rules) -> Verification {
    let StoredChain {
        session,
        start,
        end,
        mut rows,
        head,
        checkpoints,
    } = stored;
    let start = Link::new(RowRef::start(), start, |prev, seq| {
        start_hash(prev, seq, &session)
    });
    let ended = session.status.is_ended();
    if ended || end.seq.is_some() || end.hash.is_some() {
        rows.push(Link::new(
            RowRef::of_session(RowKind::End),
            end,
            |prev, seq| {
                end_hash(
                    prev,
                    seq,
                    &session.session_id,
                    &session.end_time,
                    session.status,
                    session.num_turns,
                )
            },
        ));
    }
    // Traces of a chain in a session whose start carries none: the start
    // was stripped (to pass the session off as one from before the chain).
    let traces = !checkpoints.is_empty() || head.is_some() || rows.iter().any(Link::is_chained);
    let chain = match walk(start, rows, head) {
        Ok(chain) => chain,
        Err(Stopped::Unchained { .. }) if traces => {
            return Verification::Broken {
                row: RowRef::start(),
                what: Break::Unchained,
            };
        }
        Err(Stopped::Unchained { rows }) => return Verification::Unchained { rows },
        Err(Stopped::Broken { row, what }) => return Verification::Broken { row, what },
    };
    match checkpoint::check(&session.session_id, &chain, ended, checkpoints, rules) {
        Ok(checkpoint) => Verification::Intact {
            rows: u64::try_from(chain.len()).unwrap_or(u64::MAX),
            head: chain.last().map_or(GENESIS, |(_, hash)| *hash),
            checkpoint,
        },
        Err((row, what)) => Verification::Broken {
            row,
            what: Break::Checkpoint(what),
        },
    }
}

/// Why a walk stopped before the checkpoints.
enum Stopped {
    /// The session carries no chain.
    Unchained { rows: u64 },
    /// A row breaks it.
    Broken { row: RowRef, what: Break },
}

/// Walks the links in position order from `start`: the chain's rows and
/// hashes when every link matches and `head` is its end, else what was found.
fn walk(start: Link, rows: Vec<Link>, head: Head) -> Result<Vec<(RowRef, Hash)>, Stopped> {
    if !start.is_chained() {
        let total = u64::try_from(rows.len() + 1).unwrap_or(u64::MAX);
        return Err(Stopped::Unchained { rows: total });
    }
    let (mut chained, unchained): (Vec<Link>, Vec<Link>) =
        rows.into_iter().partition(Link::is_chained);
    chained.sort_by_key(|link| {
        (
            link.chain.map(|(seq, _, _)| seq),
            link.row.kind as u8,
            link.row.id,
        )
    });
    let mut walked: Vec<(RowRef, Hash)> = Vec::with_capacity(chained.len() + 1);
    let links = std::iter::once(start)
        .chain(chained)
        .filter_map(|link| link.chain.map(|chain| (link.row, chain, link.computed)));
    for (row, (seq, prev, hash), computed) in links {
        let expected_seq = u64::try_from(walked.len()).unwrap_or(u64::MAX);
        let expected_prev = walked.last().map_or(GENESIS, |(_, hash)| *hash);
        let what = if seq != expected_seq {
            Some(Break::Gap {
                expected: expected_seq,
                found: seq,
            })
        } else if prev != expected_prev {
            Some(Break::LinkMismatch)
        } else if computed != Some(hash) {
            Some(Break::HashMismatch)
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Stopped::Broken { row, what });
        }
        walked.push((row, hash));
    }
    if let Some(link) = unchained.first() {
        return Err(Stopped::Broken {
            row: link.row,
            what: Break::Unchained,
        });
    }
    let found = u64::try_from(walked.len()).unwrap_or(u64::MAX);
    let last = walked.last().map(|(_, hash)| *hash);
    match head {
        Some((head, next)) if Some(head) == last && next == found => Ok(walked),
        _ => Err(Stopped::Broken {
            row: RowRef::start(),
            what: Break::HeadMismatch {
                expected: head.map_or(0, |(_, next)| next),
                found,
            },
        }),
    }
}

/// A session's stored `chain_head` and `chain_next` as its [`Head`]
/// (`None` when either is NULL or malformed: an unchained session).
pub(crate) fn head(hash: Option<Vec<u8>>, next: Option<i64>) -> Head {
    stored(hash).zip(next.and_then(|next| u64::try_from(next).ok()))
}

/// A position as its column value.
pub(crate) fn position(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::internal("the chain position overflowed"))
}

/// A stored hash column as a [`Hash`]: `None` when NULL or not 32 bytes long.
pub(crate) fn stored(bytes: Option<Vec<u8>>) -> Option<Hash> {
    bytes.and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionRow {
        SessionRow {
            session_id: "s1".into(),
            start_time: "2026-01-01T00:00:00.000000Z".into(),
            end_time: String::new(),
            num_turns: 0,
            status: SessionStatus::Active,
            metadata: "m".into(),
            message_count: 0,
            tool_usage_count: 0,
            written_by: String::new(),
            written_via: String::new(),
        }
    }

    #[test]
    fn the_start_encoding_is_the_documented_byte_layout() {
        let bytes = start(&GENESIS, 0, &session()).bytes();
        let mut expected = vec![0u8; 32];
        expected.extend_from_slice(&[1, 1]);
        expected.extend_from_slice(&0u64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, b's', b'1']);
        expected.extend_from_slice(&[0, 0, 0, 27]);
        expected.extend_from_slice(b"2026-01-01T00:00:00.000000Z");
        expected.extend_from_slice(&[0, 0, 0, 1, b'm']);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_start_hash_is_sha256_of_its_encoding() {
        let hash = start_hash(&GENESIS, 0, &session());
        let direct: Hash = Sha256::digest(start(&GENESIS, 0, &session()).bytes()).into();
        assert_eq!(hash, direct);
        assert_ne!(hash, GENESIS);
    }

    /// Known answers, computed outside Rust from the documented layout
    /// (Python: `hashlib.sha256`, `struct.pack('>I' / '>q' / '>Q', ...)`).
    #[test]
    fn the_hashes_match_an_independent_implementation_of_the_layout() {
        let start = start_hash(&GENESIS, 0, &session());
        assert_eq!(
            hex(&start),
            "8a742b570a2e21d69dc24f790bf141e820f825cf2090041dc77d2ba0f0376c09"
        );
        let message = MessageRow {
            id: 7,
            session_id: "s1".into(),
            turn_id: 1,
            agent_name: "planner".into(),
            agent_role: "Strategic Planner".into(),
            message: "we go at dawn".into(),
            timestamp: "2026-01-01T00:00:01.000000Z".into(),
            is_error: false,
            idempotency_key: "k1".into(),
            trace_id: String::new(),
            written_by: "orchestrator".into(),
            written_via: String::new(),
            tokens: crate::store::types::TokenCounts {
                input: Some(10),
                output: None,
                estimated: true,
            },
        };
        assert_eq!(
            hex(&message_hash(&start, 1, &message)),
            "968885ee01b2138f2ce31dff0e4f462dfe834ca1e7e0d450fb737d22ca5d4939"
        );
    }

    #[test]
    fn every_field_the_position_and_the_link_change_the_hash() {
        let base = session();
        let hash = start_hash(&GENESIS, 0, &base);
        assert_ne!(hash, start_hash(&[1; 32], 0, &base), "the link");
        assert_ne!(hash, start_hash(&GENESIS, 1, &base), "the position");
        let changed = SessionRow {
            metadata: "n".into(),
            ..session()
        };
        assert_ne!(hash, start_hash(&GENESIS, 0, &changed));
    }

    #[test]
    fn length_prefixes_keep_adjacent_texts_apart() {
        let one = SessionRow {
            metadata: "ab".into(),
            written_by: String::new(),
            ..session()
        };
        let other = SessionRow {
            metadata: "a".into(),
            written_by: "b".into(),
            ..session()
        };
        assert_ne!(
            start_hash(&GENESIS, 0, &one),
            start_hash(&GENESIS, 0, &other)
        );
    }

    #[test]
    fn an_unknown_count_differs_from_zero() {
        let a = Encoder::new(&GENESIS, RowKind::Message, 1)
            .optional(None)
            .bytes();
        let b = Encoder::new(&GENESIS, RowKind::Message, 1)
            .optional(Some(0))
            .bytes();
        assert_ne!(a, b);
    }

    #[test]
    fn the_end_hash_covers_its_status_and_turns() {
        let end = |status, turns| end_hash(&GENESIS, 3, "s1", "t", status, turns);
        assert_ne!(
            end(SessionStatus::Completed, 2),
            end(SessionStatus::Failed, 2)
        );
        assert_ne!(
            end(SessionStatus::Completed, 2),
            end(SessionStatus::Completed, 3)
        );
    }

    #[test]
    fn a_stored_hash_of_the_wrong_length_is_no_hash() {
        assert_eq!(stored(None), None);
        assert_eq!(stored(Some(vec![1; 31])), None);
        assert_eq!(stored(Some(vec![1; 32])), Some([1; 32]));
    }
}
