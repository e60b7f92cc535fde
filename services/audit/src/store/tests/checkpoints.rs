//! Signed checkpoints (issue 18) through the store: every session end and
//! every N rows are signed with the store's key; a chain rewritten and
//! re-hashed with SQL beside the store, a removed checkpoint, another key's
//! checkpoint and a forged signature are each refused, on both backends.

use super::*;
use crate::store::chain;
use crate::store::checkpoint::{self, CheckpointBreak};

/// A fixture whose store signs every `every` rows.
async fn signing_every(backend: Backend, every: u64) -> Fixture {
    let fx = fixture_with(backend, |config| config.integrity.checkpoint_every = every).await;
    fx.store.create_session(new_session("s1")).await.unwrap();
    fx
}

/// Stores messages m1..=mN in "s1".
async fn messages(fx: &Fixture, n: usize) {
    for i in 1..=n {
        let key = format!("m{i}");
        fx.store
            .store_message(keyed("s1", &format!("message {i}"), &key))
            .await
            .unwrap();
    }
}

async fn verify(fx: &Fixture) -> Verification {
    fx.store.verify_session("s1").await.unwrap()
}

/// The rows each stored checkpoint of "s1" covers, in order.
async fn signed_rows(fx: &Fixture) -> Vec<i64> {
    let total = fx
        .count("SELECT COUNT(*) FROM checkpoints WHERE session_id = 's1'")
        .await;
    let mut rows = Vec::new();
    for offset in 0..total {
        rows.push(
            fx.count(&format!(
                "SELECT rows FROM checkpoints WHERE session_id = 's1' \
                 ORDER BY rows LIMIT 1 OFFSET {offset}"
            ))
            .await,
        );
    }
    rows
}

/// `bytes` as a SQL blob literal of the fixture's backend.
fn blob(fx: &Fixture, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    match fx.location {
        StoreLocation::Sqlite(_) => format!("X'{hex}'"),
        StoreLocation::Postgres(_) => format!("decode('{hex}', 'hex')"),
    }
}

fn at(kind: RowKind, id: Option<i64>, turn: Option<i64>) -> RowRef {
    RowRef { kind, id, turn }
}

fn refused(row: RowRef, what: CheckpointBreak) -> Verification {
    Verification::Broken {
        row,
        what: Break::Checkpoint(what),
    }
}

contract! {
    async fn an_ended_session_is_signed_at_its_end_by_the_store_key(backend) {
        let fx = signing_every(backend, 100).await;
        messages(&fx, 2).await;
        assert!(
            matches!(verify(&fx).await, Verification::Intact { rows: 3, checkpoint: None, .. }),
            "three rows are below the interval: nothing is signed yet"
        );
        fx.store.end_session(end("s1", 2, SessionStatus::Completed)).await.unwrap();
        let Verification::Intact { rows, head, checkpoint: Some(signed) } = verify(&fx).await
        else {
            panic!("not intact and signed: {:?}", verify(&fx).await);
        };
        assert_eq!((rows, signed.rows, signed.head), (4, 4, head));
        let key = fx.store.integrity().public_keys()[0].clone();
        assert_eq!(signed.key_id, key.kid());
        assert!(key.verifies(&checkpoint::statement("s1", 4, &head), &signed.signature));
        assert_eq!(signed_rows(&fx).await, [4]);
    }
}

contract! {
    async fn a_long_session_is_signed_every_n_rows_and_at_its_end(backend) {
        let fx = signing_every(backend, 4).await;
        messages(&fx, 9).await;
        assert_eq!(signed_rows(&fx).await, [4, 8], "the start and 9 messages: 10 rows");
        let Verification::Intact { rows: 10, checkpoint: Some(signed), .. } = verify(&fx).await
        else {
            panic!("not intact: {:?}", verify(&fx).await);
        };
        assert_eq!(signed.rows, 8);
        // A retry stores nothing and signs nothing.
        fx.store.store_message(keyed("s1", "message 9", "m9")).await.unwrap();
        fx.store.end_session(end("s1", 9, SessionStatus::Completed)).await.unwrap();
        fx.store.end_session(end("s1", 9, SessionStatus::Completed)).await.unwrap();
        assert_eq!(signed_rows(&fx).await, [4, 8, 11]);
        assert!(matches!(verify(&fx).await, Verification::Intact { rows: 11, .. }));
    }
}

/// Rewrites message 1 of "s1" to `text` and re-hashes it and every message
/// after it with the chain's own encoding, as someone who read the README
/// and holds write access would: the chain alone then verifies.
async fn rewrite_and_rehash(fx: &Fixture, text: &str) {
    let session = fx.store.get_session("s1").await.unwrap();
    let mut prev = chain::start_hash(&chain::GENESIS, 0, &session);
    let page = PageRequest {
        page_size: 1000,
        ..PageRequest::default()
    };
    let rows = fx.store.list_messages("s1", page).await.unwrap().items;
    let mut sql = String::new();
    for (position, mut row) in (1u64..).zip(rows) {
        if position == 1 {
            row.message = text.to_owned();
        }
        let hash = chain::message_hash(&prev, position, &row);
        sql.push_str(&format!(
            "UPDATE messages SET message = '{}', prev_hash = {}, row_hash = {} WHERE id = {};\n",
            row.message,
            blob(fx, &prev),
            blob(fx, &hash),
            row.id
        ));
        prev = hash;
    }
    sql.push_str(&format!(
        "UPDATE sessions SET chain_head = {} WHERE session_id = 's1';",
        blob(fx, &prev)
    ));
    fx.execute(&sql).await;
}

contract! {
    async fn a_rehashed_chain_with_its_checkpoints_removed_is_unsigned_past_the_interval(backend) {
        let fx = signing_every(backend, 4).await;
        messages(&fx, 5).await;
        assert_eq!(signed_rows(&fx).await, [4]);
        rewrite_and_rehash(&fx, "we go at noon").await;
        fx.execute("DELETE FROM checkpoints").await;
        assert_eq!(
            verify(&fx).await,
            refused(at(RowKind::Start, None, None), CheckpointBreak::Unsigned { signed: 0, rows: 6 }),
            "with its checkpoints removed, the chain is consistent but unsigned past the interval"
        );
    }
}

contract! {
    async fn a_rehashed_chain_under_its_old_checkpoint_names_the_last_row_signed(backend) {
        let fx = signing_every(backend, 4).await;
        messages(&fx, 5).await;
        rewrite_and_rehash(&fx, "we go at noon").await;
        assert_eq!(
            verify(&fx).await,
            refused(
                at(RowKind::Message, Some(3), Some(1)),
                CheckpointBreak::HeadMismatch { rows: 4 }
            ),
            "the chain walks, but the head signed over rows 0..4 is not message 3's hash"
        );
    }
}

contract! {
    async fn an_ended_session_without_its_end_checkpoint_is_unsigned_at_its_end(backend) {
        let fx = signing_every(backend, 100).await;
        messages(&fx, 2).await;
        fx.store.end_session(end("s1", 2, SessionStatus::Completed)).await.unwrap();
        fx.execute("DELETE FROM checkpoints WHERE session_id = 's1'").await;
        assert_eq!(
            verify(&fx).await,
            refused(at(RowKind::Start, None, None), CheckpointBreak::Unsigned { signed: 0, rows: 4 })
        );
    }
}

contract! {
    async fn a_checkpoint_signed_by_another_key_is_refused(backend) {
        let fx = signing_every(backend, 100).await;
        messages(&fx, 1).await;
        fx.store.end_session(end("s1", 1, SessionStatus::Completed)).await.unwrap();
        let end_row = at(RowKind::End, None, None);
        // Another Audit (its own key) reading the same database trusts only its key.
        let stranger = AuditStore::connect(config(fx.location.clone())).await.unwrap();
        assert_eq!(
            stranger.verify_session("s1").await.unwrap(),
            refused(end_row, CheckpointBreak::UnknownKey { rows: 3 })
        );
        // A signature by another key under the store's key ID.
        let Verification::Intact { head, .. } = verify(&fx).await else {
            panic!("not intact: {:?}", verify(&fx).await);
        };
        let forger = heist_tokens::SigningKey::generate().unwrap();
        let forged = forger.sign(&checkpoint::statement("s1", 3, &head));
        fx.execute(&format!(
            "UPDATE checkpoints SET signature = {} WHERE session_id = 's1'",
            blob(&fx, &forged)
        ))
        .await;
        assert_eq!(
            verify(&fx).await,
            refused(end_row, CheckpointBreak::BadSignature { rows: 3 })
        );
        // The forger's key ID instead: a key the store does not trust.
        fx.execute(&format!(
            "UPDATE checkpoints SET key_id = '{}' WHERE session_id = 's1'",
            forger.kid()
        ))
        .await;
        assert_eq!(
            verify(&fx).await,
            refused(end_row, CheckpointBreak::UnknownKey { rows: 3 })
        );
    }
}

contract! {
    async fn a_checkpoint_moved_to_another_position_fails_its_signature(backend) {
        let fx = signing_every(backend, 100).await;
        messages(&fx, 1).await;
        fx.store.end_session(end("s1", 1, SessionStatus::Completed)).await.unwrap();
        // The position is signed: claiming the head covers 2 rows, not 3, breaks it.
        fx.execute("UPDATE checkpoints SET rows = 2 WHERE session_id = 's1'").await;
        assert!(matches!(
            verify(&fx).await,
            Verification::Broken { what: Break::Checkpoint(CheckpointBreak::BadSignature { rows: 2 }), .. }
        ), "{:?}", verify(&fx).await);
    }
}

contract! {
    async fn a_start_stripped_of_its_chain_is_tampered_and_a_session_stripped_whole_reads_unchained(backend) {
        let fx = signing_every(backend, 100).await;
        messages(&fx, 2).await;
        fx.store.end_session(end("s1", 2, SessionStatus::Completed)).await.unwrap();
        fx.execute(
            "UPDATE sessions SET chain_seq = NULL, prev_hash = NULL, row_hash = NULL \
             WHERE session_id = 's1'",
        )
        .await;
        assert_eq!(
            verify(&fx).await,
            Verification::Broken { row: RowRef::start(), what: Break::Unchained },
            "its rows, head and checkpoint still show the chain"
        );
        // Every trace removed: indistinguishable from a session stored
        // before the chain (the README says so; `verify --strict` refuses it).
        fx.execute(
            "UPDATE sessions SET end_seq = NULL, end_prev_hash = NULL, end_hash = NULL, \
             chain_head = NULL, chain_next = NULL, signed_next = NULL WHERE session_id = 's1';
             UPDATE messages SET chain_seq = NULL, prev_hash = NULL, row_hash = NULL;
             DELETE FROM checkpoints;",
        )
        .await;
        assert_eq!(verify(&fx).await, Verification::Unchained { rows: 4 });
    }
}

contract! {
    async fn the_seal_is_the_head_and_latest_checkpoint_as_stored(backend) {
        let fx = signing_every(backend, 4).await;
        messages(&fx, 5).await;
        let seal = fx.store.session_seal("s1").await.unwrap().expect("chained");
        let Verification::Intact { rows, head, checkpoint } = verify(&fx).await else {
            panic!("not intact: {:?}", verify(&fx).await);
        };
        assert_eq!((seal.rows, seal.head, seal.checkpoint), (rows, head, checkpoint));
        assert_eq!(rows, 6);
        let error = fx.store.session_seal("ghost").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        let off = fixture_with(backend, |config| config.integrity.chain = false).await;
        off.store.create_session(new_session("s1")).await.unwrap();
        assert_eq!(off.store.session_seal("s1").await.unwrap(), None, "unchained");
    }
}
