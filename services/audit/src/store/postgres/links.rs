//! The hash chain on PostgreSQL, as SQLite's `links` does it: extended inside
//! the write's transaction, after the write has locked its session's row
//! (so a session's rows are chained one at a time across every replica), and
//! read back in one snapshot for verification. The encoding is in `chain`.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::error::pg;
use super::queries::{self, Listed};
use crate::store::chain::{self, Chained, Head, Link, StoredLink, Verification};
use crate::store::error::StoreError;
use crate::store::types::{MessageRow, SessionEventRow, SessionStatus, ToolUsageRow};

/// The session's chain head (its row is locked by the write); `None` for a
/// session started before the chain existed (it stays unchained).
async fn head(tx: &Transaction<'_>, session_id: &str) -> Result<Head, StoreError> {
    let statement = tx
        .prepare_cached("SELECT chain_head, chain_next FROM sessions WHERE session_id = $1")
        .await
        .map_err(pg)?;
    let Some(row) = tx.query_opt(&statement, &[&session_id]).await.map_err(pg)? else {
        return Ok(None);
    };
    let hash: Option<Vec<u8>> = row.try_get(0).map_err(pg)?;
    let next: Option<i64> = row.try_get(1).map_err(pg)?;
    Ok(chain::head(hash, next))
}

/// Chains a row just inserted into its table and moves the session's head
/// to it (one statement); a session without a head is left unchained.
pub(super) async fn append<T: Chained>(
    tx: &Transaction<'_>,
    session_id: &str,
    row: &T,
) -> Result<(), StoreError> {
    let Some((prev, seq)) = head(tx, session_id).await? else {
        return Ok(());
    };
    let hash = row.chain_hash(&prev, seq);
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
            &chain::position(seq)?,
            &prev.as_slice(),
            &hash.as_slice(),
            &chain::position(seq + 1)?,
            &session_id,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Chains a session's end (its `end_*` columns), written at `end_time`.
pub(super) async fn end(
    tx: &Transaction<'_>,
    session_id: &str,
    end_time: &str,
    status: SessionStatus,
    num_turns: i64,
) -> Result<(), StoreError> {
    let Some((prev, seq)) = head(tx, session_id).await? else {
        return Ok(());
    };
    let hash = chain::end_hash(&prev, seq, session_id, end_time, status, num_turns);
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
            &chain::position(seq)?,
            &prev.as_slice(),
            &hash.as_slice(),
            &chain::position(seq + 1)?,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
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
    let head: Head = chain::head(head_hash, head_next);
    let mut rows = links_of::<MessageRow>(&tx, session_id).await?;
    rows.extend(links_of::<ToolUsageRow>(&tx, session_id).await?);
    rows.extend(links_of::<SessionEventRow>(&tx, session_id).await?);
    tx.commit().await.map_err(pg)?;
    Ok(chain::walk_session(&session, start, end, rows, head))
}
