//! The hash chain on PostgreSQL, as SQLite's `links` does it: extended inside
//! the write's transaction, after the write has locked its session's row
//! (so a session's rows are chained one at a time across every replica), and
//! read back in one snapshot for verification. The encoding is in `chain`.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::error::pg;
use super::queries::{self, Listed};
use crate::store::chain::{self, Chained, Link, StoredChain, StoredLink, Verification};
use crate::store::checkpoint::{self, Checkpoint, Rules, Seal, Tip};
use crate::store::error::StoreError;
use crate::store::types::{MessageRow, SessionEventRow, SessionStatus, ToolUsageRow};
use crate::store::writer::Stamp;

/// Locks the session's row for the write (so a session's writes are ordered
/// across replicas) and answers its status, keeping it and its chain tip
/// for the write's other rows (a turn's tool calls lock nothing again);
/// `SessionNotFound` for an unknown session.
pub(super) async fn lock(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
) -> Result<SessionStatus, StoreError> {
    if let Some(status) = at.tips.locked(session_id) {
        return Ok(status);
    }
    let statement = tx
        .prepare_cached(
            "SELECT status, chain_head, chain_next, signed_next FROM sessions \
             WHERE session_id = $1 FOR UPDATE",
        )
        .await
        .map_err(pg)?;
    let row = tx
        .query_opt(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .ok_or_else(|| queries::not_found(session_id))?;
    let status = queries::status(row.try_get(0).map_err(pg)?)?;
    at.tips.lock(session_id, status, tip_at(&row, 1)?);
    Ok(status)
}

/// The tip in the columns `chain_head, chain_next, signed_next` from `at`.
fn tip_at(row: &Row, at: usize) -> Result<Option<Tip>, StoreError> {
    let hash: Option<Vec<u8>> = row.try_get(at).map_err(pg)?;
    let next: Option<i64> = row.try_get(at + 1).map_err(pg)?;
    let signed: Option<i64> = row.try_get(at + 2).map_err(pg)?;
    Ok(Tip::read(chain::head(hash, next), signed))
}

/// The session's chain tip: as the write's lock read it or its rows moved
/// it, else read (the row is locked); `None` for a session started before
/// the chain existed (it stays unchained).
async fn head(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
) -> Result<Option<Tip>, StoreError> {
    if let Some(tip) = at.tips.get(session_id) {
        return Ok(tip);
    }
    let statement = tx
        .prepare_cached(
            "SELECT chain_head, chain_next, signed_next FROM sessions WHERE session_id = $1",
        )
        .await
        .map_err(pg)?;
    match tx.query_opt(&statement, &[&session_id]).await.map_err(pg)? {
        Some(row) => tip_at(&row, 0),
        None => Ok(None),
    }
}

/// Stores `checkpoint` for the session and records what it covers (one statement).
async fn sign(
    tx: &Transaction<'_>,
    session_id: &str,
    checkpoint: &Checkpoint,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(
            "WITH signed AS (INSERT INTO checkpoints \
             (session_id, rows, head, key_id, signature, signed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)) \
             UPDATE sessions SET signed_next = $2 WHERE session_id = $1",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &statement,
        &[
            &session_id,
            &chain::position(checkpoint.rows)?,
            &checkpoint.head.as_slice(),
            &checkpoint.key_id,
            &checkpoint.signature.as_slice(),
            &checkpoint.signed_at,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Chains a row just inserted into its table and moves the session's head
/// to it (one statement), then signs when a checkpoint is due; a session
/// without a head is left unchained.
pub(super) async fn append<T: Chained>(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
    row: &T,
) -> Result<(), StoreError> {
    let Some(tip) = head(tx, at, session_id).await? else {
        return Ok(());
    };
    let hash = row.chain_hash(&tip.hash, tip.next);
    let sql = format!(
        "WITH linked AS (UPDATE {} SET chain_seq = $2, prev_hash = $3, row_hash = $4 \
         WHERE id = $1) \
         UPDATE sessions SET chain_head = $4, chain_next = $5 WHERE session_id = $6",
        T::KIND.table()
    );
    let statement = tx.prepare_cached(&sql).await.map_err(pg)?;
    tx.execute(
        &statement,
        &[
            &row.id(),
            &chain::position(tip.next)?,
            &tip.hash.as_slice(),
            &hash.as_slice(),
            &chain::position(tip.next + 1)?,
            &session_id,
        ],
    )
    .await
    .map_err(pg)?;
    match checkpoint::chained(at, (session_id, tip), &hash, false) {
        Some(checkpoint) => sign(tx, session_id, &checkpoint).await,
        None => Ok(()),
    }
}

/// Chains a session's end (its `end_*` columns), written at `at.now`, and
/// signs the chain's final head.
pub(super) async fn end(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
    status: SessionStatus,
    num_turns: i64,
) -> Result<(), StoreError> {
    let Some(tip) = head(tx, at, session_id).await? else {
        return Ok(());
    };
    let hash = chain::end_hash(&tip.hash, tip.next, session_id, at.now, status, num_turns);
    let statement = tx
        .prepare_cached(
            "UPDATE sessions SET end_seq = $2, end_prev_hash = $3, end_hash = $4, \
             chain_head = $4, chain_next = $5 WHERE session_id = $1",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &statement,
        &[
            &session_id,
            &chain::position(tip.next)?,
            &tip.hash.as_slice(),
            &hash.as_slice(),
            &chain::position(tip.next + 1)?,
        ],
    )
    .await
    .map_err(pg)?;
    match checkpoint::chained(at, (session_id, tip), &hash, true) {
        Some(checkpoint) => sign(tx, session_id, &checkpoint).await,
        None => Ok(()),
    }
}

/// The chain columns at `at` (the seq, the previous hash, the hash).
fn stored_at(row: &Row, at: usize) -> Result<StoredLink, StoreError> {
    Ok(StoredLink {
        seq: row.try_get(at).map_err(pg)?,
        prev: row.try_get(at + 1).map_err(pg)?,
        hash: row.try_get(at + 2).map_err(pg)?,
    })
}

/// The links of one table's rows of the session.
async fn links_of<T: Chained + Listed>(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Vec<Link>, StoreError> {
    let rows: Vec<T> = queries::rows_after(client, session_id, 0, usize::MAX).await?;
    let sql = format!(
        "SELECT id, chain_seq, prev_hash, row_hash FROM {} WHERE session_id = $1",
        T::KIND.table()
    );
    let statement = client.prepare_cached(&sql).await.map_err(pg)?;
    let mut stored = client
        .query(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .iter()
        .map(|row| Ok((row.try_get::<_, i64>(0).map_err(pg)?, stored_at(row, 1)?)))
        .collect::<Result<HashMap<i64, StoredLink>, StoreError>>()?;
    Ok(rows
        .iter()
        .map(|row| Link::of(row, stored.remove(&row.id()).unwrap_or_default()))
        .collect())
}

/// Walks the session's chain in one read-only snapshot; `SessionNotFound`
/// for an unknown session.
pub(super) async fn verify(
    client: &mut deadpool_postgres::Client,
    session_id: &str,
    rules: &Rules,
) -> Result<Verification, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let session = queries::existing_session(&tx, session_id).await?;
    let statement = tx
        .prepare_cached(
            "SELECT chain_seq, prev_hash, row_hash, end_seq, end_prev_hash, end_hash, \
             chain_head, chain_next FROM sessions WHERE session_id = $1",
        )
        .await
        .map_err(pg)?;
    let row = tx.query_one(&statement, &[&session_id]).await.map_err(pg)?;
    let start = stored_at(&row, 0)?;
    let end = stored_at(&row, 3)?;
    let head_hash: Option<Vec<u8>> = row.try_get(6).map_err(pg)?;
    let head_next: Option<i64> = row.try_get(7).map_err(pg)?;
    let mut rows = links_of::<MessageRow>(&tx, session_id).await?;
    rows.extend(links_of::<ToolUsageRow>(&tx, session_id).await?);
    rows.extend(links_of::<SessionEventRow>(&tx, session_id).await?);
    let checkpoints = checkpoints(&tx, session_id).await?;
    tx.commit().await.map_err(pg)?;
    let stored = StoredChain {
        session,
        start,
        end,
        rows,
        head: chain::head(head_hash, head_next),
        checkpoints,
    };
    Ok(chain::verify(stored, rules))
}

/// The session's checkpoints, as stored (malformed ones never verify).
async fn checkpoints(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Vec<Checkpoint>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT rows, head, key_id, signature, signed_at FROM checkpoints \
             WHERE session_id = $1",
        )
        .await
        .map_err(pg)?;
    client
        .query(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .iter()
        .map(|row| {
            Ok(Checkpoint::read(
                row.try_get(0).map_err(pg)?,
                row.try_get(1).map_err(pg)?,
                row.try_get(2).map_err(pg)?,
                row.try_get(3).map_err(pg)?,
                row.try_get(4).map_err(pg)?,
            ))
        })
        .collect()
}

/// The session's seal as stored (its head and latest checkpoint), in one
/// statement, without walking the chain; `None` for an unchained session,
/// `SessionNotFound` for an unknown one.
pub(super) async fn seal(
    client: &impl GenericClient,
    session_id: &str,
) -> Result<Option<Seal>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT s.chain_head, s.chain_next, c.rows, c.head, c.key_id, c.signature, \
             c.signed_at FROM sessions s LEFT JOIN LATERAL (SELECT * FROM checkpoints \
             WHERE session_id = s.session_id ORDER BY rows DESC LIMIT 1) c ON TRUE \
             WHERE s.session_id = $1",
        )
        .await
        .map_err(pg)?;
    let row = client
        .query_opt(&statement, &[&session_id])
        .await
        .map_err(pg)?
        .ok_or_else(|| queries::not_found(session_id))?;
    let head = chain::head(row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
    let rows: Option<i64> = row.try_get(2).map_err(pg)?;
    let latest = match rows {
        Some(rows) => Some(Checkpoint::read(
            rows,
            row.try_get(3).map_err(pg)?,
            row.try_get(4).map_err(pg)?,
            row.try_get(5).map_err(pg)?,
            row.try_get(6).map_err(pg)?,
        )),
        None => None,
    };
    Ok(Seal::of(head, latest))
}
