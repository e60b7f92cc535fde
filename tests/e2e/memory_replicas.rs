//! Memory replicas on one Redis: what one writes the other reads, a turn
//! stored through both at once is stored once, a replica killed and restarted
//! loses nothing, Redis going away answers UNAVAILABLE (and health says
//! NOT_SERVING) until it is back, and
//! a Redis that cannot be reached at start stops the binary in one line.
//!
//! Each test runs its own private Redis (`heist_engines::RedisServer`), which
//! must start: a test fails, never skips, without it. That Redis keeps nothing
//! on disk (no RDB, no AOF), so restarting it empties it: Memory then names a
//! new instance, and the orchestrator re-sends what Memory lacks.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use heist_e2e::{
    binary, channel_to, dev_token,
    processes::{MeshOptions, ProcessMesh, free_addr},
    wait_until_serving,
};
use heist_engines::RedisServer;
use heist_memory::{Limits, StoreConfig};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    GetStatsRequest, ListMemoryTurnsRequest, memory_service_client::MemoryServiceClient,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::memory_service::{
    Client, Kind, compressed, full_client_of, start_memory, start_on, turn,
};

fn list(agent: &str, session: &str) -> ListMemoryTurnsRequest {
    ListMemoryTurnsRequest {
        agent_id: agent.into(),
        session_id: session.into(),
    }
}

#[tokio::test]
async fn turns_written_through_one_replica_are_read_identically_through_another() {
    let a = start_memory(Kind::Redis, Limits::default()).await;
    let store = StoreConfig::Redis(a.redis.as_ref().unwrap().url());
    let b = start_on(&store, Limits::default(), &a.auth).await;
    let (mut via_a, mut via_b) = (a.full_client(), full_client_of(&b, &a.auth));
    for turn_id in 1..=12 {
        let (writer, agent) = if turn_id % 2 == 0 {
            (&mut via_a, "planner")
        } else {
            (&mut via_b, "hacker")
        };
        let message = format!("Turn {turn_id} of the plan. Details follow.");
        let stored = writer
            .store_memory(turn(agent, "s1", turn_id, &message))
            .await
            .unwrap()
            .into_inner();
        assert!(stored.stored);
    }
    for agent in ["planner", "hacker"] {
        let from_a = via_a
            .get_compressed_memory(compressed(agent, "s1", 2, 200))
            .await
            .unwrap()
            .into_inner();
        let from_b = via_b
            .get_compressed_memory(compressed(agent, "s1", 2, 200))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(from_a, from_b);
        assert_eq!(from_a.memories_count, 6);
        assert!(!from_a.summary.is_empty());
        let (turns_a, turns_b) = (
            via_a.list_memory_turns(list(agent, "s1")).await.unwrap(),
            via_b.list_memory_turns(list(agent, "s1")).await.unwrap(),
        );
        assert_eq!(
            turns_a.get_ref(),
            turns_b.get_ref(),
            "same turns, one instance"
        );
    }
    let stats_a = via_a.get_stats(GetStatsRequest {}).await.unwrap();
    let stats_b = via_b.get_stats(GetStatsRequest {}).await.unwrap();
    assert_eq!(
        stats_a.get_ref(),
        stats_b.get_ref(),
        "counters live in Redis"
    );
    assert_eq!(stats_a.get_ref().total_memories, 12);
    assert_eq!(stats_a.get_ref().total_streams, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_turn_stored_through_both_replicas_at_once_is_stored_once() {
    let a = start_memory(Kind::Redis, Limits::default()).await;
    let store = StoreConfig::Redis(a.redis.as_ref().unwrap().url());
    let b = start_on(&store, Limits::default(), &a.auth).await;
    let (via_a, via_b) = (a.full_client(), full_client_of(&b, &a.auth));
    const PAIRS: i64 = 200;
    let mut pairs = tokio::task::JoinSet::new();
    for turn_id in 0..PAIRS {
        let (mut via_a, mut via_b) = (via_a.clone(), via_b.clone());
        pairs.spawn(async move {
            let same = format!("turn {turn_id}");
            let (left, right) = tokio::join!(
                via_a.store_memory(turn("planner", "race", turn_id, &same)),
                via_b.store_memory(turn("planner", "race", turn_id, &same)),
            );
            let stored = [left.unwrap(), right.unwrap()]
                .iter()
                .filter(|answer| answer.get_ref().stored)
                .count();
            let (left, right) = tokio::join!(
                via_a.store_memory(turn("mole", "clash", turn_id, "left")),
                via_b.store_memory(turn("mole", "clash", turn_id, "right")),
            );
            let outcomes = [left.map(|_| ()), right.map(|_| ())];
            let conflicts = outcomes
                .iter()
                .filter(|outcome| {
                    outcome
                        .as_ref()
                        .is_err_and(|status| status.code() == Code::AlreadyExists)
                })
                .count();
            assert_eq!(
                outcomes.iter().filter(|o| o.is_ok()).count(),
                1,
                "{outcomes:?}"
            );
            (stored, conflicts)
        });
    }
    while let Some(pair) = pairs.join_next().await {
        assert_eq!(
            pair.unwrap(),
            (1, 1),
            "one store, one repeat; one store, one conflict"
        );
    }
    let mut via_a = via_a;
    let stats = via_a
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_memories, 2 * PAIRS, "{stats:?}");
    assert_eq!(stats.total_streams, 2);
    let turns = via_a
        .list_memory_turns(list("planner", "race"))
        .await
        .unwrap();
    assert_eq!(turns.into_inner().turn_ids, (0..PAIRS).collect::<Vec<_>>());
}

/// An orchestrator client of the Memory of `mesh`.
async fn process_client(mesh: &ProcessMesh) -> Client {
    let token = dev_token(
        mesh.addr("oauth"),
        "orchestrator",
        "memory:read memory:write agents:act_for_any",
    )
    .await
    .unwrap();
    MemoryServiceClient::with_interceptor(
        channel_to(mesh.addr("memory")),
        BearerInterceptor::new(&token),
    )
}

#[tokio::test]
async fn a_memory_process_killed_and_restarted_on_redis_loses_nothing() {
    let redis = RedisServer::start().expect("the private Redis must start");
    let mut mesh = ProcessMesh::start_with(MeshOptions {
        memory_store: Some(redis.url()),
        ..MeshOptions::for_tests()
    })
    .await;
    let mut client = process_client(&mesh).await;
    let mut instance = String::new();
    for turn_id in 1..=10 {
        let stored = client
            .store_memory(turn("planner", "s1", turn_id, &format!("step {turn_id}")))
            .await
            .unwrap()
            .into_inner();
        instance = stored.instance_id;
    }
    let before = client
        .get_compressed_memory(compressed("planner", "s1", 3, 500))
        .await
        .unwrap()
        .into_inner();

    mesh.kill("memory");
    mesh.restart("memory");
    mesh.wait_serving("memory").await;

    let mut client = process_client(&mesh).await;
    let listed = client
        .list_memory_turns(list("planner", "s1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.turn_ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        listed.instance_id, instance,
        "the same store, so the same instance"
    );
    let after = client
        .get_compressed_memory(compressed("planner", "s1", 3, 500))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    let repeat = client
        .store_memory(turn("planner", "s1", 4, "step 4"))
        .await
        .unwrap()
        .into_inner();
    assert!(!repeat.stored);
    assert_eq!(repeat.memories_count, 10);
}

#[tokio::test]
async fn while_redis_is_down_memory_is_unavailable_and_not_serving_then_serves_again() {
    let mut memory = start_memory(Kind::Redis, Limits::default()).await;
    wait_until_serving(memory.server.addr, "").await.unwrap();
    let mut client = memory.full_client();
    let first = client
        .store_memory(turn("planner", "s1", 1, "we go at dawn"))
        .await
        .unwrap()
        .into_inner();
    let redis = memory.redis.as_mut().unwrap();
    let port = redis.port();
    redis.stop();

    let status = client
        .store_memory(turn("planner", "s1", 2, "the vault"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().starts_with(&format!(
            "the memory store is unavailable: Redis at 127.0.0.1:{port}"
        )),
        "{status:?}"
    );
    let status = client
        .get_compressed_memory(compressed("planner", "s1", 5, 100))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        heist_e2e::health_within(memory.server.addr, ServingStatus::NotServing).await,
        ServingStatus::NotServing,
        "health follows Redis"
    );

    // Redis comes back empty (it persists nothing): Memory reconnects by itself.
    memory.redis.as_mut().unwrap().start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match client
            .store_memory(turn("planner", "s1", 2, "the vault"))
            .await
        {
            Ok(answer) => break answer.into_inner(),
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("Memory did not come back: {status:?}"),
        }
    };
    assert!(again.stored);
    assert_eq!(
        again.memories_count, 1,
        "Redis restarted empty: turn 1 is gone"
    );
    assert_eq!(
        heist_e2e::health_within(memory.server.addr, ServingStatus::Serving).await,
        ServingStatus::Serving
    );
    assert_ne!(
        again.instance_id, first.instance_id,
        "an emptied store is a new instance, so the orchestrator re-sends"
    );
}

/// Runs `heist-memory --store STORE` and answers its exit status and stderr
/// (it must stop within 20 s).
fn memory_binary_with_store(store: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary("heist-memory"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--oauth-url",
            "http://127.0.0.1:9",
        ])
        .env("HEIST_MEMORY_STORE", store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("heist-memory --store {store} did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn an_unreachable_redis_a_wrong_password_or_a_bad_url_stops_memory_in_one_line() {
    let redis = RedisServer::start().expect("the private Redis must start");
    let closed = free_addr();
    let cases = [
        (
            format!("redis://{closed}/"),
            format!("cannot connect to Redis at {closed}: connection refused"),
        ),
        (
            format!("redis://:not-the-password@127.0.0.1:{}/", redis.port()),
            format!(
                "cannot connect to Redis at 127.0.0.1:{}: authentication failed",
                redis.port()
            ),
        ),
        (
            "redis://127.0.0.1:notaport/".to_owned(),
            "--store".to_owned(),
        ),
        ("postgres://127.0.0.1/".to_owned(), "--store".to_owned()),
    ];
    for (store, expected) in cases {
        let (status, stderr) = memory_binary_with_store(&store);
        assert!(!status.success(), "{store}: {status:?}");
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        assert_eq!(lines.len(), 1, "{store}: one line, got {stderr:?}");
        assert!(lines[0].contains(&expected), "{store}: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains("not-the-password"),
            "no password in {stderr}"
        );
    }
}
