//! The store on Redis: the same contract as [`MemoryStore`](super::MemoryStore), shared by
//! every Memory replica using the same Redis.
//!
//! Each operation is one Lua script (`on_redis/*.lua`, sent by SHA with `EVALSHA`, loaded
//! on a miss), so it runs atomically: two replicas storing the same turn at once store it
//! once, and the counters (kept in Redis) stay exact. The bounds are the in-memory store's:
//! the per-stream bound trims the list of turn IDs (`LTRIM`), the total bounds evict whole
//! sessions least recently written first, and the TTL is swept by the scripts with the
//! caller's clock (`now`), on every store and by the service's sweeper. A `PEXPIRE` on every
//! key, renewed on each write to twice the TTL, is the backstop should no replica sweep.
//! Keys are built inside the scripts, so this needs one Redis, not a cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use redis::{
    Client, RedisError, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{
    Compressed, Entry, Limits, MemoryError, Stats, StoreOutcome, backend::new_instance_id, compose,
    count, read_request, summary, validate,
};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer a command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The characters per summary line assumed for a compressed read's first batch of older
/// turns (a line holds a snippet of up to 100 characters).
const FIRST_BATCH_CHARS_PER_LINE: usize = 50;
/// The key prefix of everything the store writes.
const PREFIX: &str = "heist:memory:";

/// The scripts, each with the shared functions before it.
struct Scripts {
    store: Script,
    read: Script,
    turns: Script,
    stats: Script,
    clear: Script,
    sweep: Script,
}

impl Scripts {
    fn new() -> Self {
        let script =
            |body: &str| Script::new(&format!("{}\n{body}", include_str!("on_redis/common.lua")));
        Self {
            store: script(include_str!("on_redis/store.lua")),
            read: script(include_str!("on_redis/read.lua")),
            turns: script(include_str!("on_redis/turns.lua")),
            stats: script(include_str!("on_redis/stats.lua")),
            clear: script(include_str!("on_redis/clear.lua")),
            sweep: script(include_str!("on_redis/sweep.lua")),
        }
    }
}

/// The Redis store: a cheap-to-clone handle on one reconnecting connection.
#[derive(Clone)]
pub struct RedisStore {
    /// The connection; it reconnects by itself after Redis comes back.
    connection: ConnectionManager,
    /// The scripts.
    scripts: Arc<Scripts>,
    /// The bounds, the same for every replica (each passes its own with each write).
    limits: Limits,
    /// `host:port`, for error messages.
    address: Arc<str>,
    /// The store's instance ID as Redis last told it. Each script proposes a fresh one,
    /// which Redis keeps only when it holds none (it was emptied): so the ID changes
    /// exactly when the turns were lost.
    instance: Arc<Mutex<Arc<str>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`), checking the
    /// password, and bounds the store by `limits`, which must pass [`Limits::validate`].
    pub async fn connect(url: &str, limits: Limits) -> Result<Self, MemoryError> {
        limits.validate()?;
        let client = Client::open(url).map_err(|error| MemoryError::BadStoreUrl {
            value: heist_plumbing::quote(&redacted(url)).to_string(),
            reason: format!(
                "not a Redis URL `redis://[:password@]host:port[/db]` ({})",
                error.detail().unwrap_or("it does not parse")
            ),
        })?;
        let address: Arc<str> = client.get_connection_info().addr().to_string().into();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| MemoryError::Connect {
                address: address.to_string(),
                reason: reason(&error),
            })?;
        let _: Value = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|error| MemoryError::Connect {
                address: address.to_string(),
                reason: reason(&error),
            })?;
        Ok(Self {
            connection,
            scripts: Arc::new(Scripts::new()),
            limits,
            address,
            instance: Arc::new(Mutex::new(new_instance_id().into())),
        })
    }

    /// The store's bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store's instance ID: the same for every replica until Redis loses its data.
    pub fn instance_id(&self) -> Arc<str> {
        self.instance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stores one turn as [`MemoryStore::store`](super::MemoryStore::store) does, in one
    /// atomic script.
    pub async fn store(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: i64,
        message: &str,
        now: Timestamp,
    ) -> Result<StoreOutcome, MemoryError> {
        validate::stream(agent_id, session_id)?;
        validate::turn_id(turn_id)?;
        validate::message(message, self.limits.max_message_bytes)?;
        let limits = &self.limits;
        let (outcome, kept, instance): (i64, u64, String) = self
            .run(
                self.scripts
                    .store
                    .arg(PREFIX)
                    .arg(session_id)
                    .arg(agent_id)
                    .arg(turn_id)
                    .arg(message)
                    .arg(now.as_millisecond())
                    .arg(now.as_nanosecond().to_string())
                    .arg(limits.max_per_stream)
                    .arg(limits.max_total)
                    .arg(limits.max_total_bytes)
                    .arg(limits.max_sessions)
                    .arg(self.cutoff(now))
                    .arg(millis(limits.ttl.saturating_mul(2)))
                    .arg(new_instance_id()),
            )
            .await?;
        self.saw_instance(instance);
        match outcome {
            -1 => Err(MemoryError::Conflict {
                agent_id: agent_id.to_owned(),
                session_id: session_id.to_owned(),
                turn_id,
            }),
            stored => Ok(StoreOutcome {
                stored: stored == 1,
                memories_count: kept,
            }),
        }
    }

    /// The compressed memory, as [`MemoryStore::compressed`](super::MemoryStore::compressed)
    /// answers it, reading only the turns and bytes the answer depends on.
    pub async fn compressed(
        &self,
        agent_id: &str,
        session_id: &str,
        recent_count: i64,
        max_chars: i64,
    ) -> Result<Compressed, MemoryError> {
        let (recent_count, max_chars) =
            read_request(agent_id, session_id, recent_count, max_chars)?;
        // Most summaries fit far fewer lines than the bound allows (a line is rarely 10
        // characters): read a first batch, and the rest only if the summary reached its end.
        let bound = summary::turns_read(max_chars);
        let first = bound.min(max_chars / FIRST_BATCH_CHARS_PER_LINE + 8);
        let (len, newest_first) = self
            .newest(agent_id, session_id, recent_count + first, recent_count)
            .await?;
        if len == 0 {
            return Ok(Compressed::default());
        }
        if first < bound && newest_first.len() < len {
            let pulled = std::cell::Cell::new(0);
            let counted = newest_first
                .iter()
                .inspect(|_| pulled.set(pulled.get() + 1));
            let answer = compose(len, counted, recent_count, max_chars);
            if pulled.get() < newest_first.len() {
                return Ok(answer);
            }
            let (len, newest_first) = self
                .newest(agent_id, session_id, recent_count + bound, recent_count)
                .await?;
            return Ok(compose(len, newest_first.iter(), recent_count, max_chars));
        }
        Ok(compose(len, newest_first.iter(), recent_count, max_chars))
    }

    /// The stream's length and its newest `wanted` turns, newest first: the first `whole`
    /// verbatim, the others cut to [`summary::PREFIX_BYTES`] of message.
    async fn newest(
        &self,
        agent_id: &str,
        session_id: &str,
        wanted: usize,
        whole: usize,
    ) -> Result<(usize, Vec<Entry>), MemoryError> {
        let answer: Vec<Value> = self
            .run(
                self.scripts
                    .read
                    .arg(PREFIX)
                    .arg(session_id)
                    .arg(agent_id)
                    .arg(wanted)
                    .arg(whole)
                    .arg(summary::PREFIX_BYTES),
            )
            .await?;
        let mut answer = answer.into_iter();
        let len: usize = from_value(answer.next())?;
        let mut newest_first = Vec::new();
        while let Some(id) = answer.next() {
            let turn_id: i64 = from_value(Some(id))?;
            let stored: Vec<u8> = from_value(answer.next())?;
            newest_first.push(entry(turn_id, &stored)?);
        }
        Ok((len, newest_first))
    }

    /// The turn IDs kept for (agent, session), ascending; none for an unknown one.
    pub async fn turn_ids(
        &self,
        agent_id: &str,
        session_id: &str,
    ) -> Result<Vec<i64>, MemoryError> {
        validate::stream(agent_id, session_id)?;
        let answer: Vec<Value> = self
            .run(
                self.scripts
                    .turns
                    .arg(PREFIX)
                    .arg(session_id)
                    .arg(agent_id)
                    .arg(new_instance_id()),
            )
            .await?;
        let mut answer = answer.into_iter();
        let instance: String = from_value(answer.next())?;
        let ids = answer
            .map(|id| from_value(Some(id)))
            .collect::<Result<Vec<i64>, _>>()?;
        self.saw_instance(instance);
        Ok(ids)
    }

    /// Counts (from the counters in Redis, so every replica answers the same) and limits.
    pub async fn stats(&self) -> Result<Stats, MemoryError> {
        let counts: [u64; 7] = self.run(&mut self.scripts.stats.arg(PREFIX)).await?;
        let [
            memories,
            streams,
            sessions,
            agents,
            evicted_memories,
            evicted_sessions,
            bytes,
        ] = counts;
        Ok(Stats {
            total_memories: memories,
            total_streams: streams,
            total_sessions: sessions,
            total_agents: agents,
            evicted_memories,
            evicted_sessions,
            max_per_stream: count(self.limits.max_per_stream),
            max_total: count(self.limits.max_total),
            total_bytes: bytes,
        })
    }

    /// Clears as [`MemoryStore::clear`](super::MemoryStore::clear) does.
    pub async fn clear(
        &self,
        agent_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<u64, MemoryError> {
        let what = match (agent_id, session_id) {
            (Some(_), None) => return Err(MemoryError::AgentWithoutSession),
            (None, None) => "all",
            (None, Some(session_id)) => {
                validate::id("session_id", session_id)?;
                "session"
            }
            (Some(agent_id), Some(session_id)) => {
                validate::stream(agent_id, session_id)?;
                "stream"
            }
        };
        self.run(
            self.scripts
                .clear
                .arg(PREFIX)
                .arg(what)
                .arg(session_id.unwrap_or_default())
                .arg(agent_id.unwrap_or_default()),
        )
        .await
    }

    /// Evicts the sessions not written for [`Limits::ttl`] before `now` (by any replica),
    /// and answers how many.
    pub async fn sweep(&self, now: Timestamp) -> Result<u64, MemoryError> {
        self.run(self.scripts.sweep.arg(PREFIX).arg(self.cutoff(now)))
            .await
    }

    /// The last write time (ms) of a session expired at `now`: `now - ttl`.
    fn cutoff(&self, now: Timestamp) -> i64 {
        let ttl = i64::try_from(millis(self.limits.ttl)).unwrap_or(i64::MAX);
        now.as_millisecond().saturating_sub(ttl)
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> bool {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<Value>(&mut connection)
            .await
            .is_ok()
    }

    /// Runs a script, mapping a failure to [`MemoryError::Unavailable`] (or
    /// [`MemoryError::Corrupt`] for an answer of the wrong shape).
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
    ) -> Result<T, MemoryError> {
        let mut connection = self.connection.clone();
        let value: Value = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| MemoryError::Unavailable {
                reason: format!("Redis at {}: {}", self.address, reason(&error)),
            })?;
        from_value(Some(value))
    }

    /// Keeps the instance ID Redis answered.
    fn saw_instance(&self, instance: String) {
        let mut kept = self
            .instance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *kept.as_ref() != *instance {
            *kept = instance.into();
        }
    }
}

/// Converts a script's answer, or says it has the wrong shape.
fn from_value<T: redis::FromRedisValue>(value: Option<Value>) -> Result<T, MemoryError> {
    let value = value.ok_or_else(|| MemoryError::Corrupt("a short answer".to_owned()))?;
    redis::from_redis_value(value).map_err(|error| MemoryError::Corrupt(error.to_string()))
}

/// A stored value `<stored_at ns> <message>` (the message maybe cut short, mid-character)
/// as an entry.
fn entry(turn_id: i64, stored: &[u8]) -> Result<Entry, MemoryError> {
    let corrupt = || MemoryError::Corrupt(format!("turn {turn_id} is malformed"));
    let space = stored
        .iter()
        .position(|&byte| byte == b' ')
        .ok_or_else(corrupt)?;
    let nanos: i128 = std::str::from_utf8(&stored[..space])
        .ok()
        .and_then(|nanos| nanos.parse().ok())
        .ok_or_else(corrupt)?;
    let stored_at = Timestamp::from_nanosecond(nanos).map_err(|_| corrupt())?;
    let message = &stored[space + 1..];
    let message = match std::str::from_utf8(message) {
        Ok(message) => message,
        // A prefix cut inside a character: keep the whole characters.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&message[..error.valid_up_to()]).map_err(|_| corrupt())?
        }
        Err(_) => return Err(corrupt()),
    };
    Ok(Entry {
        turn_id,
        message: Arc::from(message),
        stored_at,
    })
}

/// A duration in whole milliseconds, at least 1.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A short, readable reason for a Redis error.
fn reason(error: &RedisError) -> String {
    if error.is_connection_refusal() {
        return "connection refused".to_owned();
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        return "authentication failed (wrong or missing password)".to_owned();
    }
    text
}

/// `url` with its password replaced by `***`.
pub(super) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}
