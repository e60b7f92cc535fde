//! `heist-memory`: serves the Memory service until SIGINT/SIGTERM.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use heist_memory::{Backend, Limits, StoreConfig};
use heist_plumbing::{
    cli::{AuthArgs, CommonArgs, parse_duration},
    shutdown,
};

/// The Memory service: fast, bounded per-agent, per-session context.
///
/// Keeps each agent's turns per session in memory and serves them compressed
/// (recent turns verbatim, older ones summarised). Every call needs a bearer
/// token from the OAuth service: `memory:write` to store, `memory:read` to
/// read, `memory:admin` to clear.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HEIST_MEMORY_LISTEN", default_value = "127.0.0.1:8005")]
    listen: SocketAddr,

    /// Most turns kept per (agent, session); older ones are evicted.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_PER_STREAM)]
    max_per_stream: usize,

    /// Most turns kept in total; least recently written sessions are evicted.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_TOTAL)]
    max_total: usize,

    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Sessions not written for this long are evicted, e.g. `1h` or `30m`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,

    /// Where turns are kept: `memory` (this process) or a Redis URL,
    /// `redis://[:password@]host:port[/db]`, shared by every replica using it.
    #[arg(long, env = "HEIST_MEMORY_STORE", default_value = "memory")]
    store: String,

    #[command(flatten)]
    auth: AuthArgs,

    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let common = args.common.clone();
    common.run_binary("heist-memory", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let limits = Limits {
        max_per_stream: args.max_per_stream,
        max_total: args.max_total,
        max_message_bytes: args.max_message_bytes,
        ttl: args.ttl,
        ..Limits::default()
    };
    // Connect first: an unreachable Redis or a wrong password stops here, in one line.
    let config: StoreConfig = args.store.parse()?;
    let store = Backend::open(&config, limits).await?;
    let listener = args.common.bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, store = %config, "memory listening");
    heist_memory::run(
        listener,
        store,
        args.auth.authenticator(args.common.tls.client_tls()?)?,
        shutdown::signal(),
        args.common.serve_options()?,
    )
    .await?;
    tracing::info!("memory stopped");
    Ok(())
}
