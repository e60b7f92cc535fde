//! The Memory service's own metrics, read from the process's registry as a
//! scrape would see them. A test binary of its own (the registry is
//! process-wide) with one test: every count is exact.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use heist_memory::{Limits, MemoryStore};
use heist_plumbing::metrics::{encode, sample};
use jiff::Timestamp;

/// The value of `series` now (a series not yet written reads as 0).
fn now(series: &str) -> f64 {
    sample(&encode(), series).unwrap_or(0.0)
}

fn evictions(cause: &str) -> f64 {
    now(&format!(
        "heist_memory_evictions_total{{cause=\"{cause}\"}}"
    ))
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_737_000_000 + seconds).unwrap()
}

#[test]
fn the_gauges_follow_what_the_store_holds_and_evictions_count_each_cause() {
    let limits = Limits {
        max_per_stream: 2,
        max_total: 5,
        ttl: Duration::from_secs(60),
        ..Limits::default()
    };
    let mut store = MemoryStore::new(limits).unwrap();
    let entries = "heist_memory_entries";
    let bytes = "heist_memory_bytes";
    let (entries_before, bytes_before) = (now(entries), now(bytes));
    let store_turn = |store: &mut MemoryStore, session: &str, turn: i64, seconds: i64| {
        // Every message is 6 bytes.
        let outcome = store.store(
            "planner",
            session,
            turn,
            &format!("turn {turn}"),
            at(seconds),
        );
        assert!(outcome.unwrap().stored);
    };

    // A third turn in a stream of two evicts its oldest.
    for turn in 0..3 {
        store_turn(&mut store, "s1", turn, 0);
    }
    assert_eq!(evictions("per_stream_limit"), 1.0);
    assert_eq!(now(entries) - entries_before, 2.0);
    assert_eq!(now(bytes) - bytes_before, 12.0);

    // Six turns over a total of five evict the least recently written session.
    for session in ["s2", "s3"] {
        for turn in 0..2 {
            store_turn(&mut store, session, turn, 10);
        }
    }
    assert_eq!(evictions("total_limit"), 2.0);
    assert_eq!(now(entries) - entries_before, 4.0);

    // The TTL takes the rest.
    assert_eq!(store.sweep(at(70)), 2);
    assert_eq!(evictions("ttl"), 4.0);
    assert_eq!(now(entries), entries_before);
    assert_eq!(now(bytes), bytes_before);

    store_turn(&mut store, "s4", 0, 80);
    assert_eq!(store.clear(None, Some("s4")).unwrap(), 1);
    assert_eq!(evictions("cleared"), 1.0);
    assert_eq!(evictions("per_stream_limit"), 1.0, "unchanged");

    // What a dropped store held leaves the gauges.
    store_turn(&mut store, "s5", 0, 80);
    assert_eq!(now(entries) - entries_before, 1.0);
    drop(store);
    assert_eq!(now(entries), entries_before);
    assert_eq!(now(bytes), bytes_before);
}
