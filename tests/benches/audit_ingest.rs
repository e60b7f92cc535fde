//! Audit ingest benchmark: messages/s stored by 1 and 64 concurrent writers
//! against the real `heist-audit` binary (release), and, in the same run and
//! on the same channel, the rate of empty unary calls (health Check) at the
//! same concurrency: the floor the ingest rate is compared with.
//!
//! Run: `scripts/bench_audit.sh` (builds release, then runs this).
//! Prints a table and one JSON line; figures are medians of the rounds.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, binary, channel_to, dev_token, wait_until_serving};
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
const CONCURRENCY: [usize; 2] = [1, 64];

#[derive(Clone, Copy)]
enum Workload {
    Floor,
    Ingest,
}

async fn one_round(
    channel: &Channel,
    bearer: &BearerInterceptor,
    workload: Workload,
    writers: usize,
    round: usize,
) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + ROUND;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let channel = channel.clone();
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
                                session_id: "bench".into(),
                                turn_id: n as i64,
                                agent_name: "planner".into(),
                                agent_role: "Strategic Planner".into(),
                                message: "We enter through the loading dock at 02:10, \
                                          when the east camera blinks."
                                    .into(),
                                is_error: false,
                                idempotency_key: format!("r{round}-w{writer}-{n}"),
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
        "{:>11} {:>8} {:>14} {:>14} {:>8}",
        "synchronous", "writers", "messages/s", "floor calls/s", "ratio"
    );
    let mut json = Vec::new();
    for synchronous in ["full", "normal"] {
        let db = format!("bench-{synchronous}.db");
        let audit = ServiceProcess::start(
            &binary("heist-audit"),
            &[
                "--db",
                &db,
                "--log",
                "warn",
                "--oauth-url",
                &oauth_url,
                "--synchronous",
                synchronous,
            ],
            "127.0.0.1:0",
            dir.path(),
        )
        .expect("start heist-audit");
        wait_until_serving(audit.addr, "heist.v1.AuditService")
            .await
            .expect("audit serving");
        let channel = channel_to(audit.addr);
        let token = dev_token(oauth.addr, "orchestrator", "audit:write agents:act_for_any")
            .await
            .expect("token");
        let bearer = BearerInterceptor::new(&token);
        AuditServiceClient::with_interceptor(channel.clone(), bearer.clone())
            .create_session(CreateSessionRequest {
                session_id: "bench".into(),
                ..Default::default()
            })
            .await
            .expect("create session");
        let mut round_id = 0;
        for writers in CONCURRENCY {
            let mut ingest = Vec::new();
            let mut floor = Vec::new();
            for _ in 0..ROUNDS {
                floor.push(one_round(&channel, &bearer, Workload::Floor, writers, round_id).await);
                ingest
                    .push(one_round(&channel, &bearer, Workload::Ingest, writers, round_id).await);
                round_id += 1;
            }
            let (ingest, floor) = (median(ingest), median(floor));
            println!(
                "{synchronous:>11} {writers:>8} {ingest:>14.0} {floor:>14.0} {:>7.0}%",
                100.0 * ingest / floor
            );
            json.push(format!(
                r#"{{"synchronous":"{synchronous}","writers":{writers},"messages_per_s":{ingest:.0},"floor_calls_per_s":{floor:.0},"ratio":{:.3}}}"#,
                ingest / floor
            ));
        }
    }
    println!("JSON [{}]", json.join(","));
}
