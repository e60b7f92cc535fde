//! The OAuth service: client-credentials grant issuing signed JWT access tokens.
//!
//! - [`keys`]: the signing key ring, re-read so that rotations apply at once.
//! - [`clients`]: the client registry (YAML file, Argon2 secret hashes, scope rules).
//! - [`revocations`]: revoked token IDs until they expire, in a file (one
//!   process) or in PostgreSQL or Redis (shared by replicas).
//! - [`service`]: the gRPC handlers.
//! - `metrics`: the service's Prometheus metrics (tokens issued and refused, revocations).
//! - [`run`]: load everything and serve until shutdown.
//!
//! The signing keys (Ed25519) are a key ring loaded from its file, or
//! generated and kept there, so tokens survive a restart; replicas given the
//! same file sign with the same active key and publish the same public keys.
//! `heist-oauth rotate-key` adds a new active key; older keys stay published
//! until their last token has expired.

pub mod clients;
pub mod keys;
mod metrics;
pub mod revocations;
pub mod service;

use std::{future::Future, path::PathBuf, time::Duration};

use revocations::{RevocationBackend, RevocationError, RevocationStore};

use heist_plumbing::{
    ServeOptions,
    auth::{AuthConfig, Authenticator},
    serve::ServeError,
};
use heist_tokens::{KeyError, unix_now};
use keys::SigningKeys;
use tokio::net::TcpListener;

pub use service::OAuthService;

/// How the OAuth service is set up.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The client registry file; `None` for the built-in development
    /// registry (the seed's four agents and the orchestrator).
    pub clients_file: Option<PathBuf>,
    /// The signing key ring file (generated if missing).
    pub key_file: PathBuf,
    /// How long past its last token's expiry a retired key is still
    /// published (the verifiers' clock leeway).
    pub key_leeway: Duration,
    /// How often the key ring file is re-read (it is also re-read on each
    /// `GetPublicKeys`).
    pub key_reload: Duration,
    /// Where the revocation list lives.
    pub revocations: RevocationBackend,
    /// The issuer (`iss`) tokens carry.
    pub issuer: String,
    /// How long tokens live.
    pub token_lifetime: Duration,
}

/// Why the OAuth service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OAuthServiceError {
    /// The client file is unusable.
    #[error(transparent)]
    Clients(#[from] clients::RegistryError),
    /// The signing key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The revocation list cannot be opened.
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    /// Start-up failed on its worker thread.
    #[error("start-up failed: {0}")]
    Startup(String),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The shipped development registry, used when no client file is given.
pub const DEFAULT_CLIENTS_YAML: &str = include_str!("../clients.yaml");

/// Builds the service from `config` (reads the files, hashes development
/// secrets) on the opened `revocations`.
pub fn build(
    config: &OAuthConfig,
    revocations: RevocationStore,
) -> Result<OAuthService, OAuthServiceError> {
    let (registry, keys) = load(config)?;
    Ok(assemble(registry, keys, revocations))
}

/// The client registry and the signing keys of `config`: the local files,
/// checked before any engine is reached (blocking).
fn load(config: &OAuthConfig) -> Result<(clients::ClientRegistry, SigningKeys), OAuthServiceError> {
    let (registry, source) = match &config.clients_file {
        Some(path) => (
            clients::ClientRegistry::load(path)?,
            path.display().to_string(),
        ),
        None => (
            clients::ClientRegistry::from_yaml(
                std::path::Path::new("<built-in clients.yaml>"),
                DEFAULT_CLIENTS_YAML,
            )?,
            "built-in development clients".to_owned(),
        ),
    };
    tracing::info!(clients = registry.len(), source, "client registry loaded");
    if registry.uses_development_secrets() {
        tracing::warn!(
            source,
            "clients use plain-text development secrets; use secret_hash outside development"
        );
    }
    let keys = SigningKeys::load(
        config.key_file.clone(),
        config.issuer.clone(),
        config.token_lifetime,
        config.key_leeway,
    )?;
    let issuer = keys.current();
    tracing::info!(
        kid = issuer.key().kid(),
        published = issuer.jwks().len(),
        file = %config.key_file.display(),
        "signing keys ready"
    );
    Ok((registry, keys))
}

fn assemble(
    registry: clients::ClientRegistry,
    keys: SigningKeys,
    revocations: RevocationStore,
) -> OAuthService {
    let authenticator =
        Authenticator::with_verifier(keys.current().verifier(), &AuthConfig::new(""));
    OAuthService::new(registry, keys, revocations, authenticator)
}

/// Serves the OAuth service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: OAuthConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), OAuthServiceError> {
    metrics::init();
    let backend = config.revocations.clone();
    let reload = config.key_reload;
    let (registry, keys) = tokio::task::spawn_blocking(move || load(&config))
        .await
        .map_err(|error| OAuthServiceError::Startup(error.to_string()))??;
    let revocations = RevocationStore::open(&backend, unix_now()).await?;
    tracing::info!(store = %revocations.describe(), "revocation list ready");
    let service = assemble(registry, keys, revocations);
    let watcher = tokio::spawn(service.clone().watch_keys(reload));
    let served =
        heist_plumbing::serve(listener, service.into_server(), async {}, shutdown, options).await;
    watcher.abort();
    served?;
    Ok(())
}
