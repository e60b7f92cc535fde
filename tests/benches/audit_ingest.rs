//! Audit ingest benchmark: messages/s stored by 1, 8 and 64 concurrent
//! writers against the real `heist-audit` binary (release), and, in the same
//! run and on the same channels, the rate of empty unary calls (health
//! Check) at the same concurrency: the floor the ingest rate is compared with.
//!
//! Stores: SQLite with `--synchronous full` and `normal`; with `--store
//! postgres` also a private PostgreSQL with every commit flushed
//! (`Durability::Full`, the fair match for SQLite's FULL), served by one
//! Audit replica, then by two replicas on the one database (the writers
//! alternate between them). Every store gets its own session; all writers
//! write into it (one session's writes are serialised, on SQLite by its one
//! writer, on PostgreSQL by the session's row lock). The last PostgreSQL
//! rows, `(s/w)`, give each writer its own session instead: how replicas
//! share the work of many sessions.
//!
//! Run: `scripts/bench_audit.sh [--store postgres]` (builds release, then runs
//! this). Prints a table and one JSON line; figures are medians of the rounds.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, binary, channel_to, dev_token, wait_until_serving};
use heist_engines::{Durability, PostgresServer};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CreateSessionRequest, StoreMessageRequest, audit_service_client::AuditServiceClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[global_allocator]
static ALLOCATOR: heist_orchestrator::Allocator = heist_orchestrator::Allocator;

const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;
const CONCURRENCY: [usize; 3] = [1, 8, 64];

#[derive(Clone, Copy)]
enum Workload {
    Floor,
    Ingest,
}

async fn one_round(
    channels: &[Channel],
    sessions: &[String],
    bearer: &BearerInterceptor,
    workload: Workload,
    writers: usize,
    round: usize,
) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + ROUND;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let channel = channels[writer % channels.len()].clone();
            let session = sessions[writer % sessions.len()].clone();
            let counter = counter.clone();
            let bearer = bearer.clone();
            tokio::spawn(async move {
                let mut audit = AuditServiceClient::with_interceptor(channel.clone(), bearer);
                let mut health = HealthClient::new(channel);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let ok = match workload {
                        Workload::Floor => {
                            health.check(HealthCheckRequest::default()).await.is_ok()
                        }
                        Workload::Ingest => audit
                            .store_message(StoreMessageRequest {
                                session_id: session.clone(),
                                turn_id: n as i64,
                                agent_name: "planner".into(),
                                agent_role: "Strategic Planner".into(),
                                message: "We enter through the loading dock at 02:10, \
                                          when the east camera blinks."
                                    .into(),
                                is_error: false,
                                idempotency_key: format!("r{round}-w{writer}-{n}"),
                                ..Default::default()
                            })
                            .await
                            .is_ok(),
                    };
                    assert!(ok, "call failed during the benchmark");
                    n += 1;
                }
                counter.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    for task in tasks {
        task.await.expect("writer task");
    }
    counter.load(Ordering::Relaxed) as f64
        / started.elapsed().as_secs_f64().max(ROUND.as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One store under test: the Audit processes serving it.
struct Setup {
    /// `sqlite` or `postgres`.
    store: &'static str,
    /// SQLite's `--synchronous`; empty for PostgreSQL.
    synchronous: &'static str,
    replicas: Vec<ServiceProcess>,
    /// Each writer writes its own session (else all write one).
    session_per_writer: bool,
}

impl Setup {
    fn label(&self) -> String {
        let label = match (self.store, self.replicas.len()) {
            ("sqlite", _) => format!("sqlite {}", self.synchronous),
            (store, 1) => store.to_owned(),
            (store, n) => format!("{store} x{n}"),
        };
        if self.session_per_writer {
            format!("{label} (s/w)")
        } else {
            label
        }
    }
}

fn start_audit(dir: &std::path::Path, oauth_url: &str, store_args: &[&str]) -> ServiceProcess {
    let mut args = vec!["--log", "warn", "--oauth-url", oauth_url];
    args.extend_from_slice(store_args);
    ServiceProcess::start(&binary("heist-audit"), &args, "127.0.0.1:0", dir)
        .expect("start heist-audit")
}

/// Measures one setup at every concurrency; prints its rows, returns its JSON.
async fn measure(setup: &Setup, oauth: std::net::SocketAddr) -> Vec<String> {
    let mut channels = Vec::new();
    for replica in &setup.replicas {
        wait_until_serving(replica.addr, "heist.v1.AuditService")
            .await
            .expect("audit serving");
        channels.push(channel_to(replica.addr));
    }
    let token = dev_token(oauth, "orchestrator", "audit:write agents:act_for_any")
        .await
        .expect("token");
    let bearer = BearerInterceptor::new(&token);
    let label = setup.label();
    let base = format!(
        "bench-{}",
        label.replace(' ', "-").replace(['(', ')', '/'], "")
    );
    let count = if setup.session_per_writer {
        CONCURRENCY.into_iter().max().unwrap_or(1)
    } else {
        1
    };
    let sessions: Vec<String> = (0..count).map(|n| format!("{base}-{n}")).collect();
    let mut client = AuditServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
    for session in &sessions {
        client
            .create_session(CreateSessionRequest {
                session_id: session.clone(),
                ..Default::default()
            })
            .await
            .expect("create session");
    }
    let mut json = Vec::new();
    let mut round_id = 0;
    for writers in CONCURRENCY {
        let mut ingest = Vec::new();
        let mut floor = Vec::new();
        for _ in 0..ROUNDS {
            floor.push(
                one_round(
                    &channels,
                    &sessions,
                    &bearer,
                    Workload::Floor,
                    writers,
                    round_id,
                )
                .await,
            );
            ingest.push(
                one_round(
                    &channels,
                    &sessions,
                    &bearer,
                    Workload::Ingest,
                    writers,
                    round_id,
                )
                .await,
            );
            round_id += 1;
        }
        let (ingest, floor) = (median(ingest), median(floor));
        println!(
            "{label:>19} {writers:>8} {ingest:>14.0} {floor:>14.0} {:>7.0}%",
            100.0 * ingest / floor
        );
        json.push(format!(
            r#"{{"store":"{}","synchronous":"{}","replicas":{},"session_per_writer":{},"writers":{writers},"messages_per_s":{ingest:.0},"floor_calls_per_s":{floor:.0},"ratio":{:.3}}}"#,
            setup.store,
            setup.synchronous,
            setup.replicas.len(),
            setup.session_per_writer,
            ingest / floor
        ));
    }
    json
}

/// Whether `--store postgres` was given (cargo adds `--bench`; other
/// arguments are ignored).
fn with_postgres() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|pair| pair[0] == "--store" && pair[1] == "postgres")
        || args.iter().any(|arg| arg == "--store=postgres")
}

#[tokio::main]
async fn main() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let oauth = ServiceProcess::start(
        &binary("heist-oauth"),
        &["--log", "warn"],
        "127.0.0.1:0",
        dir.path(),
    )
    .expect("start heist-oauth");
    let oauth_url = format!("http://{}", oauth.addr);
    println!("audit ingest, {ROUNDS} rounds of {ROUND:?} each, medians");
    println!(
        "{:>19} {:>8} {:>14} {:>14} {:>8}",
        "store", "writers", "messages/s", "floor calls/s", "ratio"
    );
    let mut json = Vec::new();
    for synchronous in ["full", "normal"] {
        let db = format!("bench-{synchronous}.db");
        let setup = Setup {
            store: "sqlite",
            synchronous,
            replicas: vec![start_audit(
                dir.path(),
                &oauth_url,
                &["--db", &db, "--synchronous", synchronous],
            )],
            session_per_writer: false,
        };
        json.extend(measure(&setup, oauth.addr).await);
    }
    if with_postgres() {
        // Every commit flushed, as SQLite's FULL.
        let postgres = PostgresServer::start(Durability::Full).expect("start PostgreSQL");
        let url = postgres.url();
        let mut setup = Setup {
            store: "postgres",
            synchronous: "",
            replicas: vec![start_audit(dir.path(), &oauth_url, &["--store", &url])],
            session_per_writer: false,
        };
        json.extend(measure(&setup, oauth.addr).await);
        let second = dir.path().join("second");
        std::fs::create_dir_all(&second).expect("second replica's directory");
        setup
            .replicas
            .push(start_audit(&second, &oauth_url, &["--store", &url]));
        json.extend(measure(&setup, oauth.addr).await);
        setup.session_per_writer = true;
        json.extend(measure(&setup, oauth.addr).await);
        setup.replicas.truncate(1);
        json.extend(measure(&setup, oauth.addr).await);
    }
    println!("JSON [{}]", json.join(","));
}
