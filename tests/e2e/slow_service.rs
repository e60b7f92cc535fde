//! A slow service trips its deadline and then its circuit breaker instead of
//! stalling the run: Memory behind a proxy that delays every byte by 1 s,
//! with a 200 ms memory deadline.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use heist_e2e::{mesh::TestMesh, proxy::DelayProxy};
use heist_orchestrator::{
    app,
    config::Endpoint,
    engine::{RunOptions, TurnRecord, TurnSink},
    llm::OfflineBackend,
    mesh::Mesh,
    spool::Spool,
};
use tokio::sync::watch;

/// When each turn ended.
#[derive(Default)]
struct Clocked(Mutex<Vec<Instant>>);

impl TurnSink for Clocked {
    fn turn(&self, _session_id: &str, _record: &TurnRecord) {
        self.0.lock().unwrap().push(Instant::now());
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_memory_trips_the_deadline_then_the_breaker_and_turns_stay_fast() {
    let mesh = TestMesh::start().await;
    let proxy = DelayProxy::start(mesh.memory.addr, Duration::ZERO).await;
    let mut config = mesh.config();
    config.memory = Endpoint::parse(&proxy.url()).unwrap().into();
    config.timeouts.memory = Duration::from_millis(200);
    config.resilience.open_for = Duration::from_secs(600);
    let config = Arc::new(config);
    let dir = tempfile::TempDir::new().unwrap();
    let spool = Spool::open(dir.path().join("audit.spool")).unwrap();
    let (orchestrator, _) = app::prepare(
        config.clone(),
        Mesh::connect(&config).await.unwrap(),
        Arc::new(OfflineBackend::new(3)),
        spool,
    )
    .await;
    let (_stop, stop) = watch::channel(false);

    // 10 healthy turns, then Memory turns slow.
    let healthy = Clocked::default();
    let started = Instant::now();
    orchestrator
        .run_session(
            "heist_slow_a",
            &RunOptions {
                max_turns: 10,
                seed: 3,
            },
            stop.clone(),
            &healthy,
        )
        .await
        .unwrap();
    let healthy_turns = gaps(started, &healthy);

    proxy.set_delay(Duration::from_secs(1));
    let slow = Clocked::default();
    let started = Instant::now();
    let outcome = orchestrator
        .run_session(
            "heist_slow_b",
            &RunOptions {
                max_turns: 30,
                seed: 3,
            },
            stop,
            &slow,
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, "completed");
    assert_eq!(outcome.turns.len(), 30);
    assert!(
        outcome
            .breaker_events
            .iter()
            .any(|event| event.starts_with("memory: closed -> open")),
        "{:?}",
        outcome.breaker_events
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "a slow Memory must not stall the run: {elapsed:?}"
    );
    let slow_turns = gaps(started, &slow);
    let open_turns = slow_turns[10..].to_vec();
    let (healthy_median, open_median) = (median(healthy_turns), median(open_turns));
    println!(
        "turn time: healthy median {healthy_median:?}, memory breaker open median {open_median:?}"
    );
    assert!(
        open_median < Duration::from_millis(200),
        "a turn spends ~nothing on an open breaker: {open_median:?}"
    );
}

/// The time each turn took.
fn gaps(started: Instant, clocked: &Clocked) -> Vec<Duration> {
    let ends = clocked.0.lock().unwrap().clone();
    let mut previous = started;
    ends.into_iter()
        .map(|end| {
            let gap = end - previous;
            previous = end;
            gap
        })
        .collect()
}
