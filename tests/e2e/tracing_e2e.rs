//! Tracing across the mesh, proven on the five real binaries (OAuth, Audit,
//! Memory, one Tool process hosting all three tools, and the orchestrator),
//! each exporting over OTLP/gRPC to a receiver inside this test.
//!
//! The design under test: one trace per session, rooted at the
//! orchestrator's `invoke_workflow heist` span; every client call's server span is the
//! child of that client span, in the service that handled it; every span of
//! the session carries `session.id`. Work that spans sessions (Audit's group
//! commit) is a trace of its own that links every request span it commits;
//! start-up work outside any session (the orchestrator's first token, tool
//! discovery, key fetches, revocation polls) makes small traces of its own.
//! So the session's spans are the spans of the session's trace.
//!
//! Tests run one at a time (they start whole meshes on 2 cores, and one of
//! them measures wall time).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, binary, mesh::config_yaml, wait_until_serving};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tempfile::TempDir;

use crate::genai_spans::{TRANSCRIPT_ARGS, Transcript};
use tokio::net::TcpListener;

use crate::otlp_collector::{Collected, Collector};

/// The services every session crosses, by `service.name`.
const SERVICES: [&str; 5] = [
    "heist-orchestrator",
    "heist-oauth",
    "heist-audit",
    "heist-memory",
    "heist-tools",
];

/// The services' log filter: INFO, and a `call served` line per call.
const SERVICE_LOG: &str = "info,heist_plumbing::server=debug";

/// The span field that names the session in log lines.
const SESSION_FIELD: &str = "session.id";

/// How long one orchestrator run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How much slower a run exporting to a closed port may be than an untraced
/// one: the issue's "a second or two". Measured: about 0.2 s (the exporter's
/// two quick retries at exit); the rest is room for a noisy shared machine.
/// A real stall (the SDK's default retries, a flush waiting out its 3 s
/// timeout) fails it.
const CLOSED_PORT_ALLOWANCE: Duration = Duration::from_secs(2);

/// Whole meshes run one at a time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------- processes

/// The four services of the mesh, each a real binary.
pub(crate) struct Services {
    oauth: ServiceProcess,
    audit: ServiceProcess,
    memory: ServiceProcess,
    tools: ServiceProcess,
}

impl Services {
    /// Starts every service in `dir` with `env`; waits until each is SERVING.
    pub(crate) async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let start = |name: &str, args: &[&str]| {
            let args: Vec<&str> = args.iter().copied().chain(["--log", SERVICE_LOG]).collect();
            ServiceProcess::start_with_env(&binary(name), &args, "127.0.0.1:0", dir, env).unwrap()
        };
        let oauth = start(
            "heist-oauth",
            &[
                "--key-file",
                "signing.key",
                "--revocations-file",
                "revoked.log",
            ],
        );
        let oauth_url = format!("http://{}", oauth.addr);
        let audit = start(
            "heist-audit",
            &["--db", "audit.db", "--oauth-url", &oauth_url],
        );
        let memory = start("heist-memory", &["--oauth-url", &oauth_url]);
        let tools = start(
            "heist-tools",
            &[
                "--intel-db",
                "intel.db",
                "--oauth-url",
                &oauth_url,
                "--documents-dir",
                &heist_e2e::documents_dir().to_string_lossy(),
            ],
        );
        let services = Self {
            oauth,
            audit,
            memory,
            tools,
        };
        for process in services.all() {
            if let Err(error) = wait_until_serving(process.addr, "").await {
                panic!("{error}\n{}", services.logs());
            }
        }
        services
    }

    fn all(&self) -> [&ServiceProcess; 4] {
        [&self.oauth, &self.audit, &self.memory, &self.tools]
    }

    /// The orchestrator config pointing at these services.
    pub(crate) fn config(&self) -> String {
        let url = |process: &ServiceProcess| format!("http://{}", process.addr);
        config_yaml(
            &url(&self.oauth),
            &url(&self.tools),
            &url(&self.memory),
            &url(&self.audit),
        )
    }

    /// SIGTERM to each (they flush their spans on the way out); all must
    /// exit cleanly.
    pub(crate) fn terminate(mut self) {
        let logs = self.logs();
        for process in [
            &mut self.tools,
            &mut self.memory,
            &mut self.audit,
            &mut self.oauth,
        ] {
            let status = process.terminate().unwrap();
            assert!(status.success(), "{status}\n{logs}");
        }
    }

    fn log(process: &ServiceProcess) -> String {
        std::fs::read_to_string(&process.log).unwrap_or_default()
    }

    /// Each service's log file and text.
    fn log_texts(&self) -> Vec<(String, String)> {
        self.all()
            .iter()
            .map(|process| (process.log.display().to_string(), Self::log(process)))
            .collect()
    }

    fn logs(&self) -> String {
        self.all()
            .iter()
            .map(|process| format!("--- {}\n{}", process.log.display(), Self::log(process)))
            .collect()
    }
}

/// What one orchestrator run printed, how it exited and how long it took.
pub(crate) struct Run {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) status: ExitStatus,
    elapsed: Duration,
}

impl Run {
    /// The session ID the orchestrator announced (`Session ID: heist_...`).
    pub(crate) fn session_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix("Session ID: "))
            .map(|id| id.trim().to_owned())
            .unwrap_or_else(|| panic!("no session ID in:\n{}", self.stdout))
    }

    pub(crate) fn shown(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `orchestrator --config CONFIG run --turns 6 --seed 7` in `dir` with
/// `env`, off the async runtime, killing it if it outlives [`RUN_TIMEOUT`].
async fn run_orchestrator(dir: &Path, config: &str, env: &[(&str, &str)]) -> Run {
    run_orchestrator_with(dir, config, env, &[]).await
}

/// Like [`run_orchestrator`], with more `run` arguments (e.g. `--llm-url`).
pub(crate) async fn run_orchestrator_with(
    dir: &Path,
    config: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Run {
    let dir = dir.to_owned();
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let stdout_path = dir.join("orchestrator.out");
        let stderr_path = dir.join("orchestrator.err");
        let started = Instant::now();
        let mut child = Command::new(binary("orchestrator"))
            .args(["--config", &config, "run", "--turns", "6", "--seed", "7"])
            .args(&args)
            .current_dir(&dir)
            .env_remove("HEIST_CONFIG")
            .env_remove("HEIST_LLM_URL")
            .env_remove("HEIST_LLM_MODEL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env("NO_COLOR", "1")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the orchestrator did not finish within {RUN_TIMEOUT:?}; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Run {
            elapsed: started.elapsed(),
            status,
            stdout: std::fs::read_to_string(&stdout_path).unwrap(),
            stderr: std::fs::read_to_string(&stderr_path).unwrap(),
        }
    })
    .await
    .unwrap()
}

/// An address nothing listens on (a port bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------- the session's trace

/// The spans of one session: its trace, and everything else received.
pub(crate) struct SessionTrace {
    pub(crate) session_id: String,
    pub(crate) all: Vec<Collected>,
    pub(crate) trace: Vec<Collected>,
    pub(crate) root: Collected,
}

impl SessionTrace {
    /// Finds the orchestrator's `invoke_workflow heist` span for
    /// `session_id` and keeps the spans of its trace.
    pub(crate) fn of(session_id: &str, all: Vec<Collected>) -> Self {
        let root = all
            .iter()
            .find(|span| {
                span.service == "heist-orchestrator"
                    && span.span.name == "invoke_workflow heist"
                    && span.attr("session.id").as_deref() == Some(session_id)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no session span for {session_id}"));
        let trace = all
            .iter()
            .filter(|span| span.span.trace_id == root.span.trace_id)
            .cloned()
            .collect();
        Self {
            session_id: session_id.to_owned(),
            all,
            trace,
            root,
        }
    }

    fn by_id(&self) -> HashMap<&[u8], &Collected> {
        self.trace
            .iter()
            .map(|span| (span.span.span_id.as_slice(), span))
            .collect()
    }

    pub(crate) fn parent_of(&self, span: &Collected) -> Option<&Collected> {
        self.trace
            .iter()
            .find(|candidate| candidate.span.span_id == span.span.parent_span_id)
    }

    pub(crate) fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Collected> + 'a {
        self.trace.iter().filter(move |span| span.span.name == name)
    }

    /// The orchestrator's GenAI spans of one `gen_ai.operation.name`.
    pub(crate) fn operation<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Collected> + 'a {
        self.trace.iter().filter(move |span| {
            span.service == "heist-orchestrator"
                && span.attr("gen_ai.operation.name").as_deref() == Some(name)
        })
    }
}

/// A config whose mole has no `database_query:use` scope: its query is
/// refused with PERMISSION_DENIED, deterministically.
pub(crate) fn with_scopeless_mole(config: &str) -> String {
    let scoped = r#"oauth_scopes: ["database_query:use"]"#;
    assert_eq!(config.matches(scoped).count(), 1, "the mole's scopes moved");
    config.replace(scoped, r#"oauth_scopes: ["simulation:read"]"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_is_one_trace_across_all_five_processes() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    let collector = Collector::start().await;
    let endpoint = collector.url();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("NO_COLOR", "1"),
    ];
    let services = Services::start(dir.path(), &env).await;
    std::fs::write(
        dir.path().join("mesh.yaml"),
        with_scopeless_mole(&services.config()),
    )
    .unwrap();

    let run = run_orchestrator_with(dir.path(), "mesh.yaml", &env, &TRANSCRIPT_ARGS).await;
    assert!(run.status.success(), "{}", run.shown());
    let session_id = run.session_id();
    let logs = services.log_texts();
    services.terminate();
    let transcript = Transcript::read(dir.path());

    let session = SessionTrace::of(&session_id, collector.spans());
    spans_arrive_from_all_five_services(&session);
    the_session_is_one_trace_with_one_root(&session);
    every_server_span_is_the_child_of_the_client_span_that_called_it(&session);
    every_span_of_the_session_carries_its_id(&session);
    the_span_tree_has_the_designed_shape(&session);
    the_refused_tool_call_is_an_error_at_every_hop(&session);
    audit_commits_link_every_write_they_commit(&session);
    health_checks_and_reflection_make_no_spans(&session);
    service_log_lines_name_the_session(&session_id, &logs);
    crate::genai_spans::the_genai_spans_follow_the_conventions(&session, &transcript);
    crate::genai_spans::no_message_content_is_exported_by_default(&session, &transcript);
}

fn spans_arrive_from_all_five_services(session: &SessionTrace) {
    let in_trace: BTreeSet<&str> = session
        .trace
        .iter()
        .map(|span| span.service.as_str())
        .collect();
    assert_eq!(
        in_trace,
        SERVICES.into_iter().collect(),
        "services in the session's trace"
    );
}

fn the_session_is_one_trace_with_one_root(session: &SessionTrace) {
    let roots: Vec<String> = session
        .trace
        .iter()
        .filter(|span| span.span.parent_span_id.is_empty())
        .map(Collected::describe)
        .collect();
    assert_eq!(
        roots,
        ["heist-orchestrator invoke_workflow heist (Internal)"],
        "exactly one root: the session span"
    );
    let by_id = session.by_id();
    for span in &session.trace {
        if !span.span.parent_span_id.is_empty() {
            assert!(
                by_id.contains_key(span.span.parent_span_id.as_slice()),
                "{} is an orphan: its parent is not in the trace",
                span.describe()
            );
        }
    }
    // Every span that names the session is in the session's trace.
    for span in &session.all {
        if span.attr("session.id").as_deref() == Some(session.session_id.as_str()) {
            assert_eq!(
                span.span.trace_id,
                session.root.span.trace_id,
                "{} names the session but is in another trace",
                span.describe()
            );
        }
    }
}

fn every_server_span_is_the_child_of_the_client_span_that_called_it(session: &SessionTrace) {
    let servers: Vec<&Collected> = session
        .trace
        .iter()
        .filter(|span| span.kind() == SpanKind::Server)
        .collect();
    assert!(servers.len() >= 20, "only {} server spans", servers.len());
    for server in servers {
        let client = session
            .parent_of(server)
            .unwrap_or_else(|| panic!("{} has no parent", server.describe()));
        assert_eq!(
            client.kind(),
            SpanKind::Client,
            "{} is parented on {}",
            server.describe(),
            client.describe()
        );
        assert_ne!(client.service, server.service, "{}", server.describe());
        for key in ["rpc.system", "rpc.service", "rpc.method"] {
            assert!(
                server.attr(key).is_some(),
                "{} lacks {key}",
                server.describe()
            );
            assert_eq!(
                client.attr(key),
                server.attr(key),
                "{key} of {} and its client",
                server.describe()
            );
        }
        assert_eq!(
            client.attr("rpc.grpc.status_code"),
            server.attr("rpc.grpc.status_code"),
            "status of {}",
            server.describe()
        );
    }
}

fn every_span_of_the_session_carries_its_id(session: &SessionTrace) {
    for span in &session.trace {
        assert_eq!(
            span.attr("session.id").as_deref(),
            Some(session.session_id.as_str()),
            "{} lacks session.id",
            span.describe()
        );
    }
}

fn the_span_tree_has_the_designed_shape(session: &SessionTrace) {
    let turns: Vec<&Collected> = session.operation("invoke_agent").collect();
    assert_eq!(turns.len(), 6, "one invoke_agent span per turn");
    for turn in &turns {
        assert_eq!(
            session.parent_of(turn).unwrap().span.span_id,
            session.root.span.span_id
        );
        for key in ["agent.name", "agent.role", "turn.id"] {
            assert!(turn.attr(key).is_some(), "turn lacks {key}");
        }
    }
    let under_a_turn = |operation: &str| {
        let spans: Vec<&Collected> = session.operation(operation).collect();
        assert!(!spans.is_empty(), "no {operation} span");
        for span in spans {
            let parent = session.parent_of(span).unwrap();
            assert_eq!(
                parent.attr("gen_ai.operation.name").as_deref(),
                Some("invoke_agent"),
                "{} under {}",
                span.describe(),
                parent.describe()
            );
        }
    };
    under_a_turn("chat");
    under_a_turn("execute_tool");
    // Each service's own work hangs under its server span.
    for (service, name) in [
        ("heist-oauth", "oauth.authenticate_and_sign"),
        ("heist-tools", "tool.work"),
        ("heist-audit", "store_turn"),
        ("heist-memory", "store_memory"),
    ] {
        let span = session
            .trace
            .iter()
            .find(|span| span.service == service && span.span.name == name)
            .unwrap_or_else(|| panic!("no {name} span from {service}"));
        let ancestor_is_server =
            std::iter::successors(session.parent_of(span), |span| session.parent_of(span))
                .any(|ancestor| ancestor.service == service && ancestor.kind() == SpanKind::Server);
        assert!(
            ancestor_is_server,
            "{name} is not under a {service} server span"
        );
    }
    for method in [
        "StoreTurn",
        "StoreMemory",
        "GetCompressedMemory",
        "IssueToken",
        "CallTool",
    ] {
        assert!(
            session
                .trace
                .iter()
                .any(|span| span.kind() == SpanKind::Server
                    && span.attr("rpc.method").as_deref() == Some(method)),
            "no {method} server span in the session"
        );
    }
}

fn the_refused_tool_call_is_an_error_at_every_hop(session: &SessionTrace) {
    let refused = session
        .named("execute_tool database_query")
        .next()
        .expect("the mole's database_query call (seed 7 gives the mole turn 6)");
    assert!(refused.is_error(), "execute_tool is not an error");
    assert!(refused.has_exception(), "execute_tool records no exception");
    let client = session
        .trace
        .iter()
        .find(|span| {
            span.kind() == SpanKind::Client
                && span.span.parent_span_id == refused.span.span_id
                && span.attr("rpc.method").as_deref() == Some("CallTool")
        })
        .expect("the CallTool client span under execute_tool");
    let server = session
        .trace
        .iter()
        .find(|span| span.span.parent_span_id == client.span.span_id)
        .expect("the tool service's server span");
    for hop in [client, server] {
        assert!(hop.is_error(), "{} is not an error", hop.describe());
        assert!(
            hop.has_exception(),
            "{} records no exception",
            hop.describe()
        );
        assert_eq!(
            hop.attr("rpc.grpc.status_code").as_deref(),
            Some("7"),
            "{} is not PERMISSION_DENIED",
            hop.describe()
        );
    }
    // Calls that succeeded are not errors.
    for span in session
        .trace
        .iter()
        .filter(|span| span.kind() == SpanKind::Server)
    {
        if span.attr("rpc.grpc.status_code").as_deref() == Some("0") {
            assert!(!span.is_error(), "{} is an error", span.describe());
        }
    }
}

fn audit_commits_link_every_write_they_commit(session: &SessionTrace) {
    let commits: Vec<&Collected> = session
        .all
        .iter()
        .filter(|span| span.service == "heist-audit" && span.span.name == "audit.commit")
        .collect();
    assert!(!commits.is_empty(), "no audit.commit span");
    let linked: BTreeSet<&[u8]> = commits
        .iter()
        .flat_map(|commit| commit.span.links.iter())
        .map(|link| link.span_id.as_slice())
        .collect();
    for commit in &commits {
        assert!(
            commit.span.parent_span_id.is_empty(),
            "a batch spans sessions: it is a trace of its own"
        );
    }
    for write in ["CreateSession", "StoreTurn", "EndSession"] {
        let servers = session.trace.iter().filter(|span| {
            span.service == "heist-audit"
                && span.kind() == SpanKind::Server
                && span.attr("rpc.method").as_deref() == Some(write)
        });
        let mut count = 0;
        for server in servers {
            count += 1;
            let linked_below = session.trace.iter().any(|span| {
                linked.contains(span.span.span_id.as_slice())
                    && std::iter::successors(Some(span), |span| session.parent_of(span))
                        .any(|ancestor| ancestor.span.span_id == server.span.span_id)
            });
            assert!(linked_below, "no audit.commit links the {write} request");
        }
        assert!(count > 0, "no {write} call in the session");
    }
}

fn health_checks_and_reflection_make_no_spans(session: &SessionTrace) {
    for span in &session.all {
        let named = format!(
            "{} {}",
            span.span.name,
            span.attr("rpc.service").unwrap_or_default()
        );
        assert!(
            !named.contains("grpc.health") && !named.contains("grpc.reflection"),
            "{} was traced",
            span.describe()
        );
    }
}

/// Every log line a service wrote while serving a call the session made
/// names the session: each `call served` line of a method only sessions
/// call, and each token issued to an agent (agents get tokens in sessions).
fn service_log_lines_name_the_session(session_id: &str, logs: &[(String, String)]) {
    let mark = format!("{SESSION_FIELD}={session_id}");
    let session_only = [
        "rpc.method=CreateSession",
        "rpc.method=StoreTurn",
        "rpc.method=EndSession",
        "rpc.method=StoreMemory",
        "rpc.method=GetCompressedMemory",
        "rpc.method=CallTool",
        "client.id=hacker",
        "client.id=safecracker",
        "client.id=mole",
    ];
    let mut checked = 0;
    for (file, log) in logs {
        for line in log.lines() {
            if session_only.iter().any(|marker| line.contains(marker)) {
                assert!(line.contains(&mark), "{file}: no {mark} in: {line}");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} session log lines; is `call served` logged?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_logs_still_name_the_session() {
    let _serial = SERIAL.lock().await;
    // Listen where an exporter built with no endpoint would send (the OTLP
    // default, 127.0.0.1:4317), or anywhere if that port is taken (a local
    // Jaeger): either way nothing may arrive.
    let listener = match TcpListener::bind("127.0.0.1:4317").await {
        Ok(listener) => listener,
        Err(_) => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let collector = Collector::on(listener).await;
    let dir = TempDir::new().unwrap();
    // Blank for the services (blank counts as unset), unset for the orchestrator.
    let blank = [("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("NO_COLOR", "1")];
    let services = Services::start(dir.path(), &blank).await;
    std::fs::write(dir.path().join("mesh.yaml"), services.config()).unwrap();
    let run = run_orchestrator(dir.path(), "mesh.yaml", &[]).await;
    assert!(run.status.success(), "{}", run.shown());
    let logs = services.log_texts();
    services.terminate();
    assert_eq!(collector.request_count(), 0, "spans were exported");
    // Without OpenTelemetry the session still travels as baggage.
    service_log_lines_name_the_session(&run.session_id(), &logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exporting_to_a_closed_port_is_at_most_two_seconds_slower() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    let closed = closed_port_url();
    let exporting = [("OTEL_EXPORTER_OTLP_ENDPOINT", closed.as_str())];
    let services = Services::start(dir.path(), &exporting).await;
    std::fs::write(dir.path().join("mesh.yaml"), services.config()).unwrap();

    // The traced run first, so that any warm-up favours the untraced one.
    let traced = run_orchestrator(dir.path(), "mesh.yaml", &exporting).await;
    let untraced = run_orchestrator(dir.path(), "mesh.yaml", &[]).await;
    services.terminate();

    assert!(traced.status.success(), "{}", traced.shown());
    assert!(
        traced.stderr.contains("span export failed"),
        "the failed flush is not reported: {}",
        traced.shown()
    );
    assert!(untraced.status.success(), "{}", untraced.shown());
    assert!(
        traced.elapsed <= untraced.elapsed + CLOSED_PORT_ALLOWANCE,
        "exporting to a closed port took {:?}, not exporting {:?}",
        traced.elapsed,
        untraced.elapsed
    );
}
