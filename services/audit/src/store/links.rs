//! The hash chain on SQLite: extending a session's chain inside the write
//! that stores a row (the one writer thread orders a session's writes), and
//! reading it back for verification. The encoding is in `chain`.

use rusqlite::{Connection, OptionalExtension, params};

use super::chain::{self, Chained, Link, StoredChain, StoredLink, Verification};
use super::checkpoint::{self, Checkpoint, Rules, Seal, Tip};
use super::error::StoreError;
use super::queries;
use super::types::SessionStatus;
use super::writer::Stamp;

/// The session's chain head and signed length: `None` for a session
/// started before the chain existed (it stays unchained) or an unknown one.
fn head(conn: &Connection, at: &Stamp<'_>, session_id: &str) -> Result<Option<Tip>, StoreError> {
    if let Some(tip) = at.tips.get(session_id) {
        return Ok(tip);
    }
    let tip = conn
        .prepare_cached(
            "SELECT chain_head, chain_next, signed_next FROM sessions WHERE session_id = ?1",
        )?
        .query_row([session_id], |row| {
            Ok(Tip::read(
                chain::head(row.get(0)?, row.get(1)?),
                row.get(2)?,
            ))
        })
        .optional()?;
    Ok(tip.flatten())
}

/// Stores `checkpoint` for the session and records what it covers.
fn sign(conn: &Connection, session_id: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (session_id, rows, head, key_id, signature, signed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        session_id,
        chain::position(checkpoint.rows)?,
        checkpoint.head.as_slice(),
        checkpoint.key_id,
        checkpoint.signature.as_slice(),
        checkpoint.signed_at
    ])?;
    conn.prepare_cached("UPDATE sessions SET signed_next = ?2 WHERE session_id = ?1")?
        .execute(params![session_id, chain::position(checkpoint.rows)?])?;
    Ok(())
}

/// Chains a row just inserted into its table: its position, the previous
/// hash and its own, the session's head moved to it, and a checkpoint when
/// one is due. A session without a head (from before the chain) is left
/// unchained.
pub(crate) fn append<T: Chained>(
    conn: &Connection,
    at: &Stamp<'_>,
    session_id: &str,
    row: &T,
) -> Result<(), StoreError> {
    let Some(tip) = head(conn, at, session_id)? else {
        return Ok(());
    };
    let hash = row.chain_hash(&tip.hash, tip.next);
    let sql = format!(
        "UPDATE {} SET chain_seq = ?2, prev_hash = ?3, row_hash = ?4 WHERE id = ?1",
        T::KIND.table()
    );
    conn.prepare_cached(&sql)?.execute(params![
        row.id(),
        chain::position(tip.next)?,
        tip.hash.as_slice(),
        hash.as_slice()
    ])?;
    conn.prepare_cached(
        "UPDATE sessions SET chain_head = ?2, chain_next = ?3 WHERE session_id = ?1",
    )?
    .execute(params![
        session_id,
        hash.as_slice(),
        chain::position(tip.next + 1)?
    ])?;
    match at
        .integrity
        .due(tip.after(session_id, &hash, false, at.now))
    {
        Some(checkpoint) => sign(conn, session_id, &checkpoint),
        None => Ok(()),
    }
}

/// Chains a session's end (its `end_*` columns), written at `at.now`, and
/// signs the chain's final head.
pub(crate) fn end(
    conn: &Connection,
    at: &Stamp<'_>,
    session_id: &str,
    status: SessionStatus,
    num_turns: i64,
) -> Result<(), StoreError> {
    let Some(tip) = head(conn, at, session_id)? else {
        return Ok(());
    };
    let hash = chain::end_hash(&tip.hash, tip.next, session_id, at.now, status, num_turns);
    conn.prepare_cached(
        "UPDATE sessions SET end_seq = ?2, end_prev_hash = ?3, end_hash = ?4, \
         chain_head = ?4, chain_next = ?5 WHERE session_id = ?1",
    )?
    .execute(params![
        session_id,
        chain::position(tip.next)?,
        tip.hash.as_slice(),
        hash.as_slice(),
        chain::position(tip.next + 1)?
    ])?;
    match checkpoint::chained(at, (session_id, tip), &hash, true) {
        Some(checkpoint) => sign(conn, session_id, &checkpoint),
        None => Ok(()),
    }
}

/// Every row's chain columns in `table` for the session, by row ID.
fn stored_links(
    conn: &Connection,
    table: &str,
    session_id: &str,
) -> Result<std::collections::HashMap<i64, StoredLink>, StoreError> {
    let sql =
        format!("SELECT id, chain_seq, prev_hash, row_hash FROM {table} WHERE session_id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([session_id], |row| {
        Ok((
            row.get(0)?,
            StoredLink {
                seq: row.get(1)?,
                prev: row.get(2)?,
                hash: row.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The links of `rows` (one table's rows of the session).
fn links_of<T: Chained>(
    conn: &Connection,
    session_id: &str,
    rows: Vec<T>,
) -> Result<Vec<Link>, StoreError> {
    let mut stored = stored_links(conn, T::KIND.table(), session_id)?;
    Ok(rows
        .iter()
        .map(|row| Link::of(row, stored.remove(&row.id()).unwrap_or_default()))
        .collect())
}

/// A checkpoint from the columns `rows, head, key_id, signature, signed_at`.
fn checkpoint_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint::read(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// The session's checkpoints, as stored (malformed ones never verify).
fn checkpoints(conn: &Connection, session_id: &str) -> Result<Vec<Checkpoint>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rows, head, key_id, signature, signed_at FROM checkpoints WHERE session_id = ?1",
    )?;
    let rows = stmt.query_map([session_id], checkpoint_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Walks the session's chain and checks its checkpoints under `rules`;
/// `SessionNotFound` for an unknown session.
pub(crate) fn verify(
    conn: &Connection,
    session_id: &str,
    rules: &Rules,
) -> Result<Verification, StoreError> {
    let session = queries::existing_session(conn, session_id)?;
    let (start, end, head_hash, head_next): (StoredLink, StoredLink, Option<Vec<u8>>, Option<i64>) =
        conn.prepare_cached(
            "SELECT chain_seq, prev_hash, row_hash, end_seq, end_prev_hash, end_hash, \
             chain_head, chain_next FROM sessions WHERE session_id = ?1",
        )?
        .query_row([session_id], |row| {
            Ok((
                StoredLink {
                    seq: row.get(0)?,
                    prev: row.get(1)?,
                    hash: row.get(2)?,
                },
                StoredLink {
                    seq: row.get(3)?,
                    prev: row.get(4)?,
                    hash: row.get(5)?,
                },
                row.get(6)?,
                row.get(7)?,
            ))
        })?;
    let all = usize::MAX;
    let mut rows = links_of(
        conn,
        session_id,
        queries::messages(conn, session_id, 0, all)?,
    )?;
    rows.extend(links_of(
        conn,
        session_id,
        queries::tool_usage(conn, session_id, 0, all)?,
    )?);
    rows.extend(links_of(
        conn,
        session_id,
        queries::session_events(conn, session_id, 0, all)?,
    )?);
    let stored = StoredChain {
        session,
        start,
        end,
        rows,
        head: chain::head(head_hash, head_next),
        checkpoints: checkpoints(conn, session_id)?,
    };
    Ok(chain::verify(stored, rules))
}

/// The session's seal as stored (its head and latest checkpoint), without
/// walking the chain; `None` for an unchained session, `SessionNotFound`
/// for an unknown one.
pub(crate) fn seal(conn: &Connection, session_id: &str) -> Result<Option<Seal>, StoreError> {
    let head = conn
        .prepare_cached("SELECT chain_head, chain_next FROM sessions WHERE session_id = ?1")?
        .query_row([session_id], |row| {
            Ok(chain::head(row.get(0)?, row.get(1)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::SessionNotFound {
            session_id: session_id.to_owned(),
        })?;
    let latest = conn
        .prepare_cached(
            "SELECT rows, head, key_id, signature, signed_at FROM checkpoints \
             WHERE session_id = ?1 ORDER BY rows DESC LIMIT 1",
        )?
        .query_row([session_id], checkpoint_of)
        .optional()?;
    Ok(Seal::of(head, latest))
}
