//! What can go wrong with the spool: its file, its contents, its bounds.

use std::{
    io,
    path::{Path, PathBuf},
};

/// Why the spool refused an operation or could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed (the spool's file, its directory or its compaction copy).
    #[error("cannot {action} the audit spool {}: {cause}", path.display())]
    Io {
        /// What the spool was doing, e.g. `fsync`.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        cause: io::Error,
    },
    /// A damaged record before the end of the file: corruption, not a torn write,
    /// so the spool refuses to guess which writes it held.
    #[error(
        "the audit spool {} is corrupt at byte offset {offset}: {problem}; \
         move the file aside to start with an empty spool",
        path.display()
    )]
    Corrupt {
        /// The spool's file.
        path: PathBuf,
        /// Where the damaged record starts, in bytes from the start of the file.
        offset: u64,
        /// What is wrong with it.
        problem: RecordProblem,
    },
    /// As many writes wait as the spool may hold; the caller should pause.
    #[error("the audit spool is full: {max} writes wait for Audit")]
    Full {
        /// The spool's bound (`SpoolOptions::max_records`).
        max: usize,
    },
    /// A write Audit deduplicates only by its key, given without one: replaying
    /// it could store it twice.
    #[error(
        "a {kind} write needs an idempotency key to be spooled, or its replay could store it twice"
    )]
    MissingIdempotencyKey {
        /// The write's RPC, e.g. `StoreMessage`.
        kind: &'static str,
    },
    /// A write larger than the largest record the spool accepts.
    #[error("a {kind} write encodes to {size} bytes, more than the spool's limit of {max} bytes")]
    TooLarge {
        /// The write's RPC, e.g. `StoreToolUsage`.
        kind: &'static str,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl SpoolError {
    /// An I/O error while doing `action` to `path`.
    pub(super) fn io(action: &'static str, path: &Path, cause: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            cause,
        }
    }
}

/// What is wrong with a damaged record.
#[derive(Debug, thiserror::Error)]
pub enum RecordProblem {
    /// The frame's length and its check copy disagree.
    #[error("the record header is damaged (length {length} does not match its check value)")]
    BadHeader {
        /// The length as read.
        length: u32,
    },
    /// A length no record can have.
    #[error("the record claims {length} bytes, outside {min}..={max}")]
    BadLength {
        /// The length as read.
        length: u32,
        /// The smallest record body.
        min: usize,
        /// The largest record body.
        max: usize,
    },
    /// The record's bytes do not match its checksum.
    #[error("the record's checksum does not match its contents")]
    Checksum,
    /// A record type this spool does not know.
    #[error("unknown record type {0}")]
    UnknownKind(u8),
    /// An acknowledgement carrying bytes after its sequence number.
    #[error("an acknowledgement record carries {0} unexpected bytes")]
    AckPayload(usize),
    /// The write inside the record is not a valid protobuf message.
    #[error("the {kind} write inside cannot be decoded: {cause}")]
    Undecodable {
        /// The write's RPC.
        kind: &'static str,
        /// The decoder's error.
        cause: prost::DecodeError,
    },
    /// A sequence number out of range or not above the previous write's.
    #[error("sequence number {seq} does not follow {previous}")]
    Sequence {
        /// The record's sequence number.
        seq: u64,
        /// The previous write's sequence number (0 for none).
        previous: u64,
    },
    /// An acknowledgement of a write the file does not hold as pending.
    #[error("acknowledges write {0}, which is not pending in the file")]
    UnknownAck(u64),
}
