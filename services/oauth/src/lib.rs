//! The OAuth service: client-credentials grant issuing signed JWT access tokens.
//!
//! - [`clients`]: the client registry (YAML file, Argon2 secret hashes, scope rules).
//! - [`revocations`]: revoked token IDs until they expire, in a file (one
//!   process) or in PostgreSQL or Redis (shared by replicas).
//! - [`service`]: the gRPC handlers.
//! - [`run`]: load everything and serve until shutdown.
//!
//! The signing key (Ed25519) is loaded from its file, or generated and kept
//! there, so tokens survive a restart; replicas given the same file sign with
//! the same key and publish the same public keys.

pub mod clients;
pub mod revocations;
pub mod service;

use std::{future::Future, path::PathBuf, time::Duration};

use revocations::{RevocationBackend, RevocationError, RevocationStore};

use heist_plumbing::{
    ServeOptions,
    auth::{AuthConfig, Authenticator, MESH_AUDIENCE},
    serve::ServeError,
};
use heist_tokens::{KeyError, SigningKey, TokenIssuer, unix_now};
use tokio::net::TcpListener;

pub use service::OAuthService;

/// How the OAuth service is set up.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The client registry file; `None` for the built-in development
    /// registry (the seed's four agents and the orchestrator).
    pub clients_file: Option<PathBuf>,
    /// The signing key file (generated if missing).
    pub key_file: PathBuf,
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
    let (registry, issuer) = load(config)?;
    Ok(assemble(registry, issuer, revocations))
}

/// The client registry and the token issuer (its signing key) of `config`:
/// the local files, checked before any engine is reached (blocking).
fn load(config: &OAuthConfig) -> Result<(clients::ClientRegistry, TokenIssuer), OAuthServiceError> {
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
    let key = SigningKey::load_or_generate(&config.key_file)?;
    tracing::info!(kid = key.kid(), file = %config.key_file.display(), "signing key ready");
    let issuer = TokenIssuer::new(
        key,
        config.issuer.clone(),
        MESH_AUDIENCE,
        config.token_lifetime,
    );
    Ok((registry, issuer))
}

fn assemble(
    registry: clients::ClientRegistry,
    issuer: TokenIssuer,
    revocations: RevocationStore,
) -> OAuthService {
    let authenticator = Authenticator::with_verifier(issuer.verifier(), &AuthConfig::new(""));
    OAuthService::new(registry, issuer, revocations, authenticator)
}

/// Serves the OAuth service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: OAuthConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), OAuthServiceError> {
    let backend = config.revocations.clone();
    let (registry, issuer) = tokio::task::spawn_blocking(move || load(&config))
        .await
        .map_err(|error| OAuthServiceError::Startup(error.to_string()))??;
    let revocations = RevocationStore::open(&backend, unix_now()).await?;
    tracing::info!(store = %revocations.describe(), "revocation list ready");
    let service = assemble(registry, issuer, revocations);
    heist_plumbing::serve(listener, service.into_server(), async {}, shutdown, options).await?;
    Ok(())
}
