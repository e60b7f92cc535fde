//! `heist-audit`: serves the Audit service until SIGINT/SIGTERM; `verify`
//! checks a SQLite file's hash chains offline; `public-keys` prints the
//! checkpoint keys of a key file.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use std::process::ExitCode;

use clap::Parser;
use heist_audit::offline;
use heist_audit::store::{DEFAULT_CHECKPOINT_EVERY, Integrity, Rules};
use heist_audit::{StoreConfig, StoreLocation};
use heist_plumbing::{
    cli::{AuthArgs, CommonArgs},
    shutdown,
};
use heist_proto::v1::Integrity as Verdict;
use heist_tokens::{KeyRing, unix_now};

/// The Audit service: the heist mesh's single source of truth (SQLite or PostgreSQL).
///
/// Stores sessions, agent messages and tool calls, and serves them over gRPC
/// (`heist.v1.AuditService`) with health and reflection, so
/// `grpcurl -plaintext 127.0.0.1:8006 list` works. Every call needs a bearer
/// token from the OAuth service: `audit:write` to write, `audit:read` to read.
///
/// Every session is a SHA-256 hash chain, signed with Audit's Ed25519 key
/// (`--key-file`) at its end and every `--checkpoint-every` rows:
/// `heist-audit verify --db FILE --public-keys KEYS.json` proves a file
/// untouched, or names the first row that is not.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

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
    signing: SigningArgs,

    /// Store new sessions without the hash chain and its checkpoints (to
    /// measure the chain's cost; such sessions verify as unchained).
    #[arg(long, env = "HEIST_AUDIT_NO_CHAIN")]
    no_chain: bool,

    #[command(flatten)]
    auth: AuthArgs,

    #[command(flatten)]
    common: CommonArgs,
}

/// The checkpoint signing key and interval.
#[derive(Debug, Clone, clap::Args)]
struct SigningArgs {
    /// The Ed25519 key ring that signs checkpoints (OAuth's format: one key
    /// a line, the last one signs); generated (mode 0600) if missing. Give
    /// every replica the same file; publish its public keys
    /// (`GetCheckpointKeys`, or `heist-audit public-keys`) to verifiers.
    #[arg(
        long,
        env = "HEIST_AUDIT_KEY",
        default_value = "heist_audit_signing.key"
    )]
    key_file: PathBuf,

    /// A session is signed at its end and whenever this many rows were
    /// chained since its last checkpoint (at least 1).
    #[arg(long, default_value_t = DEFAULT_CHECKPOINT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify the hash chains and signed checkpoints of an Audit SQLite file
    /// offline (no service needed). Prints one line per session; exits 0
    /// when every session is intact (or unchained: stored before the chain
    /// existed; see --strict), 1 when one was tampered with, 2 when the
    /// check cannot run.
    Verify(VerifyArgs),
    /// Print the public keys of a checkpoint key ring as JSON (a JWKS, as
    /// `GetCheckpointKeys` answers), for `verify --public-keys`.
    PublicKeys(RingArg),
    /// Add a new signing key to the ring (creating the ring if missing) and
    /// print its key ID. Older keys stay in the ring for ever: they verify
    /// the checkpoints they signed. Running replicas sign with the new key
    /// once restarted; republish the public keys to verifiers.
    RotateKey(RingArg),
}

/// The key ring a key subcommand reads or writes.
#[derive(Debug, clap::Args)]
struct RingArg {
    /// The checkpoint key ring (Audit's `--key-file`).
    #[arg(
        long,
        env = "HEIST_AUDIT_KEY",
        default_value = "heist_audit_signing.key"
    )]
    key_file: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["public_keys", "key_file"])))]
struct VerifyArgs {
    /// The Audit SQLite file (opened read-only).
    #[arg(long)]
    db: PathBuf,

    /// Only this session (default: every session, oldest first).
    #[arg(long)]
    session: Option<String>,

    /// Audit's public keys: a JSON `{"keys": [JWK, ...]}`, e.g. what
    /// `grpcurl ... heist.v1.AuditService/GetCheckpointKeys` or
    /// `heist-audit public-keys` prints.
    #[arg(long, value_name = "FILE")]
    public_keys: Option<PathBuf>,

    /// Trust the keys of this key ring instead (Audit's `--key-file`).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// The interval Audit signed with (default: what `--public-keys` states,
    /// else 100); more unsigned rows at the end of an active session than
    /// this is tampering.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,

    /// Count unchained sessions as tampered (exit 1): for a database whose
    /// sessions were all written by a chaining Audit, where an unchained
    /// session can only be one stripped of its chain.
    #[arg(long)]
    strict: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Command::Verify(verify)) => verify_offline(&verify),
        Some(Command::PublicKeys(ring)) => print_public_keys(&ring.key_file),
        Some(Command::RotateKey(ring)) => rotate_key(&ring.key_file),
        None => {
            let common = args.common.clone();
            common.run_binary("heist-audit", serve(args)).await
        }
    }
}

/// `heist-audit verify`: the verdict on each session; exit 0, 1 or 2.
fn verify_offline(args: &VerifyArgs) -> ExitCode {
    let trusted = match (&args.public_keys, &args.key_file) {
        (Some(path), _) => offline::read_public_keys(path),
        (None, Some(path)) => offline::read_key_ring(path).map(|keys| (keys, None)),
        (None, None) => return cannot_verify(&"give --public-keys FILE or --key-file FILE"),
    };
    let (keys, stated_every) = match trusted {
        Ok(trusted) => trusted,
        Err(error) => return cannot_verify(&error),
    };
    let every = args
        .checkpoint_every
        .or(stated_every)
        .unwrap_or(DEFAULT_CHECKPOINT_EVERY);
    let rules = Rules::new(keys, every);
    let verdicts = match offline::verify_file(&args.db, args.session.as_deref(), &rules) {
        Ok(verdicts) => verdicts,
        Err(error) => return cannot_verify(&format!("{}: {error}", args.db.display())),
    };
    let count = |verdict: Verdict| {
        verdicts
            .iter()
            .filter(|found| found.integrity() == verdict)
            .count()
    };
    let (intact, unchained, tampered) = (
        count(Verdict::Intact),
        count(Verdict::Unchained),
        count(Verdict::Tampered),
    );
    for verdict in &verdicts {
        println!("{verdict}");
    }
    if args.session.is_none() {
        println!(
            "{} sessions: {intact} intact, {unchained} unchained, {tampered} tampered",
            verdicts.len()
        );
    }
    if tampered > 0 || (args.strict && unchained > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn cannot_verify(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(2)
}

/// `heist-audit rotate-key`: a new active key, every older one kept.
fn rotate_key(key_file: &Path) -> ExitCode {
    match KeyRing::rotate(key_file, unix_now(), std::time::Duration::MAX) {
        Ok(ring) => {
            println!(
                "new active key {} ({} in the ring)",
                ring.active().kid(),
                ring.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => cannot_verify(&error),
    }
}

/// `heist-audit public-keys`: the ring's public keys as a JWKS.
fn print_public_keys(key_file: &Path) -> ExitCode {
    match offline::read_key_ring(key_file) {
        Ok(keys) => {
            let keys: Vec<heist_tokens::Jwk> = keys.iter().map(heist_tokens::Jwk::from).collect();
            println!("{}", serde_json::json!({ "keys": keys }));
            ExitCode::SUCCESS
        }
        Err(error) => cannot_verify(&error),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let location = store_location(args.store.as_deref(), args.db.as_deref())?;
    let listener = args.common.bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, store = %location, "audit listening");
    let mut config = StoreConfig::at(location);
    config.max_message_bytes = args.max_message_bytes;
    config.synchronous = args.synchronous;
    let key_file = args.signing.key_file.clone();
    let ring =
        tokio::task::spawn_blocking(move || KeyRing::load_or_generate(&key_file, unix_now()))
            .await??;
    let mut integrity = Integrity::from_ring(&ring);
    integrity.checkpoint_every = args.signing.checkpoint_every;
    integrity.chain = !args.no_chain;
    tracing::info!(
        key_file = %args.signing.key_file.display(),
        kid = ring.active().kid(),
        checkpoint_every = integrity.checkpoint_every,
        chain = integrity.chain,
        "checkpoint key loaded"
    );
    config.integrity = integrity;
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
