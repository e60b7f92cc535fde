//! One measured run: a fresh mesh of release processes, a warm-up, the
//! floor, then S sessions x T turns, the audit rows checked, peak RSS read.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use heist_e2e::{
    mesh::config_yaml_replicas,
    processes::{MeshOptions, ProcessMesh, SERVICES, cpu_time, machine_busy, peak_rss_bytes},
};
use heist_orchestrator::{
    app,
    config::Config,
    engine::{Orchestrator, RunOptions, SessionOutcome, TurnRecord, TurnSink, TurnTiming},
    llm::OfflineBackend,
    mesh::{Mesh, MeshChannel},
    rpc_timing::RpcTimings,
    session_id::new_session_id,
    spool::Spool,
};
use heist_plumbing::auth::Audience;
use tokio::sync::watch;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{stats::Percentiles, verify};

/// Turns each session runs before measuring (connections open, buffers grown).
const WARMUP_TURNS: u64 = 4;
/// Empty calls made to each service for the floor, spread over the sessions.
const FLOOR_CALLS: usize = 1000;
/// The health Check path: the floor, not a call a turn makes.
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// Calls made once per session, not per turn: left out of the per-turn count.
const PER_SESSION: [&str; 3] = [
    "/heist.v1.AuditService/CreateSession",
    "/heist.v1.AuditService/EndSession",
    "/heist.v1.MemoryService/ListMemoryTurns",
];

/// One RPC method's figures in a run.
#[derive(Debug, Clone)]
pub(crate) struct RpcFigures {
    pub(crate) service: String,
    pub(crate) method: String,
    /// Calls per turn (0 for the per-session methods).
    pub(crate) per_turn: f64,
    pub(crate) latency: Percentiles,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub(crate) struct RunFigures {
    pub(crate) wall: Duration,
    pub(crate) turns_per_s: f64,
    /// Turn time minus LLM time, per turn.
    pub(crate) overhead: Percentiles,
    /// LLM time per turn.
    pub(crate) llm: Percentiles,
    pub(crate) rpcs: Vec<RpcFigures>,
    /// RPCs a turn makes, on average.
    pub(crate) rpcs_per_turn: f64,
    /// The empty call's latency on each service's channel.
    pub(crate) floor: BTreeMap<String, Percentiles>,
    /// Σ over services of (calls per turn x the empty call's p50).
    pub(crate) floor_per_turn: Duration,
    /// Empty calls per second with S callers (the floor's throughput).
    pub(crate) floor_calls_per_s: f64,
    /// TLS handshakes the orchestrator made: in all (warm-up and floor
    /// included) and during the measured sessions; `None` over plaintext.
    pub(crate) tls_handshakes: Option<(u64, u64)>,
    /// Peak RSS of each service, and of this process (the orchestrator).
    pub(crate) peak_rss: BTreeMap<String, u64>,
    /// CPU time per turn of each process (the orchestrator is this one).
    pub(crate) cpu_per_turn: BTreeMap<String, Duration>,
    /// CPU time per empty call of each process, during the floor.
    pub(crate) cpu_per_floor_call: BTreeMap<String, Duration>,
    /// The whole machine's busy CPU time per turn (engines and all).
    pub(crate) machine_cpu_per_turn: Duration,
}

/// The processes whose CPU time is followed: each service, and this one.
fn pids(processes: &ProcessMesh) -> Vec<(String, u32)> {
    let mut pids: Vec<(String, u32)> = SERVICES
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), processes.pid(name)?)))
        .collect();
    pids.push(("orchestrator".to_owned(), std::process::id()));
    pids
}

/// The CPU time each of `pids` has used so far.
fn cpu_times(pids: &[(String, u32)]) -> BTreeMap<String, Duration> {
    pids.iter()
        .filter_map(|(name, pid)| Some((name.clone(), cpu_time(*pid)?)))
        .collect()
}

/// The CPU time each process used between `before` and `after`, divided by `count`.
fn cpu_per(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    count: usize,
) -> BTreeMap<String, Duration> {
    after
        .iter()
        .filter_map(|(name, end)| {
            let used = end.saturating_sub(*before.get(name)?);
            Some((name.clone(), used / u32::try_from(count.max(1)).ok()?))
        })
        .collect()
}

impl RunFigures {
    /// The overhead p50 over the floor.
    pub(crate) fn ratio(&self) -> f64 {
        self.overhead.p50.as_secs_f64() / self.floor_per_turn.as_secs_f64().max(1e-9)
    }

    /// The turns/s the floor allows: empty calls/s over the calls a turn makes.
    pub(crate) fn floor_turns_per_s(&self) -> f64 {
        self.floor_calls_per_s / self.rpcs_per_turn.max(1e-9)
    }
}

/// Keeps every turn's timing.
#[derive(Default)]
struct Timings {
    overhead: Mutex<Vec<Duration>>,
    llm: Mutex<Vec<Duration>>,
}

impl TurnSink for Timings {
    fn turn(&self, _session_id: &str, _record: &TurnRecord) {}

    fn timing(&self, _session_id: &str, _turn: i64, timing: TurnTiming) {
        if let Ok(mut overhead) = self.overhead.lock() {
            overhead.push(timing.mesh());
        }
        if let Ok(mut llm) = self.llm.lock() {
            llm.push(timing.llm);
        }
    }
}

/// Runs `sessions` sessions of `turns` turns at once; their outcomes.
async fn sessions_at_once(
    orchestrator: &Orchestrator,
    sessions: usize,
    turns: u64,
    seed: u64,
    sink: Arc<Timings>,
) -> Result<Vec<SessionOutcome>, String> {
    let (_stop_tx, stop) = watch::channel(false);
    let tasks: Vec<_> = (0..sessions)
        .map(|index| {
            let orchestrator = orchestrator.clone();
            let stop = stop.clone();
            let sink = sink.clone();
            let options = RunOptions {
                max_turns: turns,
                seed: seed.wrapping_add(index as u64),
            };
            tokio::spawn(async move {
                orchestrator
                    .run_session(&new_session_id(), &options, stop, sink.as_ref())
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(sessions);
    for task in tasks {
        let outcome = task
            .await
            .map_err(|error| format!("a session task failed: {error}"))?
            .map_err(|error| format!("a session could not run: {error}"))?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The channel of each service (the tools' first): the floor is measured on them.
fn floor_channels(mesh: &Mesh) -> Vec<MeshChannel> {
    ["OAuth", "Audit", "Memory", "Tool"]
        .iter()
        .filter_map(|prefix| {
            mesh.endpoints
                .iter()
                .find(|endpoint| endpoint.name.starts_with(prefix))
                .and_then(|endpoint| endpoint.replicas.first())
                .map(|replica| replica.channel.clone())
        })
        .collect()
}

/// Empty health checks on each channel, `sessions` callers at once; the
/// latencies land in the channels' timings. Returns the calls made per second.
async fn measure_floor(channels: &[MeshChannel], sessions: usize) -> Result<f64, String> {
    let rounds = FLOOR_CALLS.div_ceil(sessions).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| {
            let mut clients: Vec<_> = channels
                .iter()
                .map(|channel| HealthClient::new(channel.clone()))
                .collect();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    for client in &mut clients {
                        client
                            .check(HealthCheckRequest::default())
                            .await
                            .map_err(|status| format!("health check failed: {status}"))?;
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|error| format!("a floor task failed: {error}"))??;
    }
    Ok((sessions * rounds * channels.len()) as f64 / started.elapsed().as_secs_f64())
}

/// Buys every agent's token (for its tool calls), so that no measured turn waits for OAuth
/// (tokens live 5 minutes; the cache is shared by every session).
async fn buy_tokens(orchestrator: &Orchestrator, config: &Config) -> Result<(), String> {
    for agent in config
        .agents
        .iter()
        .filter(|agent| !agent.oauth_scopes.is_empty())
    {
        orchestrator
            .tokens()
            .token(
                &agent.name,
                agent.client_secret.expose(),
                &agent.oauth_scopes,
                Audience::Tools,
            )
            .await
            .map_err(|status| format!("no token for {}: {}", agent.name, status.message()))?;
    }
    Ok(())
}

/// Builds an orchestrator over `mesh`'s processes whose calls are timed.
async fn orchestrator(
    processes: &ProcessMesh,
    timings: &RpcTimings,
    seed: u64,
) -> Result<(Orchestrator, Mesh, Arc<Config>), String> {
    let urls = |name: &str| processes.urls(name);
    // The built-in config as it ships (breakers, retries, timeouts), pointed
    // at these processes (every replica).
    let mut yaml = config_yaml_replicas(
        &urls("oauth"),
        &urls("tools"),
        &urls("memory"),
        &urls("audit"),
    );
    if let Some(certs) = processes.certs() {
        yaml.push_str(&certs.config_section());
    }
    let config =
        Arc::new(Config::from_yaml("bench config", &yaml).map_err(|error| error.to_string())?);
    let mesh = Mesh::connect_timed(&config, timings)
        .await
        .map_err(|error| error.to_string())?;
    let spool =
        Spool::open(processes.dir.path().join("audit.spool")).map_err(|error| error.to_string())?;
    let llm = Arc::new(OfflineBackend::new(seed));
    let (orchestrator, _) = app::prepare(config.clone(), mesh.clone(), llm, spool).await;
    Ok((orchestrator, mesh, config))
}

/// One run of `sessions` x `turns` on a mesh with `options`.
pub(crate) async fn one_run(
    sessions: usize,
    turns: u64,
    seed: u64,
    options: MeshOptions,
) -> Result<RunFigures, String> {
    let mut processes = ProcessMesh::start_with(options).await;
    let timings = RpcTimings::new();
    let (orchestrator, mesh, config) = orchestrator(&processes, &timings, seed).await?;

    let warmup =
        sessions_at_once(&orchestrator, sessions, WARMUP_TURNS, seed, Arc::default()).await?;
    verify::audit_rows(
        processes.channel_of("oauth", 0),
        processes.channel_of("audit", 0),
        &warmup,
        WARMUP_TURNS,
    )
    .await
    .map_err(|problem| format!("warm-up: {problem}"))?;
    buy_tokens(&orchestrator, &config).await?;
    timings.take();

    let pids = pids(&processes);
    let channels = floor_channels(&mesh);
    let before_floor = cpu_times(&pids);
    let floor_calls_per_s = measure_floor(&channels, sessions).await?;
    let after_floor = cpu_times(&pids);
    let floor_samples = timings.take();
    let floor_calls: usize = floor_samples.values().map(Vec::len).sum();

    let handshakes = || {
        mesh.tls
            .as_ref()
            .map(heist_plumbing::tls::ClientTls::handshakes)
    };
    let handshakes_before = handshakes();
    let sink = Arc::new(Timings::default());
    let machine_before = machine_busy().unwrap_or_default();
    let started = Instant::now();
    let outcomes = sessions_at_once(&orchestrator, sessions, turns, seed, sink.clone()).await?;
    let wall = started.elapsed();
    let after_sessions = cpu_times(&pids);
    let machine_busy_for = machine_busy()
        .unwrap_or_default()
        .saturating_sub(machine_before);
    let samples = timings.take();
    let tls_handshakes = handshakes()
        .zip(handshakes_before)
        .map(|(all, before)| (all, all - before));

    verify::audit_rows(
        processes.channel_of("oauth", 0),
        processes.channel_of("audit", 0),
        &outcomes,
        turns,
    )
    .await?;

    let mut peak_rss = BTreeMap::new();
    for name in SERVICES {
        if let Some(bytes) = processes.pid(name).and_then(peak_rss_bytes) {
            peak_rss.insert(name.to_owned(), bytes);
        }
    }
    if let Some(bytes) = peak_rss_bytes(std::process::id()) {
        peak_rss.insert("orchestrator".to_owned(), bytes);
    }
    processes.stop();

    let total_turns = sessions as u64 * turns;
    let floor: BTreeMap<String, Percentiles> = floor_samples
        .iter()
        .filter(|((_, method), _)| method == HEALTH_CHECK)
        .map(|((service, _), values)| (service.clone(), Percentiles::of(values)))
        .collect();
    let rpcs: Vec<RpcFigures> = samples
        .iter()
        .map(|((service, method), values)| RpcFigures {
            service: service.clone(),
            method: method.rsplit('/').next().unwrap_or(method).to_owned(),
            per_turn: if PER_SESSION.contains(&method.as_str()) {
                0.0
            } else {
                values.len() as f64 / total_turns as f64
            },
            latency: Percentiles::of(values),
        })
        .collect();
    let rpcs_per_turn = rpcs.iter().map(|rpc| rpc.per_turn).sum();
    let floor_per_turn = rpcs
        .iter()
        .map(|rpc| {
            let p50 = floor.get(&rpc.service).map_or(Duration::ZERO, |f| f.p50);
            p50.mul_f64(rpc.per_turn)
        })
        .sum();
    let overhead = sink.overhead.lock().map(|v| v.clone()).unwrap_or_default();
    let llm = sink.llm.lock().map(|v| v.clone()).unwrap_or_default();
    if overhead.len() as u64 != total_turns {
        return Err(format!(
            "{} turn timings for {total_turns} turns",
            overhead.len()
        ));
    }
    Ok(RunFigures {
        wall,
        turns_per_s: total_turns as f64 / wall.as_secs_f64(),
        overhead: Percentiles::of(&overhead),
        llm: Percentiles::of(&llm),
        rpcs,
        rpcs_per_turn,
        floor,
        floor_per_turn,
        floor_calls_per_s,
        tls_handshakes,
        peak_rss,
        cpu_per_turn: cpu_per(
            &after_floor,
            &after_sessions,
            usize::try_from(total_turns).unwrap_or(usize::MAX),
        ),
        cpu_per_floor_call: cpu_per(&before_floor, &after_floor, floor_calls),
        machine_cpu_per_turn: machine_busy_for.div_f64(total_turns.max(1) as f64),
    })
}
