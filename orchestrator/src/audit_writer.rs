//! Audit writes that are never dropped.
//!
//! Audit is the source of truth, so a write that cannot reach it is not
//! lost: each write is tried with retries and the audit circuit breaker;
//! one that still fails for lack of Audit (UNAVAILABLE, a timeout, an open
//! breaker) goes into the durable spool (a file, fsynced), and so does every
//! later write while the spool holds any, so the order is kept. The spool
//! is replayed in order whenever Audit answers again, exactly once thanks to
//! the idempotency keys every write carries. What is still spooled when the
//! process ends is replayed by the next run.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tonic::Status;

use crate::{
    clients::AuditClient,
    resilience::{ResilienceError, is_health_failure},
    spool::{Spool, SpoolError, SpooledWrite},
};

/// Where a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Audit committed it.
    Stored,
    /// Audit is unreachable: the write waits in the spool.
    Spooled,
}

/// A write that neither Audit nor the spool took.
#[derive(Debug, thiserror::Error)]
pub enum AuditWriteError {
    /// Audit answered, and refused the write (it can never succeed); the
    /// write comes back, for a caller that can store it another way.
    #[error("audit refused the write: {status}")]
    Refused {
        /// Audit's answer.
        status: Status,
        /// The write refused.
        write: Box<SpooledWrite>,
    },
    /// The spool could not keep it.
    #[error("cannot spool the write: {0}")]
    Spool(#[from] SpoolError),
    /// The thread doing the spool's file work died.
    #[error("cannot spool the write: the spool's I/O thread failed")]
    SpoolThread,
}

/// The audit writes of every session of this process.
#[derive(Clone)]
pub struct AuditWriter {
    client: AuditClient,
    spool: Arc<Mutex<Spool>>,
}

impl AuditWriter {
    /// A writer over `client` (its deadline, retries and breaker), spooling to `spool`.
    pub fn new(client: AuditClient, spool: Spool) -> Self {
        Self {
            client,
            spool: Arc::new(Mutex::new(spool)),
        }
    }

    /// Stores `write` in Audit, or spools it while Audit is unreachable.
    ///
    /// The spool is locked only to look at it and to append to it, never
    /// while a write is on its way to Audit: the writes of every session go
    /// out at once (and share Audit's group commit). A session makes the
    /// writes whose order matters (its creation, each turn's rows, its end)
    /// one after the other, so that order is kept: once one is spooled, the
    /// next finds the spool non-empty and queues behind it.
    pub async fn write(
        &self,
        write: SpooledWrite,
        token: Option<&str>,
    ) -> Result<Written, AuditWriteError> {
        let spooling = !self.spool.lock().await.is_empty();
        if !spooling {
            match self.send(&write, token).await {
                Ok(()) => return Ok(Written::Stored),
                Err(SendError::Refused(status)) => {
                    return Err(AuditWriteError::Refused {
                        status,
                        write: Box::new(write),
                    });
                }
                Err(SendError::Unreachable(reason)) => {
                    tracing::warn!(%reason, kind = write.kind(), "audit unreachable; write spooled");
                }
            }
        }
        let spool = Arc::clone(&self.spool).lock_owned().await;
        let (_, appended) = off_thread(spool, move |spool| spool.append(write))
            .await
            .ok_or(AuditWriteError::SpoolThread)?;
        appended?;
        self.replay(token).await;
        Ok(Written::Spooled)
    }

    /// Replays the spool in order until it is empty or Audit fails again;
    /// returns how many writes still wait (the spool-depth metric).
    pub async fn replay(&self, token: Option<&str>) -> usize {
        let waiting = self.replay_in_order(token).await;
        crate::metrics::spool_depth(waiting);
        waiting
    }

    async fn replay_in_order(&self, token: Option<&str>) -> usize {
        let mut spool = Arc::clone(&self.spool).lock_owned().await;
        loop {
            let Some((seq, write)) = spool.pending().first().cloned() else {
                return 0;
            };
            match self.send(&write, token).await {
                Ok(()) => {}
                Err(SendError::Refused(status)) => {
                    tracing::error!(error = %status.message(), kind = write.kind(), "audit refused a spooled write; dropped");
                }
                Err(SendError::Unreachable(_)) => return spool.len(),
            }
            let Some((back, acknowledged)) =
                off_thread(spool, move |spool| spool.acknowledge(seq)).await
            else {
                tracing::error!("the spool's I/O thread failed; the write will be sent again");
                return self.pending().await;
            };
            spool = back;
            if let Err(error) = acknowledged {
                tracing::error!(%error, "cannot mark a spooled write done; it will be sent again");
                return spool.len();
            }
        }
    }

    /// Writes waiting in the spool for `session_id`, and how many distinct
    /// turns their messages belong to.
    pub async fn pending_for(&self, session_id: &str) -> (usize, usize) {
        let spool = self.spool.lock().await;
        let mut writes = 0;
        let mut turns = std::collections::BTreeSet::new();
        for (_, write) in spool.pending_for(session_id) {
            writes += 1;
            if let Some(turn) = write.turn_id() {
                turns.insert(turn);
            }
        }
        (writes, turns.len())
    }

    /// The spool's file, absolute when it can be told (for a session's
    /// metadata: where a resume finds what this run spooled).
    pub async fn spool_path(&self) -> String {
        let path = self.spool.lock().await.path().to_owned();
        std::path::absolute(&path)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Every write waiting, of any session.
    pub async fn pending(&self) -> usize {
        self.spool.lock().await.len()
    }

    async fn send(&self, write: &SpooledWrite, token: Option<&str>) -> Result<(), SendError> {
        // Never a call without a token: without one (OAuth unreachable and
        // the cached token expired) the write waits, as if Audit were down.
        if token.is_none() {
            return Err(SendError::Unreachable(
                "no token (OAuth unreachable)".to_owned(),
            ));
        }
        let outcome = self.client.send(write, token).await;
        match outcome {
            Ok(()) => Ok(()),
            Err(ResilienceError::BreakerOpen(open)) => {
                Err(SendError::Unreachable(open.to_string()))
            }
            // A missing or expired token (OAuth down) is as temporary as a
            // missing Audit: keep the write for later.
            Err(ResilienceError::Status(status))
                if is_health_failure(&status) || status.code() == tonic::Code::Unauthenticated =>
            {
                Err(SendError::Unreachable(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                )))
            }
            Err(ResilienceError::Status(status)) => Err(SendError::Refused(status)),
        }
    }
}

/// Runs `work` on the locked spool on a blocking thread and hands the lock
/// back: the spool writes and fsyncs its file, which must not stall the
/// async workers (with one worker, it would stall every session). `None`
/// when that thread panicked.
async fn off_thread<T: Send + 'static>(
    mut spool: OwnedMutexGuard<Spool>,
    work: impl FnOnce(&mut Spool) -> T + Send + 'static,
) -> Option<(OwnedMutexGuard<Spool>, T)> {
    tokio::task::spawn_blocking(move || {
        let done = work(&mut spool);
        (spool, done)
    })
    .await
    .ok()
}

enum SendError {
    Unreachable(String),
    Refused(Status),
}
