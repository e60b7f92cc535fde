//! `orchestrator`: runs heist sessions across the mesh, checks its health,
//! and reads the audit trail.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use heist_orchestrator::{
    app::{self, RunRequest, exit},
    config::Config,
};
use heist_plumbing::telemetry;
use heist_proto::v1::SessionStatus;

#[global_allocator]
static ALLOCATOR: heist_orchestrator::Allocator = heist_orchestrator::Allocator;

/// The tracing variables, after the flags in `--help`.
const TRACING_HELP: &str = "\
Tracing (OpenTelemetry, read once at start):
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
      export spans over OTLP/gRPC (GenAI conventions: invoke_workflow, invoke_agent, chat,
      execute_tool); unset, nothing is exported
  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true
      also export the messages sent to and answered by the LLM and the tool calls' arguments
      and results (off by default: they may hold anything the agents and tools said)";

/// The heist orchestrator: a team of LLM agents plans a heist in turns, each
/// turn crossing the OAuth, Tool, Memory and Audit services.
///
/// With no config file the built-in one is used (the seed's four agents,
/// services on 127.0.0.1:8001-8006, the offline LLM backend), so
/// `orchestrator run` works with no flags once the services run
/// (scripts/start_services.sh).
#[derive(Debug, Parser)]
#[command(version, propagate_version = true, after_help = TRACING_HELP)]
struct Cli {
    /// The YAML config (the seed's agents_config.yaml layout works).
    #[arg(long, short, global = true, env = "HEIST_CONFIG")]
    config: Option<PathBuf>,

    /// Where audit writes wait while Audit is unreachable (replayed by the
    /// next run if this one ends first). One file per orchestrator process.
    #[arg(long, global = true, env = "HEIST_SPOOL", default_value = app::DEFAULT_SPOOL)]
    spool: PathBuf,

    /// Log filter for diagnostics on stderr, e.g. `warn` or `heist_orchestrator=debug`.
    #[arg(long = "log", global = true, env = "RUST_LOG", default_value = "warn")]
    log_filter: String,

    /// Log line format on stderr: `text` (coloured only on a terminal, and
    /// never with `NO_COLOR` set) or `json` (one JSON object a line, with the
    /// span fields and `session.id`, for log collectors).
    #[arg(long, global = true, env = "HEIST_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,

    /// Threads that run the sessions. One is plenty: sessions wait on the
    /// network and the LLM, and a single thread spares the wake-ups between
    /// threads (a third of the orchestrator's CPU per turn; BENCHMARKS.md).
    #[arg(long, global = true, env = "HEIST_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: u16,

    /// Call every service over TLS, verifying its certificate with this CA
    /// (PEM); overrides the config's `tls` section.
    #[arg(long, global = true, value_name = "PATH")]
    tls_ca: Option<PathBuf>,

    /// The certificate (PEM) to show services that ask for one (mutual
    /// TLS); needs --tls-ca and --tls-key.
    #[arg(long, global = true, value_name = "PATH", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,

    /// The key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics while the command
    /// runs (turns, breakers, spool and outbox depth, LLM latency and
    /// tokens, every RPC); overrides the config's `metrics.listen`.
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// `--tls-*` over the config's `tls` section.
    fn apply_tls(&self, config: &mut Config) {
        let Some(ca) = &self.tls_ca else {
            return;
        };
        config.tls = Some(heist_orchestrator::config::TlsSettings {
            ca: ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            reload: config
                .tls
                .as_ref()
                .map_or(std::time::Duration::from_secs(2), |tls| tls.reload),
        });
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one heist session (or several at once) and print it turn by turn.
    Run(RunArgs),
    /// Check every service and the LLM endpoint; non-zero exit if a required one is down.
    Health,
    /// Read sessions from the Audit service.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List what the tool services offer (name, scope, argument).
    Tools,
    /// Continue a session left active by a crash: rebuild it from Audit and
    /// run it on to its max_turns (same seed, same speakers).
    Resume {
        /// The session ID, e.g. heist_20250116_143052_a1b2.
        session_id: String,
        /// Print only the summary.
        #[arg(long, short)]
        quiet: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Turns per session (default: the config's session.max_turns).
    #[arg(long)]
    turns: Option<u64>,

    /// Sessions to run concurrently.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    sessions: u16,

    /// Seed of the turn order and of the offline responses (reproducible runs).
    #[arg(long)]
    seed: Option<u64>,

    /// OpenAI-compatible LLM endpoint, e.g. http://localhost:1234/v1 (LM Studio)
    /// or http://localhost:11434/v1 (Ollama). Switches the backend to it.
    #[arg(long, env = "HEIST_LLM_URL")]
    llm_url: Option<String>,

    /// The model to ask for at the LLM endpoint.
    #[arg(long, env = "HEIST_LLM_MODEL")]
    model: Option<String>,

    /// Use the offline backend even if the config names an LLM.
    #[arg(long, conflicts_with = "llm_url")]
    offline: bool,

    /// How tool calls travel: `inline` ([TOOL:name:argument] in the text) or `native` (OpenAI tool_calls).
    #[arg(long, value_parser = ["inline", "native"])]
    tool_calls: Option<String>,

    /// Write the transcript here: PATH.json, PATH.md, or PATH without extension for both.
    #[arg(long)]
    transcript: Option<PathBuf>,

    /// Print only the banner and the summary, not every turn.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List sessions, newest first.
    List {
        /// Only sessions with this status: active, completed, failed, interrupted.
        #[arg(long, value_parser = app::parse_status)]
        status: Option<SessionStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one session: its integrity, every message and tool call.
    Show {
        /// The session ID, e.g. heist_20250116_143052_a1b2.
        session_id: String,
    },
    /// Ask Audit to verify a session's hash chain and signed checkpoints.
    ///
    /// Prints one line: `ID: intact, N rows, head H; signed by key K at T,
    /// signature S`, `ID: unchained, ...` (stored before the chain existed),
    /// or `ID: TAMPERED at the message (messages id 7, turn 3): why`, naming
    /// the first row that does not match. For an offline check of the
    /// database file itself, see `heist-audit verify`.
    ///
    /// Exit codes: 0 intact or unchained, 1 tampered, 3 OAuth or Audit
    /// cannot answer, 4 Audit has no such session (or the ID is malformed).
    Verify {
        /// The session ID, e.g. heist_20250116_143052_a1b2.
        session_id: String,
    },
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default_config()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A multi-thread runtime even with one worker: OpenTelemetry's batch
    // exporter can deadlock on a current-thread one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.worker_threads))
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(exit::FAILED)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let mut config = match load_config(cli.config.as_ref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    cli.apply_tls(&mut config);
    if cli.metrics_listen.is_some() {
        config.metrics_listen = cli.metrics_listen;
    }
    if let Command::Run(args) = &cli.command
        && let Err(error) = apply_overrides(&mut config, args)
    {
        eprintln!("error: {error}");
        return ExitCode::from(exit::CONFIG);
    }
    let telemetry = match telemetry::init("heist-orchestrator", &cli.log_filter, cli.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => {
            app::run(
                config,
                RunRequest {
                    turns: args.turns,
                    sessions: usize::from(args.sessions),
                    seed: args.seed,
                    transcript: args.transcript,
                    quiet: args.quiet,
                    spool: cli.spool.clone(),
                },
            )
            .await
        }
        Command::Health => app::health(&config).await,
        Command::Sessions(SessionsCommand::List { status, limit }) => {
            app::sessions_list(&config, status, limit).await
        }
        Command::Sessions(SessionsCommand::Show { session_id }) => {
            app::sessions_show(&config, &session_id).await
        }
        Command::Sessions(SessionsCommand::Verify { session_id }) => {
            app::sessions_verify(&config, &session_id).await
        }
        Command::Tools => app::tools(&config).await,
        Command::Resume { session_id, quiet } => {
            app::resume(config, &session_id, quiet, &cli.spool).await
        }
    };
    telemetry.shutdown().await;
    if heist_orchestrator::stdout::reader_gone() {
        // As `ls | head`: the reader left, so stop quietly.
        return ExitCode::from(heist_orchestrator::stdout::EXIT_READER_GONE);
    }
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Command-line flags override the config file.
fn apply_overrides(config: &mut Config, args: &RunArgs) -> anyhow::Result<()> {
    if let Some(turns) = args.turns
        && turns == 0
    {
        anyhow::bail!("--turns must be at least 1");
    }
    config.apply_llm_overrides(
        args.llm_url.clone(),
        args.model.clone(),
        args.offline,
        args.tool_calls.as_deref(),
    )?;
    Ok(())
}
