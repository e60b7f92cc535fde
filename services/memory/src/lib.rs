//! The Memory service: bounded per-agent, per-session context, compressed.
//!
//! Fast runtime context for the agents, beside (never instead of) the Audit
//! service, which stays the source of truth.
//!
//! - [`store`]: the bounded store (per-stream and total limits,
//!   least-recently-written eviction, TTL) and its compression, in this
//!   process or on Redis ([`Backend`], chosen by [`StoreConfig`]).
//! - [`service`]: the gRPC handlers, thin over the store.
//! - `metrics`: the service's Prometheus metrics (turns, bytes, evictions).
//! - [`run`]: serve it behind the auth layer until shutdown, sweeping expired
//!   sessions in the background.

mod metrics;
pub mod service;
pub mod store;

use std::{future::Future, time::Duration};

use heist_plumbing::{
    DependencyProbe, ServeOptions,
    auth::{Audience, AuthLayer, Authenticator},
    serve::ServeError,
};
use tokio::net::TcpListener;

pub use service::MemoryService;
pub use store::{Backend, Limits, MemoryError, MemoryStore, RedisStore, StoreConfig};

/// How often health checks that Redis answers (NOT_SERVING while it does not).
const REDIS_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The longest pause between two TTL sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why the Memory service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MemoryServiceError {
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the Memory service on `store` (see [`Backend::open`]) on `listener` until
/// `shutdown` resolves; it is SERVING once `authenticator` has loaded OAuth's public keys,
/// and, on Redis, NOT_SERVING while Redis does not answer. Only tokens for the `memory`
/// audience are accepted.
pub async fn run(
    listener: TcpListener,
    store: Backend,
    authenticator: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), MemoryServiceError> {
    metrics::init();
    let sweep_every =
        (store.limits().ttl / 10).clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
    let sweeper = tokio::spawn(sweep(store.clone(), sweep_every));
    let probe = matches!(store, Backend::Redis(_)).then(|| {
        let store = store.clone();
        DependencyProbe::new("redis", REDIS_PROBE_INTERVAL, move || {
            let store = store.clone();
            async move { store.is_reachable().await }
        })
    });
    let service = MemoryService::new(store).into_server();
    let outcome = heist_plumbing::serve_protected_probed(
        listener,
        service,
        AuthLayer::new(authenticator, Audience::Memory, service::METHOD_SCOPES),
        probe,
        shutdown,
        // Turns carry agents' text.
        options.with_large_messages(&["StoreMemory"]),
    )
    .await;
    sweeper.abort();
    Ok(outcome?)
}

async fn sweep(store: Backend, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match store.sweep(jiff::Timestamp::now()).await {
            Ok(0) => {}
            Ok(evicted) => tracing::info!(evicted_sessions = evicted, "expired sessions swept"),
            Err(error) => tracing::warn!(%error, "sweep failed"),
        }
    }
}
