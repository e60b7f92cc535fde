//! Memory's two stores side by side: `StoreMemory` and `GetCompressedMemory`
//! latency and throughput, in memory and on Redis, in one run.
//!
//! Each store gets its own Memory server in this process on 127.0.0.1:0 (the
//! real service: gRPC, auth layer, the store), Redis a private
//! `redis-server` on a free port (no persistence). Per store: a warm-up, then
//! `--ops` sequential pairs (store a turn, read the compressed memory of its
//! stream: 5 recent turns and a 2,000-character summary), each call timed,
//! then `--ops` pairs again from `--concurrency` callers at once, on their own
//! sessions, timed as a whole.
//!
//! Run: `cargo bench -p heist-e2e --bench memory_store -- --ops 2000
//! --concurrency 16 [--json PATH]`. Prints a table and one `JSON {...}` line.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

use std::time::{Duration, Instant};

use clap::Parser;
use heist_e2e::{TestAuth, TestServer, services};
use heist_engines::RedisServer;
use heist_memory::{Backend, Limits, StoreConfig};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    GetCompressedMemoryRequest, StoreMemoryRequest, memory_service_client::MemoryServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

type Client = MemoryServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// What to run.
#[derive(Debug, Parser)]
#[command(about = "Memory in memory against Memory on Redis")]
struct Args {
    /// Store+read pairs per store, sequential and again concurrent.
    #[arg(long, default_value_t = 2000)]
    ops: usize,

    /// Callers at once in the concurrent part.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// Also write the JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One store's figures.
struct Figures {
    store: &'static str,
    store_latency: Vec<Duration>,
    read_latency: Vec<Duration>,
    sequential_pairs_per_s: f64,
    concurrent_pairs_per_s: f64,
}

/// A turn of about 300 bytes, as the offline agents speak.
fn message(turn_id: i64) -> String {
    format!(
        "Turn {turn_id}: the crew checks the vault's east wall again. The guard changes at \
         midnight, the cameras loop for ninety seconds, and the drill needs four minutes on \
         the Sentinel 9 door. We move when the van is in place and the line is cut. Nobody \
         talks on the radio until the lobby is clear."
    )
}

fn store_request(agent: &str, session: &str, turn_id: i64) -> StoreMemoryRequest {
    StoreMemoryRequest {
        agent_id: agent.into(),
        session_id: session.into(),
        turn_id,
        message: message(turn_id),
        idempotency_key: String::new(),
    }
}

fn read_request(agent: &str, session: &str) -> GetCompressedMemoryRequest {
    GetCompressedMemoryRequest {
        agent_id: agent.into(),
        session_id: session.into(),
        recent_count: 5,
        max_chars: 2000,
    }
}

/// One store and one read, timed each.
async fn pair(
    client: &mut Client,
    agent: &str,
    session: &str,
    turn_id: i64,
) -> (Duration, Duration) {
    let started = Instant::now();
    client
        .store_memory(store_request(agent, session, turn_id))
        .await
        .unwrap();
    let stored = started.elapsed();
    let started = Instant::now();
    let answer = client
        .get_compressed_memory(read_request(agent, session))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.recent.is_empty());
    (stored, started.elapsed())
}

async fn measure(name: &'static str, store: Backend, args: &Args) -> Figures {
    let auth = TestAuth::new();
    let server: TestServer =
        services::memory_on(store, auth.authenticator.clone(), ServeOptions::default()).await;
    let token = auth.token(
        "orchestrator",
        &["memory:read", "memory:write", "agents:act_for_any"],
    );
    let client =
        MemoryServiceClient::with_interceptor(server.channel(), BearerInterceptor::new(&token));
    let agents = ["planner", "hacker", "safecracker", "mole"];

    let mut warm = client.clone();
    for turn_id in 0..200 {
        pair(&mut warm, "planner", "warm-up", turn_id).await;
    }

    let mut sequential = client.clone();
    let (mut store_latency, mut read_latency) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for op in 0..args.ops {
        let turn_id = i64::try_from(op).unwrap();
        let agent = agents[op % agents.len()];
        let (stored, read) = pair(&mut sequential, agent, "sequential", turn_id).await;
        store_latency.push(stored);
        read_latency.push(read);
    }
    let sequential_pairs_per_s = args.ops as f64 / started.elapsed().as_secs_f64();

    let callers = args.concurrency.max(1);
    let per_caller = args.ops.div_ceil(callers);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let mut client = client.clone();
        tasks.spawn(async move {
            let session = format!("concurrent-{caller}");
            for turn_id in 0..i64::try_from(per_caller).unwrap() {
                pair(&mut client, "planner", &session, turn_id).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let concurrent_pairs_per_s = (callers * per_caller) as f64 / started.elapsed().as_secs_f64();
    server.stop().await.unwrap();
    store_latency.sort();
    read_latency.sort();
    Figures {
        store: name,
        store_latency,
        read_latency,
        sequential_pairs_per_s,
        concurrent_pairs_per_s,
    }
}

/// The `q` quantile of sorted `values`, in milliseconds.
fn ms(values: &[Duration], q: f64) -> f64 {
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index.min(values.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let redis = RedisServer::start().expect("the private Redis must start");
    println!(
        "memory store: {} store+read pairs sequential, then from {} callers at once",
        args.ops, args.concurrency
    );
    let in_memory = Backend::in_memory(Limits::default()).unwrap();
    let on_redis = Backend::open(&StoreConfig::Redis(redis.url()), Limits::default())
        .await
        .unwrap();
    let figures = [
        measure("memory", in_memory, &args).await,
        measure("redis", on_redis, &args).await,
    ];
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "store", "store p50", "store p99", "read p50", "read p99", "seq pairs/s", "conc pairs/s"
    );
    let mut json = Vec::new();
    for f in &figures {
        println!(
            "{:<8} {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>12.0} {:>12.0}",
            f.store,
            ms(&f.store_latency, 0.5),
            ms(&f.store_latency, 0.99),
            ms(&f.read_latency, 0.5),
            ms(&f.read_latency, 0.99),
            f.sequential_pairs_per_s,
            f.concurrent_pairs_per_s
        );
        json.push(serde_json::json!({
            "store": f.store,
            "store_p50_ms": ms(&f.store_latency, 0.5),
            "store_p99_ms": ms(&f.store_latency, 0.99),
            "read_p50_ms": ms(&f.read_latency, 0.5),
            "read_p99_ms": ms(&f.read_latency, 0.99),
            "sequential_pairs_per_s": f.sequential_pairs_per_s,
            "concurrent_pairs_per_s": f.concurrent_pairs_per_s,
        }));
    }
    let json = serde_json::json!({
        "ops": args.ops,
        "concurrency": args.concurrency,
        "stores": json,
    });
    println!("JSON {json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json:#}\n")).unwrap();
    }
}
