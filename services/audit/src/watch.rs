//! `WatchSession`: a session's stored messages, then each new one, in order.
//!
//! The watcher subscribes to the store's commit feed *before* it reads the
//! backlog, so no message can fall between the two; messages it has already
//! sent (by row ID) are skipped. A watcher that falls behind the feed reads
//! the gap back from the database instead of losing it, and so does every
//! watcher when the store says the feed may have a gap ([`Committed::Gap`]:
//! PostgreSQL's notification connection was lost and is back). Its reads
//! ride out a short outage of the store (retried while UNAVAILABLE, for up
//! to 30 s) rather than end the stream.
//!
//! A watcher ends as soon as its client leaves (the stream is dropped), not
//! when it next has something to send, and the number of live watchers is
//! capped per session and in total ([`WatchLimits`]).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use heist_plumbing::status::ServiceError;
use heist_proto::v1 as pb;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Code, Status};

use crate::store::{AuditStore, Committed, ErrorKind, MessageRow, SessionStatus, StoreError};

/// How many `WatchSession` streams may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// On one session.
    pub per_session: usize,
    /// On the whole service.
    pub total: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            per_session: 64,
            total: 1024,
        }
    }
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    /// The session already has its share of watchers.
    #[error(
        "this session already has {limit} open WatchSession streams (the most allowed); close one first"
    )]
    SessionFull {
        /// The per-session limit.
        limit: usize,
    },
    /// The service already has its share of watchers.
    #[error(
        "the service already has {limit} open WatchSession streams (the most allowed); try again later"
    )]
    ServiceFull {
        /// The service-wide limit.
        limit: usize,
    },
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError for WatchError {
    fn code(&self) -> Code {
        match self {
            WatchError::SessionFull { .. } | WatchError::ServiceFull { .. } => {
                Code::ResourceExhausted
            }
            WatchError::Store(error) => error.code(),
        }
    }
}

impl From<WatchError> for Status {
    fn from(error: WatchError) -> Self {
        match error {
            WatchError::Store(error) => error.into(),
            other => heist_plumbing::status::to_status(&other),
        }
    }
}

/// The live watchers, counted per session and in total.
#[derive(Debug, Clone)]
pub(crate) struct Watchers {
    limits: WatchLimits,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_session: HashMap<String, usize>,
}

impl Watchers {
    /// No watchers yet, at most `limits`.
    pub(crate) fn new(limits: WatchLimits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    /// How many watchers are live.
    pub(crate) fn count(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more watcher on `session_id` until the permit is dropped.
    fn admit(&self, session_id: &str) -> Result<WatcherPermit, WatchError> {
        let mut counts = self.lock();
        if counts.total >= self.limits.total {
            return Err(WatchError::ServiceFull {
                limit: self.limits.total,
            });
        }
        let on_session = counts.per_session.get(session_id).copied().unwrap_or(0);
        if on_session >= self.limits.per_session {
            return Err(WatchError::SessionFull {
                limit: self.limits.per_session,
            });
        }
        counts.total += 1;
        crate::metrics::watcher_opened();
        counts
            .per_session
            .insert(session_id.to_owned(), on_session + 1);
        Ok(WatcherPermit {
            watchers: self.clone(),
            session_id: session_id.to_owned(),
        })
    }
}

/// One live watcher; dropping it frees its place.
struct WatcherPermit {
    watchers: Watchers,
    session_id: String,
}

impl Drop for WatcherPermit {
    fn drop(&mut self) {
        let mut counts = self.watchers.lock();
        counts.total -= 1;
        crate::metrics::watcher_closed();
        if let Some(on_session) = counts.per_session.get_mut(&self.session_id) {
            *on_session -= 1;
            if *on_session == 0 {
                counts.per_session.remove(&self.session_id);
            }
        }
    }
}

/// How many messages a backlog read fetches at once.
const BACKLOG_PAGE: usize = 500;
/// How many messages may wait for a slow watcher before it is paused.
const WATCHER_BUFFER: usize = 256;
/// How long a watcher retries reads while the store is unavailable.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(30);

/// Starts watching `session_id` from after row `after_message_id`, as one
/// of `watchers`.
pub(crate) async fn watch_session(
    store: AuditStore,
    watchers: &Watchers,
    session_id: String,
    after_message_id: i64,
) -> Result<impl Stream<Item = Result<pb::Message, Status>> + Send + 'static, WatchError> {
    if after_message_id < 0 {
        return Err(StoreError::invalid("after_message_id", "must be >= 0").into());
    }
    let permit = watchers.admit(&session_id)?;
    let mut feed = store.subscribe();
    // Fails with NOT_FOUND for an unknown session before anything streams.
    store.get_session(&session_id).await?;
    let (sender, receiver) = mpsc::channel(WATCHER_BUFFER);
    tokio::spawn(async move {
        let _permit = permit;
        let mut watcher = Watcher {
            store,
            session_id,
            last_sent: after_message_id,
            sender,
        };
        // The client leaving drops the receiver: stop at once, releasing
        // the feed, the buffer and the permit, whatever the watcher awaits.
        let left = watcher.sender.clone();
        let ended = tokio::select! {
            outcome = watcher.run(&mut feed) => outcome.err().unwrap_or("done"),
            () = left.closed() => "client left",
        };
        tracing::debug!(reason = ended, "watch ended");
    });
    Ok(ReceiverStream::new(receiver))
}

struct Watcher {
    store: AuditStore,
    session_id: String,
    last_sent: i64,
    sender: mpsc::Sender<Result<pb::Message, Status>>,
}

impl Watcher {
    /// Streams until the session ends, the client leaves or the store stops;
    /// the `Err` says which.
    async fn run(
        &mut self,
        feed: &mut tokio::sync::broadcast::Receiver<Committed>,
    ) -> Result<(), &'static str> {
        self.catch_up().await?;
        loop {
            match feed.recv().await {
                Ok(Committed::Message(row)) if row.session_id == self.session_id => {
                    self.send(*row).await?;
                }
                Ok(Committed::SessionEnded { session_id }) if session_id == self.session_id => {
                    return Err("session ended");
                }
                Ok(Committed::Gap) => {
                    tracing::debug!("events may be missing; reading the gap back");
                    self.catch_up().await?;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "watcher lagged; reading the gap back");
                    self.catch_up().await?;
                }
                Err(RecvError::Closed) => return Err("store stopped"),
            }
        }
    }

    /// Reads back what the feed may have skipped; `Err` once the session has ended.
    async fn catch_up(&mut self) -> Result<(), &'static str> {
        self.send_backlog().await?;
        if self.session_has_ended().await? {
            return Err("session ended");
        }
        Ok(())
    }

    /// Runs a store read, retrying while the store is unavailable (e.g.
    /// PostgreSQL restarting) for up to [`UNAVAILABLE_PATIENCE`]; any other
    /// error, or a longer outage, is sent to the client and ends the watch.
    async fn read<T, F>(
        &self,
        failed: &'static str,
        read: impl Fn() -> F,
    ) -> Result<T, &'static str>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let deadline = tokio::time::Instant::now() + UNAVAILABLE_PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            match read().await {
                Ok(value) => return Ok(value),
                Err(error)
                    if error.kind() == ErrorKind::Unavailable
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(%error, "watch read unavailable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    let _ = self.sender.send(Err(Status::from(error))).await;
                    return Err(failed);
                }
            }
        }
    }

    async fn send_backlog(&mut self) -> Result<(), &'static str> {
        loop {
            let rows = self
                .read("backlog read failed", || {
                    self.store
                        .messages_after(&self.session_id, self.last_sent, BACKLOG_PAGE)
                })
                .await?;
            let done = rows.len() < BACKLOG_PAGE;
            for row in rows {
                self.send(row).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn session_has_ended(&self) -> Result<bool, &'static str> {
        let session = self
            .read("session read failed", || {
                self.store.get_session(&self.session_id)
            })
            .await?;
        Ok(session.status != SessionStatus::Active)
    }

    async fn send(&mut self, row: MessageRow) -> Result<(), &'static str> {
        if row.id <= self.last_sent {
            return Ok(());
        }
        self.last_sent = row.id;
        self.sender
            .send(Ok(row.into()))
            .await
            .map_err(|_| "client left")
    }
}
