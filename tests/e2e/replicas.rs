//! Several replicas per service (`base_urls`): calls alternate between
//! them, a stopped replica is skipped (its breaker opens, its twin's stays
//! closed) and used again once its health says SERVING, the service is down
//! only when every replica is, and `localhost` (127.0.0.1 and ::1) works
//! with one of them listening. In-process (TestMesh) and as real processes
//! (ProcessMesh, SIGKILL and restart on the same port).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_e2e::output_text as text;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    process::{Command, Output},
    sync::Arc,
    time::Duration,
};

use heist_e2e::{
    binary, dev_token,
    mesh::{Replicated, TestMesh, closed_endpoint, endpoints},
    processes::{MeshOptions, ProcessMesh},
};
use heist_orchestrator::{
    app,
    breaker_health::HealthWatcher,
    clients::{CallGuard, MemoryClient},
    config::{Config, Endpoint},
    engine::{Orchestrator, RunOptions, SessionOutcome, TurnRecord, TurnSink},
    llm::OfflineBackend,
    mesh::Mesh,
    resilience::{
        BreakerSettings, BreakerState, Breakers, MEMORY, ResilienceError, replica, tool_service,
    },
};
use heist_plumbing::auth::Audience;
use heist_proto::v1::StoreMemoryRequest;
use tempfile::TempDir;
use tokio::sync::watch;

/// The scopes the orchestrator writes Memory with.
const MEMORY_SCOPES: &str = "memory:read memory:write agents:act_for_any";

/// A fresh audit spool in its own directory (kept for the test's life).
pub(crate) fn spool() -> heist_orchestrator::spool::Spool {
    let dir = TempDir::new().unwrap().keep();
    heist_orchestrator::spool::Spool::open(dir.join("audit.spool")).unwrap()
}

/// Memory's client as the engine makes it (one attempt, a breaker per
/// replica), its breakers in `breakers`, watched by the health watcher.
struct MemoryTwins {
    client: MemoryClient,
    breakers: Breakers,
    _watch: HealthWatcher,
    token: String,
}

impl MemoryTwins {
    /// Breakers opening after two failures and staying open 10 minutes:
    /// only the health watch can close them within a test.
    async fn connect(mesh: &TestMesh) -> Self {
        let config = mesh.config();
        let clients = Mesh::connect(&config).await.unwrap();
        let breakers = Breakers::new(BreakerSettings::new(2, Duration::from_secs(600)).unwrap());
        let watch = HealthWatcher::spawn(&breakers, &clients.endpoints);
        let guard = CallGuard::once_across(
            clients.breakers_of(&breakers, MEMORY),
            Duration::from_secs(2),
        );
        let token = dev_token(mesh.oauth.addr, "orchestrator", MEMORY_SCOPES)
            .await
            .unwrap();
        Self {
            client: MemoryClient::new(clients.memory.clone(), guard),
            breakers,
            _watch: watch,
            token,
        }
    }

    /// Stores turns `turns` for the planner in `session`; the instance ID
    /// of the replica that stored each.
    async fn store(
        &self,
        session: &str,
        turns: std::ops::Range<i64>,
    ) -> Vec<Result<String, ResilienceError>> {
        let mut served = Vec::new();
        for turn_id in turns {
            let body = StoreMemoryRequest {
                agent_id: "planner".into(),
                session_id: session.into(),
                turn_id,
                message: format!("turn {turn_id}"),
                idempotency_key: String::new(),
            };
            let answer = self.client.store_memory(&body, &self.token).await;
            served.push(answer.map(|stored| stored.instance_id));
        }
        served
    }

    /// The state of the breaker of the replica at `addr`.
    fn state(&self, addr: SocketAddr) -> BreakerState {
        self.breakers
            .get(&replica(MEMORY, &addr.to_string()))
            .state()
    }
}

/// How many of `served` each instance ID stored (every call succeeded).
fn per_instance(served: &[Result<String, ResilienceError>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in served {
        let instance = answer.as_ref().unwrap_or_else(|error| panic!("{error}"));
        *counts.entry(instance.clone()).or_default() += 1;
    }
    counts
}

/// Waits (up to 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_alternate_between_two_memory_replicas_and_skip_a_stopped_one_until_it_serves_again()
{
    let mut mesh = TestMesh::builder()
        .replicas(Replicated::Memory, 2)
        .start()
        .await;
    let [first, second] =
        <[SocketAddr; 2]>::try_from(mesh.replica_addrs(Replicated::Memory)).unwrap();
    let twins = MemoryTwins::connect(&mesh).await;

    // Both up: the calls alternate, five each.
    let served = per_instance(&twins.store("heist_twins", 0..10).await);
    assert_eq!(
        served.values().copied().collect::<Vec<_>>(),
        [5, 5],
        "{served:?}"
    );

    // The second stopped: every call still succeeds, on the first.
    let stopped = mesh
        .replicas
        .get_mut(&Replicated::Memory)
        .unwrap()
        .remove(0);
    stopped.stop().await.unwrap();
    let served_alone = per_instance(&twins.store("heist_twins", 10..20).await);
    assert_eq!(
        served_alone.len(),
        1,
        "one replica served: {served_alone:?}"
    );
    let survivor = served_alone.keys().next().unwrap().clone();
    assert_eq!(served_alone[&survivor], 10);
    assert!(served.contains_key(&survivor));
    assert_eq!(twins.state(second), BreakerState::Open);
    assert_eq!(twins.state(first), BreakerState::Closed);

    // Back on its port: its breaker closes on health SERVING (its open
    // period is 10 minutes) and it gets calls again.
    let back = mesh.start_replica(Replicated::Memory, Some(second)).await;
    eventually("the restarted replica's breaker closes", || {
        twins.state(second) == BreakerState::Closed
    })
    .await;
    let served_again = per_instance(&twins.store("heist_twins", 20..30).await);
    assert_eq!(served_again.len(), 2, "{served_again:?}");
    assert_eq!(served_again[&survivor], 5);
    let restarted = served_again.keys().find(|id| **id != survivor).unwrap();
    assert!(
        !served.contains_key(restarted),
        "a new instance: {restarted}"
    );
    let closed_by = twins
        .breakers
        .history()
        .into_iter()
        .rev()
        .find(|event| event.service == replica(MEMORY, &second.to_string()))
        .unwrap();
    assert_eq!(closed_by.to, BreakerState::Closed);
    assert_eq!(closed_by.reason.to_string(), "health check says SERVING");

    // Both down: the service is down, every call refused once both
    // breakers are open.
    back.stop().await.unwrap();
    mesh.memory.begin_stop();
    let mut turn = 30;
    eventually_async("every replica's breaker opens", || {
        turn += 1;
        let twins = &twins;
        async move {
            let outcome = twins.store("heist_twins", turn..turn + 1).await;
            matches!(outcome.as_slice(), [Err(ResilienceError::BreakerOpen(_))])
        }
    })
    .await;
    assert_eq!(twins.state(first), BreakerState::Open);
    assert_eq!(twins.state(second), BreakerState::Open);
}

/// Waits (up to 10 s) until `check` answers true.
async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reports nothing.
struct Quiet;

impl TurnSink for Quiet {
    fn turn(&self, _session_id: &str, _record: &TurnRecord) {}
}

/// Runs one offline session of `turns` turns on `orchestrator`.
pub(crate) async fn session(orchestrator: &Orchestrator, id: &str, turns: u64) -> SessionOutcome {
    let (_stop, stop) = watch::channel(false);
    orchestrator
        .run_session(
            id,
            &RunOptions {
                max_turns: turns,
                seed: 11,
            },
            stop,
            &Quiet,
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_audit_replicas_on_one_database_share_a_session_and_its_twin_takes_over() {
    let mut mesh = TestMesh::builder()
        .replicas(Replicated::Audit, 2)
        .start()
        .await;
    let config = Arc::new(mesh.config());
    assert_eq!(config.audit.len(), 2);
    let clients = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(2)), spool()).await;
    let first = session(&orchestrator, "heist_20261201_120000_ad01", 10).await;
    assert_eq!((first.audit_failures, first.audit_spooled), (0, 0));
    // The second replica stopped: the next session is stored by the first.
    let second = mesh.replicas.get_mut(&Replicated::Audit).unwrap().remove(0);
    second.stop().await.unwrap();
    let outcome = session(&orchestrator, "heist_20261201_120000_ad02", 10).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!((outcome.audit_failures, outcome.audit_spooled), (0, 0));
    for id in ["heist_20261201_120000_ad01", "heist_20261201_120000_ad02"] {
        let trail = heist_e2e::audit_trail(mesh.oauth.addr, mesh.audit.addr, id).await;
        let turns: Vec<i64> = trail
            .messages
            .iter()
            .map(|message| message.turn_id)
            .filter(|turn| *turn > 0)
            .collect();
        assert_eq!(turns, (1..=10).collect::<Vec<i64>>(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_memory_replica_down_a_run_degrades_as_with_one_memory_down() {
    let mesh = TestMesh::start().await;
    let mut config = mesh.config();
    config.memory = endpoints(&[addr_of(&closed_endpoint()), addr_of(&closed_endpoint())]);
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    let report = app::health_report(&config, &clients).await;
    let memory = report
        .lines
        .iter()
        .find(|line| line.name == "Memory Service")
        .unwrap();
    assert!(
        memory
            .to_string()
            .starts_with("❌ Memory Service is unreachable"),
        "{memory}"
    );
    assert_eq!(memory.unhealthy_replicas.len(), 2, "{memory}");
    assert!(report.required_down().is_empty(), "Memory is optional");
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(3)), spool()).await;
    let outcome = session(&orchestrator, "heist_twins_down", 6).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!(outcome.memory_failures, 6);
    assert_eq!(outcome.audit_failures, 0);
}

fn addr_of(endpoint: &Endpoint) -> SocketAddr {
    endpoint.url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_becomes_every_address_it_resolves_to_and_one_listening_is_enough() {
    let mesh = TestMesh::start().await;
    let mut config = mesh.config();
    // The services listen on 127.0.0.1 only; localhost may also be ::1
    // (not on every machine: the tools list [::1] beside it, as such a
    // localhost resolves).
    let local = |addr: SocketAddr| Endpoint::parse(&format!("http://localhost:{}", addr.port()));
    config.memory = local(mesh.memory.addr).unwrap().into();
    let port = mesh.tools.addr.port();
    let tools = heist_orchestrator::config::Endpoints::parse_list(&[
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ])
    .unwrap();
    for target in config.tool_services.values_mut() {
        target.clone_from(&tools);
    }
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    let memory = clients.service(MEMORY).unwrap();
    let urls: Vec<&str> = memory.replicas.iter().map(|r| r.url.as_str()).collect();
    assert!(
        urls.contains(&format!("http://127.0.0.1:{}", mesh.memory.addr.port()).as_str()),
        "{urls:?}"
    );
    assert!(
        urls.iter().all(|url| !url.contains("localhost")),
        "resolved: {urls:?}"
    );
    let calculator = clients.service(&tool_service("calculator")).unwrap();
    let tool_urls: Vec<&str> = calculator.replicas.iter().map(|r| r.url.as_str()).collect();
    let ipv6 = format!("http://[::1]:{port}");
    assert!(tool_urls.contains(&ipv6.as_str()), "{tool_urls:?}");
    assert!(tool_urls.len() >= 2, "{tool_urls:?}");
    let report = app::health_report(&config, &clients).await;
    assert!(!report.to_string().contains('❌'), "{report}");
    for line in &report.lines {
        assert!(line.to_string().starts_with('✅'), "{line}");
    }
    let warned: Vec<String> = report
        .unhealthy_replicas()
        .iter()
        .map(|(_, replica)| replica.url.clone())
        .collect();
    assert!(warned.contains(&ipv6), "{report}");
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(5)), spool()).await;
    let outcome = session(&orchestrator, "heist_localhost", 8).await;
    assert_eq!(outcome.status, "completed");
    assert!(outcome.tool_calls() > 0);
    assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
    assert_eq!((outcome.memory_failures, outcome.audit_failures), (0, 0));
}

/// How many `CallTool` calls the log at `path` says were served.
fn tool_calls_served(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("call served") && line.contains("CallTool"))
        .count()
}

/// Every tool's breaker, by replica address.
fn tool_breakers(orchestrator: &Orchestrator, addr: SocketAddr) -> Vec<BreakerState> {
    ["calculator", "file_reader", "database_query"]
        .iter()
        .map(|tool| {
            orchestrator
                .breakers()
                .get(&replica(&tool_service(tool), &addr.to_string()))
                .state()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_replica_killed_mid_session_costs_no_tool_call_and_serves_again_once_restarted() {
    let options = MeshOptions::for_tests()
        .replicas("tools", 2)
        .log("tools", "warn,heist_plumbing::server=debug");
    let mut processes = ProcessMesh::start_with(options).await;
    let config_path = processes.write_config("twins.yaml");
    let mut config = Config::load(&config_path).unwrap();
    // Only the health watch closes a breaker within this test.
    config.resilience.open_for = Duration::from_secs(600);
    config.resilience.failure_threshold = 2;
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(9)), spool()).await;
    let logs = [processes.log_of("tools", 0), processes.log_of("tools", 1)];
    let counts = || logs.each_ref().map(|log| tool_calls_served(log));
    let (first, second) = (processes.addr_of("tools", 0), processes.addr_of("tools", 1));

    // Both up: both serve.
    let outcome = session(&orchestrator, "heist_20261201_120000_tw01", 12).await;
    assert_eq!(outcome.failed_tool_calls, 0);
    let calls = outcome.tool_calls();
    eventually("every call is logged", || {
        counts().iter().sum::<usize>() == calls
    })
    .await;
    let before = counts();
    assert!(
        before.iter().all(|&n| n > 0),
        "both replicas serve: {before:?}"
    );
    assert!(
        before[0].abs_diff(before[1]) <= 3,
        "round-robin per tool: {before:?}"
    );

    // One SIGKILLed in the middle of a session: no tool call fails, the
    // survivor serves them all from then on.
    let running = {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move { session(&orchestrator, "heist_20261201_120000_tw02", 120).await })
    };
    eventually("the session's tool calls reach the replica", || {
        counts()[1] > before[1]
    })
    .await;
    processes.kill_replica("tools", 1);
    assert!(!running.is_finished(), "killed while the session runs");
    let outcome = running.await.unwrap();
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
    let before = counts();
    let outcome = session(&orchestrator, "heist_20261201_120000_tw02b", 12).await;
    assert_eq!(outcome.status, "completed");
    assert!(outcome.tool_calls() > 0);
    assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
    let alone = outcome.tool_calls();
    eventually("the survivor logged every call", || {
        counts()[0] == before[0] + alone
    })
    .await;
    assert!(
        tool_breakers(&orchestrator, second).contains(&BreakerState::Open),
        "{:?}",
        tool_breakers(&orchestrator, second)
    );
    assert_eq!(
        tool_breakers(&orchestrator, first),
        [BreakerState::Closed; 3]
    );

    // Restarted on its port: its breakers close on health SERVING and it
    // serves again.
    processes.restart_replica("tools", 1);
    processes.wait_replica_serving("tools", 1).await;
    eventually("the restarted replica's breakers close", || {
        tool_breakers(&orchestrator, second) == [BreakerState::Closed; 3]
    })
    .await;
    let restarted_log = counts()[1];
    let outcome = session(&orchestrator, "heist_20261201_120000_tw03", 12).await;
    assert_eq!(outcome.failed_tool_calls, 0);
    eventually("the restarted replica serves again", || {
        counts()[1] > restarted_log
    })
    .await;
    processes.stop();
}

/// How many `StoreTurn` calls the log at `path` says were served.
fn turns_served(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("call served") && line.contains("StoreTurn"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_replica_killed_mid_session_spools_nothing_and_loses_no_turn() {
    // Two Audit processes on one SQLite file (WAL, a busy timeout for the
    // other process's lock).
    let options = MeshOptions::for_tests()
        .replicas("audit", 2)
        .log("audit", "warn,heist_plumbing::server=debug");
    let mut processes = ProcessMesh::start_with(options).await;
    let mut config = Config::load(&processes.write_config("audit.yaml")).unwrap();
    config.resilience.open_for = Duration::from_secs(600);
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(8)), spool()).await;
    let logs = [processes.log_of("audit", 0), processes.log_of("audit", 1)];
    let served = || logs.each_ref().map(|log| turns_served(log));
    let session_id = "heist_20261201_120000_au01";
    let running = {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move { session(&orchestrator, session_id, 120).await })
    };
    eventually("both Audit replicas store turns", || {
        served().iter().all(|&n| n > 0)
    })
    .await;
    processes.kill_replica("audit", 1);
    assert!(!running.is_finished(), "killed while the session runs");
    let outcome = running.await.unwrap();
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!(outcome.audit_failures, 0, "{:?}", outcome.breaker_events);
    assert_eq!(
        (outcome.audit_spooled, outcome.audit_spooled_writes),
        (0, 0),
        "the twin took every write"
    );
    let trail = heist_e2e::audit_trail(
        processes.addr("oauth"),
        processes.addr_of("audit", 0),
        session_id,
    )
    .await;
    let turns: Vec<i64> = trail
        .messages
        .iter()
        .map(|message| message.turn_id)
        .filter(|turn| *turn > 0)
        .collect();
    assert_eq!(
        turns,
        (1..=120).collect::<Vec<i64>>(),
        "every turn once, in order"
    );
    let audit_breaker = |index: usize| {
        let addr = processes.addr_of("audit", index).to_string();
        orchestrator
            .breakers()
            .get(&replica(heist_orchestrator::resilience::AUDIT, &addr))
            .state()
    };
    assert_eq!(audit_breaker(0), BreakerState::Closed);
    processes.stop();
}

/// How many tokens the OAuth log at `path` says were issued.
pub(crate) fn tokens_issued(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("token issued"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_both_oauth_replicas_and_from_the_survivor_once_one_is_killed() {
    let options = MeshOptions::for_tests().replicas("oauth", 2);
    let mut processes = ProcessMesh::start_with(options).await;
    let config = Arc::new(Config::load(&processes.write_config("oauth.yaml")).unwrap());
    let clients = Mesh::connect(&config).await.unwrap();
    let oauth = clients.oauth_client(Duration::from_secs(5));
    let logs = [processes.log_of("oauth", 0), processes.log_of("oauth", 1)];
    let issued = || logs.each_ref().map(|log| tokens_issued(log));
    let scopes = ["audit:read".to_owned()];
    let before = issued();
    for _ in 0..4 {
        let secret = config.oauth.client_secret.expose();
        oauth
            .issue_token("orchestrator", secret, &scopes, Audience::Audit)
            .await
            .unwrap();
    }
    eventually("both replicas issue, in turn", || {
        issued() == [before[0] + 2, before[1] + 2]
    })
    .await;

    // The first replica SIGKILLed: every purchase goes on to its twin.
    processes.kill_replica("oauth", 0);
    let before = issued();
    for _ in 0..4 {
        let secret = config.oauth.client_secret.expose();
        oauth
            .issue_token("orchestrator", secret, &scopes, Audience::Audit)
            .await
            .unwrap();
    }
    eventually("the survivor issues every token", || {
        issued()[1] == before[1] + 4
    })
    .await;

    // A whole session, every agent buying its token from the survivor.
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(4)), spool()).await;
    let outcome = session(&orchestrator, "heist_20261201_120000_oa01", 6).await;
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.failed_turns, 0);
    assert_eq!(outcome.failed_tool_calls, 0);
    assert_eq!((outcome.memory_failures, outcome.audit_failures), (0, 0));
    processes.stop();
}

fn orchestrator_cli(args: &[&str], dir: &Path) -> Output {
    Command::new(binary("orchestrator"))
        .args(args)
        .current_dir(dir)
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Runs the orchestrator binary in `dir` off the async runtime (it talks to
/// in-process servers).
async fn orchestrator_in(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        orchestrator_cli(&args, &dir)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_and_reads_sessions_with_a_dead_audit_replica_listed_first() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    let dead = closed_endpoint().url;
    let yaml = heist_e2e::mesh::config_yaml_replicas(
        &[mesh.oauth.url()],
        &[mesh.tools.url()],
        &[mesh.memory.url()],
        &[dead, mesh.audit.url()],
    );
    std::fs::write(dir.path().join("twins.yaml"), yaml).unwrap();
    let run = orchestrator_in(
        dir.path(),
        &["--config", "twins.yaml", "run", "--turns", "3", "--quiet"],
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert!(
        !shown.contains("spooled"),
        "Audit's twin took every write: {shown}"
    );
    let list = orchestrator_in(dir.path(), &["--config", "twins.yaml", "sessions", "list"]).await;
    let listed = text(&list);
    assert_eq!(list.status.code(), Some(0), "{listed}");
    let session_id = listed
        .split_whitespace()
        .find(|word| word.starts_with("heist_"))
        .unwrap_or_else(|| panic!("no session listed: {listed}"))
        .to_owned();
    let show = orchestrator_in(
        dir.path(),
        &["--config", "twins.yaml", "sessions", "show", &session_id],
    )
    .await;
    let shown = text(&show);
    assert_eq!(show.status.code(), Some(0), "{shown}");
    assert!(shown.contains("[Turn 3]"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_a_dead_replica_as_a_warning_while_its_twin_serves() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    let dead = closed_endpoint().url;
    let yaml = heist_e2e::mesh::config_yaml_replicas(
        &[mesh.oauth.url()],
        &[mesh.tools.url()],
        &[mesh.memory.url()],
        &[mesh.audit.url(), dead.clone()],
    );
    std::fs::write(dir.path().join("twins.yaml"), yaml).unwrap();
    let path = dir.path().to_owned();
    let health = tokio::task::spawn_blocking(move || {
        orchestrator_cli(&["--config", "twins.yaml", "health"], &path)
    })
    .await
    .unwrap();
    let report = text(&health);
    assert_eq!(health.status.code(), Some(0), "{report}");
    assert!(
        report.contains(&format!(
            "✅ Audit Service is healthy ({}, {dead}; SERVING)",
            mesh.audit.url()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "⚠️  replica {dead} is unreachable: connection refused (is it running?); a twin serves"
        )),
        "{report}"
    );
}

#[test]
fn a_bad_base_urls_list_stops_the_orchestrator_with_the_fix() {
    let dir = TempDir::new().unwrap();
    let yaml = heist_orchestrator::config::DEFAULT_CONFIG_YAML.replace(
        "base_url: \"http://127.0.0.1:8006\"",
        "base_urls: [\"http://127.0.0.1:8006\", \"127.0.0.1:8007\"]",
    );
    std::fs::write(dir.path().join("bad.yaml"), yaml).unwrap();
    let health = orchestrator_cli(&["--config", "bad.yaml", "health"], dir.path());
    let shown = text(&health);
    assert_eq!(health.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(
            "bad.yaml: audit_service.base_urls[1]: `127.0.0.1:8007` is not a URL; write \
             http://HOST:PORT"
        ),
        "{shown}"
    );
}
