//! The spool's on-disk format, and the scan that reads a file back and tells
//! a torn last record (a crash mid-append: dropped) from corruption (an error).
//!
//! A file is a sequence of frames, each holding one record:
//!
//! ```text
//! frame: length u32 LE | !length u32 LE | crc32(body) u32 LE | body (length bytes)
//! body:  kind u8 | seq u64 LE | payload
//! ```
//!
//! `kind` 1 to 5 is a write (`payload` is the Audit request's protobuf
//! encoding); `kind` 16 acknowledges the write `seq` (no payload). The length
//! is stored twice (the second time inverted) so that a damaged length is
//! caught before it is trusted, and never mistaken for a record cut short.

use super::{
    error::{RecordProblem, SpoolError},
    write::{ACK_KIND, SpooledWrite},
};

/// Bytes before a frame's body.
const HEADER_LEN: usize = 12;
/// The smallest body: a kind and a sequence number.
const MIN_BODY: usize = 9;
/// The largest body (Audit refuses far smaller writes anyway).
pub(super) const MAX_BODY: usize = 16 * 1024 * 1024;

/// One record read back from the file.
#[derive(Debug, PartialEq)]
pub(super) enum Record {
    /// A write waiting for Audit.
    Write {
        /// Its sequence number.
        seq: u64,
        /// The write.
        write: SpooledWrite,
    },
    /// Audit stored the write `seq`.
    Ack {
        /// The acknowledged write's sequence number.
        seq: u64,
    },
}

/// The frame of a write, or `TooLarge` when it exceeds [`MAX_BODY`].
pub(super) fn encode_write(seq: u64, write: &SpooledWrite) -> Result<Vec<u8>, SpoolError> {
    let payload = write.payload();
    let size = MIN_BODY + payload.len();
    if size > MAX_BODY {
        return Err(SpoolError::TooLarge {
            kind: write.kind(),
            size,
            max: MAX_BODY,
        });
    }
    Ok(frame(write.tag(), seq, &payload))
}

/// The frame of an acknowledgement of `seq`.
pub(super) fn encode_ack(seq: u64) -> Vec<u8> {
    frame(ACK_KIND, seq, &[])
}

fn frame(kind: u8, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(MIN_BODY + payload.len());
    body.push(kind);
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(payload);
    // Bodies are at most MAX_BODY (16 MiB), so the length fits a u32.
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&(!length).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// How a scan ended.
#[derive(Debug, PartialEq)]
pub(super) struct ScanEnd {
    /// Bytes of whole, valid records from the start of the file.
    pub(super) good_len: u64,
    /// Why the bytes after `good_len` (if any) were taken for a torn write.
    pub(super) torn: Option<&'static str>,
}

/// A damaged record that is not the torn end of the file.
#[derive(Debug)]
pub(super) struct Corruption {
    /// Where the record starts.
    pub(super) offset: u64,
    /// What is wrong with it.
    pub(super) problem: RecordProblem,
}

/// Reads every record of `bytes` in order and hands each to `apply`. A bad
/// record at the very end (cut short, zero-filled, or whole but failing its
/// checksum) is a torn write: the scan stops there. Any other bad record, or
/// one `apply` refuses, is corruption at that record's offset.
pub(super) fn scan(
    bytes: &[u8],
    mut apply: impl FnMut(Record) -> Result<(), RecordProblem>,
) -> Result<ScanEnd, Corruption> {
    let mut offset = 0;
    while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
        let corrupt = |problem| Corruption {
            offset: offset as u64,
            problem,
        };
        match step(rest) {
            Step::Frame { body, len } => {
                decode(body).and_then(&mut apply).map_err(corrupt)?;
                offset += len;
            }
            Step::Torn(reason) => return Ok(torn(offset, reason)),
            Step::Bad(_) if rest.iter().all(|byte| *byte == 0) => {
                return Ok(torn(offset, "zero-filled tail"));
            }
            Step::Bad(problem) => return Err(corrupt(problem)),
        }
    }
    Ok(ScanEnd {
        good_len: offset as u64,
        torn: None,
    })
}

fn torn(offset: usize, reason: &'static str) -> ScanEnd {
    ScanEnd {
        good_len: offset as u64,
        torn: Some(reason),
    }
}

/// What the bytes at the current offset hold.
enum Step<'a> {
    /// A whole frame whose body matches its checksum, `len` bytes in all.
    Frame { body: &'a [u8], len: usize },
    /// The end of the file, cut short by a crash.
    Torn(&'static str),
    /// A damaged frame.
    Bad(RecordProblem),
}

fn step(rest: &[u8]) -> Step<'_> {
    let (Some(length), Some(check), Some(checksum)) =
        (le_u32(rest, 0), le_u32(rest, 4), le_u32(rest, 8))
    else {
        return Step::Torn("partial record header");
    };
    if check != !length {
        return Step::Bad(RecordProblem::BadHeader { length });
    }
    let body_len = length as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&body_len) {
        return Step::Bad(RecordProblem::BadLength {
            length,
            min: MIN_BODY,
            max: MAX_BODY,
        });
    }
    let len = HEADER_LEN + body_len;
    let Some(body) = rest.get(HEADER_LEN..len) else {
        return Step::Torn("partial record");
    };
    if crc32fast::hash(body) != checksum {
        return if len == rest.len() {
            Step::Torn("last record fails its checksum")
        } else {
            Step::Bad(RecordProblem::Checksum)
        };
    }
    Step::Frame { body, len }
}

fn decode(body: &[u8]) -> Result<Record, RecordProblem> {
    let (Some(&kind), Some(seq)) = (body.first(), le_u64(body, 1)) else {
        // `step` only yields bodies of at least MIN_BODY bytes.
        return Err(RecordProblem::BadLength {
            length: u32::try_from(body.len()).unwrap_or(u32::MAX),
            min: MIN_BODY,
            max: MAX_BODY,
        });
    };
    let payload = body.get(MIN_BODY..).unwrap_or_default();
    if kind == ACK_KIND {
        return match payload.len() {
            0 => Ok(Record::Ack { seq }),
            extra => Err(RecordProblem::AckPayload(extra)),
        };
    }
    SpooledWrite::decode(kind, payload).map(|write| Record::Write { seq, write })
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    slice.try_into().ok().map(u32::from_le_bytes)
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    slice.try_into().ok().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use heist_proto::v1 as pb;

    use super::*;

    fn end_session(seq: u64) -> (u64, SpooledWrite) {
        let write = SpooledWrite::EndSession(pb::EndSessionRequest {
            session_id: "heist_1".into(),
            num_turns: 7,
            status: pb::SessionStatus::Completed.into(),
            idempotency_key: "heist_1/end".into(),
        });
        (seq, write)
    }

    fn file_of(records: &[(u64, SpooledWrite)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (seq, write) in records {
            bytes.extend(encode_write(*seq, write).unwrap());
        }
        bytes
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<Record>, ScanEnd), Corruption> {
        let mut records = Vec::new();
        let end = scan(bytes, |record| {
            records.push(record);
            Ok(())
        })?;
        Ok((records, end))
    }

    #[test]
    fn frames_read_back_as_the_records_written() {
        let mut bytes = file_of(&[end_session(1)]);
        bytes.extend(encode_ack(1));
        let (records, end) = read_all(&bytes).unwrap();
        let (seq, write) = end_session(1);
        assert_eq!(
            records,
            vec![Record::Write { seq, write }, Record::Ack { seq: 1 }]
        );
        assert_eq!(
            end,
            ScanEnd {
                good_len: bytes.len() as u64,
                torn: None
            }
        );
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_write() {
        let whole = file_of(&[end_session(1), end_session(2)]);
        let first_len = encode_write(1, &end_session(1).1).unwrap().len();
        for cut in first_len + 1..whole.len() {
            let (records, end) = read_all(&whole[..cut]).unwrap();
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(end.good_len, first_len as u64, "cut at {cut}");
            assert!(end.torn.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn a_zero_filled_tail_is_a_torn_write() {
        let mut bytes = file_of(&[end_session(1)]);
        let good_len = bytes.len() as u64;
        bytes.extend([0; 40]);
        let (_, end) = read_all(&bytes).unwrap();
        assert_eq!(
            end,
            ScanEnd {
                good_len,
                torn: Some("zero-filled tail")
            }
        );
    }

    #[test]
    fn a_damaged_length_is_corruption_not_a_torn_write() {
        let mut bytes = file_of(&[end_session(1)]);
        bytes[0] ^= 0x40;
        let corruption = read_all(&bytes).unwrap_err();
        assert_eq!(corruption.offset, 0);
        assert!(matches!(
            corruption.problem,
            RecordProblem::BadHeader { .. }
        ));
    }

    #[test]
    fn a_flipped_bit_before_the_last_record_is_corruption_at_its_offset() {
        let mut bytes = file_of(&[end_session(1), end_session(2), end_session(3)]);
        let frame_len = bytes.len() / 3;
        bytes[frame_len + HEADER_LEN + 3] ^= 1;
        let corruption = read_all(&bytes).unwrap_err();
        assert_eq!(corruption.offset, frame_len as u64);
        assert!(matches!(corruption.problem, RecordProblem::Checksum));
    }

    #[test]
    fn an_acknowledgement_with_a_payload_is_corruption() {
        let bytes = frame(ACK_KIND, 1, b"xyz");
        let corruption = read_all(&bytes).unwrap_err();
        assert!(matches!(corruption.problem, RecordProblem::AckPayload(3)));
    }

    #[test]
    fn a_record_refused_by_the_caller_is_corruption_at_its_offset() {
        let bytes = file_of(&[end_session(1), end_session(2)]);
        let corruption = scan(&bytes, |record| match record {
            Record::Write { seq: 2, .. } => Err(RecordProblem::UnknownAck(2)),
            _ => Ok(()),
        })
        .unwrap_err();
        assert_eq!(corruption.offset, (bytes.len() / 2) as u64);
    }

    #[test]
    fn a_write_larger_than_the_limit_is_refused() {
        let write = SpooledWrite::StoreMessage(pb::StoreMessageRequest {
            message: "x".repeat(MAX_BODY),
            idempotency_key: "k".into(),
            ..Default::default()
        });
        let error = encode_write(1, &write).unwrap_err();
        assert!(matches!(
            error,
            SpoolError::TooLarge {
                kind: "StoreMessage",
                ..
            }
        ));
    }
}
