//! Tests of the store as the service uses it: one contract, run on both backends.
//!
//! [`contract!`] turns each `fn name(backend) { ... }` into a module `name` with two tests,
//! `in_memory` and `on_redis` (each on its own private Redis, which must start: a test
//! fails, never skips, without it). Both backends take the clock from the caller, the TTL
//! included (the Redis scripts sweep with it), so the TTL tests run the same on both.
//!
//! Backend-specific: `the_summary_never_exceeds_max_chars` (in memory: a property of the
//! summary code both share), `redis_answers_the_same_compressed_memory_as_the_in_memory_store`
//! (Redis reads only part of a stream, so its answers are checked against the in-memory
//! store's), and the `on_redis_*` tests at the end (Redis's own expiry backstop, and Redis
//! going away, which the in-memory store cannot).

use std::time::Duration;

use heist_engines::RedisServer;
use jiff::Timestamp;
use proptest::prelude::*;

use super::*;

/// The backend a contract test runs on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Redis,
}

/// A backend for one test, with the Redis it runs on (stopped on drop).
#[derive(Debug)]
struct TestStore {
    backend: Backend,
    redis: Option<RedisServer>,
}

impl std::ops::Deref for TestStore {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.backend
    }
}

/// Each `fn name(backend) { body }` becomes tests `name::in_memory` and `name::on_redis`.
macro_rules! contract {
    ($(fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn in_memory() {
                let $backend = Kind::Memory;
                $body
            }

            #[tokio::test]
            async fn on_redis() {
                let $backend = Kind::Redis;
                $body
            }
        }
    )*};
}

/// The clock at `seconds` after a fixed start.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

/// A store of `kind` bounded by `limits`, or why not.
async fn try_open(kind: Kind, limits: Limits) -> Result<TestStore, MemoryError> {
    match kind {
        Kind::Memory => Ok(TestStore {
            backend: Backend::in_memory(limits)?,
            redis: None,
        }),
        Kind::Redis => {
            let redis = RedisServer::start().expect("the private Redis must start");
            let backend = Backend::open(&StoreConfig::Redis(redis.url()), limits).await?;
            Ok(TestStore {
                backend,
                redis: Some(redis),
            })
        }
    }
}

/// A store of `kind` bounded by `limits` (small ones make eviction easy to reach).
async fn open(kind: Kind, limits: Limits) -> TestStore {
    try_open(kind, limits).await.unwrap()
}

/// Stores turns `turns` of (agent, session) at time 0, each message `turn N`.
async fn fill(store: &Backend, agent: &str, session: &str, turns: std::ops::Range<i64>) {
    for turn in turns {
        store
            .store(agent, session, turn, &format!("turn {turn}"), at(0))
            .await
            .unwrap();
    }
}

/// A store with planner and hacker in s1 and planner in s2.
async fn three_streams(kind: Kind) -> TestStore {
    let store = open(kind, Limits::default()).await;
    fill(&store, "planner", "s1", 0..2).await;
    fill(&store, "hacker", "s1", 0..3).await;
    fill(&store, "planner", "s2", 0..4).await;
    store
}

contract! {
    fn a_stored_turn_comes_back_verbatim_with_its_timestamp(backend) {
        let store = open(backend, Limits::default()).await;
        let outcome = store
            .store("planner", "s1", 0, "We go at midnight.", at(5)).await
            .unwrap();
        assert_eq!(
            outcome,
            StoreOutcome {
                stored: true,
                memories_count: 1
            }
        );
        let memory = store
            .compressed("planner", "s1", DEFAULT_RECENT_COUNT, DEFAULT_MAX_CHARS).await
            .unwrap();
        assert_eq!(
            memory.recent,
            vec![Entry {
                turn_id: 0,
                message: "We go at midnight.".into(),
                stored_at: at(5),
            }]
        );
        assert_eq!(memory.summary, "");
        assert_eq!(memory.memories_count, 1);
        assert_eq!(
            memory.recent[0].stored_at.to_string(),
            "2023-11-14T22:13:25Z"
        );
        assert_eq!(store.turn_ids("planner", "s1").await.unwrap(), vec![0]);
    }

    fn storing_the_same_turn_again_is_a_repeat_not_a_second_copy(backend) {
        let store = open(backend, Limits::default()).await;
        store.store("planner", "s1", 7, "Drill.", at(0)).await.unwrap();
        let repeat = store.store("planner", "s1", 7, "Drill.", at(1)).await.unwrap();
        assert_eq!(
            repeat,
            StoreOutcome {
                stored: false,
                memories_count: 1
            }
        );
        assert_eq!(store.stats().await.unwrap().total_memories, 1);
        let memory = store.compressed("planner", "s1", 5, 2000).await.unwrap();
        assert_eq!(memory.recent[0].stored_at, at(0));
    }

    fn storing_a_turn_again_with_other_text_is_a_conflict(backend) {
        let store = open(backend, Limits::default()).await;
        store.store("planner", "s1", 7, "Drill.", at(0)).await.unwrap();
        let err = store.store("planner", "s1", 7, "Saw.", at(1)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            err.to_string(),
            "turn 7 of agent `planner` in session `s1` was already stored with other content"
        );
        let memory = store.compressed("planner", "s1", 5, 2000).await.unwrap();
        assert_eq!(&*memory.recent[0].message, "Drill.");
    }

    fn the_same_turn_of_other_agents_or_sessions_is_no_repeat(backend) {
        let store = open(backend, Limits::default()).await;
        store.store("planner", "s1", 1, "a", at(0)).await.unwrap();
        assert!(store.store("hacker", "s1", 1, "b", at(0)).await.unwrap().stored);
        assert!(store.store("planner", "s2", 1, "c", at(0)).await.unwrap().stored);
        assert_eq!(store.stats().await.unwrap().total_memories, 3);
    }

    fn twelve_turns_give_five_verbatim_and_a_summary_of_the_seven_older(backend) {
        let store = open(backend, Limits::default()).await;
        for turn in 1..=12 {
            let message = format!("Step {turn} of the plan is set. Details follow at length.");
            store
                .store("planner", "s1", turn, &message, at(turn)).await
                .unwrap();
        }
        let memory = store.compressed("planner", "s1", 5, 2000).await.unwrap();
        let recent: Vec<i64> = memory.recent.iter().map(|entry| entry.turn_id).collect();
        assert_eq!(recent, vec![8, 9, 10, 11, 12]);
        let lines: Vec<&str> = memory.summary.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], "Turn 1: Step 1 of the plan is set. …");
        assert_eq!(lines[6], "Turn 7: Step 7 of the plan is set. …");
        assert!(memory.summary.chars().count() <= 2000);
        assert_eq!(memory.memories_count, 12);
    }

    fn a_tight_budget_keeps_the_newest_summary_lines_after_a_note(backend) {
        let store = open(backend, Limits::default()).await;
        fill(&store, "planner", "s1", 1..13).await;
        let memory = store.compressed("planner", "s1", 5, 60).await.unwrap();
        assert_eq!(
            memory.summary,
            "(5 earlier turns omitted)\nTurn 6: turn 6\nTurn 7: turn 7"
        );
        assert!(memory.summary.chars().count() <= 60);
    }

    fn a_tiny_budget_never_exceeds_it_nor_splits_multibyte_text(backend) {
        let store = open(backend, Limits::default()).await;
        for turn in 0..12 {
            let message = "Ünïcödé 💰 ".repeat(usize::try_from(turn + 1).unwrap());
            store.store("mole", "s1", turn, &message, at(0)).await.unwrap();
        }
        for max_chars in 1..=120 {
            let memory = store.compressed("mole", "s1", 5, max_chars).await.unwrap();
            let chars = memory.summary.chars().count();
            assert!(
                chars <= usize::try_from(max_chars).unwrap(),
                "{max_chars}: {:?}",
                memory.summary
            );
        }
    }

    fn an_unknown_agent_or_session_gives_an_empty_answer(backend) {
        let store = open(backend, Limits::default()).await;
        store.store("planner", "s1", 0, "x", at(0)).await.unwrap();
        for (agent, session) in [("ghost", "s1"), ("planner", "nowhere")] {
            assert_eq!(
                store.compressed(agent, session, 5, 2000).await.unwrap(),
                Compressed::default()
            );
            assert_eq!(store.turn_ids(agent, session).await.unwrap(), Vec::<i64>::new());
        }
    }

    fn a_full_stream_evicts_its_oldest_turns(backend) {
        let store = open(backend, Limits {
            max_per_stream: 3,
            ..Limits::default()
        }).await;
        fill(&store, "planner", "s1", 0..5).await;
        assert_eq!(store.turn_ids("planner", "s1").await.unwrap(), vec![2, 3, 4]);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.total_memories, 3);
        assert_eq!(stats.evicted_memories, 2);
        assert_eq!(stats.evicted_sessions, 0);
    }

    fn a_turn_older_than_a_full_stream_is_evicted_at_once(backend) {
        let store = open(backend, Limits {
            max_per_stream: 2,
            ..Limits::default()
        }).await;
        fill(&store, "planner", "s1", 5..7).await;
        let outcome = store.store("planner", "s1", 1, "late", at(0)).await.unwrap();
        assert_eq!(
            outcome,
            StoreOutcome {
                stored: true,
                memories_count: 2
            }
        );
        assert_eq!(store.turn_ids("planner", "s1").await.unwrap(), vec![5, 6]);
        assert_eq!(store.stats().await.unwrap().evicted_memories, 1);
    }

    fn over_the_total_the_least_recently_written_session_is_evicted(backend) {
        let store = open(backend, Limits {
            max_per_stream: 2,
            max_total: 4,
            ..Limits::default()
        }).await;
        store.store("planner", "a", 0, "a0", at(0)).await.unwrap();
        store.store("planner", "b", 0, "b0", at(1)).await.unwrap();
        store.store("hacker", "b", 0, "b1", at(2)).await.unwrap();
        store.store("planner", "a", 1, "a1", at(3)).await.unwrap();
        store.store("planner", "c", 0, "c0", at(4)).await.unwrap();
        assert_eq!(store.turn_ids("planner", "b").await.unwrap(), Vec::<i64>::new());
        assert_eq!(store.turn_ids("hacker", "b").await.unwrap(), Vec::<i64>::new());
        assert_eq!(store.turn_ids("planner", "a").await.unwrap(), vec![0, 1]);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.total_memories, 3);
        assert_eq!(stats.total_sessions, 2);
        assert_eq!(stats.total_agents, 1);
        assert_eq!(stats.evicted_sessions, 1);
        assert_eq!(stats.evicted_memories, 2);
    }

    fn a_repeat_does_not_count_as_a_write_for_eviction(backend) {
        let store = open(backend, Limits {
            max_sessions: 2,
            ..Limits::default()
        }).await;
        store.store("planner", "a", 0, "a0", at(0)).await.unwrap();
        store.store("planner", "b", 0, "b0", at(1)).await.unwrap();
        store.store("planner", "a", 0, "a0", at(2)).await.unwrap();
        store.store("planner", "c", 0, "c0", at(3)).await.unwrap();
        assert!(store.turn_ids("planner", "a").await.unwrap().is_empty());
        assert_eq!(store.turn_ids("planner", "b").await.unwrap(), vec![0]);
    }

    fn over_the_byte_limit_the_least_recently_written_session_is_evicted(backend) {
        let store = open(backend, Limits {
            max_total_bytes: 10,
            max_message_bytes: 6,
            ..Limits::default()
        }).await;
        store.store("planner", "a", 0, "aaaaaa", at(0)).await.unwrap();
        store.store("planner", "b", 0, "bbbbbb", at(1)).await.unwrap();
        assert!(store.turn_ids("planner", "a").await.unwrap().is_empty());
        assert_eq!(store.stats().await.unwrap().total_bytes, 6);
    }

    fn over_the_session_limit_the_least_recently_written_session_is_evicted(backend) {
        let store = open(backend, Limits {
            max_sessions: 2,
            ..Limits::default()
        }).await;
        for (second, session) in (0..).zip(["a", "b", "c"]) {
            store.store("planner", session, 0, "x", at(second)).await.unwrap();
        }
        assert!(store.turn_ids("planner", "a").await.unwrap().is_empty());
        assert_eq!(store.stats().await.unwrap().total_sessions, 2);
    }

    fn a_session_that_alone_exceeds_the_total_is_evicted_whole(backend) {
        let store = open(backend, Limits {
            max_per_stream: 2,
            max_total: 2,
            ..Limits::default()
        }).await;
        store.store("planner", "s1", 0, "x", at(0)).await.unwrap();
        store.store("hacker", "s1", 0, "y", at(0)).await.unwrap();
        let outcome = store.store("mole", "s1", 0, "z", at(0)).await.unwrap();
        assert_eq!(
            outcome,
            StoreOutcome {
                stored: true,
                memories_count: 0
            }
        );
        assert_eq!(store.stats().await.unwrap().total_memories, 0);
        assert_eq!(store.stats().await.unwrap().evicted_memories, 3);
    }

    fn a_session_not_written_for_the_ttl_is_swept(backend) {
        let store = open(backend, Limits {
            ttl: Duration::from_secs(60),
            ..Limits::default()
        }).await;
        store.store("planner", "old", 0, "x", at(0)).await.unwrap();
        store.store("planner", "new", 0, "y", at(30)).await.unwrap();
        assert_eq!(store.sweep(at(59)).await.unwrap(), 0);
        assert_eq!(store.sweep(at(60)).await.unwrap(), 1);
        assert!(store.turn_ids("planner", "old").await.unwrap().is_empty());
        assert_eq!(store.turn_ids("planner", "new").await.unwrap(), vec![0]);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.evicted_sessions, 1);
        assert_eq!(stats.evicted_memories, 1);
    }

    fn a_write_keeps_a_session_alive_past_its_first_ttl(backend) {
        let store = open(backend, Limits {
            ttl: Duration::from_secs(60),
            ..Limits::default()
        }).await;
        store.store("planner", "s1", 0, "x", at(0)).await.unwrap();
        store.store("hacker", "s1", 0, "y", at(50)).await.unwrap();
        assert_eq!(store.sweep(at(100)).await.unwrap(), 0);
        assert_eq!(store.sweep(at(110)).await.unwrap(), 1);
    }

    fn storing_sweeps_expired_sessions_on_the_way(backend) {
        let store = open(backend, Limits {
            ttl: Duration::from_secs(60),
            ..Limits::default()
        }).await;
        store.store("planner", "old", 0, "x", at(0)).await.unwrap();
        store.store("planner", "new", 0, "y", at(61)).await.unwrap();
        assert_eq!(store.stats().await.unwrap().total_sessions, 1);
        let again = store.store("planner", "old", 0, "other", at(62)).await.unwrap();
        assert!(again.stored);
    }

    fn a_clock_stepping_back_never_expires_a_session_early(backend) {
        let store = open(backend, Limits {
            ttl: Duration::from_secs(60),
            ..Limits::default()
        }).await;
        store.store("planner", "s1", 0, "x", at(100)).await.unwrap();
        assert_eq!(store.sweep(at(0)).await.unwrap(), 0);
        assert_eq!(store.turn_ids("planner", "s1").await.unwrap(), vec![0]);
    }

    fn stats_count_turns_streams_sessions_agents_and_bytes(backend) {
        let store = open(backend, Limits::default()).await;
        store.store("planner", "s1", 0, "abc", at(0)).await.unwrap();
        store.store("planner", "s1", 1, "de", at(0)).await.unwrap();
        store.store("hacker", "s1", 0, "é", at(0)).await.unwrap();
        store.store("planner", "s2", 0, "f", at(0)).await.unwrap();
        assert_eq!(
            store.stats().await.unwrap(),
            Stats {
                total_memories: 4,
                total_streams: 3,
                total_sessions: 2,
                total_agents: 2,
                evicted_memories: 0,
                evicted_sessions: 0,
                max_per_stream: 1000,
                max_total: 100_000,
                total_bytes: 8,
            }
        );
    }


    fn clearing_one_agent_in_a_session_keeps_the_others(backend) {
        let store = three_streams(backend).await;
        assert_eq!(store.clear(Some("hacker"), Some("s1")).await.unwrap(), 3);
        assert!(store.turn_ids("hacker", "s1").await.unwrap().is_empty());
        assert_eq!(store.turn_ids("planner", "s1").await.unwrap(), vec![0, 1]);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (
                stats.total_memories,
                stats.total_streams,
                stats.total_agents
            ),
            (6, 2, 1)
        );
        assert_eq!(stats.evicted_memories, 3);
        assert_eq!(stats.evicted_sessions, 0);
    }

    fn clearing_the_last_agent_of_a_session_removes_the_session(backend) {
        let store = three_streams(backend).await;
        assert_eq!(store.clear(Some("planner"), Some("s2")).await.unwrap(), 4);
        assert_eq!(store.stats().await.unwrap().total_sessions, 1);
    }

    fn clearing_a_session_removes_every_agent_in_it(backend) {
        let store = three_streams(backend).await;
        assert_eq!(store.clear(None, Some("s1")).await.unwrap(), 5);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (
                stats.total_memories,
                stats.total_sessions,
                stats.total_agents
            ),
            (4, 1, 1)
        );
        assert_eq!(stats.total_bytes, 4 * "turn 0".len() as u64);
    }

    fn clearing_everything_empties_the_store_and_counts_it(backend) {
        let store = three_streams(backend).await;
        assert_eq!(store.clear(None, None).await.unwrap(), 9);
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.total_memories, 0);
        assert_eq!(stats.total_bytes, 0);
        assert_eq!(stats.total_agents, 0);
        assert_eq!(stats.evicted_memories, 9);
        fill(&store, "planner", "s1", 0..1).await;
        assert_eq!(store.stats().await.unwrap().total_sessions, 1);
    }

    fn clearing_what_is_not_there_clears_nothing(backend) {
        let store = three_streams(backend).await;
        assert_eq!(store.clear(Some("ghost"), Some("s1")).await.unwrap(), 0);
        assert_eq!(store.clear(None, Some("s9")).await.unwrap(), 0);
        assert_eq!(store.stats().await.unwrap().total_memories, 9);
    }

    fn clearing_an_agent_without_a_session_is_rejected(backend) {
        let store = three_streams(backend).await;
        let err = store.clear(Some("planner"), None).await.unwrap_err();
        assert_eq!(err, MemoryError::AgentWithoutSession);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(store.stats().await.unwrap().total_memories, 9);
    }

    fn clearing_with_a_bad_id_is_rejected(backend) {
        let store = three_streams(backend).await;
        assert_eq!(
            store.clear(None, Some("")).await,
            Err(MemoryError::EmptyId {
                field: "session_id"
            })
        );
        assert!(matches!(
            store.clear(Some(&"a".repeat(129)), Some("s1")).await,
            Err(MemoryError::IdTooLong {
                field: "agent_id",
                ..
            })
        ));
    }

    fn storing_with_an_empty_id_is_rejected_by_field(backend) {
        let store = open(backend, Limits::default()).await;
        assert_eq!(
            store.store("", "s1", 0, "x", at(0)).await,
            Err(MemoryError::EmptyId { field: "agent_id" })
        );
        assert_eq!(
            store.store("planner", "", 0, "x", at(0)).await,
            Err(MemoryError::EmptyId {
                field: "session_id"
            })
        );
    }

    fn storing_with_an_id_over_128_characters_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        let long = "x".repeat(MAX_ID_CHARS + 1);
        let err = store.store("planner", &long, 0, "x", at(0)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "session_id is 129 characters long; the limit is 128"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    fn storing_a_negative_turn_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        let err = store.store("planner", "s1", -1, "x", at(0)).await.unwrap_err();
        assert_eq!(err.to_string(), "turn_id is -1; it must be 0 or more");
    }

    fn storing_an_empty_message_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        assert_eq!(
            store.store("planner", "s1", 0, "", at(0)).await,
            Err(MemoryError::EmptyMessage)
        );
    }

    fn storing_a_message_over_the_byte_limit_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        let message = "x".repeat(Limits::DEFAULT_MAX_MESSAGE_BYTES + 1);
        let err = store
            .store("planner", "s1", 0, &message, at(0)).await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "message is 65537 bytes long; the limit is 65536 bytes"
        );
        assert_eq!(store.stats().await.unwrap().total_memories, 0);
    }

    fn asking_for_a_recent_count_out_of_range_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        for bad in [0, -1, MAX_RECENT_COUNT + 1] {
            let err = store.compressed("planner", "s1", bad, 2000).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("recent_count is {bad}; it must be from 1 to 100")
            );
        }
    }

    fn asking_for_max_chars_out_of_range_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        for bad in [0, -5, MAX_MAX_CHARS + 1] {
            let err = store.compressed("planner", "s1", 5, bad).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("max_chars is {bad}; it must be from 1 to 65536")
            );
        }
    }

    fn reading_with_a_bad_id_is_rejected(backend) {
        let store = open(backend, Limits::default()).await;
        assert_eq!(
            store.compressed("", "s1", 5, 2000).await,
            Err(MemoryError::EmptyId { field: "agent_id" })
        );
        assert_eq!(
            store.turn_ids("planner", "").await,
            Err(MemoryError::EmptyId {
                field: "session_id"
            })
        );
    }

    fn a_store_with_invalid_limits_is_refused(backend) {
        let limits = Limits {
            max_per_stream: 0,
            ..Limits::default()
        };
        assert_eq!(
            try_open(backend, limits).await.unwrap_err(),
            MemoryError::ZeroLimit {
                name: "max_per_stream"
            }
        );
    }
}

/// Messages of any text, or of words, blanks, sentence marks and multibyte characters.
fn message() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{1,300}", "[a-zé€💰。 .!?\n\t]{1,400}",]
}

proptest! {
    #[test]
    fn the_summary_never_exceeds_max_chars(
        messages in prop::collection::vec(message(), 1..40),
        recent_count in MIN_RECENT_COUNT..=10,
        max_chars in prop_oneof![MIN_MAX_CHARS..=300, MIN_MAX_CHARS..=MAX_MAX_CHARS],
    ) {
        let mut store = MemoryStore::default();
        for (turn, message) in (0..).zip(&messages) {
            store.store("planner", "s1", turn, message, at(turn)).unwrap();
        }
        let memory = store.compressed("planner", "s1", recent_count, max_chars).unwrap();
        let budget = usize::try_from(max_chars).unwrap();
        prop_assert!(memory.summary.chars().count() <= budget, "{:?}", memory.summary);
        let expected_recent = messages.len().min(usize::try_from(recent_count).unwrap());
        prop_assert_eq!(memory.recent.len(), expected_recent);
        prop_assert_eq!(memory.summary.is_empty(), messages.len() <= expected_recent);
    }
}

/// Long messages (past the prefix Redis sends of an older turn), cut anywhere.
fn long_message() -> impl Strategy<Value = String> {
    prop_oneof![
        message(),
        ("[a-z€💰 .]{0,40}", 0..7000_usize, "[a-z .。]{0,40}")
            .prop_map(|(start, blanks, end)| format!("{start}{}{end}", " ".repeat(blanks))),
        (1..2000_usize).prop_map(|n| "💰é".repeat(n)),
    ]
}

/// Redis reads only the turns and message prefixes a summary depends on: its answers equal
/// the in-memory store's for random streams, budgets and recent counts (one Redis, a
/// session per case).
#[test]
fn redis_answers_the_same_compressed_memory_as_the_in_memory_store() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis_server = RedisServer::start().expect("the private Redis must start");
    let limits = Limits {
        max_per_stream: 60,
        ..Limits::default()
    };
    let redis = runtime
        .block_on(Backend::open(
            &StoreConfig::Redis(redis_server.url()),
            limits.clone(),
        ))
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let case = std::cell::Cell::new(0);
    let strategy = (
        prop_oneof![
            prop::collection::vec(long_message(), 1..80),
            // Lines of a few characters: more fit than a first read brings.
            prop::collection::vec("[a-z]{1,2}", 1..80),
        ],
        MIN_RECENT_COUNT..=8,
        prop_oneof![MIN_MAX_CHARS..=200, MIN_MAX_CHARS..=MAX_MAX_CHARS],
    );
    runner
        .run(&strategy, |(messages, recent_count, max_chars)| {
            case.set(case.get() + 1);
            let session = format!("case{}", case.get());
            let mut memory = MemoryStore::new(limits.clone()).unwrap();
            let redis_answer = runtime.block_on(async {
                for (turn, message) in (0..).zip(&messages) {
                    memory
                        .store("planner", &session, turn, message, at(turn))
                        .unwrap();
                    redis
                        .store("planner", &session, turn, message, at(turn))
                        .await
                        .unwrap();
                }
                redis
                    .compressed("planner", &session, recent_count, max_chars)
                    .await
                    .unwrap()
            });
            let memory_answer = memory
                .compressed("planner", &session, recent_count, max_chars)
                .unwrap();
            prop_assert_eq!(redis_answer, memory_answer);
            Ok(())
        })
        .unwrap();
}

// Redis only: what the in-memory store has no counterpart for.

/// Should no replica sweep (all stopped), Redis drops every key by itself, at most twice the
/// TTL after the last write.
#[tokio::test]
async fn on_redis_every_key_expires_within_twice_the_ttl_of_the_last_write() {
    let limits = Limits {
        ttl: Duration::from_secs(60),
        ..Limits::default()
    };
    let store = open(Kind::Redis, limits).await;
    fill(&store, "planner", "s1", 0..3).await;
    fill(&store, "hacker", "s1", 0..2).await;
    let url = store.redis.as_ref().unwrap().url();
    let mut raw = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("heist:memory:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.len() >= 8, "{keys:?}");
    for key in keys {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((60_000..=120_000).contains(&ttl), "{key}: {ttl} ms");
    }
}

/// With Redis gone, every operation fails as UNAVAILABLE, naming Redis's address.
#[tokio::test]
async fn on_redis_a_stopped_redis_makes_every_operation_unavailable() {
    let mut store = open(Kind::Redis, Limits::default()).await;
    fill(&store, "planner", "s1", 0..1).await;
    assert!(store.is_reachable().await);
    let redis = store.redis.as_mut().unwrap();
    let port = redis.port();
    redis.stop();
    assert!(!store.is_reachable().await);
    let errors = [
        store
            .store("planner", "s1", 1, "x", at(0))
            .await
            .unwrap_err(),
        store.compressed("planner", "s1", 5, 100).await.unwrap_err(),
        store.turn_ids("planner", "s1").await.unwrap_err(),
        store.stats().await.unwrap_err(),
        store.clear(None, None).await.unwrap_err(),
        store.sweep(at(0)).await.unwrap_err(),
    ];
    for error in errors {
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(
            error.to_string().starts_with(&format!(
                "the memory store is unavailable: Redis at 127.0.0.1:{port}: "
            )),
            "{error}"
        );
    }
}
