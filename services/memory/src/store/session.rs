//! One session's streams of turns, and the tally of what a removal takes away.

use std::collections::{BTreeMap, HashMap, btree_map};

use jiff::Timestamp;

use super::Entry;

/// What a removal took away, so the store can keep its totals in step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Removed {
    /// Turns removed.
    pub(super) memories: usize,
    /// Bytes of message text removed.
    pub(super) bytes: usize,
}

impl Removed {
    /// Adds another removal to this one.
    fn add(&mut self, other: Removed) {
        self.memories += other.memories;
        self.bytes += other.bytes;
    }
}

/// The turns of one (agent, session), by turn ID; the smallest ID is the oldest.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// The turns.
    turns: BTreeMap<i64, Entry>,
    /// Bytes of message text in `turns`.
    bytes: usize,
}

impl Stream {
    /// The turn with this ID, if kept.
    pub(super) fn get(&self, turn_id: i64) -> Option<&Entry> {
        self.turns.get(&turn_id)
    }

    /// Adds a turn (the caller has checked it is not kept yet).
    pub(super) fn insert(&mut self, entry: Entry) {
        self.bytes += entry.message.len();
        self.turns.insert(entry.turn_id, entry);
    }

    /// Evicts the oldest turns until at most `max` are left.
    pub(super) fn evict_beyond(&mut self, max: usize) -> Removed {
        let mut removed = Removed::default();
        while self.turns.len() > max {
            let Some((_, entry)) = self.turns.pop_first() else {
                break;
            };
            self.bytes -= entry.message.len();
            removed.add(Removed {
                memories: 1,
                bytes: entry.message.len(),
            });
        }
        removed
    }

    /// How many turns are kept.
    pub(super) fn len(&self) -> usize {
        self.turns.len()
    }

    /// The turns, oldest first.
    pub(super) fn entries(&self) -> btree_map::Values<'_, i64, Entry> {
        self.turns.values()
    }

    /// The turn IDs, ascending.
    pub(super) fn turn_ids(&self) -> Vec<i64> {
        self.turns.keys().copied().collect()
    }

    /// What removing the whole stream takes away.
    pub(super) fn contents(&self) -> Removed {
        Removed {
            memories: self.turns.len(),
            bytes: self.bytes,
        }
    }
}

/// One session: its streams by agent, and its place in the store's write order.
#[derive(Debug)]
pub(super) struct Session {
    /// The streams, by agent ID; never empty ones.
    pub(super) streams: HashMap<String, Stream>,
    /// Its key in the store's write order (larger is more recent).
    pub(super) write_seq: u64,
    /// When it was last written, for the TTL.
    pub(super) last_write: Timestamp,
}

impl Session {
    /// A session without streams, written at `now` as write number `write_seq`.
    pub(super) fn new(write_seq: u64, now: Timestamp) -> Self {
        Self {
            streams: HashMap::new(),
            write_seq,
            last_write: now,
        }
    }

    /// What removing the whole session takes away.
    pub(super) fn contents(&self) -> Removed {
        let mut removed = Removed::default();
        for stream in self.streams.values() {
            removed.add(stream.contents());
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn entry(turn_id: i64, message: &str) -> Entry {
        Entry {
            turn_id,
            message: Arc::from(message),
            stored_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_stream_evicts_its_smallest_turns_and_tracks_bytes() {
        let mut stream = Stream::default();
        for (turn, text) in [(3, "ccc"), (1, "a"), (2, "bb")] {
            stream.insert(entry(turn, text));
        }
        assert_eq!(
            stream.evict_beyond(1),
            Removed {
                memories: 2,
                bytes: 3
            }
        );
        assert_eq!(stream.turn_ids(), vec![3]);
        assert_eq!(
            stream.contents(),
            Removed {
                memories: 1,
                bytes: 3
            }
        );
    }

    #[test]
    fn a_session_sums_the_contents_of_its_streams() {
        let mut session = Session::new(0, Timestamp::UNIX_EPOCH);
        for agent in ["planner", "hacker"] {
            let mut stream = Stream::default();
            stream.insert(entry(0, "four"));
            session.streams.insert(agent.to_owned(), stream);
        }
        assert_eq!(
            session.contents(),
            Removed {
                memories: 2,
                bytes: 8
            }
        );
    }
}
