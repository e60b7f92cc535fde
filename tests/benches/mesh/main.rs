//! Mesh cost per turn: S concurrent sessions x T turns with the offline LLM
//! answering at once, against the real release binaries, each as a process.
//!
//! Per run: a fresh mesh (`ProcessMesh`, services as shipped: 5-minute
//! tokens, retries, breakers, spool, `synchronous=FULL`), a warm-up of 4
//! turns per session (tokens bought, connections opened), the floor (empty
//! health Checks on the orchestrator's own channels, S callers at once),
//! then the measured sessions; the audit rows are checked (a run with a
//! missing row fails), and each process's peak RSS is read. The orchestrator
//! runs in this process, with its telemetry as `orchestrator run` has it
//! (logs at warn, session IDs propagated) and no span export.
//!
//! Run: `scripts/bench.sh` (builds release, then runs this); flags:
//! `--sessions 1,16,64 --turns 50 --runs 1 --seed 42 --json PATH`.
//! Prints tables, the targets met or not, and one `JSON {...}` line.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

mod report;
mod run;
mod stats;
mod verify;

use std::path::PathBuf;

use clap::Parser;
use opentelemetry_sdk::trace::InMemorySpanExporter;

#[global_allocator]
static ALLOCATOR: heist_orchestrator::Allocator = heist_orchestrator::Allocator;

/// What to run.
#[derive(Debug, Parser)]
#[command(about = "Mesh cost per turn, against the gRPC floor")]
struct Args {
    /// Concurrent sessions of each matrix point.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    sessions: Vec<usize>,

    /// Turns per session.
    #[arg(long, default_value_t = 50)]
    turns: u64,

    /// Runs of each point (a fresh mesh each); figures are their medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,

    /// Seed of the speakers and the offline answers.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Also write the JSON here.
    #[arg(long)]
    json: Option<PathBuf>,

    /// Audit's `--synchronous` (default: as it ships, `full`: an fsync per
    /// commit); `normal` shows what the fsync costs.
    #[arg(long, value_parser = ["full", "normal"])]
    audit_synchronous: Option<String>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One worker thread, as `orchestrator` runs by default (`--worker-threads 1`).
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = Args::parse();
    // The orchestrator's own telemetry, as `orchestrator run` sets it up
    // (log lines at warn, the session ID carried on every call), with no
    // span export whatever the environment says.
    let telemetry = heist_plumbing::telemetry::init_with_exporter::<InMemorySpanExporter>(
        "heist-orchestrator",
        "warn",
        heist_plumbing::telemetry::LogFormat::Text,
        None,
    )
    .expect("telemetry");
    let runs = args.runs.max(1);
    println!(
        "mesh cost per turn: sessions {:?} x {} turns, offline LLM, {runs} run(s) per point (medians), audit synchronous={}",
        args.sessions,
        args.turns,
        args.audit_synchronous.as_deref().unwrap_or("full")
    );
    let mut points = Vec::new();
    for &sessions in &args.sessions {
        let mut point = report::Point {
            sessions: sessions.max(1),
            turns: args.turns,
            runs: Vec::new(),
        };
        for run in 0..runs {
            let figures = run::one_run(
                point.sessions,
                args.turns,
                args.seed,
                args.audit_synchronous.clone(),
            )
            .await
            .unwrap_or_else(|problem| panic!("run does not count: {problem}"));
            println!(
                "  {} sessions, run {}: {:.0} turns/s, overhead p50 {:.3} ms, {:.1} s",
                point.sessions,
                run + 1,
                figures.turns_per_s,
                stats::ms(figures.overhead.p50),
                figures.wall.as_secs_f64()
            );
            point.runs.push(figures);
        }
        points.push(point);
    }
    report::print_tables(&points);
    report::print_targets(&points);
    let json = report::json(
        &points,
        runs,
        args.audit_synchronous.as_deref().unwrap_or("full"),
    );
    println!("JSON {json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json:#}\n")).expect("write the JSON file");
        println!("JSON written to {}", path.display());
    }
    telemetry.shutdown().await;
}
