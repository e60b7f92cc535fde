//! The one writer thread and its group commit.
//!
//! Callers send each write with a reply channel over a bounded queue. The
//! writer takes one write, then everything else already queued (up to
//! [`MAX_BATCH`]), and runs them all in one `BEGIN IMMEDIATE` transaction with
//! a savepoint per write, so a write that fails is rolled back alone. Only
//! after the COMMIT does it publish the batch's events and answer every
//! caller: an OK reply means the row is durable. When the transaction itself
//! fails (BEGIN, COMMIT, or SQLite abandoning it, e.g. on a full disk), every
//! write of the batch gets the error and none of it is stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Span;

use super::checkpoint::{Integrity, TipCache};
use super::clock::Clock;
use super::error::StoreError;
use super::types::Committed;
use crate::metrics::{self, Rows, Store, Table};

/// The most writes committed in one transaction.
pub(crate) const MAX_BATCH: usize = 512;
/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4096;

/// When and how a write runs: its timestamp and how chains are protected.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp<'a> {
    /// The write's timestamp (RFC 3339, UTC).
    pub(crate) now: &'a str,
    /// Whether sessions are chained, and the checkpoint signer.
    pub(crate) integrity: &'a Integrity,
    /// The chain tip this write has read or moved.
    pub(crate) tips: &'a TipCache,
}

/// One kind of write: what it does in its savepoint and what it answers.
pub(crate) trait Write: Send + 'static {
    /// What a successful write answers.
    type Output: Send + 'static;
    /// Runs the write on the writer's connection; `at.now` is its timestamp.
    fn apply(&self, conn: &Connection, at: &Stamp<'_>)
    -> Result<Applied<Self::Output>, StoreError>;
}

/// A write that succeeded inside its savepoint, waiting for the COMMIT.
#[derive(Debug)]
pub(crate) struct Applied<T> {
    /// The reply for the caller.
    pub(crate) output: T,
    /// What to publish once committed, if anything.
    pub(crate) event: Option<Committed>,
    /// The rows it inserted, counted once committed.
    pub(crate) rows: Rows,
}

impl<T> Applied<T> {
    /// A result with nothing to publish.
    pub(crate) fn quiet(output: T) -> Self {
        Applied {
            output,
            event: None,
            rows: Rows::default(),
        }
    }

    /// A result with nothing to publish that inserted one row into `table`.
    pub(crate) fn inserted(output: T, table: Table) -> Self {
        Applied {
            rows: Rows::one(table),
            ..Applied::quiet(output)
        }
    }
}

/// A queued write of any kind, as the writer sees it.
trait Pending: Send {
    /// The caller's span at submit time.
    fn span(&self) -> &Span;
    /// Runs the write and keeps its outcome; returns its error, if any.
    fn apply(&mut self, conn: &Connection, at: &Stamp<'_>) -> Option<StoreError>;
    /// The event to publish after the commit.
    fn take_event(&mut self) -> Option<Committed>;
    /// The rows the write inserted (none if it failed).
    fn rows(&self) -> Rows;
    /// Answers the caller: the kept outcome, or `batch_error` if the batch failed.
    fn answer(self: Box<Self>, batch_error: Option<&StoreError>);
}

/// A write, its caller's span and reply channel, and its outcome once applied.
struct Job<W: Write> {
    write: W,
    span: Span,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
    outcome: Option<Result<Applied<W::Output>, StoreError>>,
}

impl<W: Write> Pending for Job<W> {
    fn span(&self) -> &Span {
        &self.span
    }

    fn apply(&mut self, conn: &Connection, at: &Stamp<'_>) -> Option<StoreError> {
        let outcome = self.write.apply(conn, at);
        let error = outcome.as_ref().err().cloned();
        self.outcome = Some(outcome);
        error
    }

    fn take_event(&mut self) -> Option<Committed> {
        match &mut self.outcome {
            Some(Ok(applied)) => applied.event.take(),
            _ => None,
        }
    }

    fn rows(&self) -> Rows {
        match &self.outcome {
            Some(Ok(applied)) => applied.rows,
            _ => Rows::default(),
        }
    }

    fn answer(self: Box<Self>, batch_error: Option<&StoreError>) {
        let reply = match (batch_error, self.outcome) {
            (Some(error), _) => Err(error.clone()),
            (None, Some(outcome)) => outcome.map(|applied| applied.output),
            (None, None) => Err(StoreError::internal("a write was answered before it ran")),
        };
        // A caller that gave up waiting no longer needs the answer; the write stands.
        let _ = self.reply.send(reply);
    }
}

/// Moves what is queued into `batch`, up to [`MAX_BATCH`].
fn take_queued(queue: &mut mpsc::Receiver<Box<dyn Pending>>, batch: &mut Vec<Box<dyn Pending>>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    clock: Clock,
    integrity: Integrity,
    events: broadcast::Sender<Committed>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Serves batches until every sender is gone and the queue is empty.
    fn run(mut self, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            take_queued(&mut queue, &mut batch);
            self.commit_batch(batch);
        }
        tracing::debug!("audit writer stopped");
    }

    /// Runs one batch in one transaction, then publishes and answers.
    fn commit_batch(&mut self, mut batch: Vec<Box<dyn Pending>>) {
        let span = tracing::info_span!("audit.commit", batch_size = batch.len());
        for job in &batch {
            span.follows_from(job.span());
        }
        let _entered = span.enter();
        let started = Instant::now();
        match self.apply_all(&mut batch) {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                let rows = batch
                    .iter()
                    .fold(Rows::default(), |rows, job| rows.plus(job.rows()));
                metrics::committed(Store::sqlite, batch.len(), started.elapsed(), rows);
                for job in &mut batch {
                    if let Some(event) = job.take_event() {
                        // No subscriber is not an error: nobody is watching.
                        let _ = self.events.send(event);
                    }
                }
                for job in batch {
                    job.answer(None);
                }
            }
            Err(error) => {
                tracing::warn!(%error, batch_size = batch.len(), "audit commit failed");
                for job in batch {
                    job.answer(Some(&error));
                }
            }
        }
    }

    /// Applies every write in its own savepoint inside one transaction and commits.
    ///
    /// An error here fails the whole batch; dropping the transaction rolls it back.
    fn apply_all(&mut self, batch: &mut [Box<dyn Pending>]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for job in batch.iter_mut() {
            let now = self.clock.now_rfc3339();
            // Savepoints by cached statements: no SQL is parsed per write.
            tx.prepare_cached("SAVEPOINT audit_write")?.execute([])?;
            let tips = TipCache::default();
            let at = Stamp {
                now: &now,
                integrity: &self.integrity,
                tips: &tips,
            };
            match job.apply(&tx, &at) {
                None => {
                    tx.prepare_cached("RELEASE audit_write")?.execute([])?;
                }
                Some(error) if tx.is_autocommit() => {
                    // SQLite abandoned the whole transaction (e.g. a full disk):
                    // the writes before this one are gone too.
                    return Err(error);
                }
                Some(error) => {
                    tracing::debug!(%error, "audit write refused");
                    tx.prepare_cached("ROLLBACK TO audit_write")?.execute([])?;
                    tx.prepare_cached("RELEASE audit_write")?.execute([])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The callers' side of the writer: its queue, its thread and its commit counter.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    /// `None` once shut down; cloned for each submit so shutdown can close the queue.
    queue: Mutex<Option<mpsc::Sender<Box<dyn Pending>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
}

impl WriterHandle {
    /// Starts the writer thread on `conn`; committed events go to `events`.
    pub(crate) fn spawn(
        conn: Connection,
        clock: Clock,
        integrity: Integrity,
        events: broadcast::Sender<Committed>,
    ) -> Result<Self, StoreError> {
        let (sender, queue) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            conn,
            clock,
            integrity,
            events,
            commits: Arc::clone(&commits),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|error| {
                StoreError::unavailable(format!("cannot start the audit writer: {error}"))
            })?;
        Ok(WriterHandle {
            queue: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            commits,
        })
    }

    /// Queues a write and waits until it is committed (or has failed).
    pub(crate) async fn submit<W: Write>(&self, write: W) -> Result<W::Output, StoreError> {
        let sender = lock(&self.queue).clone().ok_or_else(writer_gone)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            write,
            span: Span::current(),
            reply,
            outcome: None,
        };
        sender
            .send(Box::new(job))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// How many transactions the writer has committed.
    pub(crate) fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Closes the queue, lets the writer finish what is queued, and joins it.
    ///
    /// Blocks until the writer has stopped. Later submits fail as unavailable.
    pub(crate) fn shutdown(&self) {
        drop(lock(&self.queue).take());
        if let Some(thread) = lock(&self.thread).take()
            && thread.join().is_err()
        {
            tracing::error!("audit writer thread panicked");
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Locks a mutex; the data behind these mutexes stays valid even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn writer_gone() -> StoreError {
    StoreError::unavailable("the audit writer has stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;
    use crate::store::types::Synchronous;

    /// A write that runs raw SQL, to make savepoints and commits fail on purpose.
    struct Sql(String);

    impl Write for Sql {
        type Output = ();
        fn apply(&self, conn: &Connection, _at: &Stamp<'_>) -> Result<Applied<()>, StoreError> {
            conn.execute_batch(&self.0)?;
            Ok(Applied::quiet(()))
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        writer: Writer,
        reader: Connection,
        events: broadcast::Receiver<Committed>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let conn = schema::open_writer(&path, None, Synchronous::Full).unwrap();
        let (events, receiver) = broadcast::channel(16);
        Fixture {
            writer: Writer {
                conn,
                clock: Clock::system(),
                integrity: Integrity::ephemeral(),
                events,
                commits: Arc::new(AtomicU64::new(0)),
            },
            reader: schema::open_reader(&path).unwrap(),
            events: receiver,
            _dir: dir,
        }
    }

    fn job(
        sql: impl Into<String>,
    ) -> (Box<dyn Pending>, oneshot::Receiver<Result<(), StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            write: Sql(sql.into()),
            span: Span::none(),
            reply,
            outcome: None,
        };
        (Box::new(job), answer)
    }

    fn session_ids(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT session_id FROM sessions ORDER BY session_id")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const INSERT_A: &str = "INSERT INTO sessions (session_id, start_time) VALUES ('a', 't')";
    const INSERT_B: &str = "INSERT INTO sessions (session_id, start_time) VALUES ('b', 't')";

    #[test]
    fn one_failing_write_in_a_batch_fails_alone() {
        let mut fx = fixture();
        let (first, first_answer) = job(INSERT_A);
        let (bad, bad_answer) = job(
            "INSERT INTO sessions (session_id, start_time) VALUES ('half', 't'); \
             INSERT INTO no_such_table VALUES (1)",
        );
        let (last, last_answer) = job(INSERT_B);
        fx.writer.commit_batch(vec![first, bad, last]);

        assert_eq!(first_answer.blocking_recv().unwrap(), Ok(()));
        assert!(bad_answer.blocking_recv().unwrap().is_err());
        assert_eq!(last_answer.blocking_recv().unwrap(), Ok(()));
        assert_eq!(session_ids(&fx.reader), ["a", "b"], "nothing of 'half'");
        assert_eq!(fx.writer.commits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failing_commit_fails_every_write_and_stores_none() {
        let mut fx = fixture();
        let (first, first_answer) = job(INSERT_A);
        // A deferred foreign key is checked at COMMIT, which then fails.
        let (orphan, orphan_answer) = job("PRAGMA defer_foreign_keys = ON; \
             INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, \
             timestamp) VALUES ('ghost', 1, 'a', 'r', 'm', 't')");
        fx.writer.commit_batch(vec![first, orphan]);

        assert!(first_answer.blocking_recv().unwrap().is_err());
        assert!(orphan_answer.blocking_recv().unwrap().is_err());
        assert!(session_ids(&fx.reader).is_empty());
        assert_eq!(fx.writer.commits.load(Ordering::Relaxed), 0);

        let (after, after_answer) = job(INSERT_B);
        fx.writer.commit_batch(vec![after]);
        assert_eq!(after_answer.blocking_recv().unwrap(), Ok(()));
        assert_eq!(session_ids(&fx.reader), ["b"], "the writer keeps serving");
    }

    #[test]
    fn a_batch_that_cannot_begin_fails_every_write() {
        let mut fx = fixture();
        fx.writer
            .conn
            .busy_timeout(std::time::Duration::ZERO)
            .unwrap();
        let path = fx.writer.conn.path().unwrap().to_owned();
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let (first, first_answer) = job(INSERT_A);
        let (second, second_answer) = job(INSERT_B);
        fx.writer.commit_batch(vec![first, second]);
        for answer in [first_answer, second_answer] {
            let error = answer.blocking_recv().unwrap().unwrap_err();
            assert_eq!(error.kind(), crate::store::ErrorKind::Unavailable);
        }
    }

    #[test]
    fn shutdown_commits_every_queued_write_before_the_thread_exits() {
        let fx = fixture();
        let path = fx.writer.conn.path().unwrap().to_owned();
        let (events, _) = broadcast::channel(4);
        let conn =
            schema::open_writer(std::path::Path::new(&path), None, Synchronous::Full).unwrap();
        let handle =
            WriterHandle::spawn(conn, Clock::system(), Integrity::ephemeral(), events).unwrap();
        let mut answers = Vec::new();
        for n in 0..50 {
            let (queued, answer) = job(format!(
                "INSERT INTO sessions (session_id, start_time) VALUES ('s{n}', 't')"
            ));
            let queue = lock(&handle.queue).clone().unwrap();
            assert!(queue.try_send(queued).is_ok());
            answers.push(answer);
        }
        handle.shutdown();

        assert!(lock(&handle.thread).is_none(), "the thread was joined");
        for answer in answers {
            assert_eq!(answer.blocking_recv().unwrap(), Ok(()));
        }
        assert_eq!(session_ids(&fx.reader).len(), 50);
    }

    /// A write that creates session 'a' and announces it as ended.
    struct Announce;

    impl Write for Announce {
        type Output = ();
        fn apply(&self, conn: &Connection, _at: &Stamp<'_>) -> Result<Applied<()>, StoreError> {
            conn.execute_batch(INSERT_A)?;
            Ok(Applied {
                event: Some(Committed::SessionEnded {
                    session_id: "a".into(),
                }),
                ..Applied::quiet(())
            })
        }
    }

    fn announce() -> (Box<dyn Pending>, oneshot::Receiver<Result<(), StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            write: Announce,
            span: Span::none(),
            reply,
            outcome: None,
        };
        (Box::new(job), answer)
    }

    #[test]
    fn events_of_a_failed_batch_are_never_published() {
        let mut fx = fixture();
        let (announcing, announcing_answer) = announce();
        let (orphan, _) = job("PRAGMA defer_foreign_keys = ON; \
             INSERT INTO messages (session_id, turn_id, agent_name, agent_role, message, \
             timestamp) VALUES ('ghost', 1, 'a', 'r', 'm', 't')");
        fx.writer.commit_batch(vec![announcing, orphan]);
        assert!(announcing_answer.blocking_recv().unwrap().is_err());
        assert!(fx.events.try_recv().is_err(), "nothing was committed");
    }

    #[test]
    fn events_are_published_after_the_commit_and_before_the_reply() {
        let mut fx = fixture();
        let (announcing, mut answer) = announce();
        fx.writer.commit_batch(vec![announcing]);
        assert_eq!(
            fx.events.try_recv().unwrap(),
            Committed::SessionEnded {
                session_id: "a".into()
            }
        );
        assert_eq!(answer.try_recv().unwrap(), Ok(()));
        assert_eq!(session_ids(&fx.reader), ["a"]);
    }
}
