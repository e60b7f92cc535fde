//! Group commit on PostgreSQL, as SQLite's writer does it: one task per
//! replica takes a write, then everything else already queued (up to
//! [`MAX_BATCH`]), and runs them in one transaction with a savepoint per
//! write that needs one (see `writes`), so a refused write is rolled back
//! alone (a write whose statement fails takes the batch down, which then
//! runs write by write); it answers every caller
//! after the COMMIT. One commit (one WAL flush) then serves a whole batch,
//! and a batch takes each session's row lock once: writes to one session
//! are serialised by that lock, so without batching they would wait for
//! one flush each. A lone write runs without a savepoint.
//!
//! The batch is ordered by session ID (stably: a session's writes keep
//! their order), so batches of two replicas lock sessions in the same
//! order and never deadlock. When the transaction itself fails (the
//! connection lost, the server gone), every write of the batch gets the
//! error and none of it is stored.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, Span};

use super::error::{self, pg};
use super::writes::PgWrite;
use crate::metrics::{self, Rows, Store};
use crate::store::checkpoint::{Integrity, TipCache};
use crate::store::clock::Clock;
use crate::store::error::{ErrorKind, StoreError};
use crate::store::writer::Stamp;

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// How many writes may wait before callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4096;

type Applying<'a> = Pin<Box<dyn Future<Output = Option<StoreError>> + Send + 'a>>;

/// A queued write of any kind, as the writer sees it.
trait Pending: Send {
    /// The session whose row lock the write takes.
    fn session_id(&self) -> &str;
    /// Whether, in a batch, it runs in its own savepoint.
    fn needs_savepoint(&self) -> bool;
    /// The caller's span at submit time.
    fn span(&self) -> &Span;
    /// Runs the write in `tx` and keeps its outcome; returns its error, if any.
    fn apply<'a, 't>(&'a mut self, tx: &'a Transaction<'t>, at: &'a Stamp<'a>) -> Applying<'a>
    where
        't: 'a;
    /// Records `error` as the write's outcome.
    fn fail(&mut self, error: StoreError);
    /// The rows its last run inserted (none if it failed).
    fn rows(&self) -> Rows;
    /// Answers the caller: the batch's error, or the write's own outcome.
    fn answer(self: Box<Self>, batch_error: Option<&StoreError>);
}

struct Job<W: PgWrite> {
    write: W,
    span: Span,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
    outcome: Option<Result<W::Output, StoreError>>,
    rows: Rows,
}

impl<W: PgWrite> Pending for Job<W> {
    fn session_id(&self) -> &str {
        self.write.session_id()
    }

    fn needs_savepoint(&self) -> bool {
        self.write.needs_savepoint()
    }

    fn span(&self) -> &Span {
        &self.span
    }

    fn apply<'a, 't>(&'a mut self, tx: &'a Transaction<'t>, at: &'a Stamp<'a>) -> Applying<'a>
    where
        't: 'a,
    {
        Box::pin(async move {
            let outcome = self.write.apply_pg(tx, at).await;
            let error = outcome.as_ref().err().cloned();
            self.rows = outcome.as_ref().map_or(Rows::default(), |(_, rows)| *rows);
            self.outcome = Some(outcome.map(|(output, _)| output));
            error
        })
    }

    fn fail(&mut self, error: StoreError) {
        self.rows = Rows::default();
        self.outcome = Some(Err(error));
    }

    fn rows(&self) -> Rows {
        match self.outcome {
            Some(Ok(_)) => self.rows,
            _ => Rows::default(),
        }
    }

    fn answer(self: Box<Self>, batch_error: Option<&StoreError>) {
        let reply = match (batch_error, self.outcome) {
            (Some(error), _) => Err(error.clone()),
            (None, Some(outcome)) => outcome,
            (None, None) => Err(StoreError::internal("a write was answered before it ran")),
        };
        // A caller that gave up waiting no longer needs the answer.
        let _ = self.reply.send(reply);
    }
}

/// The callers' side of the writer task.
#[derive(Debug)]
pub(super) struct PgWriter {
    /// `None` once shut down.
    queue: Mutex<Option<mpsc::Sender<Box<dyn Pending>>>>,
    commits: Arc<AtomicU64>,
}

impl PgWriter {
    /// Starts the writer task on `pool`.
    pub(super) fn spawn(pool: Pool, clock: Clock, integrity: Integrity) -> Self {
        let (sender, queue) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, clock, integrity, queue, Arc::clone(&commits)));
        PgWriter {
            queue: Mutex::new(Some(sender)),
            commits,
        }
    }

    /// Queues a write and waits until it is committed (or has failed).
    pub(super) async fn submit<W: PgWrite>(&self, write: W) -> Result<W::Output, StoreError> {
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            write,
            span: Span::current(),
            reply,
            outcome: None,
            rows: Rows::default(),
        };
        sender.send(Box::new(job)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// How many transactions have committed.
    pub(super) fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Closes the queue: what is queued still commits, later writes fail.
    pub(super) fn shutdown(&self) {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the audit store has stopped")
}

/// Serves batches until the queue is closed and empty.
async fn run(
    pool: Pool,
    clock: Clock,
    integrity: Integrity,
    mut queue: mpsc::Receiver<Box<dyn Pending>>,
    commits: Arc<AtomicU64>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch.sort_by(|a, b| a.session_id().cmp(b.session_id()));
        let span = tracing::info_span!("audit.commit", batch_size = batch.len());
        for job in &batch {
            span.follows_from(job.span());
        }
        let mut outcome = commit_batch(&pool, (&clock, &integrity), &mut batch)
            .instrument(span.clone())
            .await;
        if batch.len() > 1
            && outcome
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::Internal)
        {
            // One write's statement failed and took the batch with it: run
            // each alone, so that it fails alone.
            outcome = Ok(false);
            for job in batch.iter_mut() {
                let alone = commit_batch(&pool, (&clock, &integrity), std::slice::from_mut(job))
                    .instrument(span.clone())
                    .await;
                match alone {
                    Ok(true) => {
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(error) => job.fail(error),
                }
            }
        }
        match outcome {
            Ok(true) => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(ref error) => {
                tracing::warn!(%error, batch_size = batch.len(), "audit commit failed");
            }
        }
        let error = outcome.err();
        for job in batch {
            job.answer(error.as_ref());
        }
    }
    tracing::debug!("audit writer stopped");
}

/// Runs one batch in one transaction: `Ok(true)` once committed, `Ok(false)`
/// for a lone write that was refused (its transaction rolled back).
async fn commit_batch(
    pool: &Pool,
    (clock, integrity): (&Clock, &Integrity),
    batch: &mut [Box<dyn Pending>],
) -> Result<bool, StoreError> {
    let mut client = pool.get().await.map_err(error::pool)?;
    // Timed from BEGIN, as on SQLite (not the wait for a pooled connection).
    let started = Instant::now();
    let mut tx = client.transaction().await.map_err(pg)?;
    if let [job] = batch {
        let now = clock.now_rfc3339();
        let tips = TipCache::default();
        let at = Stamp {
            now: &now,
            integrity,
            tips: &tips,
        };
        if job.apply(&tx, &at).await.is_some() {
            // A failed rollback means a lost connection, which ends the
            // transaction anyway; the refusal is the answer.
            let _ = tx.rollback().await;
            return Ok(false);
        }
    } else {
        for job in batch.iter_mut() {
            let now = clock.now_rfc3339();
            let tips = TipCache::default();
            let at = Stamp {
                now: &now,
                integrity,
                tips: &tips,
            };
            if job.needs_savepoint() {
                let savepoint = tx.savepoint("audit_write").await.map_err(pg)?;
                match job.apply(&savepoint, &at).await {
                    None => savepoint.commit().await.map_err(pg)?,
                    Some(_) => savepoint.rollback().await.map_err(pg)?,
                }
            } else if let Some(error) = job.apply(&tx, &at).await
                && !error.is_refusal()
            {
                // A failed statement aborts the transaction: the caller
                // retries the writes one by one.
                return Err(error);
            }
        }
    }
    tx.commit().await.map_err(pg)?;
    let rows = batch
        .iter()
        .fold(Rows::default(), |rows, job| rows.plus(job.rows()));
    metrics::committed(Store::postgres, batch.len(), started.elapsed(), rows);
    Ok(true)
}
