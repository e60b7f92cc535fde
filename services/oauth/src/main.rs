//! `heist-oauth`: serves the OAuth service until SIGINT/SIGTERM, or
//! (`rotate-key`) makes a new signing key active in the key ring and exits.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use heist_oauth::{OAuthConfig, revocations::RevocationBackend};
use heist_plumbing::{
    cli::{CommonArgs, parse_duration},
    shutdown,
};
use heist_tokens::{KeyRing, unix_now};

/// The OAuth service: client-credentials grant for the agents of the mesh.
///
/// Clients (ID, secret hash, allowed scopes) come from a YAML file; tokens are
/// JWTs signed with the active Ed25519 key of a key ring kept in a file
/// (generated on first start), so tokens stay valid across restarts. Other
/// services verify tokens locally with the public keys from `GetPublicKeys`.
/// Replicas act as one when given the same key file and a shared revocation
/// store (PostgreSQL or Redis). `heist-oauth rotate-key` adds a new active
/// key; running processes pick it up within `--key-reload`.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "HEIST_OAUTH_LISTEN", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,

    /// The client registry (YAML, see services/oauth/clients.yaml). Without
    /// it, the built-in development clients (the seed's four agents and the
    /// orchestrator, with plain-text development secrets) are used.
    #[arg(long, env = "HEIST_OAUTH_CLIENTS")]
    clients: Option<PathBuf>,

    #[command(flatten)]
    keys: KeyArgs,

    /// How often the key ring file is re-read, so that a rotation applies
    /// without a restart (it is also re-read on each `GetPublicKeys`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    key_reload: Duration,

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

    #[command(flatten)]
    common: CommonArgs,
}

/// What `heist-oauth` can do besides serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new signing key active in the key ring, then exit.
    ///
    /// The new key signs from now on; running OAuth processes on the same
    /// ring file switch to it within their `--key-reload` interval (at once
    /// on their next `GetPublicKeys`), and services trusting them fetch it by
    /// its key ID. The keys it replaces are still published until their last
    /// token has expired: a key retires at the next key's activation time plus
    /// `--token-lifetime` plus `--key-leeway` (give the values the servers
    /// use), and the keys retired by now are dropped from the file. The file is
    /// replaced atomically (mode 0600); run one rotation at a time. Prints the
    /// new key ID.
    RotateKey(KeyArgs),
}

/// The key ring and the times that decide when an old key retires.
#[derive(Debug, Clone, clap::Args)]
struct KeyArgs {
    /// The Ed25519 signing key ring file (one key a line: activation time and
    /// seed; the last key signs); generated (mode 0600) if missing. A single
    /// key file of earlier versions is read as a ring of one. Give every
    /// replica the same file (a shared volume or a mounted secret): replicas
    /// starting at once on a missing file create one key, not two.
    #[arg(
        long,
        env = "HEIST_OAUTH_KEY",
        default_value = "heist_oauth_signing.key"
    )]
    key_file: PathBuf,

    /// How long tokens live, e.g. `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    token_lifetime: Duration,

    /// How long past its last token's expiry a replaced key is still
    /// published (the verifiers' clock leeway).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    key_leeway: Duration,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    let common = args.common.clone();
    match args.command.take() {
        Some(Command::RotateKey(keys)) => common.run_binary("heist-oauth", rotate_key(keys)).await,
        None => common.run_binary("heist-oauth", serve(args)).await,
    }
}

/// Adds a new active key to the ring and prints its key ID.
async fn rotate_key(keys: KeyArgs) -> anyhow::Result<()> {
    let keep = keys.token_lifetime.saturating_add(keys.key_leeway);
    let ring =
        tokio::task::spawn_blocking(move || KeyRing::rotate(&keys.key_file, unix_now(), keep))
            .await??;
    let count = match ring.len() {
        1 => "1 key".to_owned(),
        n => format!("{n} keys"),
    };
    println!(
        "new active key {} ({count} in the ring)",
        ring.active().kid()
    );
    Ok(())
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
        key_file: args.keys.key_file,
        key_leeway: args.keys.key_leeway,
        key_reload: args.key_reload,
        revocations,
        issuer: args.issuer,
        token_lifetime: args.keys.token_lifetime,
    };
    heist_oauth::run(
        listener,
        config,
        shutdown::signal(),
        args.common.serve_options()?,
    )
    .await?;
    tracing::info!("oauth stopped");
    Ok(())
}
