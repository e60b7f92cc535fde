//! `heist-tools`: serves the tools it is told to until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use heist_plumbing::{
    cli::{AuthArgs, CommonArgs, parse_duration},
    shutdown,
};
use heist_tools::{
    ConfigError, DEFAULT_DOCUMENTS_DIR, DOCUMENTS_DIR_ENV, IntelDbConfig, ToolSet, ToolsConfig,
};

/// The Tool service: calculator, file_reader and database_query.
///
/// One process hosts the tools named by --tools, so both the seed's layout
/// (one tool per port: calculator 8002, file_reader 8003, database_query 8004)
/// and a single process work. Every call needs a bearer token from the OAuth
/// service with the tool's scope (`calculator:use`, `file_reader:use`,
/// `database_query:use`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HEIST_TOOLS_LISTEN", default_value = "127.0.0.1:8002")]
    listen: SocketAddr,

    /// The tools to host, comma-separated.
    #[arg(long, default_value = "calculator,file_reader,database_query")]
    tools: String,

    /// The directory file_reader serves (nothing outside it is readable); a
    /// relative path starts at the working directory. The default is the
    /// repository's documents, for a binary started from the checkout's root.
    #[arg(long, env = DOCUMENTS_DIR_ENV, default_value = DEFAULT_DOCUMENTS_DIR)]
    documents_dir: PathBuf,

    /// Where database_query builds its intelligence database; a temporary
    /// file if not given. The file is rebuilt at start and opened read-only.
    #[arg(long)]
    intel_db: Option<PathBuf>,

    /// Largest document file_reader returns, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_file_bytes: u64,

    /// Most rows database_query returns.
    #[arg(long, default_value_t = 200)]
    max_rows: usize,

    /// Time limit of one database query, e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    query_time_limit: Duration,

    /// How many read-only connections run database queries at once.
    #[arg(long, default_value_t = 8)]
    query_connections: usize,

    /// How many of those connections one client (a token's `sub`) may hold at once.
    #[arg(long, default_value_t = 2)]
    query_per_client: usize,

    /// How long a database query waits for a connection before
    /// RESOURCE_EXHAUSTED, e.g. `500ms`.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    query_queue_wait: Duration,

    /// Time limit of any one tool call, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    call_timeout: Duration,

    #[command(flatten)]
    auth: AuthArgs,

    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let common = args.common.clone();
    common.run_binary("heist-tools", serve(args)).await
}

/// Adds to a configuration error what the operator can do about it.
fn explain(error: ConfigError) -> anyhow::Error {
    match error {
        ConfigError::DocumentsDir { path, source } => {
            let from = match std::env::current_dir() {
                Ok(dir) if path.is_relative() => format!(" (relative to {})", dir.display()),
                _ => String::new(),
            };
            anyhow::anyhow!(
                "documents directory {}{from}: {source}; give the directory with \
                 --documents-dir or {DOCUMENTS_DIR_ENV}",
                path.display()
            )
        }
        other => other.into(),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = ToolsConfig {
        documents_dir: args.documents_dir,
        max_file_bytes: args.max_file_bytes,
        intel_db: args
            .intel_db
            .map_or(IntelDbConfig::Temporary, IntelDbConfig::File),
        max_rows: args.max_rows,
        query_time_limit: args.query_time_limit,
        query_connections: args.query_connections,
        query_per_client: args.query_per_client,
        query_queue_wait: args.query_queue_wait,
        ..ToolsConfig::default()
    };
    let names = args.tools.clone();
    let tools = tokio::task::spawn_blocking(move || ToolSet::from_names(&names, &config))
        .await?
        .map_err(explain)
        .with_context(|| format!("cannot set up the tools {:?}", args.tools))?;
    let listener = args.common.bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, tools = %args.tools, "tools listening");
    heist_tools::run(
        listener,
        tools,
        args.call_timeout,
        args.auth.authenticator(args.common.tls.client_tls()?)?,
        shutdown::signal(),
        args.common.serve_options()?,
    )
    .await?;
    tracing::info!("tools stopped");
    Ok(())
}
