//! The Audit service's own metrics, read from the process's registry as a
//! scrape would see them. A test binary of its own (the registry is
//! process-wide): nothing else writes here, so every count is exact.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_audit::{
    AuditService, AuditStore, StoreConfig, StoreLocation,
    store::{NewMessage, NewSession, NewSessionEvent, NewToolUsage, NewTurn},
};
use heist_plumbing::metrics::{encode, sample};
use heist_proto::v1::{self as pb, audit_service_server::AuditService as _};

/// The tests take turns: each counts exactly what it wrote.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of `series` now (a series not yet written reads as 0).
fn now(series: &str) -> f64 {
    sample(&encode(), series).unwrap_or(0.0)
}

/// Waits (at most 5 s) until `series` reads `value`: a watcher's task
/// frees its place once it sees its client gone.
async fn until(series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while now(series) != value {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stays at {} (expected {value})",
            now(series)
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The series the writes below move, and how much they read now.
fn readings(store: &str) -> Vec<f64> {
    series(store).iter().map(|series| now(series)).collect()
}

fn series(store: &str) -> Vec<String> {
    let mut all = vec![
        format!("heist_audit_commits_total{{store=\"{store}\"}}"),
        "heist_audit_commit_batch_size_count".to_owned(),
        "heist_audit_commit_batch_size_sum".to_owned(),
        "heist_audit_commit_duration_seconds_count".to_owned(),
    ];
    for table in ["sessions", "messages", "tool_usage", "session_events"] {
        all.push(format!("heist_audit_rows_total{{table=\"{table}\"}}"));
    }
    all
}

fn message(key: &str) -> NewMessage {
    NewMessage {
        session_id: "s1".into(),
        turn_id: 1,
        agent_name: "planner".into(),
        agent_role: "Strategic Planner".into(),
        message: "we go at dawn".into(),
        idempotency_key: key.into(),
        ..NewMessage::default()
    }
}

fn tool_call(key: &str) -> NewToolUsage {
    NewToolUsage {
        session_id: "s1".into(),
        turn_id: 2,
        agent_name: "planner".into(),
        tool_name: "calculator".into(),
        tool_params: "2+2".into(),
        tool_result: "4".into(),
        success: true,
        idempotency_key: key.into(),
        ..NewToolUsage::default()
    }
}

/// Six writes, one at a time (one commit each): a session, a message, the
/// same message again (a repeat: no row), a turn with two tool calls, an
/// event, and a message refused because its key holds other content.
async fn write_six(store: &AuditStore) {
    store
        .create_session(NewSession {
            session_id: "s1".into(),
            ..NewSession::default()
        })
        .await
        .unwrap();
    store.store_message(message("m1")).await.unwrap();
    store.store_message(message("m1")).await.unwrap();
    store
        .store_turn(NewTurn {
            message: NewMessage {
                turn_id: 2,
                ..message("m2")
            },
            tool_calls: vec![tool_call("t1"), tool_call("t2")],
        })
        .await
        .unwrap();
    store
        .store_session_event(NewSessionEvent {
            session_id: "s1".into(),
            kind: "breaker.open".into(),
            detail: "tools".into(),
            idempotency_key: "e1".into(),
            ..NewSessionEvent::default()
        })
        .await
        .unwrap();
    let conflicting = NewMessage {
        message: "we go at dusk".into(),
        ..message("m1")
    };
    assert!(store.store_message(conflicting).await.is_err());
}

async fn counts_one_store(location: StoreLocation, store_label: &str) {
    let store = AuditStore::connect(StoreConfig::at(location))
        .await
        .unwrap();
    let before = readings(store_label);
    write_six(&store).await;
    let after = readings(store_label);
    let moved: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // SQLite commits a refused write's empty savepoint; PostgreSQL rolls a
    // lone refused write back (no commit).
    let commits = if store_label == "sqlite" { 6.0 } else { 5.0 };
    assert_eq!(
        moved,
        [commits, commits, commits, commits, 1.0, 2.0, 2.0, 1.0],
        "{store_label}: {:?}",
        series(store_label)
    );
    store.shutdown();
}

#[tokio::test]
async fn each_store_counts_its_commits_batch_sizes_and_rows_by_table() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    counts_one_store(StoreLocation::Sqlite(dir.path().join("audit.db")), "sqlite").await;
    let postgres =
        heist_engines::PostgresServer::shared().expect("the test PostgreSQL server must start");
    let url = postgres
        .fresh_database()
        .expect("a fresh PostgreSQL database");
    counts_one_store(StoreLocation::Postgres(url), "postgres").await;

    let text = encode();
    for store in ["sqlite", "postgres"] {
        assert!(
            text.contains(&format!("heist_audit_commits_total{{store=\"{store}\"}}")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_watchers_gauge_counts_open_watch_session_streams() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(StoreConfig::new(dir.path().join("audit.db"))).unwrap();
    store
        .create_session(NewSession {
            session_id: "s1".into(),
            ..NewSession::default()
        })
        .await
        .unwrap();
    let service = AuditService::new(store.clone());
    let watch = |session_id: &str| {
        service.watch_session(tonic::Request::new(pb::WatchSessionRequest {
            session_id: session_id.into(),
            after_message_id: 0,
        }))
    };
    let watchers = "heist_audit_watchers";
    let before = now(watchers);
    let first = watch("s1").await.unwrap();
    let second = watch("s1").await.unwrap();
    assert_eq!(now(watchers), before + 2.0);
    let unknown = watch("nobody").await.err().map(|status| status.code());
    assert_eq!(unknown, Some(tonic::Code::NotFound));
    assert_eq!(
        now(watchers),
        before + 2.0,
        "a refused watch is not counted"
    );
    drop(first);
    until(watchers, before + 1.0).await;
    drop(second);
    until(watchers, before).await;
    store.shutdown();
}
