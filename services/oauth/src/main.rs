//! `heist-oauth`: serves the OAuth service until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use heist_oauth::{OAuthConfig, revocations::RevocationBackend};
use heist_plumbing::{
    cli::{CommonArgs, parse_duration},
    shutdown,
};

/// The OAuth service: client-credentials grant for the agents of the mesh.
///
/// Clients (ID, secret hash, allowed scopes) come from a YAML file; tokens are
/// JWTs signed with an Ed25519 key kept in a file (generated on first start),
/// so tokens stay valid across restarts. Other services verify tokens locally
/// with the public keys from `GetPublicKeys`. Replicas act as one when given
/// the same key file and a shared revocation store (PostgreSQL or Redis).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HEIST_OAUTH_LISTEN", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,

    /// The client registry (YAML, see services/oauth/clients.yaml). Without
    /// it, the built-in development clients (the seed's four agents and the
    /// orchestrator, with plain-text development secrets) are used.
    #[arg(long, env = "HEIST_OAUTH_CLIENTS")]
    clients: Option<PathBuf>,

    /// The Ed25519 signing key file; generated (mode 0600) if missing. Give
    /// every replica the same file (a shared volume or a mounted secret):
    /// replicas starting at once on a missing file create one key, not two.
    #[arg(
        long,
        env = "HEIST_OAUTH_KEY",
        default_value = "heist_oauth_signing.key"
    )]
    key_file: PathBuf,

    /// Where revocations live: a file path (this process alone; the
    /// default), `postgres://USER:PASSWORD@HOST:PORT/DB` (table
    /// `revoked_tokens`, created if missing) or `redis://:PASSWORD@HOST:PORT/DB`
    /// (sorted set `heist:oauth:revoked`). Replicas that must refuse each
    /// other's revoked tokens share one PostgreSQL or Redis.
    #[arg(
        long,
        env = "HEIST_OAUTH_REVOCATIONS",
        value_name = "PATH|URL",
        hide_env_values = true,
        conflicts_with = "revocations_file"
    )]
    revocations: Option<String>,

    /// The revocation list file (append-only); the same as `--revocations PATH`.
    #[arg(long, default_value = "heist_oauth_revoked.log")]
    revocations_file: PathBuf,

    /// The issuer (`iss`) tokens carry.
    #[arg(long, default_value = "heist-oauth")]
    issuer: String,

    /// How long tokens live, e.g. `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    token_lifetime: Duration,

    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let common = args.common.clone();
    common.run_binary("heist-oauth", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // Parsed here, not by clap: its errors would echo a URL's password.
    let revocations = match &args.revocations {
        Some(value) => value.parse()?,
        None => RevocationBackend::File(args.revocations_file),
    };
    let listener = args.common.bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "oauth listening");
    let config = OAuthConfig {
        clients_file: args.clients,
        key_file: args.key_file,
        revocations,
        issuer: args.issuer,
        token_lifetime: args.token_lifetime,
    };
    heist_oauth::run(
        listener,
        config,
        shutdown::signal(),
        args.common.serve_options(),
    )
    .await?;
    tracing::info!("oauth stopped");
    Ok(())
}
