//! The pending writes in memory: in sequence order, removable in any order.

use super::{error::RecordProblem, write::SpooledWrite};

/// The highest sequence number a file may hold; far beyond any real run, it
/// keeps `seq + 1` from overflowing on a crafted file.
const MAX_SEQ: u64 = 1 << 62;

/// Pending writes by increasing sequence number.
///
/// Acknowledging the oldest write (the usual case) only moves `start`; the
/// acknowledged prefix is dropped once it is at least half of `entries`, so
/// each acknowledgement costs O(1) amortised.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Pending writes from `start` on; before it, acknowledged ones.
    entries: Vec<(u64, SpooledWrite)>,
    start: usize,
    /// The highest sequence number ever pushed (0: none).
    last_seq: u64,
}

impl Queue {
    /// The pending writes, oldest first.
    pub(super) fn pending(&self) -> &[(u64, SpooledWrite)] {
        self.entries.get(self.start..).unwrap_or_default()
    }

    /// The sequence number the next write gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.last_seq.saturating_add(1)
    }

    /// Adds a write; its sequence number must be above every earlier one.
    pub(super) fn push(&mut self, seq: u64, write: SpooledWrite) -> Result<(), RecordProblem> {
        if seq <= self.last_seq || seq > MAX_SEQ {
            return Err(RecordProblem::Sequence {
                seq,
                previous: self.last_seq,
            });
        }
        self.last_seq = seq;
        self.entries.push((seq, write));
        Ok(())
    }

    /// Adds a new write under [`Queue::next_seq`] and returns that number.
    pub(super) fn push_next(&mut self, write: SpooledWrite) -> u64 {
        let seq = self.next_seq();
        self.last_seq = seq;
        self.entries.push((seq, write));
        seq
    }

    /// Removes the pending write `seq`; false when none is pending under it.
    pub(super) fn remove(&mut self, seq: u64) -> bool {
        let Ok(index) = self.pending().binary_search_by_key(&seq, |(seq, _)| *seq) else {
            return false;
        };
        if index == 0 {
            self.start += 1;
            if self.start * 2 >= self.entries.len() {
                self.entries.drain(..self.start);
                self.start = 0;
            }
        } else {
            self.entries.remove(self.start + index);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use heist_proto::v1 as pb;

    use super::*;

    fn queue_of(seqs: &[u64]) -> Queue {
        let mut queue = Queue::default();
        for &seq in seqs {
            let write = SpooledWrite::CreateSession(pb::CreateSessionRequest {
                session_id: format!("heist_{seq}"),
                ..Default::default()
            });
            queue.push(seq, write).unwrap();
        }
        queue
    }

    fn seqs(queue: &Queue) -> Vec<u64> {
        queue.pending().iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn removing_in_any_order_keeps_the_rest_in_order() {
        let mut queue = queue_of(&[1, 2, 3, 4, 5]);
        assert!(queue.remove(3));
        assert!(queue.remove(1));
        assert!(!queue.remove(1), "already removed");
        assert!(!queue.remove(9), "never pushed");
        assert_eq!(seqs(&queue), vec![2, 4, 5]);
        assert!(queue.remove(2));
        assert!(queue.remove(4));
        assert_eq!(seqs(&queue), vec![5]);
        assert_eq!(queue.next_seq(), 6);
    }

    #[test]
    fn a_sequence_number_that_does_not_increase_is_refused() {
        let mut queue = queue_of(&[4]);
        let write = queue.pending()[0].1.clone();
        assert!(matches!(
            queue.push(4, write.clone()),
            Err(RecordProblem::Sequence {
                seq: 4,
                previous: 4
            })
        ));
        assert!(queue.push(0, write.clone()).is_err());
        assert!(queue.push(MAX_SEQ + 1, write).is_err());
    }
}
