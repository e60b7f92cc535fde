//! The orchestrator's commands: `run`, `health`, `sessions`, `tools`.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use heist_plumbing::auth::Audience;
use heist_proto::v1::{
    GetSessionRequest, GetSessionUsageRequest, ListSessionsRequest, SessionStatus,
    SessionVerification, VerifySessionRequest,
};
use tokio::sync::watch;

use crate::{
    clients::read_across,
    config::{Config, LlmBackendKind},
    console::Console,
    discovery::{discover, tool_specs},
    engine::{Orchestrator, RunOptions, SessionOutcome, TurnRecord},
    health::{HealthLine, HealthReport, Verdict, check_services},
    llm::{LlmBackend, OfflineBackend, OpenAiBackend, OpenAiSettings},
    mesh::Mesh,
    resilience::AUDIT,
    session_id::new_session_id,
    tokens::TokenCache,
    trail::{StoredTurn, session_trail},
    transcript,
    usage::SessionTokens,
};

/// Exit codes the orchestrator uses.
pub mod exit {
    /// Everything went as asked.
    pub const OK: u8 = 0;
    /// A session failed.
    pub const FAILED: u8 = 1;
    /// `sessions verify`: Audit says the session's chain was tampered with.
    pub const TAMPERED: u8 = 1;
    /// The configuration is unusable (nothing was started).
    pub const CONFIG: u8 = 2;
    /// A required service is down.
    pub const UNAVAILABLE: u8 = 3;
    /// `sessions verify`: Audit has no such session.
    pub const NOT_FOUND: u8 = 4;
    /// Interrupted by Ctrl-C / SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// What `run` was asked for beyond the config.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Turns per session (default: the config's `max_turns`).
    pub turns: Option<u64>,
    /// Sessions to run at once.
    pub sessions: usize,
    /// Seed (default: the config's, else random).
    pub seed: Option<u64>,
    /// Transcript path (`.json`, `.md`, or none for both).
    pub transcript: Option<PathBuf>,
    /// Print only the summary.
    pub quiet: bool,
    /// The audit spool file.
    pub spool: PathBuf,
}

/// The default audit spool file, relative to the working directory.
pub const DEFAULT_SPOOL: &str = ".heist/audit.spool";

/// Opens the audit spool (writes a previous run could not deliver are
/// replayed by this one).
pub fn open_spool(path: &std::path::Path) -> anyhow::Result<crate::spool::Spool> {
    crate::spool::Spool::open(path)
        .with_context(|| format!("cannot open the audit spool {}", path.display()))
}

/// Builds the LLM backend the config asks for.
pub fn llm_backend(config: &Config, seed: u64) -> Arc<dyn LlmBackend> {
    match config.llm.backend_kind() {
        LlmBackendKind::Offline => Arc::new(OfflineBackend::new(seed)),
        LlmBackendKind::OpenAi => Arc::new(OpenAiBackend::new(openai_settings(
            config,
            config.llm.timeout,
            config.llm.retries,
        ))),
    }
}

/// The OpenAI-compatible backend's settings from the config, with a request
/// `timeout` and `retries` (a run's, or the health probe's).
fn openai_settings(config: &Config, timeout: std::time::Duration, retries: u32) -> OpenAiSettings {
    OpenAiSettings {
        base_url: config.llm.base_url.clone().unwrap_or_default(),
        model: config.llm.model.clone(),
        api_key: config
            .llm
            .api_key
            .as_ref()
            .map(|key| key.expose().to_owned()),
        temperature: config.llm.temperature,
        max_tokens: config.llm.max_tokens,
        timeout,
        retries,
    }
}

/// The orchestrator's own token for `audience`: Audit for its reads, Tools
/// for tool listing.
async fn own_token(config: &Config, tokens: &TokenCache, audience: Audience) -> Option<String> {
    let scopes = crate::engine::owned(crate::engine::orchestrator_scopes(audience));
    match tokens
        .token(
            &config.oauth.client_id,
            config.oauth.client_secret.expose(),
            &scopes,
            audience,
        )
        .await
    {
        Ok(token) => Some(token.to_string()),
        Err(status) => {
            tracing::warn!(error = %status.message(), "cannot get the orchestrator's token");
            None
        }
    }
}

/// The health of every service and of the LLM endpoint.
pub async fn health_report(config: &Config, mesh: &Mesh) -> HealthReport {
    let mut lines = check_services(&mesh.endpoints, config.timeouts.health).await;
    lines.push(llm_health(config).await);
    HealthReport { lines }
}

async fn llm_health(config: &Config) -> HealthLine {
    match config.llm.backend_kind() {
        LlmBackendKind::Offline => HealthLine {
            name: "LLM".into(),
            url: "offline".into(),
            required: false,
            verdict: Verdict::Healthy("built-in offline backend, no LLM configured".into()),
            unhealthy_replicas: Vec::new(),
        },
        LlmBackendKind::OpenAi => {
            let settings = openai_settings(config, config.timeouts.health, 0);
            let url = settings.base_url.clone();
            let backend = OpenAiBackend::new(settings);
            let verdict = match backend.probe().await {
                Ok(models) if models.contains(&config.llm.model) => {
                    Verdict::Healthy(format!("model {}", config.llm.model))
                }
                Ok(models) if models.is_empty() => Verdict::Degraded(format!(
                    "model {} not listed by the server",
                    config.llm.model
                )),
                Ok(models) => Verdict::Down(format!(
                    "model {} is not loaded; available: {}",
                    config.llm.model,
                    models.join(", ")
                )),
                Err(error) => Verdict::Down(error.to_string()),
            };
            HealthLine {
                name: "LLM".into(),
                url,
                required: true,
                verdict,
                unhealthy_replicas: Vec::new(),
            }
        }
    }
}

/// An orchestrator over `mesh`: asks the tool services what they offer
/// (with the orchestrator's token) and keeps built-in descriptions for tools
/// whose service did not answer.
pub async fn prepare(
    config: Arc<Config>,
    mesh: Mesh,
    llm: Arc<dyn LlmBackend>,
    spool: crate::spool::Spool,
) -> (Orchestrator, Vec<crate::discovery::Discovered>) {
    let tokens = TokenCache::new(mesh.oauth_client(config.timeouts.oauth));
    let token = own_token(&config, &tokens, Audience::Tools).await;
    let discovered = discover(&mesh, token.as_deref(), config.timeouts.tools).await;
    let specs = tool_specs(&mesh, &discovered);
    let mode = config.llm.tool_calls;
    (
        Orchestrator::new(config, mesh, llm, specs, mode, spool),
        discovered,
    )
}

/// `orchestrator health`: prints the report; non-zero if a required service is down.
pub async fn health(config: &Config) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(config).await?;
    crate::outln!("🏥 Checking service health...");
    let report = health_report(config, &mesh).await;
    crate::out!("{report}");
    if report.required_down().is_empty() {
        if report.is_degraded() {
            crate::outln!("⚠️  System would start with degraded services");
        } else {
            crate::outln!("✅ All services healthy");
        }
        Ok(exit::OK)
    } else {
        crate::outln!("❌ Required services are down: a run would refuse to start");
        Ok(exit::UNAVAILABLE)
    }
}

/// Tells running sessions to stop after their current turn: on Ctrl-C or
/// SIGTERM (announced on stderr when `announce`), or, quietly, when standard
/// output's reader goes away (`orchestrator run | head`).
fn stop_signal(announce: bool) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            () = heist_plumbing::shutdown::signal() => {
                if announce {
                    eprintln!("\n⏹  Stopping after the current turn...");
                }
            }
            () = crate::stdout::closed() => {}
        }
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Serves the metrics at `metrics.listen`, if set, until the guard drops.
async fn serve_metrics(
    config: &Config,
) -> anyhow::Result<Option<tokio::sync::oneshot::Sender<()>>> {
    let Some(address) = config.metrics_listen else {
        return Ok(None);
    };
    let listen = heist_plumbing::side_port::SideListen {
        address,
        addr_file: None,
    };
    let listener = heist_plumbing::metrics::bind(&listen, None, "heist-orchestrator").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(heist_plumbing::metrics::serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Some(stop))
}

/// `orchestrator run`: the banner, the health check, the tools, then the
/// sessions at once, their summaries and transcripts.
pub async fn run(config: Config, run: RunRequest) -> anyhow::Result<u8> {
    let config = Arc::new(config);
    let seed = run.seed.or(config.session.seed).unwrap_or_else(random_seed);
    let max_turns = run.turns.unwrap_or(config.session.max_turns);
    let sessions = run.sessions.max(1);
    let console = Console::new(run.quiet, sessions > 1);
    let llm = llm_backend(&config, seed);
    banner(&console, &config, llm.as_ref(), max_turns, sessions, seed);

    let _metrics = serve_metrics(&config).await?;
    let mesh = Mesh::connect(&config).await?;
    if !ready_to_start(&console, &config, &mesh, run.quiet).await {
        return Ok(exit::UNAVAILABLE);
    }

    let spool = open_spool(&run.spool)?;
    let (orchestrator, discovered) = prepare(config.clone(), mesh, llm, spool).await;
    for found in &discovered {
        if let Err(reason) = &found.tools {
            console.say(&format!("⚠️  Tools at {} unavailable: {reason}", found.url));
        }
    }

    let stop_rx = stop_signal(true);

    let console = Arc::new(console);
    let mut handles = Vec::new();
    for index in 0..sessions {
        let orchestrator = orchestrator.clone();
        let stop = stop_rx.clone();
        let console = console.clone();
        let session_id = new_session_id();
        console.always(&format!("Session ID: {session_id}"));
        let options = RunOptions {
            max_turns,
            seed: seed.wrapping_add(index as u64),
        };
        handles.push(tokio::spawn(async move {
            orchestrator
                .run_session(&session_id, &options, stop, console.as_ref())
                .await
        }));
    }
    console.say("");
    let mut code = exit::OK;
    let mut outcomes: Vec<SessionOutcome> = Vec::new();
    for handle in handles {
        match handle.await.context("a session task panicked")? {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                console.always(&format!("❌ {error}"));
                code = exit::UNAVAILABLE;
            }
        }
    }
    console.always(&"=".repeat(60));
    Ok(code.max(report_outcomes(
        &console,
        &outcomes,
        run.transcript.as_deref(),
    )))
}

/// What a run is about to do: the config, the LLM, turns, sessions and seed.
fn banner(
    console: &Console,
    config: &Config,
    llm: &dyn LlmBackend,
    max_turns: u64,
    sessions: usize,
    seed: u64,
) {
    console.always(&format!(
        "{}\nHeist Mesh: Integrated Multi-Agent System\n{}",
        "=".repeat(60),
        "=".repeat(60)
    ));
    console.always(&format!("Config: {}", config.source));
    if llm.is_offline() {
        console
            .always("LLM: OFFLINE (built-in deterministic responses, no language model is called)");
    } else {
        console.always(&format!("LLM: {}", llm.describe()));
    }
    console.always(&format!(
        "Turns: {max_turns} per session, sessions: {sessions}, seed: {seed}\n"
    ));
}

/// Checks the services (the report printed unless `quiet`); false, after
/// saying which, when a required one is down.
async fn ready_to_start(console: &Console, config: &Config, mesh: &Mesh, quiet: bool) -> bool {
    console.say("🏥 Checking service health...");
    let report = health_report(config, mesh).await;
    if !quiet {
        crate::out!("{report}");
    }
    let down = report.required_down();
    if !down.is_empty() {
        let names: Vec<_> = down.iter().map(|line| line.name.as_str()).collect();
        console.always(&format!(
            "❌ Cannot start: required services are down: {}. Start them (scripts/start_services.sh) and retry.",
            names.join(", ")
        ));
        return false;
    }
    if report.is_degraded() {
        console.say("⚠️  System starting with degraded services");
    }
    true
}

/// Prints each session's summary and writes its transcript (to `transcript`,
/// suffixed with the session ID when there are several); the exit code
/// their endings (and the transcripts) call for.
fn report_outcomes(
    console: &Console,
    outcomes: &[SessionOutcome],
    transcript: Option<&std::path::Path>,
) -> u8 {
    let mut code = exit::OK;
    for outcome in outcomes {
        console.summary(outcome);
        code = code.max(outcome.status.exit_code());
        if let Some(path) = transcript {
            let path = if outcomes.len() > 1 {
                with_suffix(path, &outcome.session_id)
            } else {
                path.to_owned()
            };
            match transcript::write(&path, outcome) {
                Ok(written) => {
                    for file in written {
                        console.always(&format!("📝 Transcript: {}", file.display()));
                    }
                }
                Err(error) => {
                    console.always(&format!("❌ Cannot write the transcript: {error}"));
                    code = code.max(exit::FAILED);
                }
            }
        }
    }
    code
}

/// `run.json` + `heist_x` -> `run-heist_x.json`.
fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    crate::turn_order::mix(nanos ^ u64::from(std::process::id()))
}

fn status_name(value: i32) -> &'static str {
    match SessionStatus::try_from(value) {
        Ok(SessionStatus::Active) => "active",
        Ok(SessionStatus::Completed) => "completed",
        Ok(SessionStatus::Failed) => "failed",
        Ok(SessionStatus::Interrupted) => "interrupted",
        _ => "unknown",
    }
}

/// A `sessions list` status filter that names no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; use active, completed, failed or interrupted")]
pub struct UnknownStatus(String);

/// Parses a status filter for `sessions list`.
pub fn parse_status(text: &str) -> Result<SessionStatus, UnknownStatus> {
    match text.to_ascii_lowercase().as_str() {
        "active" => Ok(SessionStatus::Active),
        "completed" => Ok(SessionStatus::Completed),
        "failed" => Ok(SessionStatus::Failed),
        "interrupted" => Ok(SessionStatus::Interrupted),
        other => Err(UnknownStatus(other.to_owned())),
    }
}

async fn audit_reader(config: &Config) -> anyhow::Result<(Mesh, String)> {
    let mesh = Mesh::connect(config).await?;
    let tokens = TokenCache::new(mesh.oauth_client(config.timeouts.oauth));
    let token = own_token(config, &tokens, Audience::Audit)
        .await
        .context("cannot get a token from OAuth to read the audit trail (is OAuth running?)")?;
    Ok((mesh, token))
}

/// `orchestrator sessions list`.
pub async fn sessions_list(
    config: &Config,
    status: Option<SessionStatus>,
    limit: usize,
) -> anyhow::Result<u8> {
    let (mesh, token) = audit_reader(config).await?;
    let replicas = mesh.replica_count(AUDIT);
    let mut sessions = Vec::new();
    let mut page_token = String::new();
    while sessions.len() < limit {
        let list = ListSessionsRequest {
            status: status.map_or(0, |status| status as i32),
            page_size: i32::try_from(limit.min(1000)).unwrap_or(1000),
            page_token,
        };
        let page = read_across(
            replicas,
            &list,
            Some(&token),
            config.timeouts.audit,
            |list| {
                let mut audit = mesh.audit.clone();
                async move { Ok(audit.list_sessions(list).await?.into_inner()) }
            },
        )
        .await
        .context("cannot list sessions from Audit")?;
        sessions.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    sessions.truncate(limit);
    let listed_crashed = sessions.iter().any(|session| {
        session.status == SessionStatus::Active as i32
            && crate::liveness::owner_is_gone(&session.metadata)
    });
    if sessions.is_empty() {
        crate::outln!("No sessions.");
        return Ok(exit::OK);
    }
    crate::outln!(
        "{:<28} {:<12} {:>6} {:>9} {:>6}  STARTED",
        "SESSION",
        "STATUS",
        "TURNS",
        "MESSAGES",
        "TOOLS"
    );
    for session in sessions {
        let status = match status_name(session.status) {
            "active" if crate::liveness::owner_is_gone(&session.metadata) => "interrupted*",
            other => other,
        };
        crate::outln!(
            "{:<28} {:<12} {:>6} {:>9} {:>6}  {}",
            session.session_id,
            status,
            session.num_turns,
            session.message_count,
            session.tool_usage_count,
            session.start_time
        );
    }
    if listed_crashed {
        crate::outln!(
            "* left active by an orchestrator that crashed; continue it with `orchestrator resume ID`"
        );
    }
    Ok(exit::OK)
}

/// `orchestrator sessions show ID`.
pub async fn sessions_show(config: &Config, session_id: &str) -> anyhow::Result<u8> {
    let (mesh, token) = audit_reader(config).await?;
    let Some(session) = read_session(&mesh, &token, config, session_id).await? else {
        return Ok(exit::FAILED);
    };
    crate::outln!(
        "Session {} ({}), {} turns, started {}{}, created by {}",
        session.session_id,
        status_name(session.status),
        session.num_turns,
        session.start_time,
        if session.end_time.is_empty() {
            String::new()
        } else {
            format!(", ended {}", session.end_time)
        },
        writer_name(&session.written_by)
    );
    match verify_in_audit(&mesh, &token, config, session_id).await {
        Ok(verdict) => crate::outln!("Integrity: {verdict}"),
        Err(status) => crate::outln!("Integrity: Audit cannot say ({})", status.message()),
    }
    print_session_usage(&mesh, &token, config, session_id).await;
    let trail = session_trail(
        &mesh.audit,
        mesh.replica_count(AUDIT),
        &token,
        config.timeouts.audit,
        session_id,
    )
    .await?;
    for StoredTurn { turn, written_by } in trail {
        crate::outln!(
            "\n[Turn {}] {} ({}), written by {}:",
            turn.turn,
            turn.role,
            turn.agent,
            writer_name(&written_by)
        );
        for call in &turn.tool_calls {
            let mark = if call.success { "🛠️ " } else { "⚠️ " };
            let first = call.result.lines().next().unwrap_or_default();
            crate::outln!("  {mark} {} {} -> {first}", call.tool, call.params);
        }
        let marker = if turn.is_error { "(error) " } else { "" };
        crate::outln!("  {marker}{}", turn.message);
    }
    Ok(exit::OK)
}

/// `orchestrator sessions verify ID`: Audit's verdict on the session's
/// hash chain and signed checkpoints, one line; exit 0 intact or unchained,
/// [`exit::TAMPERED`] tampered, [`exit::NOT_FOUND`] for a session Audit
/// does not have, [`exit::UNAVAILABLE`] when OAuth or Audit cannot answer.
pub async fn sessions_verify(config: &Config, session_id: &str) -> anyhow::Result<u8> {
    let (mesh, token) = match audit_reader(config).await {
        Ok(reader) => reader,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    match verify_in_audit(&mesh, &token, config, session_id).await {
        Ok(verdict) => {
            crate::outln!("{verdict}");
            Ok(if verdict.is_tampered() {
                exit::TAMPERED
            } else {
                exit::OK
            })
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!(
                "error: no session {session_id:?} in Audit (see `orchestrator sessions list`)"
            );
            Ok(exit::NOT_FOUND)
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            eprintln!(
                "error: {session_id:?} cannot be a session ID: {}",
                status.message()
            );
            Ok(exit::NOT_FOUND)
        }
        Err(status) => {
            eprintln!(
                "error: cannot verify the session in Audit ({}): {}",
                heist_plumbing::status::code_name(status.code()),
                status.message()
            );
            Ok(exit::UNAVAILABLE)
        }
    }
}

/// Audit's `VerifySession` verdict on `session_id`, from the first of its
/// replicas that is not gone.
async fn verify_in_audit(
    mesh: &Mesh,
    token: &str,
    config: &Config,
    session_id: &str,
) -> Result<SessionVerification, tonic::Status> {
    let verify = VerifySessionRequest {
        session_id: session_id.to_owned(),
    };
    let replicas = mesh.replica_count(AUDIT);
    read_across(
        replicas,
        &verify,
        Some(token),
        config.timeouts.audit,
        |verify| {
            let mut audit = mesh.audit.clone();
            async move { Ok(audit.verify_session(verify).await?.into_inner()) }
        },
    )
    .await
}

/// Prints the session's token usage as Audit sums it (`GetSessionUsage`),
/// or why Audit could not say (the turns are printed all the same).
async fn print_session_usage(mesh: &Mesh, token: &str, config: &Config, session_id: &str) {
    let get = GetSessionUsageRequest {
        session_id: session_id.to_owned(),
    };
    let replicas = mesh.replica_count(AUDIT);
    let read = read_across(replicas, &get, Some(token), config.timeouts.audit, |get| {
        let mut audit = mesh.audit.clone();
        async move { Ok(audit.get_session_usage(get).await?.into_inner()) }
    });
    match read.await {
        Ok(usage) => {
            for line in SessionTokens::from_audit(&usage).lines() {
                crate::outln!("{line}");
            }
        }
        Err(status) => crate::outln!("Tokens: Audit cannot say ({})", status.message()),
    }
}

/// `orchestrator tools`.
pub async fn tools(config: &Config) -> anyhow::Result<u8> {
    let mesh = Mesh::connect(config).await?;
    let tokens = TokenCache::new(mesh.oauth_client(config.timeouts.oauth));
    let token = own_token(config, &tokens, Audience::Tools).await;
    let mut code = exit::OK;
    for found in discover(&mesh, token.as_deref(), config.timeouts.tools).await {
        match &found.tools {
            Ok(tools) => {
                crate::outln!("✅ {}", found.url);
                for tool in tools {
                    let scope = found
                        .scopes
                        .get(&tool.name)
                        .map(String::as_str)
                        .unwrap_or("?");
                    crate::outln!(
                        "   {:<15} scope {:<20} argument {:<11} {}",
                        tool.name,
                        scope,
                        tool.primary_argument,
                        tool.description.lines().next().unwrap_or_default()
                    );
                }
            }
            Err(reason) => {
                crate::outln!("❌ {}: {reason}", found.url);
                code = exit::UNAVAILABLE;
            }
        }
    }
    Ok(code)
}

/// The client that wrote an Audit row, or a note for rows from before writers were recorded.
fn writer_name(written_by: &str) -> &str {
    if written_by.is_empty() {
        "(not recorded)"
    } else {
        written_by
    }
}

/// How long a resume waits for Audit to take the writes of the session
/// that a crashed run left in the spool.
const RESUME_SPOOL_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Session `session_id` as Audit has it, if it can be resumed: `None`
/// (said on stdout) when Audit has no such session or it is not active.
async fn resumable_session(
    mesh: &Mesh,
    token: &str,
    config: &Config,
    session_id: &str,
) -> anyhow::Result<Option<heist_proto::v1::Session>> {
    let Some(session) = read_session(mesh, token, config, session_id).await? else {
        return Ok(None);
    };
    if session.status != SessionStatus::Active as i32 {
        crate::outln!(
            "❌ Session {session_id} is {}: only a session left active by a crash can be resumed.",
            status_name(session.status)
        );
        return Ok(None);
    }
    Ok(Some(session))
}

/// Reads a session from Audit; `Ok(None)` (after saying so) when Audit has
/// no such session.
async fn read_session(
    mesh: &Mesh,
    token: &str,
    config: &Config,
    session_id: &str,
) -> anyhow::Result<Option<heist_proto::v1::Session>> {
    let get = GetSessionRequest {
        session_id: session_id.to_owned(),
    };
    let replicas = mesh.replica_count(AUDIT);
    let read = read_across(replicas, &get, Some(token), config.timeouts.audit, |get| {
        let mut audit = mesh.audit.clone();
        async move { Ok(audit.get_session(get).await?.into_inner()) }
    });
    match read.await {
        Ok(session) => Ok(Some(session)),
        Err(status) if status.code() == tonic::Code::NotFound => {
            crate::outln!(
                "❌ No session {session_id:?} in Audit (see `orchestrator sessions list`)."
            );
            Ok(None)
        }
        Err(status) => anyhow::bail!("cannot read the session from Audit: {}", status.message()),
    }
}

/// `orchestrator resume ID`: replays what the spool holds of the session
/// (the turns a crashed run could not deliver), then rebuilds the session
/// from Audit (its messages, turn counter, last speaker, seed) and runs it
/// on to its `max_turns`.
pub async fn resume(
    config: Config,
    session_id: &str,
    quiet: bool,
    spool_path: &std::path::Path,
) -> anyhow::Result<u8> {
    let config = Arc::new(config);
    let (mesh, token) = audit_reader(&config).await?;
    let Some(session) = resumable_session(&mesh, &token, &config, session_id).await? else {
        return Ok(exit::FAILED);
    };
    let metadata: serde_json::Value = serde_json::from_str(&session.metadata).unwrap_or_default();
    if let Some(pid) = metadata.get("pid").and_then(serde_json::Value::as_u64)
        && !crate::liveness::owner_is_gone(&session.metadata)
        && metadata.get("host").and_then(serde_json::Value::as_str)
            == Some(crate::liveness::host_name().as_str())
    {
        crate::outln!("❌ Session {session_id} is still running (orchestrator pid {pid}).");
        return Ok(exit::FAILED);
    }
    let seed = metadata
        .get("seed")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let max_turns = metadata
        .get("max_turns")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(config.session.max_turns);
    let console = Console::new(quiet, false);
    let spool = open_spool(spool_path)?;
    if let Some(theirs) = metadata.get("spool").and_then(serde_json::Value::as_str) {
        let ours = std::path::absolute(spool.path()).unwrap_or_else(|_| spool.path().to_owned());
        if std::path::Path::new(theirs) != ours {
            console.always(&format!(
                "⚠️  The session's first run spooled to {theirs}; this resume replays {} (pass --spool {theirs} to replay that one)",
                ours.display()
            ));
        }
    }
    let llm = llm_backend(&config, seed);
    let (orchestrator, _) = prepare(config.clone(), mesh.clone(), llm, spool).await;
    // The spool first: turns the crashed run spooled go to Audit before
    // Audit is asked where the session stands, or they would be spoken again.
    match orchestrator
        .settle_spool(session_id, RESUME_SPOOL_LIMIT)
        .await
    {
        Ok(0) => {}
        Ok(replayed) => console.always(&format!(
            "📤 Replayed {replayed} spooled writes of {session_id} into Audit"
        )),
        Err(left) => anyhow::bail!(
            "the spool still holds {left} writes of {session_id} that Audit did not take within {RESUME_SPOOL_LIMIT:?}; resume again once Audit is back"
        ),
    }
    // The replay may have ended the session (a run that spooled its end).
    if resumable_session(&mesh, &token, &config, session_id)
        .await?
        .is_none()
    {
        return Ok(exit::FAILED);
    }
    let history: Vec<TurnRecord> = session_trail(
        &mesh.audit,
        mesh.replica_count(AUDIT),
        &token,
        config.timeouts.audit,
        session_id,
    )
    .await?
    .into_iter()
    .map(|stored| stored.turn)
    .collect();
    console.always(&format!(
        "⏯  Resuming {session_id}: {} of {max_turns} turns stored, seed {seed}",
        history.len()
    ));
    let stop_rx = stop_signal(false);
    let outcome = orchestrator
        .continue_session(
            session_id,
            &RunOptions { max_turns, seed },
            history,
            stop_rx,
            &console,
        )
        .await?;
    console.summary(&outcome);
    Ok(outcome.status.exit_code())
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::*;

    #[test]
    fn a_transcript_of_several_sessions_is_named_after_each() {
        assert_eq!(
            with_suffix(Path::new("out/run.json"), "heist_x"),
            Path::new("out/run-heist_x.json")
        );
        assert_eq!(
            with_suffix(Path::new("run"), "heist_x"),
            Path::new("run-heist_x")
        );
    }

    #[test]
    fn a_status_filter_names_a_status_in_any_case() {
        assert_eq!(parse_status("active"), Ok(SessionStatus::Active));
        assert_eq!(parse_status("Completed"), Ok(SessionStatus::Completed));
        assert_eq!(parse_status("FAILED"), Ok(SessionStatus::Failed));
        assert_eq!(parse_status("interrupted"), Ok(SessionStatus::Interrupted));
    }

    #[test]
    fn an_unknown_status_filter_says_which_there_are() {
        let error = parse_status("Done").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown status \"done\"; use active, completed, failed or interrupted"
        );
    }

    #[test]
    fn statuses_are_named_and_unknown_ones_said_so() {
        assert_eq!(status_name(SessionStatus::Active as i32), "active");
        assert_eq!(status_name(SessionStatus::Completed as i32), "completed");
        assert_eq!(status_name(SessionStatus::Failed as i32), "failed");
        assert_eq!(
            status_name(SessionStatus::Interrupted as i32),
            "interrupted"
        );
        assert_eq!(status_name(99), "unknown");
    }

    #[test]
    fn a_row_without_its_writer_says_so() {
        assert_eq!(writer_name(""), "(not recorded)");
        assert_eq!(writer_name("orchestrator"), "orchestrator");
    }

    #[test]
    fn the_openai_settings_take_the_config_and_the_callers_timeout_and_retries() {
        let mut config = Config::default_config();
        config.llm.base_url = Some("http://127.0.0.1:1234/v1".to_owned());
        let probe = openai_settings(&config, Duration::from_secs(3), 0);
        assert_eq!(probe.base_url, "http://127.0.0.1:1234/v1");
        assert_eq!(probe.model, config.llm.model);
        assert_eq!(probe.timeout, Duration::from_secs(3));
        assert_eq!(probe.retries, 0);
        let run = openai_settings(&config, config.llm.timeout, config.llm.retries);
        assert_eq!(run.timeout, config.llm.timeout);
        assert_eq!(run.retries, config.llm.retries);
        assert_eq!(run.temperature, config.llm.temperature);
        assert_eq!(run.max_tokens, config.llm.max_tokens);
    }
}
