//! The hash chain (issue 18) through the store: sessions written through
//! the API verify intact; tampering with SQL beside the store is named, row
//! by row; rows from before schema v6 are unchained. On both backends.

use super::*;

/// A session "s1" written through the API: the start (position 0), message 1
/// (turn 1), a turn of message 2 with tool calls 1 and 2, event 1, message 3
/// (turn 3) and the end (position 7); then a session "s2" with message 4.
async fn written(backend: Backend) -> Fixture {
    let fx = started(backend, "s1").await;
    let store = &fx.store;
    store
        .store_message(keyed("s1", "we go at dawn", "m1"))
        .await
        .unwrap();
    store
        .store_turn(turn("s1", "t2", &["c1", "c2"]))
        .await
        .unwrap();
    store
        .store_session_event(event("s1", "breaker.open", "e1"))
        .await
        .unwrap();
    store.store_message(last_message()).await.unwrap();
    store
        .end_session(end("s1", 3, SessionStatus::Completed))
        .await
        .unwrap();
    store.create_session(new_session("s2")).await.unwrap();
    store
        .store_message(keyed("s2", "other", "o1"))
        .await
        .unwrap();
    fx
}

fn last_message() -> NewMessage {
    NewMessage {
        turn_id: 3,
        ..keyed("s1", "the crew is out", "m3")
    }
}

fn at(kind: RowKind, id: Option<i64>, turn: Option<i64>) -> RowRef {
    RowRef { kind, id, turn }
}

async fn verify(fx: &Fixture) -> Verification {
    fx.store.verify_session("s1").await.unwrap()
}

fn broken(row: RowRef, what: Break) -> Verification {
    Verification::Broken { row, what }
}

contract! {
    async fn an_untouched_session_verifies_intact_and_repeats_do_not_extend_it(backend) {
        let fx = written(backend).await;
        let intact = verify(&fx).await;
        let Verification::Intact { rows, .. } = intact else {
            panic!("not intact: {:?}", verify(&fx).await);
        };
        assert_eq!(rows, 8);
        let store = &fx.store;
        store.store_message(keyed("s1", "we go at dawn", "m1")).await.unwrap();
        store.store_turn(turn("s1", "t2", &["c1", "c2"])).await.unwrap();
        store.store_session_event(event("s1", "breaker.open", "e1")).await.unwrap();
        store.end_session(end("s1", 3, SessionStatus::Completed)).await.unwrap();
        assert_eq!(verify(&fx).await, intact, "repeats change nothing");
        assert!(matches!(
            store.verify_session("s2").await.unwrap(),
            Verification::Intact { rows: 2, .. }
        ));
    }
}

contract! {
    async fn a_changed_message_text_is_a_hash_mismatch_naming_the_message(backend) {
        let fx = written(backend).await;
        fx.execute("UPDATE messages SET message = 'we go at noon' WHERE id = 2").await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::Message, Some(2), Some(2)), Break::HashMismatch)
        );
        assert!(
            matches!(fx.store.verify_session("s2").await.unwrap(), Verification::Intact { .. }),
            "another session is untouched"
        );
    }
}

contract! {
    async fn a_changed_tool_result_is_a_hash_mismatch_naming_the_call(backend) {
        let fx = written(backend).await;
        fx.execute("UPDATE tool_usage SET tool_result = '5' WHERE id = 2").await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::ToolCall, Some(2), Some(2)), Break::HashMismatch)
        );
    }
}

contract! {
    async fn a_deleted_row_is_a_gap_at_the_row_after_it(backend) {
        let fx = written(backend).await;
        fx.execute("DELETE FROM tool_usage WHERE id = 1").await;
        assert_eq!(
            verify(&fx).await,
            broken(
                at(RowKind::ToolCall, Some(2), Some(2)),
                Break::Gap { expected: 3, found: 4 }
            )
        );
    }
}

contract! {
    async fn a_deleted_last_row_is_a_head_mismatch(backend) {
        let fx = started(backend, "s1").await;
        fx.store.store_message(keyed("s1", "we go at dawn", "m1")).await.unwrap();
        fx.store.store_message(last_message()).await.unwrap();
        fx.execute("DELETE FROM messages WHERE turn_id = 3").await;
        assert_eq!(
            verify(&fx).await,
            broken(
                at(RowKind::Start, None, None),
                Break::HeadMismatch { expected: 3, found: 2 }
            )
        );
    }
}

contract! {
    async fn two_swapped_rows_are_a_hash_mismatch_at_the_first(backend) {
        let fx = written(backend).await;
        fx.execute(
            "UPDATE messages SET id = -1 WHERE id = 1; \
             UPDATE messages SET id = 1 WHERE id = 3; \
             UPDATE messages SET id = 3 WHERE id = -1;",
        )
        .await;
        // Position 1 (turn 1) now reads as message 3.
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::Message, Some(3), Some(1)), Break::HashMismatch)
        );
    }
}

contract! {
    async fn swapped_positions_are_a_link_mismatch(backend) {
        let fx = written(backend).await;
        fx.execute(
            "UPDATE tool_usage SET chain_seq = CASE id WHEN 1 THEN 4 ELSE 3 END \
             WHERE session_id = 's1'",
        )
        .await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::ToolCall, Some(2), Some(2)), Break::LinkMismatch)
        );
    }
}

contract! {
    async fn an_inserted_row_is_named_whether_unchained_or_with_copied_links(backend) {
        let fx = written(backend).await;
        fx.execute(
            "INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp) \
             VALUES ('s1', 2, 'hacker', 'Hacker', 'forged', '2025-01-15T00:00:00.000000Z')",
        )
        .await;
        let forged = fx.count("SELECT MAX(id) FROM messages").await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::Message, Some(forged), Some(2)), Break::Unchained)
        );
        fx.execute(&format!(
            "UPDATE messages SET (chain_seq, prev_hash, row_hash) = \
             (SELECT chain_seq, prev_hash, row_hash FROM messages WHERE id = 2) WHERE id = {forged}"
        ))
        .await;
        assert_eq!(
            verify(&fx).await,
            broken(
                at(RowKind::Message, Some(forged), Some(2)),
                Break::Gap { expected: 3, found: 2 }
            )
        );
    }
}

contract! {
    async fn a_changed_timestamp_is_a_hash_mismatch(backend) {
        let fx = written(backend).await;
        fx.execute(
            "UPDATE session_events SET timestamp = '2020-01-01T00:00:00.000000Z' WHERE id = 1",
        )
        .await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::Event, Some(1), None), Break::HashMismatch)
        );
    }
}

contract! {
    async fn a_moved_or_undone_session_end_is_named(backend) {
        let fx = written(backend).await;
        fx.execute("UPDATE sessions SET end_time = '2030-01-01T00:00:00.000000Z' WHERE session_id = 's1'")
            .await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::End, None, None), Break::HashMismatch)
        );
        let fx = written(backend).await;
        fx.execute(
            "UPDATE sessions SET status = 'active', end_time = NULL, end_seq = NULL, \
             end_prev_hash = NULL, end_hash = NULL WHERE session_id = 's1'",
        )
        .await;
        assert_eq!(
            verify(&fx).await,
            broken(
                at(RowKind::Start, None, None),
                Break::HeadMismatch { expected: 8, found: 7 }
            ),
            "the head still counts the end"
        );
        let fx = written(backend).await;
        fx.execute("UPDATE sessions SET start_time = '2001-01-01T00:00:00.000000Z'").await;
        assert_eq!(
            verify(&fx).await,
            broken(at(RowKind::Start, None, None), Break::HashMismatch)
        );
    }
}

contract! {
    async fn verifying_an_unknown_session_is_not_found(backend) {
        let fx = fixture(backend).await;
        let error = fx.store.verify_session("ghost").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    }
}

/// A version 5 build's rows (no chain columns): session "old" with two
/// messages and an event.
const V5_ROWS: &str = "INSERT INTO sessions (session_id, start_time)
            VALUES ('old', '2025-01-01T00:00:00.000000Z');
        INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, timestamp)
            VALUES ('old', 1, 'planner', 'r', 'from v5', '2025-01-01T00:00:01.000000Z'),
                   ('old', 2, 'hacker', 'r', 'also v5', '2025-01-01T00:00:02.000000Z');
        INSERT INTO session_events (session_id, kind, detail, timestamp)
            VALUES ('old', 'breaker.open', '', '2025-01-01T00:00:03.000000Z');";

contract! {
    async fn a_version_5_database_reports_its_old_rows_unchained_and_chains_new_sessions(backend) {
        let fx = migrated_from(backend, 5, V5_ROWS).await;
        assert_eq!(fx.schema_version().await, 6);
        assert_eq!(
            fx.store.verify_session("old").await.unwrap(),
            Verification::Unchained { rows: 4 }
        );
        fx.store.store_message(message("old", "after v6")).await.unwrap();
        fx.store.end_session(end("old", 2, SessionStatus::Completed)).await.unwrap();
        assert_eq!(
            fx.store.verify_session("old").await.unwrap(),
            Verification::Unchained { rows: 6 },
            "a session started unchained stays unchained"
        );
        fx.store.create_session(new_session("new")).await.unwrap();
        fx.store.store_message(message("new", "chained")).await.unwrap();
        assert!(matches!(
            fx.store.verify_session("new").await.unwrap(),
            Verification::Intact { rows: 2, .. }
        ));
    }
}

contract! {
    #[multi_thread]
    async fn concurrent_writes_and_retries_through_two_stores_keep_one_chain(backend) {
        let fx = started(backend, "s1").await;
        let other = AuditStore::connect(config(fx.location.clone())).await.unwrap();
        let write = |store: AuditStore, name: &'static str| async move {
            for n in 0..20 {
                let key = format!("{name}-{n}");
                let new = keyed("s1", &key, &key);
                store.store_message(new.clone()).await.unwrap();
                // The retry of a write whose answer was lost.
                store.store_message(new).await.unwrap();
            }
        };
        let (a, b) = (
            tokio::spawn(write(fx.store.clone(), "a")),
            tokio::spawn(write(other.clone(), "b")),
        );
        a.await.unwrap();
        b.await.unwrap();
        for n in 0..20 {
            let key = format!("a-{n}");
            other.store_message(keyed("s1", &key, &key)).await.unwrap();
        }
        assert!(matches!(
            verify(&fx).await,
            Verification::Intact { rows: 41, .. }
        ), "{:?}", verify(&fx).await);
        assert_eq!(
            other.verify_session("s1").await.unwrap(),
            verify(&fx).await,
            "both stores see the same chain"
        );
    }
}

contract! {
    async fn a_refused_turn_leaves_the_chain_as_it_was(backend) {
        let fx = started(backend, "s1").await;
        fx.store.store_turn(turn("s1", "t1", &["c1"])).await.unwrap();
        let before = verify(&fx).await;
        assert!(matches!(before, Verification::Intact { rows: 3, .. }), "{before:?}");
        let mut refused = turn("s1", "t2", &["c2", "c1"]);
        refused.tool_calls[1].tool_result = "5".into();
        let error = fx.store.store_turn(refused).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
        assert_eq!(verify(&fx).await, before);
        fx.store.store_turn(turn("s1", "t2", &["c2"])).await.unwrap();
        assert!(matches!(verify(&fx).await, Verification::Intact { rows: 5, .. }));
    }
}
