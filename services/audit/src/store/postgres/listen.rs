//! The feed of committed events across replicas: one dedicated connection
//! that `LISTEN`s on the store's channel.
//!
//! Writers announce new messages (`m<id>`) and session ends (`e<session>`)
//! with `pg_notify` in their transaction; PostgreSQL delivers them to every
//! listener once committed, in commit order. This task reads the announced
//! messages (a batch of IDs in one query) and publishes them, in that order,
//! to the store's broadcast, exactly as SQLite's writer does after a commit.
//!
//! When the connection is lost (PostgreSQL restarted, the network cut), the
//! task reconnects with a growing pause; once it listens again it publishes
//! [`Committed::Gap`] so every watcher reads back from the last row it sent:
//! nothing announced meanwhile is missed. It also empties the pool's idle
//! connections, which predate the outage.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::CHANNEL;
use super::error::cause;
use super::queries;
use crate::store::error::StoreError;
use crate::store::types::{Committed, MessageRow};

/// The first pause before reconnecting; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The most notifications published in one batch (one SELECT).
const MAX_BATCH: usize = 256;

/// What the listening task needs.
pub(super) struct Listener {
    pub(super) config: tokio_postgres::Config,
    pub(super) pool: Pool,
    pub(super) events: broadcast::Sender<Committed>,
    pub(super) target: String,
}

/// A live `LISTEN`: the notifications its connection receives.
pub(super) struct Listening {
    notifications: mpsc::UnboundedReceiver<String>,
    /// Keeps the session open (dropping the client closes the connection).
    _client: tokio_postgres::Client,
}

impl Listener {
    /// Opens the dedicated connection and listens on the channel.
    pub(super) async fn listen(&self) -> Result<Listening, StoreError> {
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(|error| {
            StoreError::unavailable(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target,
                cause(&error)
            ))
        })?;
        let (sender, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(note))) => {
                        if sender.send(note.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::warn!(error = %cause(&error), "audit listen connection lost");
                        return;
                    }
                    None => return,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(super::error::pg)?;
        Ok(Listening {
            notifications,
            _client: client,
        })
    }

    /// Publishes what `first` hears, then reconnects and publishes for ever.
    pub(super) async fn run(self, first: Listening) {
        let mut listening = Some(first);
        let mut pause = FIRST_PAUSE;
        loop {
            if let Some(live) = listening.take() {
                pause = FIRST_PAUSE;
                self.publish_until_lost(live).await;
            }
            tokio::time::sleep(pause).await;
            match self.listen().await {
                Ok(live) => {
                    tracing::info!("audit listen connection back");
                    // The idle pooled connections predate the outage and may
                    // be dead without knowing it yet: new ones serve from here.
                    self.pool.retain(|_, _| false);
                    // Announcements made while away are lost: read back.
                    let _ = self.events.send(Committed::Gap);
                    listening = Some(live);
                }
                Err(error) => {
                    tracing::debug!(%error, "audit listen reconnect failed");
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    /// Publishes notifications in order until the connection is lost or a
    /// batch cannot be read (then the caller reconnects and reports a gap).
    async fn publish_until_lost(&self, mut live: Listening) {
        let mut batch = Vec::new();
        while let Some(first) = live.notifications.recv().await {
            batch.clear();
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match live.notifications.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.publish(&batch).await {
                tracing::warn!(%error, "audit cannot read announced rows; will read back");
                return;
            }
        }
    }

    /// Publishes one batch of notifications, in their order (commit order;
    /// the rows are read in one query and looked up by ID).
    async fn publish(&self, payloads: &[String]) -> Result<(), StoreError> {
        let ids: Vec<i64> = payloads
            .iter()
            .filter_map(|payload| payload.strip_prefix('m')?.parse().ok())
            .collect();
        let mut messages: HashMap<i64, MessageRow> = if ids.is_empty() {
            HashMap::new()
        } else {
            let client = self.pool.get().await.map_err(super::error::pool)?;
            queries::messages_by_id(&client, &ids)
                .await?
                .into_iter()
                .map(|row| (row.id, row))
                .collect()
        };
        for payload in payloads {
            let event = if let Some(session_id) = payload.strip_prefix('e') {
                Committed::SessionEnded {
                    session_id: session_id.to_owned(),
                }
            } else if let Some(row) = payload
                .strip_prefix('m')
                .and_then(|id| id.parse().ok())
                .and_then(|id| messages.remove(&id))
            {
                Committed::Message(Box::new(row))
            } else {
                tracing::warn!(payload, "unknown audit notification");
                continue;
            };
            // No subscriber is not an error: nobody is watching.
            let _ = self.events.send(event);
        }
        Ok(())
    }
}
