//! The Audit spool: Audit writes that could not be delivered, kept in a local
//! file until Audit is back, then replayed in order.
//!
//! # Guarantees
//!
//! - [`Spool::append`] returns only once its record is on disk
//!   (`File::sync_data`): a SIGKILL or a power cut right after loses nothing.
//! - Replay follows append order ([`Spool::pending`]), whatever order the
//!   writes are acknowledged in. Every write carries its idempotency key, so a
//!   write replayed twice (a crash between Audit's reply and
//!   [`Spool::acknowledge`]) is stored once; messages and tool calls, which
//!   Audit deduplicates only by key, are refused without one.
//! - Acknowledgements are appended without an fsync: a crash that loses one
//!   only makes its write replay again, which the key makes harmless.
//! - On open, a torn last record (a crash in the middle of an append) is
//!   dropped with a warning and the file truncated to the last whole record;
//!   damage anywhere else is [`SpoolError::Corrupt`] with the byte offset,
//!   because guessing past it could lose or invent writes.
//!
//! # Format
//!
//! Binary frames: a length, its complement and a CRC-32 around
//! `kind | seq | protobuf request` (layout in `spool/format.rs`). Protobuf
//! rather than JSON lines because the writes already are prost messages (no
//! mirror structs to keep in step with `audit.proto`), and because the
//! checksum and the doubled length tell a torn tail from corruption, which a
//! JSON line cannot do with certainty.
//!
//! # Compaction
//!
//! When the last pending write is acknowledged the file is truncated to empty
//! (and fsynced). When more than [`SpoolOptions::compact_after`] acknowledged
//! writes precede pending ones, the file is rewritten with only the pending
//! ones: copy, fsync, rename over, fsync the directory.
//!
//! # Use from async code
//!
//! The API is synchronous. `append` waits for an fsync (tens of microseconds
//! on NVMe, up to tens of milliseconds on a busy disk), longer than an async
//! worker should block, so the recommendation is to keep the spool in an
//! `Arc<tokio::sync::Mutex<Spool>>` and run mutating calls on the blocking
//! pool with an owned guard:
//!
//! ```ignore
//! let mut spool = spool.clone().lock_owned().await;
//! let seq = tokio::task::spawn_blocking(move || spool.append(write)).await??;
//! ```
//!
//! [`Spool::pending`], [`Spool::pending_for`] and [`Spool::len`] do no I/O.
//! A spool file belongs to one process: two appending to it corrupt it.
//!
//! Layout: `write` (the writes), `format` (the on-disk format), `queue`
//! (pending writes in memory), `durable` (file-system steps), `error`.

mod durable;
mod error;
mod format;
mod queue;
mod write;

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

pub use error::{RecordProblem, SpoolError};
pub use write::SpooledWrite;

use format::{Corruption, Record};
use queue::Queue;

/// The spool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The most writes that may wait; one more is [`SpoolError::Full`].
    pub max_records: usize,
    /// Rewrite the file once more than this many acknowledged writes precede
    /// pending ones.
    pub compact_after: usize,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_records: 100_000,
            compact_after: 1_000,
        }
    }
}

/// The durable queue of Audit writes waiting for Audit; see the module doc.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    options: SpoolOptions,
    /// The pending writes, in sequence order.
    queue: Queue,
    /// Bytes of whole records in the file: the next record goes here.
    file_len: u64,
    /// Acknowledged writes still in the file: what compaction reclaims.
    acknowledged_in_file: usize,
    /// A failed append may have left bytes past `file_len`: cut them first.
    needs_trim: bool,
    /// A rename into the directory is not yet fsynced: do it before an
    /// append relies on the new file.
    dir_unsynced: bool,
    /// How many times the file was fsynced (tests check `append` does it).
    #[cfg(test)]
    fsyncs: usize,
}

/// Whether a record must be on disk before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync before returning (writes).
    Synced,
    /// Leave it to the OS (acknowledgements: losing one is harmless).
    Lazy,
}

impl Spool {
    /// Opens the spool at `path` with the default bounds, creating the file
    /// and its directory when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SpoolError> {
        Self::open_with(path, SpoolOptions::default())
    }

    /// Opens the spool at `path`, creating it when missing, or loads the
    /// writes it holds: a torn last record is dropped (with a warning) and
    /// the file cut after the last whole one; any other damage is
    /// [`SpoolError::Corrupt`]. A file holding more than `max_records`
    /// pending writes loads whole; `append` refuses until it drains.
    pub fn open_with(path: impl AsRef<Path>, options: SpoolOptions) -> Result<Self, SpoolError> {
        let path = path.as_ref().to_owned();
        let mut file = durable::open_or_create(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|cause| SpoolError::io("read", &path, cause))?;
        let mut queue = Queue::default();
        let mut acknowledged_in_file = 0;
        let end = format::scan(&bytes, |record| match record {
            Record::Write { seq, write } => queue.push(seq, write),
            Record::Ack { seq } if queue.remove(seq) => {
                acknowledged_in_file += 1;
                Ok(())
            }
            Record::Ack { seq } => Err(RecordProblem::UnknownAck(seq)),
        })
        .map_err(|Corruption { offset, problem }| SpoolError::Corrupt {
            path: path.clone(),
            offset,
            problem,
        })?;
        let mut spool = Self {
            path,
            file,
            options,
            queue,
            file_len: bytes.len() as u64,
            acknowledged_in_file,
            needs_trim: false,
            dir_unsynced: false,
            #[cfg(test)]
            fsyncs: 0,
        };
        if let Some(reason) = end.torn {
            tracing::warn!(
                file = %spool.path.display(),
                offset = end.good_len,
                dropped_bytes = spool.file_len.saturating_sub(end.good_len),
                reason,
                "dropping a torn record at the end of the audit spool"
            );
            spool.truncate(end.good_len)?;
        }
        spool.compact()?;
        Ok(spool)
    }

    /// Adds a write and returns its sequence number once the record is on
    /// disk. Refused when the spool is full, when the write lacks the
    /// idempotency key its replay needs, or when it is too large.
    pub fn append(&mut self, write: SpooledWrite) -> Result<u64, SpoolError> {
        if self.len() >= self.options.max_records {
            return Err(SpoolError::Full {
                max: self.options.max_records,
            });
        }
        write.check_replayable()?;
        let frame = format::encode_write(self.queue.next_seq(), &write)?;
        self.sync_dir_if_needed()?;
        self.write_frame(&frame, Durability::Synced)?;
        Ok(self.queue.push_next(write))
    }

    /// Marks the write `seq` as stored by Audit; false when no write is
    /// pending under `seq`. Compacts the file when it can. After an error
    /// the write still counts as acknowledged here; at worst it is replayed
    /// once more after a restart, which its idempotency key makes harmless.
    pub fn acknowledge(&mut self, seq: u64) -> Result<bool, SpoolError> {
        if !self.queue.remove(seq) {
            return Ok(false);
        }
        self.acknowledged_in_file += 1;
        if !self.compact()? {
            self.write_frame(&format::encode_ack(seq), Durability::Lazy)?;
        }
        Ok(true)
    }

    /// The pending writes with their sequence numbers, in append order: the
    /// order to replay them in.
    pub fn pending(&self) -> &[(u64, SpooledWrite)] {
        self.queue.pending()
    }

    /// The pending writes of one session, in append order.
    pub fn pending_for<'a>(
        &'a self,
        session_id: &'a str,
    ) -> impl Iterator<Item = &'a (u64, SpooledWrite)> {
        self.pending()
            .iter()
            .filter(move |(_, write)| write.session_id() == session_id)
    }

    /// How many writes are pending.
    pub fn len(&self) -> usize {
        self.pending().len()
    }

    /// True when no write is pending.
    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }

    /// The spool's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Empties the file when nothing is pending, or rewrites it with only
    /// the pending writes when enough acknowledged ones precede them. True
    /// when the acknowledged writes left the file (no ack record needed).
    fn compact(&mut self) -> Result<bool, SpoolError> {
        if self.is_empty() {
            if self.file_len > 0 || self.needs_trim {
                self.truncate(0)?;
            }
            self.acknowledged_in_file = 0;
            return Ok(true);
        }
        if self.acknowledged_in_file <= self.options.compact_after {
            return Ok(false);
        }
        let frames = self
            .pending()
            .iter()
            .map(|(seq, write)| format::encode_write(*seq, write));
        let copy = durable::write_copy(&self.path, frames)?;
        let (file, len) = durable::install(copy, &self.path)?;
        tracing::debug!(
            file = %self.path.display(),
            dropped = self.acknowledged_in_file,
            pending = self.len(),
            "compacted the audit spool"
        );
        self.file = file;
        self.file_len = len;
        self.acknowledged_in_file = 0;
        self.needs_trim = false;
        self.dir_unsynced = true;
        self.sync_dir_if_needed()?;
        Ok(true)
    }

    /// Cuts the file to `len` bytes and fsyncs it.
    fn truncate(&mut self, len: u64) -> Result<(), SpoolError> {
        self.file
            .set_len(len)
            .map_err(|cause| SpoolError::io("truncate", &self.path, cause))?;
        self.file_len = len;
        self.needs_trim = false;
        self.sync_data()
            .map_err(|cause| SpoolError::io("fsync", &self.path, cause))
    }

    /// Writes one frame after the last whole record. On failure, cuts the
    /// file back so no partial frame stays (or retries the cut next time).
    fn write_frame(&mut self, frame: &[u8], durability: Durability) -> Result<(), SpoolError> {
        if self.needs_trim {
            self.truncate(self.file_len)?;
        }
        let written =
            write_at(&mut self.file, self.file_len, frame).and_then(|()| match durability {
                Durability::Synced => self.sync_data(),
                Durability::Lazy => Ok(()),
            });
        match written {
            Ok(()) => {
                self.file_len += frame.len() as u64;
                Ok(())
            }
            Err(cause) => {
                self.needs_trim = self.file.set_len(self.file_len).is_err();
                Err(SpoolError::io("append to", &self.path, cause))
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        #[cfg(test)]
        {
            self.fsyncs += 1;
        }
        self.file.sync_data()
    }

    fn sync_dir_if_needed(&mut self) -> Result<(), SpoolError> {
        if self.dir_unsynced {
            durable::sync_parent(&self.path)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }
}

fn write_at(file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}
