//! The Memory service: bounded per-agent, per-session context, compressed.
//!
//! Fast runtime context for the agents, beside (never instead of) the Audit
//! service, which stays the source of truth.
//!
//! - [`store`]: the bounded in-memory store (per-stream and total limits,
//!   least-recently-written eviction, TTL) and its compression.
//! - [`service`]: the gRPC handlers, thin over the store.
//! - [`run`]: serve it behind the auth layer until shutdown, sweeping expired
//!   sessions in the background.

pub mod service;
pub mod store;

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use heist_plumbing::{ServeOptions, auth::Authenticator, serve::ServeError};
use tokio::net::TcpListener;

pub use service::MemoryService;
pub use store::{Limits, MemoryStore};

/// The longest pause between two TTL sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why the Memory service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MemoryServiceError {
    /// The limits are inconsistent.
    #[error(transparent)]
    Limits(#[from] store::MemoryError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the Memory service on `listener` until `shutdown` resolves; it is
/// SERVING once `authenticator` has loaded OAuth's public keys.
pub async fn run(
    listener: TcpListener,
    limits: Limits,
    authenticator: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), MemoryServiceError> {
    let sweep_every = (limits.ttl / 10).clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
    let store = Arc::new(Mutex::new(MemoryStore::new(limits)?));
    let sweeper = tokio::spawn(sweep(store.clone(), sweep_every));
    let service = MemoryService::new(store).into_server();
    let outcome = heist_plumbing::serve_protected(
        listener,
        service,
        authenticator,
        service::METHOD_SCOPES,
        shutdown,
        // Turns carry agents' text.
        options.with_large_messages(&["StoreMemory"]),
    )
    .await;
    sweeper.abort();
    Ok(outcome?)
}

async fn sweep(store: Arc<Mutex<MemoryStore>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let evicted = store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .sweep(jiff::Timestamp::now());
        if evicted > 0 {
            tracing::info!(evicted_sessions = evicted, "expired sessions swept");
        }
    }
}
