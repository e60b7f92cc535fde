//! The store behind every Memory RPC: a bounded in-memory cache of turns per
//! (agent, session), served compressed.
//!
//! Layout: [`MemoryStore`] (here) keeps sessions by ID, each holding its streams by agent
//! (`session`), and a write order of sessions for evicting the least recently written;
//! `limits` bounds it all, `validate` checks the caller's input, `summary` compresses older
//! turns, and `error` names what can go wrong. [`RedisStore`] (`on_redis`) keeps the same
//! contract on Redis, and [`Backend`] (`backend`) is the one the service runs on.
//!
//! Every operation costs O(log n) in the number of sessions and turns, plus the size of its
//! answer: nothing scans all sessions. Time is passed in (`now`), never read here.

mod backend;
mod error;
mod limits;
mod on_redis;
mod session;
mod summary;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;

use crate::metrics::{self, Cause};

pub use self::backend::{Backend, StoreConfig};
pub use self::error::{ErrorKind, MemoryError};
pub use self::limits::Limits;
pub use self::on_redis::RedisStore;
use self::session::{Removed, Session, Stream};
pub use self::validate::{
    DEFAULT_MAX_CHARS, DEFAULT_RECENT_COUNT, MAX_ID_CHARS, MAX_MAX_CHARS, MAX_RECENT_COUNT,
    MIN_MAX_CHARS, MIN_RECENT_COUNT,
};

/// A stored turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The turn.
    pub turn_id: i64,
    /// The message, shared so that answers copy no text while the store is locked.
    pub message: Arc<str>,
    /// When it was stored; its `Display` is RFC 3339 in UTC.
    pub stored_at: Timestamp,
}

/// The outcome of [`MemoryStore::store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    /// False when the turn was stored already with the same text (a repeat).
    pub stored: bool,
    /// How many turns are now kept for (agent, session).
    pub memories_count: u64,
}

/// An (agent, session)'s compressed memory, from [`MemoryStore::compressed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compressed {
    /// The most recent turns, oldest first, verbatim.
    pub recent: Vec<Entry>,
    /// The older turns, summarised within the asked number of characters.
    pub summary: String,
    /// How many turns are kept for (agent, session).
    pub memories_count: u64,
}

/// Counts and limits, from [`MemoryStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Turns kept now.
    pub total_memories: u64,
    /// (agent, session) pairs kept now.
    pub total_streams: u64,
    /// Sessions kept now.
    pub total_sessions: u64,
    /// Distinct agents kept now.
    pub total_agents: u64,
    /// Turns dropped since start (per-stream limit, total limits, TTL, clear).
    pub evicted_memories: u64,
    /// Sessions dropped since start (total limits or TTL).
    pub evicted_sessions: u64,
    /// The per-(agent, session) limit.
    pub max_per_stream: u64,
    /// The total limit.
    pub max_total: u64,
    /// Bytes of message text kept now.
    pub total_bytes: u64,
}

/// The bounded store of turns per (agent, session).
///
/// Not thread-safe on its own: the service wraps it in a mutex, which every method holds
/// only briefly. A session is evicted whole when it outlives [`Limits::ttl`] since its last
/// write, or, least recently written first, when the store exceeds a total limit. A session
/// that alone exceeds a total limit is evicted too, including the turn just stored.
#[derive(Debug)]
pub struct MemoryStore {
    /// The bounds.
    limits: Limits,
    /// The sessions by ID; a session always holds a stream, a stream always a turn.
    sessions: HashMap<String, Session>,
    /// Session IDs by write number, least recently written first, so eviction and the TTL
    /// sweep take from the front.
    write_order: BTreeMap<u64, String>,
    /// The number of streams per agent, for counting distinct agents.
    agents: HashMap<String, usize>,
    /// The next write number.
    next_write_seq: u64,
    /// Streams kept.
    streams: usize,
    /// Turns kept.
    memories: usize,
    /// Bytes of message text kept.
    bytes: usize,
    /// Turns dropped since start.
    evicted_memories: u64,
    /// Sessions dropped by the limits or the TTL since start.
    evicted_sessions: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_valid_limits(Limits::default())
    }
}

impl MemoryStore {
    /// An empty store bounded by `limits`, which must pass [`Limits::validate`].
    pub fn new(limits: Limits) -> Result<Self, MemoryError> {
        limits.validate()?;
        Ok(Self::with_valid_limits(limits))
    }

    /// An empty store bounded by limits already validated.
    fn with_valid_limits(limits: Limits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            write_order: BTreeMap::new(),
            agents: HashMap::new(),
            next_write_seq: 0,
            streams: 0,
            memories: 0,
            bytes: 0,
            evicted_memories: 0,
            evicted_sessions: 0,
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Stores one turn for (agent, session) at `now`, idempotently.
    ///
    /// A repeat with the same text answers `stored: false`; with other text it fails with
    /// [`MemoryError::Conflict`]. Expired sessions are swept first. A turn older than every
    /// turn of a full stream is stored and at once evicted, like any oldest turn.
    pub fn store(
        &mut self,
        agent_id: &str,
        session_id: &str,
        turn_id: i64,
        message: &str,
        now: Timestamp,
    ) -> Result<StoreOutcome, MemoryError> {
        validate::stream(agent_id, session_id)?;
        validate::turn_id(turn_id)?;
        validate::message(message, self.limits.max_message_bytes)?;
        self.sweep(now);
        if let Some(stream) = self.stream(agent_id, session_id)
            && let Some(kept) = stream.get(turn_id)
        {
            if *kept.message != *message {
                return Err(MemoryError::Conflict {
                    agent_id: agent_id.to_owned(),
                    session_id: session_id.to_owned(),
                    turn_id,
                });
            }
            return Ok(StoreOutcome {
                stored: false,
                memories_count: count(stream.len()),
            });
        }
        let max_per_stream = self.limits.max_per_stream;
        let stream = self.stream_for_write(agent_id, session_id, now);
        stream.insert(Entry {
            turn_id,
            message: Arc::from(message),
            stored_at: now,
        });
        let evicted = stream.evict_beyond(max_per_stream);
        self.memories += 1;
        self.bytes += message.len();
        metrics::stored(message.len());
        self.forget(evicted);
        self.evicted_memories += count(evicted.memories);
        metrics::evicted(Cause::per_stream_limit, evicted.memories);
        self.evict_over_limits();
        Ok(StoreOutcome {
            stored: true,
            memories_count: count(self.stream(agent_id, session_id).map_or(0, Stream::len)),
        })
    }

    /// The last `recent_count` turns of (agent, session) verbatim and a summary of the older
    /// ones within `max_chars` characters; an empty answer for an unknown agent or session.
    ///
    /// `recent_count` must lie in [`MIN_RECENT_COUNT`]`..=`[`MAX_RECENT_COUNT`] and
    /// `max_chars` in [`MIN_MAX_CHARS`]`..=`[`MAX_MAX_CHARS`]; callers map an unset value to
    /// [`DEFAULT_RECENT_COUNT`] or [`DEFAULT_MAX_CHARS`] first. A session past its TTL is
    /// served until the next sweep or store removes it.
    pub fn compressed(
        &self,
        agent_id: &str,
        session_id: &str,
        recent_count: i64,
        max_chars: i64,
    ) -> Result<Compressed, MemoryError> {
        let (recent_count, max_chars) =
            read_request(agent_id, session_id, recent_count, max_chars)?;
        let Some(stream) = self.stream(agent_id, session_id) else {
            return Ok(Compressed::default());
        };
        Ok(compose(
            stream.len(),
            stream.entries().rev(),
            recent_count,
            max_chars,
        ))
    }

    /// The turn IDs kept for (agent, session), ascending; none for an unknown one.
    pub fn turn_ids(&self, agent_id: &str, session_id: &str) -> Result<Vec<i64>, MemoryError> {
        validate::stream(agent_id, session_id)?;
        Ok(self
            .stream(agent_id, session_id)
            .map_or_else(Vec::new, Stream::turn_ids))
    }

    /// Counts and limits.
    pub fn stats(&self) -> Stats {
        Stats {
            total_memories: count(self.memories),
            total_streams: count(self.streams),
            total_sessions: count(self.sessions.len()),
            total_agents: count(self.agents.len()),
            evicted_memories: self.evicted_memories,
            evicted_sessions: self.evicted_sessions,
            max_per_stream: count(self.limits.max_per_stream),
            max_total: count(self.limits.max_total),
            total_bytes: count(self.bytes),
        }
    }

    /// Deletes the turns of one agent in one session, of one session, or (both `None`) all,
    /// and answers how many turns were deleted. An agent without a session is rejected.
    pub fn clear(
        &mut self,
        agent_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<u64, MemoryError> {
        let removed = match (agent_id, session_id) {
            (Some(_), None) => return Err(MemoryError::AgentWithoutSession),
            (None, None) => self.remove_all(),
            (None, Some(session_id)) => {
                validate::id("session_id", session_id)?;
                self.remove_session(session_id)
            }
            (Some(agent_id), Some(session_id)) => {
                validate::stream(agent_id, session_id)?;
                self.remove_stream(agent_id, session_id)
            }
        };
        self.evicted_memories += count(removed.memories);
        metrics::evicted(Cause::cleared, removed.memories);
        Ok(count(removed.memories))
    }

    /// Evicts the sessions not written for [`Limits::ttl`] before `now`, and answers how many.
    ///
    /// It takes sessions in write order and stops at the first one still alive, so it costs
    /// O(log n) per evicted session. Should the clock step back, expiry may come late,
    /// never early.
    pub fn sweep(&mut self, now: Timestamp) -> u64 {
        let mut evicted = 0;
        while let Some(session_id) = self.write_order.values().next()
            && self
                .sessions
                .get(session_id)
                .is_none_or(|session| self.is_expired(session, now))
        {
            self.evict_least_recent(Cause::ttl);
            evicted += 1;
        }
        evicted
    }

    /// Whether `session` has outlived the TTL at `now`.
    fn is_expired(&self, session: &Session, now: Timestamp) -> bool {
        let idle = now.duration_since(session.last_write);
        !idle.is_negative() && idle.unsigned_abs() >= self.limits.ttl
    }

    /// The stream of (agent, session), if kept.
    fn stream(&self, agent_id: &str, session_id: &str) -> Option<&Stream> {
        self.sessions.get(session_id)?.streams.get(agent_id)
    }

    /// The stream of (agent, session), created if need be, with its session moved to the end
    /// of the write order as written at `now`.
    fn stream_for_write(
        &mut self,
        agent_id: &str,
        session_id: &str,
        now: Timestamp,
    ) -> &mut Stream {
        let write_seq = self.next_write_seq;
        self.next_write_seq += 1;
        self.write_order.insert(write_seq, session_id.to_owned());
        let session = match self.sessions.entry(session_id.to_owned()) {
            MapEntry::Occupied(occupied) => {
                let session = occupied.into_mut();
                self.write_order.remove(&session.write_seq);
                session.write_seq = write_seq;
                session.last_write = now;
                session
            }
            MapEntry::Vacant(vacant) => vacant.insert(Session::new(write_seq, now)),
        };
        match session.streams.entry(agent_id.to_owned()) {
            MapEntry::Occupied(occupied) => occupied.into_mut(),
            MapEntry::Vacant(vacant) => {
                *self.agents.entry(agent_id.to_owned()).or_default() += 1;
                self.streams += 1;
                vacant.insert(Stream::default())
            }
        }
    }

    /// Evicts the least recently written sessions while a total limit is exceeded.
    fn evict_over_limits(&mut self) {
        while self.memories > self.limits.max_total
            || self.bytes > self.limits.max_total_bytes
            || self.sessions.len() > self.limits.max_sessions
        {
            if !self.evict_least_recent(Cause::total_limit) {
                break;
            }
        }
    }

    /// Evicts the least recently written session, counting it as evicted for
    /// `cause`; false when there is none.
    fn evict_least_recent(&mut self, cause: Cause) -> bool {
        let Some((_, session_id)) = self.write_order.pop_first() else {
            return false;
        };
        let removed = self.remove_session(&session_id);
        self.evicted_sessions += 1;
        self.evicted_memories += count(removed.memories);
        metrics::evicted(cause, removed.memories);
        true
    }

    /// Removes one session with its streams.
    fn remove_session(&mut self, session_id: &str) -> Removed {
        let Some(session) = self.sessions.remove(session_id) else {
            return Removed::default();
        };
        self.write_order.remove(&session.write_seq);
        let removed = session.contents();
        for agent_id in session.streams.keys() {
            self.forget_stream_of(agent_id);
        }
        self.forget(removed);
        removed
    }

    /// Removes one stream, and its session when that was the last one.
    fn remove_stream(&mut self, agent_id: &str, session_id: &str) -> Removed {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return Removed::default();
        };
        let Some(stream) = session.streams.remove(agent_id) else {
            return Removed::default();
        };
        if session.streams.is_empty() {
            let write_seq = session.write_seq;
            self.sessions.remove(session_id);
            self.write_order.remove(&write_seq);
        }
        self.forget_stream_of(agent_id);
        let removed = stream.contents();
        self.forget(removed);
        removed
    }

    /// Removes everything.
    fn remove_all(&mut self) -> Removed {
        let removed = Removed {
            memories: self.memories,
            bytes: self.bytes,
        };
        self.sessions.clear();
        self.write_order.clear();
        self.agents.clear();
        self.streams = 0;
        self.forget(removed);
        removed
    }

    /// Takes a removed stream of `agent_id` off the stream and agent counts.
    fn forget_stream_of(&mut self, agent_id: &str) {
        self.streams = self.streams.saturating_sub(1);
        if let Some(streams) = self.agents.get_mut(agent_id) {
            *streams -= 1;
            if *streams == 0 {
                self.agents.remove(agent_id);
            }
        }
    }

    /// Takes removed turns off the turn and byte totals.
    fn forget(&mut self, removed: Removed) {
        self.memories = self.memories.saturating_sub(removed.memories);
        self.bytes = self.bytes.saturating_sub(removed.bytes);
        metrics::removed(removed.memories, removed.bytes);
    }
}

impl Drop for MemoryStore {
    /// What a dropped store held leaves the process's gauges.
    fn drop(&mut self) {
        metrics::removed(self.memories, self.bytes);
    }
}

/// Checks a compressed read's request and answers its `recent_count` and `max_chars` as
/// counts.
fn read_request(
    agent_id: &str,
    session_id: &str,
    recent_count: i64,
    max_chars: i64,
) -> Result<(usize, usize), MemoryError> {
    validate::stream(agent_id, session_id)?;
    let recent_count = validate::in_range(
        "recent_count",
        recent_count,
        MIN_RECENT_COUNT,
        MAX_RECENT_COUNT,
    )?;
    let max_chars = validate::in_range("max_chars", max_chars, MIN_MAX_CHARS, MAX_MAX_CHARS)?;
    Ok((recent_count, max_chars))
}

/// The compressed answer for a stream of `len` turns, given newest first: the first
/// `recent_count` verbatim, the rest summarised (see `summary::summarize` for how many of
/// them must be given, and how much of each).
fn compose<'a>(
    len: usize,
    mut newest_first: impl Iterator<Item = &'a Entry>,
    recent_count: usize,
    max_chars: usize,
) -> Compressed {
    let mut recent: Vec<Entry> = newest_first.by_ref().take(recent_count).cloned().collect();
    recent.reverse();
    let older = newest_first.map(|entry| (entry.turn_id, &*entry.message));
    Compressed {
        summary: summary::summarize(len.saturating_sub(recent.len()), older, max_chars),
        recent,
        memories_count: count(len),
    }
}

/// A count as the `u64` the API speaks (lossless on every supported target).
fn count(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}
