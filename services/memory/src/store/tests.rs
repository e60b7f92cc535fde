//! Tests of the store as the service uses it.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;

/// The clock at `seconds` after a fixed start.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

/// A store with small limits, so eviction is easy to reach.
fn small_store(limits: Limits) -> MemoryStore {
    MemoryStore::new(limits).unwrap()
}

/// Stores turns `turns` of (agent, session) at time 0, each message `turn N`.
fn fill(store: &mut MemoryStore, agent: &str, session: &str, turns: std::ops::Range<i64>) {
    for turn in turns {
        store
            .store(agent, session, turn, &format!("turn {turn}"), at(0))
            .unwrap();
    }
}

#[test]
fn a_stored_turn_comes_back_verbatim_with_its_timestamp() {
    let mut store = MemoryStore::default();
    let outcome = store
        .store("planner", "s1", 0, "We go at midnight.", at(5))
        .unwrap();
    assert_eq!(
        outcome,
        StoreOutcome {
            stored: true,
            memories_count: 1
        }
    );
    let memory = store
        .compressed("planner", "s1", DEFAULT_RECENT_COUNT, DEFAULT_MAX_CHARS)
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
    assert_eq!(store.turn_ids("planner", "s1").unwrap(), vec![0]);
}

#[test]
fn storing_the_same_turn_again_is_a_repeat_not_a_second_copy() {
    let mut store = MemoryStore::default();
    store.store("planner", "s1", 7, "Drill.", at(0)).unwrap();
    let repeat = store.store("planner", "s1", 7, "Drill.", at(1)).unwrap();
    assert_eq!(
        repeat,
        StoreOutcome {
            stored: false,
            memories_count: 1
        }
    );
    assert_eq!(store.stats().total_memories, 1);
    let memory = store.compressed("planner", "s1", 5, 2000).unwrap();
    assert_eq!(memory.recent[0].stored_at, at(0));
}

#[test]
fn storing_a_turn_again_with_other_text_is_a_conflict() {
    let mut store = MemoryStore::default();
    store.store("planner", "s1", 7, "Drill.", at(0)).unwrap();
    let err = store.store("planner", "s1", 7, "Saw.", at(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        err.to_string(),
        "turn 7 of agent `planner` in session `s1` was already stored with other content"
    );
    let memory = store.compressed("planner", "s1", 5, 2000).unwrap();
    assert_eq!(&*memory.recent[0].message, "Drill.");
}

#[test]
fn the_same_turn_of_other_agents_or_sessions_is_no_repeat() {
    let mut store = MemoryStore::default();
    store.store("planner", "s1", 1, "a", at(0)).unwrap();
    assert!(store.store("hacker", "s1", 1, "b", at(0)).unwrap().stored);
    assert!(store.store("planner", "s2", 1, "c", at(0)).unwrap().stored);
    assert_eq!(store.stats().total_memories, 3);
}

#[test]
fn twelve_turns_give_five_verbatim_and_a_summary_of_the_seven_older() {
    let mut store = MemoryStore::default();
    for turn in 1..=12 {
        let message = format!("Step {turn} of the plan is set. Details follow at length.");
        store
            .store("planner", "s1", turn, &message, at(turn))
            .unwrap();
    }
    let memory = store.compressed("planner", "s1", 5, 2000).unwrap();
    let recent: Vec<i64> = memory.recent.iter().map(|entry| entry.turn_id).collect();
    assert_eq!(recent, vec![8, 9, 10, 11, 12]);
    let lines: Vec<&str> = memory.summary.lines().collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0], "Turn 1: Step 1 of the plan is set. …");
    assert_eq!(lines[6], "Turn 7: Step 7 of the plan is set. …");
    assert!(memory.summary.chars().count() <= 2000);
    assert_eq!(memory.memories_count, 12);
}

#[test]
fn a_tight_budget_keeps_the_newest_summary_lines_after_a_note() {
    let mut store = MemoryStore::default();
    fill(&mut store, "planner", "s1", 1..13);
    let memory = store.compressed("planner", "s1", 5, 60).unwrap();
    assert_eq!(
        memory.summary,
        "(5 earlier turns omitted)\nTurn 6: turn 6\nTurn 7: turn 7"
    );
    assert!(memory.summary.chars().count() <= 60);
}

#[test]
fn a_tiny_budget_never_exceeds_it_nor_splits_multibyte_text() {
    let mut store = MemoryStore::default();
    for turn in 0..12 {
        let message = "Ünïcödé 💰 ".repeat(usize::try_from(turn + 1).unwrap());
        store.store("mole", "s1", turn, &message, at(0)).unwrap();
    }
    for max_chars in 1..=120 {
        let memory = store.compressed("mole", "s1", 5, max_chars).unwrap();
        let chars = memory.summary.chars().count();
        assert!(
            chars <= usize::try_from(max_chars).unwrap(),
            "{max_chars}: {:?}",
            memory.summary
        );
    }
}

#[test]
fn an_unknown_agent_or_session_gives_an_empty_answer() {
    let mut store = MemoryStore::default();
    store.store("planner", "s1", 0, "x", at(0)).unwrap();
    for (agent, session) in [("ghost", "s1"), ("planner", "nowhere")] {
        assert_eq!(
            store.compressed(agent, session, 5, 2000).unwrap(),
            Compressed::default()
        );
        assert_eq!(store.turn_ids(agent, session).unwrap(), Vec::<i64>::new());
    }
}

#[test]
fn a_full_stream_evicts_its_oldest_turns() {
    let mut store = small_store(Limits {
        max_per_stream: 3,
        ..Limits::default()
    });
    fill(&mut store, "planner", "s1", 0..5);
    assert_eq!(store.turn_ids("planner", "s1").unwrap(), vec![2, 3, 4]);
    let stats = store.stats();
    assert_eq!(stats.total_memories, 3);
    assert_eq!(stats.evicted_memories, 2);
    assert_eq!(stats.evicted_sessions, 0);
}

#[test]
fn a_turn_older_than_a_full_stream_is_evicted_at_once() {
    let mut store = small_store(Limits {
        max_per_stream: 2,
        ..Limits::default()
    });
    fill(&mut store, "planner", "s1", 5..7);
    let outcome = store.store("planner", "s1", 1, "late", at(0)).unwrap();
    assert_eq!(
        outcome,
        StoreOutcome {
            stored: true,
            memories_count: 2
        }
    );
    assert_eq!(store.turn_ids("planner", "s1").unwrap(), vec![5, 6]);
    assert_eq!(store.stats().evicted_memories, 1);
}

#[test]
fn over_the_total_the_least_recently_written_session_is_evicted() {
    let mut store = small_store(Limits {
        max_per_stream: 2,
        max_total: 4,
        ..Limits::default()
    });
    store.store("planner", "a", 0, "a0", at(0)).unwrap();
    store.store("planner", "b", 0, "b0", at(1)).unwrap();
    store.store("hacker", "b", 0, "b1", at(2)).unwrap();
    store.store("planner", "a", 1, "a1", at(3)).unwrap();
    store.store("planner", "c", 0, "c0", at(4)).unwrap();
    assert_eq!(store.turn_ids("planner", "b").unwrap(), Vec::<i64>::new());
    assert_eq!(store.turn_ids("hacker", "b").unwrap(), Vec::<i64>::new());
    assert_eq!(store.turn_ids("planner", "a").unwrap(), vec![0, 1]);
    let stats = store.stats();
    assert_eq!(stats.total_memories, 3);
    assert_eq!(stats.total_sessions, 2);
    assert_eq!(stats.total_agents, 1);
    assert_eq!(stats.evicted_sessions, 1);
    assert_eq!(stats.evicted_memories, 2);
}

#[test]
fn a_repeat_does_not_count_as_a_write_for_eviction() {
    let mut store = small_store(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    store.store("planner", "a", 0, "a0", at(0)).unwrap();
    store.store("planner", "b", 0, "b0", at(1)).unwrap();
    store.store("planner", "a", 0, "a0", at(2)).unwrap();
    store.store("planner", "c", 0, "c0", at(3)).unwrap();
    assert!(store.turn_ids("planner", "a").unwrap().is_empty());
    assert_eq!(store.turn_ids("planner", "b").unwrap(), vec![0]);
}

#[test]
fn over_the_byte_limit_the_least_recently_written_session_is_evicted() {
    let mut store = small_store(Limits {
        max_total_bytes: 10,
        max_message_bytes: 6,
        ..Limits::default()
    });
    store.store("planner", "a", 0, "aaaaaa", at(0)).unwrap();
    store.store("planner", "b", 0, "bbbbbb", at(1)).unwrap();
    assert!(store.turn_ids("planner", "a").unwrap().is_empty());
    assert_eq!(store.stats().total_bytes, 6);
}

#[test]
fn over_the_session_limit_the_least_recently_written_session_is_evicted() {
    let mut store = small_store(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    for (second, session) in (0..).zip(["a", "b", "c"]) {
        store.store("planner", session, 0, "x", at(second)).unwrap();
    }
    assert!(store.turn_ids("planner", "a").unwrap().is_empty());
    assert_eq!(store.stats().total_sessions, 2);
}

#[test]
fn a_session_that_alone_exceeds_the_total_is_evicted_whole() {
    let mut store = small_store(Limits {
        max_per_stream: 2,
        max_total: 2,
        ..Limits::default()
    });
    store.store("planner", "s1", 0, "x", at(0)).unwrap();
    store.store("hacker", "s1", 0, "y", at(0)).unwrap();
    let outcome = store.store("mole", "s1", 0, "z", at(0)).unwrap();
    assert_eq!(
        outcome,
        StoreOutcome {
            stored: true,
            memories_count: 0
        }
    );
    assert_eq!(store.stats().total_memories, 0);
    assert_eq!(store.stats().evicted_memories, 3);
}

#[test]
fn a_session_not_written_for_the_ttl_is_swept() {
    let mut store = small_store(Limits {
        ttl: Duration::from_secs(60),
        ..Limits::default()
    });
    store.store("planner", "old", 0, "x", at(0)).unwrap();
    store.store("planner", "new", 0, "y", at(30)).unwrap();
    assert_eq!(store.sweep(at(59)), 0);
    assert_eq!(store.sweep(at(60)), 1);
    assert!(store.turn_ids("planner", "old").unwrap().is_empty());
    assert_eq!(store.turn_ids("planner", "new").unwrap(), vec![0]);
    let stats = store.stats();
    assert_eq!(stats.evicted_sessions, 1);
    assert_eq!(stats.evicted_memories, 1);
}

#[test]
fn a_write_keeps_a_session_alive_past_its_first_ttl() {
    let mut store = small_store(Limits {
        ttl: Duration::from_secs(60),
        ..Limits::default()
    });
    store.store("planner", "s1", 0, "x", at(0)).unwrap();
    store.store("hacker", "s1", 0, "y", at(50)).unwrap();
    assert_eq!(store.sweep(at(100)), 0);
    assert_eq!(store.sweep(at(110)), 1);
}

#[test]
fn storing_sweeps_expired_sessions_on_the_way() {
    let mut store = small_store(Limits {
        ttl: Duration::from_secs(60),
        ..Limits::default()
    });
    store.store("planner", "old", 0, "x", at(0)).unwrap();
    store.store("planner", "new", 0, "y", at(61)).unwrap();
    assert_eq!(store.stats().total_sessions, 1);
    let again = store.store("planner", "old", 0, "other", at(62)).unwrap();
    assert!(again.stored);
}

#[test]
fn a_clock_stepping_back_never_expires_a_session_early() {
    let mut store = small_store(Limits {
        ttl: Duration::from_secs(60),
        ..Limits::default()
    });
    store.store("planner", "s1", 0, "x", at(100)).unwrap();
    assert_eq!(store.sweep(at(0)), 0);
    assert_eq!(store.turn_ids("planner", "s1").unwrap(), vec![0]);
}

#[test]
fn stats_count_turns_streams_sessions_agents_and_bytes() {
    let mut store = MemoryStore::default();
    store.store("planner", "s1", 0, "abc", at(0)).unwrap();
    store.store("planner", "s1", 1, "de", at(0)).unwrap();
    store.store("hacker", "s1", 0, "é", at(0)).unwrap();
    store.store("planner", "s2", 0, "f", at(0)).unwrap();
    assert_eq!(
        store.stats(),
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

/// A store with planner and hacker in s1 and planner in s2.
fn three_streams() -> MemoryStore {
    let mut store = MemoryStore::default();
    fill(&mut store, "planner", "s1", 0..2);
    fill(&mut store, "hacker", "s1", 0..3);
    fill(&mut store, "planner", "s2", 0..4);
    store
}

#[test]
fn clearing_one_agent_in_a_session_keeps_the_others() {
    let mut store = three_streams();
    assert_eq!(store.clear(Some("hacker"), Some("s1")).unwrap(), 3);
    assert!(store.turn_ids("hacker", "s1").unwrap().is_empty());
    assert_eq!(store.turn_ids("planner", "s1").unwrap(), vec![0, 1]);
    let stats = store.stats();
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

#[test]
fn clearing_the_last_agent_of_a_session_removes_the_session() {
    let mut store = three_streams();
    assert_eq!(store.clear(Some("planner"), Some("s2")).unwrap(), 4);
    assert_eq!(store.stats().total_sessions, 1);
}

#[test]
fn clearing_a_session_removes_every_agent_in_it() {
    let mut store = three_streams();
    assert_eq!(store.clear(None, Some("s1")).unwrap(), 5);
    let stats = store.stats();
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

#[test]
fn clearing_everything_empties_the_store_and_counts_it() {
    let mut store = three_streams();
    assert_eq!(store.clear(None, None).unwrap(), 9);
    let stats = store.stats();
    assert_eq!(stats.total_memories, 0);
    assert_eq!(stats.total_bytes, 0);
    assert_eq!(stats.total_agents, 0);
    assert_eq!(stats.evicted_memories, 9);
    fill(&mut store, "planner", "s1", 0..1);
    assert_eq!(store.stats().total_sessions, 1);
}

#[test]
fn clearing_what_is_not_there_clears_nothing() {
    let mut store = three_streams();
    assert_eq!(store.clear(Some("ghost"), Some("s1")).unwrap(), 0);
    assert_eq!(store.clear(None, Some("s9")).unwrap(), 0);
    assert_eq!(store.stats().total_memories, 9);
}

#[test]
fn clearing_an_agent_without_a_session_is_rejected() {
    let mut store = three_streams();
    let err = store.clear(Some("planner"), None).unwrap_err();
    assert_eq!(err, MemoryError::AgentWithoutSession);
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(store.stats().total_memories, 9);
}

#[test]
fn clearing_with_a_bad_id_is_rejected() {
    let mut store = three_streams();
    assert_eq!(
        store.clear(None, Some("")),
        Err(MemoryError::EmptyId {
            field: "session_id"
        })
    );
    assert!(matches!(
        store.clear(Some(&"a".repeat(129)), Some("s1")),
        Err(MemoryError::IdTooLong {
            field: "agent_id",
            ..
        })
    ));
}

#[test]
fn storing_with_an_empty_id_is_rejected_by_field() {
    let mut store = MemoryStore::default();
    assert_eq!(
        store.store("", "s1", 0, "x", at(0)),
        Err(MemoryError::EmptyId { field: "agent_id" })
    );
    assert_eq!(
        store.store("planner", "", 0, "x", at(0)),
        Err(MemoryError::EmptyId {
            field: "session_id"
        })
    );
}

#[test]
fn storing_with_an_id_over_128_characters_is_rejected() {
    let mut store = MemoryStore::default();
    let long = "x".repeat(MAX_ID_CHARS + 1);
    let err = store.store("planner", &long, 0, "x", at(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "session_id is 129 characters long; the limit is 128"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn storing_a_negative_turn_is_rejected() {
    let mut store = MemoryStore::default();
    let err = store.store("planner", "s1", -1, "x", at(0)).unwrap_err();
    assert_eq!(err.to_string(), "turn_id is -1; it must be 0 or more");
}

#[test]
fn storing_an_empty_message_is_rejected() {
    let mut store = MemoryStore::default();
    assert_eq!(
        store.store("planner", "s1", 0, "", at(0)),
        Err(MemoryError::EmptyMessage)
    );
}

#[test]
fn storing_a_message_over_the_byte_limit_is_rejected() {
    let mut store = MemoryStore::default();
    let message = "x".repeat(Limits::DEFAULT_MAX_MESSAGE_BYTES + 1);
    let err = store
        .store("planner", "s1", 0, &message, at(0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "message is 65537 bytes long; the limit is 65536 bytes"
    );
    assert_eq!(store.stats().total_memories, 0);
}

#[test]
fn asking_for_a_recent_count_out_of_range_is_rejected() {
    let store = MemoryStore::default();
    for bad in [0, -1, MAX_RECENT_COUNT + 1] {
        let err = store.compressed("planner", "s1", bad, 2000).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("recent_count is {bad}; it must be from 1 to 100")
        );
    }
}

#[test]
fn asking_for_max_chars_out_of_range_is_rejected() {
    let store = MemoryStore::default();
    for bad in [0, -5, MAX_MAX_CHARS + 1] {
        let err = store.compressed("planner", "s1", 5, bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("max_chars is {bad}; it must be from 1 to 65536")
        );
    }
}

#[test]
fn reading_with_a_bad_id_is_rejected() {
    let store = MemoryStore::default();
    assert_eq!(
        store.compressed("", "s1", 5, 2000),
        Err(MemoryError::EmptyId { field: "agent_id" })
    );
    assert_eq!(
        store.turn_ids("planner", ""),
        Err(MemoryError::EmptyId {
            field: "session_id"
        })
    );
}

#[test]
fn a_store_with_invalid_limits_is_refused() {
    let limits = Limits {
        max_per_stream: 0,
        ..Limits::default()
    };
    assert_eq!(
        MemoryStore::new(limits).unwrap_err(),
        MemoryError::ZeroLimit {
            name: "max_per_stream"
        }
    );
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
