//! The Audit service: the heist mesh's single source of truth.
//!
//! Sessions, agent messages and tool calls are stored in SQLite or PostgreSQL (the seed's
//! `sessions`, `messages` and `tool_usage` tables, extended), with the events
//! of each run (`session_events`: breaker state changes, spool replays), and
//! served over gRPC as `heist.v1.AuditService`.
//!
//! - [`store`]: the store, on SQLite (one writer thread with group commit)
//!   or PostgreSQL (a pool; LISTEN/NOTIFY for watchers across replicas):
//!   schema and migrations, idempotent writes, paging.
//! - [`service`]: the gRPC handlers, thin over the store.
//! - `watch`: the `WatchSession` stream.
//! - `metrics`: the service's Prometheus metrics (commits, rows, watchers).
//! - [`run`]: serve the service on a listener until shutdown.

mod convert;
mod metrics;
pub mod offline;
pub mod service;
pub mod store;
mod watch;

use std::{future::Future, time::Duration};

use heist_plumbing::{
    DependencyProbe, ServeOptions,
    auth::{Audience, AuthLayer, Authenticator},
    serve::ServeError,
};
use tokio::net::TcpListener;

pub use service::AuditService;
pub use store::{AuditStore, StoreConfig, StoreError, StoreLocation};
pub use watch::WatchLimits;

/// How often health asks PostgreSQL whether it answers.
const POSTGRES_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Why the Audit service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Opens the store at `config.location` and serves the Audit service on
/// `listener`, behind the auth layer, until `shutdown` resolves; then stops
/// the writer after it has committed every queued write. It is SERVING once
/// the store is open and `authenticator` has OAuth's public keys, and on
/// PostgreSQL NOT_SERVING while the database does not answer. Only tokens
/// for the `audit` audience are accepted.
pub async fn run(
    listener: TcpListener,
    config: StoreConfig,
    authenticator: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), AuditError> {
    let watch_limits = config.watchers;
    metrics::init();
    let store = AuditStore::connect(config).await?;
    let probe = (store.backend_name() == "postgres").then(|| {
        let store = store.clone();
        DependencyProbe::new("postgres", POSTGRES_PROBE_INTERVAL, move || {
            let store = store.clone();
            async move { store.is_reachable().await }
        })
    });
    let service = AuditService::with_watch_limits(store.clone(), watch_limits).into_server();
    let outcome = heist_plumbing::serve_protected_probed(
        listener,
        service,
        AuthLayer::new(authenticator, Audience::Audit, service::METHOD_SCOPES),
        probe,
        shutdown,
        // The writes carry agents' text and tool results.
        options.with_large_messages(&[
            "CreateSession",
            "StoreMessage",
            "StoreToolUsage",
            "StoreTurn",
            "StoreSessionEvent",
        ]),
    )
    .await;
    store.shutdown();
    Ok(outcome?)
}
