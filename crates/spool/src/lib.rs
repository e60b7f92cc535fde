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
//!   [`Spool::acknowledge`]) is stored once; messages, tool calls and session
//!   events, which Audit deduplicates only by key, are refused without one.
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
//! ```text
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

#[cfg(test)]
mod tests {
    use std::fs;

    use heist_proto::v1 as pb;
    use tempfile::TempDir;

    use super::*;

    fn message(session: &str, turn: i64) -> SpooledWrite {
        pb::StoreMessageRequest {
            session_id: session.into(),
            turn_id: turn,
            agent_name: "planner".into(),
            agent_role: "Strategic Planner".into(),
            message: format!("turn {turn}: we go at dawn"),
            is_error: false,
            idempotency_key: format!("{session}/turn/{turn}/message"),
            ..Default::default()
        }
        .into()
    }

    fn every_variant() -> Vec<SpooledWrite> {
        vec![
            pb::CreateSessionRequest {
                session_id: "heist_a".into(),
                metadata: r#"{"seed":42}"#.into(),
                idempotency_key: "heist_a/create".into(),
            }
            .into(),
            message("heist_a", 1),
            pb::StoreToolUsageRequest {
                session_id: "heist_a".into(),
                turn_id: 1,
                agent_name: "hacker".into(),
                tool_name: "calculator".into(),
                tool_params: "2+2".into(),
                tool_result: "4".into(),
                success: true,
                duration_ms: 12,
                idempotency_key: "heist_a/turn/1/tool/0/0".into(),
            }
            .into(),
            pb::EndSessionRequest {
                session_id: "heist_a".into(),
                num_turns: 1,
                status: pb::SessionStatus::Completed.into(),
                idempotency_key: "heist_a/end".into(),
            }
            .into(),
            pb::StoreSessionEventRequest {
                session_id: "heist_a".into(),
                kind: "breaker.open".into(),
                detail: r#"{"service":"memory"}"#.into(),
                idempotency_key: "heist_a/event/1".into(),
            }
            .into(),
            pb::StoreTurnRequest {
                message: Some(pb::StoreMessageRequest {
                    session_id: "heist_a".into(),
                    turn_id: 2,
                    agent_name: "hacker".into(),
                    message: "the vault runs on a timer".into(),
                    idempotency_key: "heist_a/turn/2/message".into(),
                    ..Default::default()
                }),
                tool_calls: vec![pb::StoreToolUsageRequest {
                    session_id: "heist_a".into(),
                    turn_id: 2,
                    agent_name: "hacker".into(),
                    tool_name: "calculator".into(),
                    tool_params: "3*4".into(),
                    tool_result: "12".into(),
                    success: true,
                    duration_ms: 1,
                    idempotency_key: "heist_a/turn/2/tool/0/0".into(),
                }],
            }
            .into(),
        ]
    }

    fn spool_file() -> (TempDir, PathBuf) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("spool/audit.spool");
        (dir, path)
    }

    fn small(compact_after: usize) -> SpoolOptions {
        SpoolOptions {
            max_records: 100,
            compact_after,
        }
    }

    fn seqs(spool: &Spool) -> Vec<u64> {
        spool.pending().iter().map(|(seq, _)| *seq).collect()
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    #[test]
    fn appended_writes_come_back_in_order_after_a_reopen() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        assert!(spool.is_empty());
        for turn in 1..=3 {
            assert_eq!(spool.append(message("heist_a", turn)).unwrap(), turn as u64);
        }
        let before = spool.pending().to_vec();
        drop(spool);
        let reopened = Spool::open(&path).unwrap();
        assert_eq!(reopened.pending(), before.as_slice());
        assert_eq!(reopened.len(), 3);
    }

    #[test]
    fn every_write_variant_round_trips_through_the_file() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        for write in every_variant() {
            spool.append(write).unwrap();
        }
        drop(spool);
        let reopened = Spool::open(&path).unwrap();
        let writes: Vec<_> = reopened.pending().iter().map(|(_, w)| w.clone()).collect();
        assert_eq!(writes, every_variant());
        let kinds: Vec<_> = writes.iter().map(SpooledWrite::kind).collect();
        assert_eq!(
            kinds,
            [
                "CreateSession",
                "StoreMessage",
                "StoreToolUsage",
                "EndSession",
                "StoreSessionEvent",
                "StoreTurn"
            ]
        );
    }

    #[test]
    fn append_fsyncs_and_a_second_handle_sees_the_record_while_the_first_is_open() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        let seq = spool.append(message("heist_a", 1)).unwrap();
        assert_eq!(spool.fsyncs, 1, "append returns after one fsync");
        let other = Spool::open(&path).unwrap();
        assert_eq!(other.pending(), spool.pending());
        assert_eq!(other.pending()[0].0, seq);
    }

    #[test]
    fn sequence_numbers_continue_after_a_reopen() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        spool.append(message("heist_a", 2)).unwrap();
        drop(spool);
        let mut reopened = Spool::open(&path).unwrap();
        assert_eq!(reopened.append(message("heist_a", 3)).unwrap(), 3);
    }

    #[test]
    fn acknowledging_every_write_truncates_the_file_to_empty() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        for turn in 1..=3 {
            spool.append(message("heist_a", turn)).unwrap();
        }
        assert!(spool.acknowledge(1).unwrap());
        assert!(spool.acknowledge(2).unwrap());
        assert!(file_len(&path) > 0);
        assert!(spool.acknowledge(3).unwrap());
        assert!(spool.is_empty());
        assert_eq!(file_len(&path), 0);
        assert_eq!(
            spool.append(message("heist_a", 4)).unwrap(),
            4,
            "numbers go on"
        );
    }

    #[test]
    fn acknowledgements_survive_a_reopen() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        for turn in 1..=4 {
            spool.append(message("heist_a", turn)).unwrap();
        }
        spool.acknowledge(1).unwrap();
        spool.acknowledge(3).unwrap();
        drop(spool);
        assert_eq!(seqs(&Spool::open(&path).unwrap()), vec![2, 4]);
    }

    #[test]
    fn acknowledging_out_of_order_keeps_replay_in_order() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        for turn in 1..=5 {
            spool.append(message("heist_a", turn)).unwrap();
        }
        spool.acknowledge(4).unwrap();
        spool.acknowledge(2).unwrap();
        assert_eq!(seqs(&spool), vec![1, 3, 5]);
    }

    #[test]
    fn acknowledging_a_sequence_number_not_pending_changes_nothing() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        spool.append(message("heist_a", 2)).unwrap();
        let len = file_len(&path);
        assert!(!spool.acknowledge(7).unwrap(), "never appended");
        assert_eq!((seqs(&spool), file_len(&path)), (vec![1, 2], len));
        assert!(spool.acknowledge(1).unwrap());
        let len = file_len(&path);
        assert!(!spool.acknowledge(1).unwrap(), "acknowledged already");
        assert_eq!((seqs(&spool), file_len(&path)), (vec![2], len));
    }

    #[test]
    fn compaction_keeps_only_the_pending_writes() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open_with(&path, small(2)).unwrap();
        for turn in 1..=6 {
            spool.append(message("heist_a", turn)).unwrap();
        }
        let full_len = file_len(&path);
        spool.acknowledge(1).unwrap();
        spool.acknowledge(2).unwrap();
        assert!(file_len(&path) > full_len, "two acks are only recorded");
        spool.acknowledge(4).unwrap();
        assert!(file_len(&path) < full_len, "the third rewrites the file");
        let expected = spool.pending().to_vec();
        assert_eq!(seqs(&spool), vec![3, 5, 6]);
        spool.append(message("heist_a", 7)).unwrap();
        drop(spool);
        let reopened = Spool::open_with(&path, small(2)).unwrap();
        assert_eq!(&reopened.pending()[..3], expected.as_slice());
        assert_eq!(seqs(&reopened), vec![3, 5, 6, 7]);
        assert!(!path.with_file_name("audit.spool.compact").exists());
    }

    #[test]
    fn pending_for_returns_one_sessions_writes_in_order() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        spool.append(message("heist_b", 1)).unwrap();
        spool.append(message("heist_a", 2)).unwrap();
        let of_a: Vec<u64> = spool.pending_for("heist_a").map(|(seq, _)| *seq).collect();
        assert_eq!(of_a, vec![1, 3]);
        assert_eq!(spool.pending_for("heist_c").count(), 0);
    }

    #[test]
    fn a_full_spool_refuses_writes_until_one_is_acknowledged() {
        let (_dir, path) = spool_file();
        let options = SpoolOptions {
            max_records: 2,
            compact_after: 10,
        };
        let mut spool = Spool::open_with(&path, options).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        spool.append(message("heist_a", 2)).unwrap();
        let error = spool.append(message("heist_a", 3)).unwrap_err();
        assert!(matches!(error, SpoolError::Full { max: 2 }));
        assert_eq!(
            error.to_string(),
            "the audit spool is full: 2 writes wait for Audit"
        );
        spool.acknowledge(1).unwrap();
        assert_eq!(spool.append(message("heist_a", 3)).unwrap(), 3);
    }

    #[test]
    fn a_message_without_an_idempotency_key_is_refused_and_not_written() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        let mut write = message("heist_a", 1);
        if let SpooledWrite::StoreMessage(request) = &mut write {
            request.idempotency_key.clear();
        }
        let error = spool.append(write).unwrap_err();
        assert!(matches!(error, SpoolError::MissingIdempotencyKey { .. }));
        assert!(spool.is_empty());
        assert_eq!(file_len(&path), 0);
    }

    #[test]
    fn a_torn_final_record_is_dropped_and_the_spool_still_works() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        spool.append(message("heist_a", 2)).unwrap();
        drop(spool);
        let good_len = file_len(&path);
        let frame = format::encode_write(3, &message("heist_a", 3)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&frame[..frame.len() / 2]);
        fs::write(&path, bytes).unwrap();

        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(seqs(&spool), vec![1, 2]);
        assert_eq!(file_len(&path), good_len, "cut to the last whole record");
        assert_eq!(spool.append(message("heist_a", 3)).unwrap(), 3);
        drop(spool);
        assert_eq!(seqs(&Spool::open(&path).unwrap()), vec![1, 2, 3]);
    }

    #[test]
    fn a_garbage_record_in_the_middle_is_an_error_naming_its_offset() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        let second = file_len(&path);
        spool.append(message("heist_a", 2)).unwrap();
        spool.append(message("heist_a", 3)).unwrap();
        drop(spool);
        let mut bytes = fs::read(&path).unwrap();
        let middle = second as usize + 20;
        bytes[middle..middle + 8].copy_from_slice(b"GARBAGE!");
        fs::write(&path, &bytes).unwrap();

        let error = Spool::open(&path).unwrap_err();
        match &error {
            SpoolError::Corrupt {
                offset, problem, ..
            } => {
                assert_eq!(*offset, second);
                assert!(matches!(problem, RecordProblem::Checksum));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(
            error.to_string().contains(&format!("byte offset {second}")),
            "{error}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a corrupt file is left as it is"
        );
    }

    #[test]
    fn a_file_of_garbage_is_refused_at_offset_zero() {
        let (_dir, path) = spool_file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            "this is not a spool file, just some text\n".repeat(4),
        )
        .unwrap();
        let error = Spool::open(&path).unwrap_err();
        assert!(
            matches!(error, SpoolError::Corrupt { offset: 0, .. }),
            "{error}"
        );
    }

    #[test]
    fn an_acknowledgement_of_a_write_the_file_lacks_is_corruption() {
        let (_dir, path) = spool_file();
        let mut spool = Spool::open(&path).unwrap();
        spool.append(message("heist_a", 1)).unwrap();
        drop(spool);
        let offset = file_len(&path);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend(format::encode_ack(9));
        bytes.extend(format::encode_write(2, &message("heist_a", 2)).unwrap());
        fs::write(&path, bytes).unwrap();
        let error = Spool::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                SpoolError::Corrupt { offset: o, problem: RecordProblem::UnknownAck(9), .. } if o == offset
            ),
            "{error}"
        );
    }

    #[test]
    fn a_file_whose_writes_are_all_acknowledged_is_emptied_on_open() {
        let (_dir, path) = spool_file();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = format::encode_write(1, &message("heist_a", 1)).unwrap();
        bytes.extend(format::encode_ack(1));
        fs::write(&path, bytes).unwrap();
        let mut spool = Spool::open(&path).unwrap();
        assert!(spool.is_empty());
        assert_eq!(file_len(&path), 0);
        assert_eq!(spool.append(message("heist_a", 2)).unwrap(), 2);
    }
}
