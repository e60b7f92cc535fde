//! The figures of every run, combined (medians over runs) and printed as
//! tables, as JSON, and against the targets.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use crate::{
    backing::Backing,
    run::RunFigures,
    stats::{Percentiles, median, median_duration, ms},
};

/// The runs of one matrix point (same sessions and turns), combined.
pub(crate) struct Point {
    pub(crate) sessions: usize,
    pub(crate) turns: u64,
    pub(crate) runs: Vec<RunFigures>,
}

/// One method's figures, median over the runs.
struct RpcRow {
    service: String,
    method: String,
    per_turn: f64,
    latency: Percentiles,
}

impl Point {
    fn machine_cpu_per_turn(&self) -> Duration {
        median_duration(self.runs.iter().map(|run| run.machine_cpu_per_turn))
    }

    fn turns_per_s(&self) -> f64 {
        median(self.runs.iter().map(|run| run.turns_per_s))
    }

    fn overhead(&self) -> Percentiles {
        Percentiles::median(&self.runs.iter().map(|run| run.overhead).collect::<Vec<_>>())
    }

    fn llm(&self) -> Percentiles {
        Percentiles::median(&self.runs.iter().map(|run| run.llm).collect::<Vec<_>>())
    }

    fn rpcs_per_turn(&self) -> f64 {
        median(self.runs.iter().map(|run| run.rpcs_per_turn))
    }

    fn floor_per_turn(&self) -> Duration {
        median_duration(self.runs.iter().map(|run| run.floor_per_turn))
    }

    fn ratio(&self) -> f64 {
        median(self.runs.iter().map(RunFigures::ratio))
    }

    fn floor_turns_per_s(&self) -> f64 {
        median(self.runs.iter().map(RunFigures::floor_turns_per_s))
    }

    fn rpc_rows(&self) -> Vec<RpcRow> {
        let mut by_method: BTreeMap<(String, String), Vec<(f64, Percentiles)>> = BTreeMap::new();
        for run in &self.runs {
            for rpc in &run.rpcs {
                by_method
                    .entry((rpc.service.clone(), rpc.method.clone()))
                    .or_default()
                    .push((rpc.per_turn, rpc.latency));
            }
        }
        by_method
            .into_iter()
            .map(|((service, method), values)| RpcRow {
                service,
                method,
                per_turn: median(values.iter().map(|(per_turn, _)| *per_turn)),
                latency: Percentiles::median(
                    &values
                        .iter()
                        .map(|(_, latency)| *latency)
                        .collect::<Vec<_>>(),
                ),
            })
            .collect()
    }

    fn floor(&self) -> BTreeMap<String, Percentiles> {
        let mut by_service: BTreeMap<String, Vec<Percentiles>> = BTreeMap::new();
        for run in &self.runs {
            for (service, latency) in &run.floor {
                by_service
                    .entry(service.clone())
                    .or_default()
                    .push(*latency);
            }
        }
        by_service
            .into_iter()
            .map(|(service, values)| (service, Percentiles::median(&values)))
            .collect()
    }

    /// The median over the runs of a per-process duration.
    fn per_process(
        &self,
        figure: impl Fn(&RunFigures) -> &BTreeMap<String, Duration>,
    ) -> BTreeMap<String, Duration> {
        let mut by_process: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for run in &self.runs {
            for (name, value) in figure(run) {
                by_process.entry(name.clone()).or_default().push(*value);
            }
        }
        by_process
            .into_iter()
            .map(|(name, values)| (name, median_duration(values.into_iter())))
            .collect()
    }

    /// The highest peak RSS of each process over the runs.
    fn peak_rss(&self) -> BTreeMap<String, u64> {
        let mut peak: BTreeMap<String, u64> = BTreeMap::new();
        for run in &self.runs {
            for (name, bytes) in &run.peak_rss {
                let entry = peak.entry(name.clone()).or_default();
                *entry = (*entry).max(*bytes);
            }
        }
        peak
    }

    fn json(&self) -> Value {
        let percentiles =
            |p: Percentiles| json!({"p50": ms(p.p50), "p95": ms(p.p95), "p99": ms(p.p99)});
        json!({
            "sessions": self.sessions,
            "turns": self.turns,
            "runs": self.runs.len(),
            "turns_per_s": self.turns_per_s(),
            "overhead_ms": percentiles(self.overhead()),
            "llm_ms": percentiles(self.llm()),
            "rpcs_per_turn": self.rpcs_per_turn(),
            "floor_ms_per_turn": ms(self.floor_per_turn()),
            "overhead_over_floor": self.ratio(),
            "floor_turns_per_s": self.floor_turns_per_s(),
            "rpc": self.rpc_rows().iter().map(|row| json!({
                "service": row.service,
                "method": row.method,
                "per_turn": row.per_turn,
                "latency_ms": percentiles(row.latency),
            })).collect::<Vec<_>>(),
            "floor_ms": self.floor().into_iter()
                .map(|(service, latency)| (service, percentiles(latency)))
                .collect::<serde_json::Map<_, _>>(),
            "peak_rss_bytes": self.peak_rss(),
            "cpu_ms_per_turn": self.per_process(|run| &run.cpu_per_turn).into_iter()
                .map(|(name, cpu)| (name, json!(ms(cpu))))
                .collect::<serde_json::Map<_, _>>(),
            "machine_cpu_ms_per_turn": ms(self.machine_cpu_per_turn()),
            "cpu_ms_per_floor_call": self.per_process(|run| &run.cpu_per_floor_call).into_iter()
                .map(|(name, cpu)| (name, json!(ms(cpu))))
                .collect::<serde_json::Map<_, _>>(),
            "per_run": self.runs.iter().map(|run| json!({
                "wall_s": run.wall.as_secs_f64(),
                "turns_per_s": run.turns_per_s,
                "overhead_ms": percentiles(run.overhead),
                "floor_ms_per_turn": ms(run.floor_per_turn),
                "overhead_over_floor": run.ratio(),
                "floor_calls_per_s": run.floor_calls_per_s,
            })).collect::<Vec<_>>(),
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints the tables of every point.
pub(crate) fn print_tables(points: &[Point]) {
    println!();
    println!(
        "{:>8} {:>6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>10} {:>6} {:>13}",
        "sessions",
        "turns",
        "turns/s",
        "ovh p50ms",
        "p95",
        "p99",
        "llm p50",
        "rpcs/turn",
        "floor ms",
        "ratio",
        "floor turns/s"
    );
    for point in points {
        let overhead = point.overhead();
        println!(
            "{:>8} {:>6} {:>9.0} {:>10.3} {:>8.3} {:>8.3} {:>8.3} {:>9.2} {:>10.3} {:>6.2} {:>13.0}",
            point.sessions,
            point.turns,
            point.turns_per_s(),
            ms(overhead.p50),
            ms(overhead.p95),
            ms(overhead.p99),
            ms(point.llm().p50),
            point.rpcs_per_turn(),
            ms(point.floor_per_turn()),
            point.ratio(),
            point.floor_turns_per_s(),
        );
    }
    println!();
    println!(
        "{:>8} {:<8} {:<22} {:>9} {:>8} {:>8}",
        "sessions", "service", "method", "per turn", "p50 ms", "p99 ms"
    );
    for point in points {
        for (service, latency) in point.floor() {
            println!(
                "{:>8} {:<8} {:<22} {:>9} {:>8.3} {:>8.3}",
                point.sessions,
                service,
                "(floor) Health/Check",
                "",
                ms(latency.p50),
                ms(latency.p99)
            );
        }
        for row in point.rpc_rows() {
            let per_turn = if row.per_turn > 0.0 {
                format!("{:.2}", row.per_turn)
            } else {
                "session".to_owned()
            };
            println!(
                "{:>8} {:<8} {:<22} {:>9} {:>8.3} {:>8.3}",
                point.sessions,
                row.service,
                row.method,
                per_turn,
                ms(row.latency.p50),
                ms(row.latency.p99)
            );
        }
    }
    println!();
    print_cpu(points);
    println!();
    let names: Vec<String> = points
        .first()
        .map(|point| point.peak_rss().into_keys().collect())
        .unwrap_or_default();
    print!("{:>8}", "sessions");
    for name in &names {
        print!(" {:>13}", format!("{name} MiB"));
    }
    println!("   (peak RSS, VmHWM)");
    for point in points {
        let rss = point.peak_rss();
        print!("{:>8}", point.sessions);
        for name in &names {
            print!(" {:>13.1}", rss.get(name).copied().map_or(0.0, mib));
        }
        println!();
    }
}

/// Prints the CPU time per turn of each process, and per empty call.
fn print_cpu(points: &[Point]) {
    let names: Vec<String> = points
        .first()
        .map(|point| {
            point
                .per_process(|run| &run.cpu_per_turn)
                .into_keys()
                .collect()
        })
        .unwrap_or_default();
    print!("{:>8} {:<16}", "sessions", "CPU ms per");
    for name in &names {
        print!(" {name:>12}");
    }
    println!(" {:>8}", "total");
    for point in points {
        for (label, figures) in [
            ("turn", point.per_process(|run| &run.cpu_per_turn)),
            (
                "empty call",
                point.per_process(|run| &run.cpu_per_floor_call),
            ),
        ] {
            print!("{:>8} {label:<16}", point.sessions);
            for name in &names {
                print!(" {:>12.3}", figures.get(name).copied().map_or(0.0, ms));
            }
            println!(" {:>8.3}", ms(figures.values().sum()));
        }
        let machine = point.machine_cpu_per_turn();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "{:>8} machine CPU per turn, every process (engines too): {:.3} ms; {cores} cores cap it at {:.0} turns/s",
            point.sessions,
            ms(machine),
            cores as f64 / machine.as_secs_f64().max(1e-9)
        );
    }
}

/// Prints each target of the issue with met / not met.
pub(crate) fn print_targets(points: &[Point]) {
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!();
    if let Some(one) = points.iter().find(|point| point.sessions == 1) {
        let overhead = one.overhead();
        println!(
            "target 1 session: overhead p50 {:.3} ms <= 1 ms: {}; p99 {:.3} ms <= 5 ms: {}",
            ms(overhead.p50),
            verdict(overhead.p50 <= Duration::from_millis(1)),
            ms(overhead.p99),
            verdict(overhead.p99 <= Duration::from_millis(5)),
        );
        println!(
            "target overhead/floor at 1 session: {:.2} <= 2: {}",
            one.ratio(),
            verdict(one.ratio() <= 2.0)
        );
    }
    if let Some(many) = points.iter().find(|point| point.sessions == 64) {
        println!(
            "target 64 sessions: {:.0} turns/s >= 3000: {}",
            many.turns_per_s(),
            verdict(many.turns_per_s() >= 3000.0)
        );
    }
    let largest = points
        .iter()
        .map(|point| point.sessions as u64 * point.turns)
        .max()
        .unwrap_or(0);
    let peak = points
        .iter()
        .flat_map(|point| point.peak_rss())
        .filter(|(name, _)| name != "orchestrator")
        .map(|(_, bytes)| bytes)
        .max()
        .unwrap_or(0);
    println!(
        "peak RSS of any service: {:.1} MiB (target <= 50 MiB after 100k turns; largest run here: {largest} turns): {}",
        mib(peak),
        verdict(mib(peak) <= 50.0)
    );
}

/// The whole result as one JSON value.
pub(crate) fn json(points: &[Point], runs: usize, audit_synchronous: &str) -> Value {
    json!({
        "bench": "mesh cost per turn",
        "llm": "offline (no delay)",
        "audit_synchronous": audit_synchronous,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runs": runs,
        "results": points.iter().map(Point::json).collect::<Vec<_>>(),
    })
}

impl Point {
    /// A point with no runs (a placeholder while the points are moved).
    pub(crate) fn empty() -> Self {
        Point {
            sessions: 0,
            turns: 0,
            runs: Vec::new(),
        }
    }
}

/// `measured[row][backing]`: turns/s, and each backing's time per turn
/// against the first backing's (the SQLite path).
fn comparison_rows(measured: &[Vec<Point>]) -> Vec<(usize, Vec<(f64, f64)>)> {
    measured
        .iter()
        .map(|points| {
            let base = points.first().map_or(0.0, Point::turns_per_s);
            let figures = points
                .iter()
                .map(|point| {
                    let rate = point.turns_per_s();
                    (
                        rate,
                        if rate > 0.0 {
                            base / rate
                        } else {
                            f64::INFINITY
                        },
                    )
                })
                .collect();
            (points.first().map_or(0, |point| point.sessions), figures)
        })
        .collect()
}

/// Prints turns/s of every backing side by side, the cost per turn against
/// the SQLite path, and the two targets for the engines.
pub(crate) fn print_store_comparison(backings: &[Backing], measured: &[Vec<Point>]) {
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!("\n=== stores side by side (turns/s; x: time per turn against the first) ===");
    print!("{:>9}", "sessions");
    for backing in backings {
        print!(" | {:>40}", backing.label());
    }
    println!();
    let rows = comparison_rows(measured);
    for (sessions, figures) in &rows {
        print!("{sessions:>9}");
        for (rate, cost) in figures {
            print!(" | {:>30.0} ({cost:>5.2}x)", rate);
        }
        println!();
    }
    let at = |sessions: usize| rows.iter().find(|(s, _)| *s == sessions).map(|(_, f)| f);
    if backings.get(1) == Some(&Backing::MutualTls) {
        print_tls_cost(&rows, measured);
        return;
    }
    if backings.get(1) == Some(&Backing::ChainOff { on_engines: false }) {
        print_chain_cost(backings, &rows);
        return;
    }
    if backings.get(1) == Some(&Backing::Metrics) {
        for (sessions, figures) in &rows {
            if let Some((_, cost)) = figures.get(1) {
                println!(
                    "metrics on at {sessions} session(s): {cost:.2}x the time per turn with them off"
                );
            }
        }
        return;
    }
    if let Some(one) = at(1).and_then(|figures| figures.get(1)) {
        println!(
            "target postgres per turn at 1 session within 2x of sqlite: {:.2}x: {}",
            one.1,
            verdict(one.1 <= 2.0)
        );
    }
    if let Some((sqlite, twins)) =
        at(64).and_then(|figures| Some((figures.first()?, figures.get(2)?)))
    {
        println!(
            "target postgres with 2 audit replicas at 64 sessions >= sqlite: {:.0} vs {:.0} turns/s: {}",
            twins.0,
            sqlite.0,
            verdict(twins.0 >= sqlite.0)
        );
    }
}

/// What the hash chain costs per turn: each backing with the chain on
/// against the same backing with it off (the next column).
fn print_chain_cost(backings: &[Backing], rows: &[(usize, Vec<(f64, f64)>)]) {
    for pair in (0..backings.len()).step_by(2) {
        let store = if pair == 0 { "sqlite" } else { "postgres" };
        for (sessions, figures) in rows {
            let (Some((on, _)), Some((off, _))) = (figures.get(pair), figures.get(pair + 1)) else {
                continue;
            };
            let extra_us = (1.0 / on.max(1e-9) - 1.0 / off.max(1e-9)) * 1e6;
            println!(
                "chain on {store} at {sessions} session(s): {on:.0} turns/s on, {off:.0} off: \
                 {:.2}x the time per turn, {extra_us:+.1} us per turn",
                off / on.max(1e-9)
            );
        }
    }
}

/// What mutual TLS costs per turn, and how many handshakes it took.
fn print_tls_cost(rows: &[(usize, Vec<(f64, f64)>)], measured: &[Vec<Point>]) {
    for ((sessions, figures), points) in rows.iter().zip(measured) {
        let (Some((plain, _)), Some((tls, cost))) = (figures.first(), figures.get(1)) else {
            continue;
        };
        let extra_us = (1.0 / tls.max(1e-9) - 1.0 / plain.max(1e-9)) * 1e6;
        let handshakes: Vec<String> = points
            .get(1)
            .map(|point| {
                point
                    .runs
                    .iter()
                    .filter_map(|run| run.tls_handshakes)
                    .map(|(all, measured)| format!("{all} ({measured} while measured)"))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "mutual TLS at {sessions} session(s): {cost:.2}x the plaintext time per turn ({extra_us:+.0} us a turn); orchestrator handshakes per run: {}",
            handshakes.join(", ")
        );
    }
}

/// The side-by-side figures as JSON.
pub(crate) fn store_comparison_json(backings: &[Backing], measured: &[Vec<Point>]) -> Value {
    let rows: Vec<Value> = comparison_rows(measured)
        .into_iter()
        .map(|(sessions, figures)| {
            let stores: serde_json::Map<String, Value> = backings
                .iter()
                .zip(figures)
                .map(|(backing, (rate, cost))| {
                    (
                        backing.key(),
                        json!({ "turns_per_s": rate, "time_per_turn_vs_sqlite": cost }),
                    )
                })
                .collect();
            json!({ "sessions": sessions, "stores": stores })
        })
        .collect();
    Value::Array(rows)
}
