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
//! `--sessions 1,16,64 --turns 50 --runs 1 --seed 42 --json PATH`, and
//! `--store postgres`: the same matrix three times in one run, as shipped
//! (SQLite, Memory in process), on the engines (Audit on a private
//! PostgreSQL, durable commits, Memory on a private Redis), and on the
//! engines with two Audit replicas; then the three side by side. `--tls`:
//! the matrix as shipped and again with mutual TLS on every hop, side by
//! side, with the orchestrator's TLS handshakes. `--metrics`: the matrix with
//! metrics off (as shipped) and on, side by side. `--chain`: the matrix with
//! Audit's hash chain on (as shipped) and off, side by side (with
//! `--store postgres`, on SQLite and on PostgreSQL).
//! Prints tables, the targets met or not, and one `JSON {...}` line.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed benchmark

mod backing;
mod report;
mod run;
mod stats;
mod verify;

use std::path::PathBuf;

use backing::Backing;
use clap::Parser;
use heist_e2e::processes::MeshOptions;
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

    /// Where Audit and Memory keep their state: `sqlite` (as shipped: an
    /// SQLite file, Memory in process) or `postgres` (Audit on PostgreSQL,
    /// Memory on Redis, private servers started here; measured beside the
    /// `sqlite` figures and with two Audit replicas, in the same run).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,

    /// Also run every point with mutual TLS on every hop (a development CA
    /// and a certificate per service made for each run), beside plaintext
    /// in the same run, and print the per-turn cost of TLS and the
    /// handshakes the orchestrator made.
    #[arg(long, conflicts_with = "store")]
    tls: bool,

    /// Also run every point with metrics counted in every process (the
    /// services serving `/metrics`), beside the shipped default (off), in the
    /// same run.
    #[arg(long, conflicts_with_all = ["store", "tls"])]
    metrics: bool,

    /// Also run every point with Audit's hash chain and checkpoints off
    /// (`heist-audit --no-chain`), beside the shipped default (on), in the
    /// same run, and print what the chain costs per turn. With `--store
    /// postgres`, on SQLite and on PostgreSQL (one replica) alike.
    #[arg(long, conflicts_with_all = ["tls", "metrics"])]
    chain: bool,

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
    let synchronous = args.audit_synchronous.as_deref().unwrap_or("full");
    println!(
        "mesh cost per turn: sessions {:?} x {} turns, offline LLM, {runs} run(s) per point (medians), audit synchronous={synchronous}, store {}",
        args.sessions, args.turns, args.store
    );
    let (backings, mut engines) = if args.chain {
        let sqlite = [Backing::Embedded, Backing::ChainOff { on_engines: false }];
        if args.store == "postgres" {
            let engines = backing::Engines::start().expect("the private engines start");
            let postgres = [
                Backing::OnEngines { audit_replicas: 1 },
                Backing::ChainOff { on_engines: true },
            ];
            ([sqlite, postgres].concat(), Some(engines))
        } else {
            (sqlite.to_vec(), None)
        }
    } else if args.store == "postgres" {
        let engines = backing::Engines::start().expect("the private engines start");
        let backings = vec![
            Backing::Embedded,
            Backing::OnEngines { audit_replicas: 1 },
            Backing::OnEngines { audit_replicas: 2 },
        ];
        (backings, Some(engines))
    } else if args.tls {
        (vec![Backing::Embedded, Backing::MutualTls], None)
    } else if args.metrics {
        (vec![Backing::Embedded, Backing::Metrics], None)
    } else {
        (vec![Backing::Embedded], None)
    };
    let shipped = MeshOptions {
        audit_synchronous: args.audit_synchronous.clone(),
        ..MeshOptions::as_shipped()
    };
    let mut measured = Vec::new();
    for &sessions in &args.sessions {
        // The backings alternate run by run, so that the machine's drift
        // over the minutes of a run falls on each of them alike.
        let mut points: Vec<report::Point> = backings
            .iter()
            .map(|_| report::Point {
                sessions: sessions.max(1),
                turns: args.turns,
                runs: Vec::new(),
            })
            .collect();
        for run in 0..runs {
            for (backing, point) in backings.iter().zip(&mut points) {
                let options = backing
                    .options(shipped.clone(), engines.as_mut())
                    .expect("the run's stores");
                // The orchestrator (this process) counts only on the metrics backing.
                heist_plumbing::metrics::set_enabled(*backing == Backing::Metrics);
                let figures = run::one_run(point.sessions, args.turns, args.seed, options)
                    .await
                    .unwrap_or_else(|problem| panic!("run does not count: {problem}"));
                println!(
                    "  {} sessions, {}, run {}: {:.0} turns/s, overhead p50 {:.3} ms, {:.1} s",
                    point.sessions,
                    backing.label(),
                    run + 1,
                    figures.turns_per_s,
                    stats::ms(figures.overhead.p50),
                    figures.wall.as_secs_f64()
                );
                point.runs.push(figures);
            }
        }
        measured.push(points);
    }
    let mut results = serde_json::Map::new();
    for (index, backing) in backings.iter().enumerate() {
        let points: Vec<report::Point> = measured
            .iter_mut()
            .map(|points| std::mem::replace(&mut points[index], report::Point::empty()))
            .collect();
        if backings.len() > 1 {
            println!("\n=== {} ===", backing.label());
        }
        report::print_tables(&points);
        report::print_targets(&points);
        results.insert(backing.key(), report::json(&points, runs, synchronous));
        for (row, point) in measured.iter_mut().zip(points) {
            row[index] = point;
        }
    }
    let json = if backings.len() > 1 {
        report::print_store_comparison(&backings, &measured);
        serde_json::json!({ "stores": results, "comparison": report::store_comparison_json(&backings, &measured) })
    } else {
        results.remove("sqlite").unwrap_or_default()
    };
    println!("JSON {json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json:#}\n")).expect("write the JSON file");
        println!("JSON written to {}", path.display());
    }
    telemetry.shutdown().await;
}
