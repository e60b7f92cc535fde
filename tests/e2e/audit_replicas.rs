//! Two Audit replicas on one PostgreSQL: racing idempotency keys store one
//! row, a watcher on one replica sees what the other writes, a PostgreSQL
//! restart is UNAVAILABLE and then nothing is lost; and the real binary
//! refuses a store it cannot use at start, in one line.

use std::process::Command;
use std::time::Duration;

use heist_audit::StoreConfig;
use heist_e2e::{TestAuth, TestServer, binary, services, stores::fresh_postgres_url};
use heist_engines::{Durability, PostgresServer};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    CreateSessionRequest, EndSessionRequest, Integrity, ListMessagesRequest, Message,
    SessionStatus, StoreMessageRequest, StoreTurnRequest, VerifySessionRequest,
    WatchSessionRequest, audit_service_client::AuditServiceClient,
};
use tokio_stream::StreamExt;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

type Client = AuditServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// Replicas of Audit serving one database, trusting one test issuer.
struct Replicas {
    servers: Vec<TestServer>,
    auth: TestAuth,
}

impl Replicas {
    async fn start(url: &str, count: usize) -> Self {
        let auth = TestAuth::new();
        // One signing key for every replica, as replicas share `--key-file`.
        let integrity = heist_audit::store::Integrity::ephemeral();
        let mut servers = Vec::new();
        for _ in 0..count {
            let mut config = StoreConfig::postgres(url);
            config.integrity = integrity.clone();
            servers.push(
                services::audit(config, auth.authenticator.clone(), ServeOptions::default()).await,
            );
        }
        Replicas { servers, auth }
    }

    /// A client of replica `index`.
    fn client(&self, index: usize) -> Client {
        AuditServiceClient::with_interceptor(
            self.servers[index].channel(),
            self.auth
                .bearer(&["audit:read", "audit:write", "agents:act_for_any"]),
        )
    }
}

fn create(session_id: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        session_id: session_id.into(),
        metadata: r#"{"replicas":2}"#.into(),
        idempotency_key: String::new(),
    }
}

fn message(session_id: &str, turn_id: i64, key: &str) -> StoreMessageRequest {
    StoreMessageRequest {
        session_id: session_id.into(),
        turn_id,
        agent_name: "planner".into(),
        agent_role: "Strategic Planner".into(),
        message: format!("turn {turn_id}: the vault opens at nine"),
        is_error: false,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn end(session_id: &str, num_turns: i64) -> EndSessionRequest {
    EndSessionRequest {
        session_id: session_id.into(),
        num_turns,
        status: SessionStatus::Completed.into(),
        idempotency_key: String::new(),
    }
}

/// Every message of a session, every page.
async fn all_messages(client: &mut Client, session_id: &str) -> Vec<Message> {
    let mut rows = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_messages(ListMessagesRequest {
                session_id: session_id.into(),
                page_size: 1000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        rows.extend(page.messages);
        if page.next_page_token.is_empty() {
            return rows;
        }
        page_token = page.next_page_token;
    }
}

/// Reads a watch to its end (the session ended), within a minute.
async fn watch_to_end(mut stream: tonic::Streaming<Message>) -> Vec<Message> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(item) = stream.next().await {
            seen.push(item.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the watch ends with the session");
    seen
}

async fn watch(client: &mut Client, session_id: &str) -> tonic::Streaming<Message> {
    client
        .watch_session(WatchSessionRequest {
            session_id: session_id.into(),
            after_message_id: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

fn ids(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_sent_to_both_replicas_at_once_stores_one_row_and_both_answer_it() {
    const PAIRS: i64 = 40;
    let replicas = Replicas::start(&fresh_postgres_url(), 2).await;
    let (mut a, mut b) = (replicas.client(0), replicas.client(1));
    let (created_a, created_b) = tokio::join!(a.create_session(create("race")), {
        let mut b = b.clone();
        async move { b.create_session(create("race")).await }
    });
    assert_eq!(
        created_a.unwrap().into_inner(),
        created_b.unwrap().into_inner(),
        "both replicas answer the one session"
    );

    let mut pairs = tokio::task::JoinSet::new();
    for turn in 1..=PAIRS {
        let (mut a1, mut b1) = (a.clone(), b.clone());
        pairs.spawn(async move {
            let key = format!("turn-{turn}");
            let (from_a, from_b) = tokio::join!(
                a1.store_message(message("race", turn, &key)),
                b1.store_message(message("race", turn, &key)),
            );
            (from_a.unwrap().into_inner(), from_b.unwrap().into_inner())
        });
        // A turn (message and tool call) raced the same way.
        let (mut a, mut b) = (a.clone(), b.clone());
        pairs.spawn(async move {
            let request = StoreTurnRequest {
                message: Some(message("race", turn, &format!("turn-msg-{turn}"))),
                tool_calls: Vec::new(),
            };
            let (from_a, from_b) =
                tokio::join!(a.store_turn(request.clone()), b.store_turn(request));
            (
                from_a.unwrap().into_inner().message.unwrap(),
                from_b.unwrap().into_inner().message.unwrap(),
            )
        });
    }
    for (from_a, from_b) in pairs.join_all().await {
        assert_eq!(from_a, from_b, "both replicas answer the same row");
    }

    let stored = all_messages(&mut a, "race").await;
    assert_eq!(
        stored.len(),
        usize::try_from(2 * PAIRS).unwrap(),
        "one row per key"
    );
    let keys: std::collections::HashSet<&str> =
        stored.iter().map(|m| m.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), stored.len());
    assert_eq!(all_messages(&mut b, "race").await, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_sees_every_message_written_through_the_other_in_order() {
    const WRITES: i64 = 60;
    let replicas = Replicas::start(&fresh_postgres_url(), 2).await;
    let (mut a, mut b) = (replicas.client(0), replicas.client(1));
    a.create_session(create("watched")).await.unwrap();
    a.store_message(message("watched", 0, "before-watch"))
        .await
        .unwrap();
    let on_b = tokio::spawn(watch_to_end(watch(&mut b, "watched").await));

    // Writes through A and through B at the same time: B's watcher must see
    // both, in storage order, each once.
    let through_a = {
        let mut a = a.clone();
        tokio::spawn(async move {
            for turn in 1..=WRITES {
                a.store_message(message("watched", turn, &format!("a-{turn}")))
                    .await
                    .unwrap();
            }
        })
    };
    let through_b = {
        let mut b = b.clone();
        tokio::spawn(async move {
            for turn in 1..=WRITES {
                b.store_message(message("watched", turn, &format!("b-{turn}")))
                    .await
                    .unwrap();
            }
        })
    };
    through_a.await.unwrap();
    through_b.await.unwrap();
    a.end_session(end("watched", WRITES)).await.unwrap();

    let seen = on_b.await.unwrap();
    let stored = all_messages(&mut a, "watched").await;
    assert_eq!(stored.len(), usize::try_from(2 * WRITES + 1).unwrap());
    assert_eq!(ids(&seen), ids(&stored), "every row once, in order");
    assert_eq!(seen, stored);
    // Both replicas chained the one session, taking turns: it verifies
    // intact through either, start and end included, signed to its end.
    for replica in [&mut a, &mut b] {
        let verdict = replica
            .verify_session(VerifySessionRequest {
                session_id: "watched".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict.integrity(), Integrity::Intact, "{verdict}");
        assert_eq!(verdict.rows, i64::try_from(stored.len() + 2).unwrap());
        let signed = verdict.checkpoint.as_ref().unwrap();
        assert_eq!(signed.rows, verdict.rows, "{verdict}");
    }
}

/// Stores `request` through `client`, retrying while Audit answers
/// UNAVAILABLE (PostgreSQL coming back), for at most 60 s.
async fn store_when_back(client: &mut Client, request: StoreMessageRequest) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.store_message(request.clone()).await {
            Ok(stored) => return stored.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still unavailable: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("after the restart: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_session_is_unavailable_then_serves_again_losing_no_row() {
    let mut postgres = PostgresServer::start(Durability::Full).expect("PostgreSQL must start");
    let url = postgres.url();
    let replicas = Replicas::start(&url, 2).await;
    let (mut a, mut b) = (replicas.client(0), replicas.client(1));
    a.create_session(create("restart")).await.unwrap();
    for turn in 1..=5 {
        a.store_message(message("restart", turn, &format!("before-{turn}")))
            .await
            .unwrap();
    }
    let on_b = tokio::spawn(watch_to_end(watch(&mut b, "restart").await));

    postgres.kill();
    for client in [&mut a, &mut b] {
        let status = client
            .store_message(message("restart", 6, "during"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("PostgreSQL"),
            "a readable cause: {:?}",
            status.message()
        );
    }

    postgres.start_again().expect("PostgreSQL starts again");
    // The key of the refused write may or may not have been stored: the
    // retry with the same key answers one row either way.
    let during = store_when_back(&mut a, message("restart", 6, "during")).await;
    for turn in 7..=10 {
        store_when_back(&mut b, message("restart", turn, &format!("after-{turn}"))).await;
    }
    a.end_session(end("restart", 10)).await.unwrap();

    let stored = all_messages(&mut a, "restart").await;
    let keys: Vec<&str> = stored.iter().map(|m| m.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "before-1", "before-2", "before-3", "before-4", "before-5", "during", "after-7",
            "after-8", "after-9", "after-10"
        ]
    );
    assert!(stored.contains(&during));
    let seen = on_b.await.unwrap();
    assert_eq!(
        ids(&seen),
        ids(&stored),
        "the watcher missed nothing, repeated nothing"
    );
}

/// Runs the real binary on `store` and returns its exit success and stderr.
fn start_binary(store: &str) -> (bool, String) {
    start_binary_with(&["--store", store])
}

/// Runs the real binary with `args` (and a listen address and an OAuth URL).
fn start_binary_with(args: &[&str]) -> (bool, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let output = Command::new(binary("heist-audit"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--oauth-url",
            "http://127.0.0.1:9",
        ])
        .args(args)
        .env_remove("HEIST_AUDIT_STORE")
        .env_remove("HEIST_AUDIT_DB")
        // Its default key file is created in its working directory.
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts the binary stopped with one error line, its last, containing
/// `want` (before it only its start-up log lines, no backtrace).
fn assert_one_line(store: &str, want: &str) {
    let (success, stderr) = start_binary(store);
    assert!(!success, "{store}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains(" INFO "))
        .collect();
    assert_eq!(errors.len(), 1, "{store}: one error line, got {stderr:?}");
    assert!(errors[0].starts_with("error: "), "{stderr:?}");
    assert!(
        errors[0].contains(want),
        "{store}: {stderr:?} lacks {want:?}"
    );
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_postgres_stops_the_binary_with_one_line_naming_it() {
    let port = free_port();
    assert_one_line(
        &format!("postgres://heist:secret@127.0.0.1:{port}/heist"),
        &format!("cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"),
    );
}

#[test]
fn a_wrong_password_stops_the_binary_with_one_line_naming_it() {
    let url = fresh_postgres_url();
    let server = PostgresServer::shared().unwrap();
    let wrong = url.replace(server.password(), "not-the-password");
    assert_one_line(&wrong, "password authentication failed for user \"heist\"");
    let (_, stderr) = start_binary(&wrong);
    assert!(
        !stderr.contains("not-the-password"),
        "no password shown: {stderr}"
    );
}

#[test]
fn a_malformed_store_stops_the_binary_with_one_line_saying_what_is_wrong() {
    assert_one_line(
        "postgres://heist@127.0.0.1:notaport/heist",
        "malformed PostgreSQL URL",
    );
    assert_one_line(
        "mysql://heist@127.0.0.1/heist",
        "--store: the store must be sqlite:PATH",
    );
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("audit.db");
    let (success, stderr) =
        start_binary_with(&["--store", "sqlite:audit.db", "--db", db.to_str().unwrap()]);
    assert!(!success, "{stderr}");
    assert!(
        stderr.contains("error: --store and --db") && stderr.contains("give one"),
        "{stderr}"
    );
    assert!(!db.exists(), "nothing was created");
}

#[tokio::test]
async fn a_database_of_a_newer_schema_stops_the_binary_naming_its_version() {
    let url = fresh_postgres_url();
    // Migrate it with this build, then pretend a newer build wrote it.
    drop(
        heist_audit::AuditStore::connect(StoreConfig::postgres(&url))
            .await
            .unwrap(),
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("UPDATE schema_version SET version = 42")
        .await
        .unwrap();
    let store = url.clone();
    tokio::task::spawn_blocking(move || {
        assert_one_line(
            &store,
            "audit database schema version 42 is newer than this build supports (6)",
        );
    })
    .await
    .unwrap();
}
