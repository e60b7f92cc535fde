//! `WatchSession`: a session's stored messages, then each new one, in order.
//!
//! The watcher subscribes to the store's commit feed *before* it reads the
//! backlog, so no message can fall between the two; messages it has already
//! sent (by row ID) are skipped. A watcher that falls behind the feed reads
//! the gap back from the database instead of losing it.

use heist_proto::v1 as pb;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::Status;

use crate::store::{AuditStore, Committed, MessageRow, SessionStatus, StoreError};

/// How many messages a backlog read fetches at once.
const BACKLOG_PAGE: usize = 500;
/// How many messages may wait for a slow watcher before it is paused.
const WATCHER_BUFFER: usize = 256;

/// Starts watching `session_id` from after row `after_message_id`.
pub(crate) async fn watch_session(
    store: AuditStore,
    session_id: String,
    after_message_id: i64,
) -> Result<impl Stream<Item = Result<pb::Message, Status>> + Send + 'static, StoreError> {
    if after_message_id < 0 {
        return Err(StoreError::invalid("after_message_id", "must be >= 0"));
    }
    let mut feed = store.subscribe();
    // Fails with NOT_FOUND for an unknown session before anything streams.
    store.get_session(&session_id).await?;
    let (sender, receiver) = mpsc::channel(WATCHER_BUFFER);
    tokio::spawn(async move {
        let mut watcher = Watcher {
            store,
            session_id,
            last_sent: after_message_id,
            sender,
        };
        if let Err(ended) = watcher.run(&mut feed).await {
            tracing::debug!(reason = ended, "watch ended");
        }
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
        self.send_backlog().await?;
        if self.session_has_ended().await? {
            return Err("session ended");
        }
        loop {
            match feed.recv().await {
                Ok(Committed::Message(row)) if row.session_id == self.session_id => {
                    self.send(row).await?;
                }
                Ok(Committed::SessionEnded { session_id }) if session_id == self.session_id => {
                    return Err("session ended");
                }
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "watcher lagged; reading the gap back");
                    self.send_backlog().await?;
                    if self.session_has_ended().await? {
                        return Err("session ended");
                    }
                }
                Err(RecvError::Closed) => return Err("store stopped"),
            }
        }
    }

    async fn send_backlog(&mut self) -> Result<(), &'static str> {
        loop {
            let rows = match self
                .store
                .messages_after(&self.session_id, self.last_sent, BACKLOG_PAGE)
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = self.sender.send(Err(Status::from(error))).await;
                    return Err("backlog read failed");
                }
            };
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
        match self.store.get_session(&self.session_id).await {
            Ok(session) => Ok(session.status != SessionStatus::Active),
            Err(error) => {
                let _ = self.sender.send(Err(Status::from(error))).await;
                Err("session read failed")
            }
        }
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
