//! `heist-audit`: serves the Audit service until SIGINT/SIGTERM.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::Parser;
use heist_audit::{StoreConfig, StoreLocation};
use heist_plumbing::{
    cli::{AuthArgs, CommonArgs},
    shutdown,
};

/// The Audit service: the heist mesh's single source of truth (SQLite or PostgreSQL).
///
/// Stores sessions, agent messages and tool calls, and serves them over gRPC
/// (`heist.v1.AuditService`) with health and reflection, so
/// `grpcurl -plaintext 127.0.0.1:8006 list` works. Every call needs a bearer
/// token from the OAuth service: `audit:write` to write, `audit:read` to read.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HEIST_AUDIT_LISTEN", default_value = "127.0.0.1:8006")]
    listen: SocketAddr,

    /// Where to store: `sqlite:PATH` (the default, `sqlite:heist_audit.db`)
    /// or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`; the schema is
    /// created or migrated at start. Replicas may share one PostgreSQL.
    #[arg(long, env = "HEIST_AUDIT_STORE")]
    store: Option<String>,

    /// The SQLite database file (created and migrated if needed); the same
    /// as `--store sqlite:PATH`.
    #[arg(long, env = "HEIST_AUDIT_DB")]
    db: Option<PathBuf>,

    /// `full`: every commit is fsynced, so an acknowledged row survives a
    /// power cut. `normal`: no fsync at commit (faster on slow disks); an
    /// acknowledged row survives any crash of the process, but the last
    /// commits may be lost on power loss. The file is never corrupted.
    #[arg(long, default_value = "full", value_parser = heist_audit::store::Synchronous::parse)]
    synchronous: heist_audit::store::Synchronous,

    /// Largest message, tool parameters or tool result accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_message_bytes: usize,

    /// Most `WatchSession` streams open at once on one session.
    #[arg(long, default_value_t = heist_audit::WatchLimits::default().per_session)]
    max_watchers_per_session: usize,

    /// Most `WatchSession` streams open at once on the whole service.
    #[arg(long, default_value_t = heist_audit::WatchLimits::default().total)]
    max_watchers: usize,

    #[command(flatten)]
    auth: AuthArgs,

    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let common = args.common.clone();
    common.run_binary("heist-audit", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let location = store_location(args.store.as_deref(), args.db.as_deref())?;
    let listener = args.common.bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, store = %location, "audit listening");
    let mut config = StoreConfig::at(location);
    config.max_message_bytes = args.max_message_bytes;
    config.synchronous = args.synchronous;
    config.watchers = heist_audit::WatchLimits {
        per_session: args.max_watchers_per_session,
        total: args.max_watchers,
    };
    heist_audit::run(
        listener,
        config,
        args.auth.authenticator(args.common.tls.client_tls()?)?,
        shutdown::signal(),
        args.common.serve_options()?,
    )
    .await?;
    tracing::info!("audit stopped");
    Ok(())
}

/// The store `--store` or `--db` names (`heist_audit.db` when neither does).
fn store_location(store: Option<&str>, db: Option<&Path>) -> anyhow::Result<StoreLocation> {
    match (store, db) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--store and --db (or HEIST_AUDIT_STORE and HEIST_AUDIT_DB) both name the store; give one"
        ),
        (Some(store), None) => {
            StoreLocation::parse(store).map_err(|error| anyhow::anyhow!("--store: {error}"))
        }
        (None, db) => Ok(StoreLocation::Sqlite(
            db.map_or_else(|| PathBuf::from("heist_audit.db"), Path::to_path_buf),
        )),
    }
}
