//! The hash chain on PostgreSQL, as SQLite's `links` does it: extended inside
//! the write's transaction, after the write has locked its session's row
//! (so a session's rows are chained one at a time across every replica), and
//! read back in one snapshot for verification. The encoding is in `chain`.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::error::pg;
use super::queries::{self, Listed};
use crate::store::chain::{self, Chained, Hash, Link, StoredChain, StoredLink, Verification};
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
pub(super) async fn head(
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

/// The chain of a row about to be inserted into a chained session: its ID,
/// taken from its table's sequence first so that the row goes in with its
/// chain columns (no UPDATE after the INSERT), and its link.
pub(super) struct RowChain {
    /// The row's ID.
    pub(super) id: i64,
    /// The session's tip it extends.
    pub(super) tip: Tip,
    /// The row's hash at that tip.
    pub(super) hash: Hash,
}

impl RowChain {
    /// Takes the next ID of `T`'s table and hashes `row(id)` at `tip`:
    /// the row and its chain.
    pub(super) async fn take<T: Chained>(
        tx: &Transaction<'_>,
        tip: Tip,
        row: impl FnOnce(i64) -> T,
    ) -> Result<(T, RowChain), StoreError> {
        let table = T::KIND.table();
        let sql = format!("SELECT nextval(pg_get_serial_sequence('{table}', 'id'))");
        let statement = tx.prepare_cached(&sql).await.map_err(pg)?;
        let id: i64 = tx
            .query_one(&statement, &[])
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        let row = row(id);
        let hash = row.chain_hash(&tip.hash, tip.next);
        Ok((row, RowChain { id, tip, hash }))
    }

    /// The values a chained INSERT takes after its own
    /// `n`: the ID, the position, the previous hash, the hash, the next
    /// position and the session.
    pub(super) fn values(&self, session_id: &str) -> Result<ChainValues, StoreError> {
        Ok(ChainValues {
            id: self.id,
            seq: chain::position(self.tip.next)?,
            prev: self.tip.hash.to_vec(),
            hash: self.hash.to_vec(),
            next: chain::position(self.tip.next + 1)?,
            session_id: session_id.to_owned(),
        })
    }
}

/// The chain values of one INSERT, owned for the statement's parameters.
pub(super) struct ChainValues {
    id: i64,
    seq: i64,
    prev: Vec<u8>,
    hash: Vec<u8>,
    next: i64,
    session_id: String,
}

impl ChainValues {
    /// The parameters, in the order a chained INSERT numbers them after its own.
    pub(super) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.id,
            &self.seq,
            &self.prev,
            &self.hash,
            &self.next,
            &self.session_id,
        ]
    }
}

/// Records a row inserted with `chain` and signs when a checkpoint is due.
pub(super) async fn inserted(
    tx: &Transaction<'_>,
    at: &Stamp<'_>,
    session_id: &str,
    chain: &RowChain,
) -> Result<(), StoreError> {
    match checkpoint::chained(at, (session_id, chain.tip), &chain.hash, false) {
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
