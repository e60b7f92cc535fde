//! The Audit service against the real server on 127.0.0.1:0, through the
//! generated client: every RPC, every bad input, Watch, health, reflection;
//! each test on SQLite and on PostgreSQL (`each_store!`), but the full disk,
//! which is SQLite's `max_db_pages`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use heist_audit::{AuditService, AuditStore, StoreConfig};
use heist_e2e::{
    TestAuth, TestServer, channel_to, each_store, health_status, services, stores::StoreBackend,
};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    CreateSessionRequest, EndSessionRequest, GetSessionRequest, ListMessagesRequest,
    ListSessionEventsRequest, ListSessionsRequest, ListToolUsageRequest, Message, SessionStatus,
    StoreMessageRequest, StoreSessionEventRequest, StoreToolUsageRequest, StoreTurnRequest,
    ToolUsage, WatchSessionRequest, audit_service_client::AuditServiceClient,
};
use tempfile::TempDir;
use tokio_stream::StreamExt;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

type Client = AuditServiceClient<InterceptedService<Channel, BearerInterceptor>>;

struct Audit {
    server: TestServer,
    client: Client,
    auth: TestAuth,
    _dir: TempDir,
}

impl Audit {
    /// A client whose token has `scopes`.
    fn client_with(&self, scopes: &[&str]) -> Client {
        AuditServiceClient::with_interceptor(self.server.channel(), self.auth.bearer(scopes))
    }
}

async fn start_audit_with(
    backend: StoreBackend,
    configure: impl FnOnce(&mut StoreConfig),
) -> Audit {
    let dir = TempDir::new().unwrap();
    let mut config = backend.fresh_config(dir.path());
    configure(&mut config);
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = services::audit(config, authenticator, ServeOptions::default()).await;
    let client = AuditServiceClient::with_interceptor(
        server.channel(),
        auth.bearer(&["audit:read", "audit:write", "agents:act_for_any"]),
    );
    Audit {
        server,
        client,
        auth,
        _dir: dir,
    }
}

async fn start_audit(backend: StoreBackend) -> Audit {
    start_audit_with(backend, |_| {}).await
}

async fn create(client: &mut Client, session_id: &str) {
    client
        .create_session(CreateSessionRequest {
            session_id: session_id.into(),
            metadata: r#"{"seed":7}"#.into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
}

fn message(session_id: &str, turn_id: i64, key: &str) -> StoreMessageRequest {
    StoreMessageRequest {
        session_id: session_id.into(),
        turn_id,
        agent_name: "planner".into(),
        agent_role: "Strategic Planner".into(),
        message: format!("turn {turn_id}: we go in through the loading dock"),
        is_error: false,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn tool_usage(session_id: &str, turn_id: i64, key: &str) -> StoreToolUsageRequest {
    StoreToolUsageRequest {
        session_id: session_id.into(),
        turn_id,
        agent_name: "safecracker".into(),
        tool_name: "calculator".into(),
        tool_params: "12 * 7".into(),
        tool_result: "84".into(),
        success: true,
        duration_ms: 3,
        idempotency_key: key.into(),
    }
}

fn end(session_id: &str, num_turns: i64, status: SessionStatus) -> EndSessionRequest {
    EndSessionRequest {
        session_id: session_id.into(),
        num_turns,
        status: status as i32,
        idempotency_key: String::new(),
    }
}

each_store! {
    async fn a_session_is_created_written_read_and_ended(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "heist_20250116_143052_a1b2").await;
        let stored = client
            .store_message(message("heist_20250116_143052_a1b2", 1, "m1"))
            .await
            .unwrap()
            .into_inner();
        assert!(stored.id > 0);
        assert_eq!(stored.agent_name, "planner");
        assert!(!stored.timestamp.is_empty());
        let usage = client
            .store_tool_usage(tool_usage("heist_20250116_143052_a1b2", 1, "t1"))
            .await
            .unwrap()
            .into_inner();
        assert!(usage.success);
        assert_eq!(usage.tool_result, "84");

        let session = client
            .get_session(GetSessionRequest {
                session_id: "heist_20250116_143052_a1b2".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(session.status(), SessionStatus::Active);
        assert_eq!(session.message_count, 1);
        assert_eq!(session.tool_usage_count, 1);

        let ended = client
            .end_session(end(
                "heist_20250116_143052_a1b2",
                1,
                SessionStatus::Completed,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ended.status(), SessionStatus::Completed);
        assert_eq!(ended.num_turns, 1);
        assert!(!ended.end_time.is_empty());

        let messages = client
            .list_messages(ListMessagesRequest {
                session_id: "heist_20250116_143052_a1b2".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(messages.messages, vec![stored]);
        let usages = client
            .list_tool_usage(ListToolUsageRequest {
                session_id: "heist_20250116_143052_a1b2".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(usages.tool_usage, vec![usage]);
        audit.server.stop().await.unwrap();
    }
}

each_store! {
    async fn a_repeated_write_stores_one_row_and_answers_the_same(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let first = client
            .store_message(message("s1", 1, "k"))
            .await
            .unwrap()
            .into_inner();
        let again = client
            .store_message(message("s1", 1, "k"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first, again);
        let first_usage = client
            .store_tool_usage(tool_usage("s1", 1, "u"))
            .await
            .unwrap()
            .into_inner();
        let again_usage = client
            .store_tool_usage(tool_usage("s1", 1, "u"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first_usage, again_usage);
        // Creating the same session with the same data is a repeat, too.
        create(client, "s1").await;
        let session = client
            .get_session(GetSessionRequest {
                session_id: "s1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((session.message_count, session.tool_usage_count), (1, 1));

        let mut other = message("s1", 1, "k");
        other.message = "something else".into();
        let conflict = client.store_message(other).await.unwrap_err();
        assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");
    }
}

each_store! {
    async fn bad_session_ids_are_invalid_arguments(backend) {
        let mut audit = start_audit(backend).await;
        for bad in ["", &"x".repeat(129), "drop table; --", "a b"] {
            let status = audit
                .client
                .create_session(CreateSessionRequest {
                    session_id: bad.to_owned(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
            assert!(status.message().contains("session_id"), "{status:?}");
        }
    }
}

each_store! {
    async fn writes_to_an_unknown_session_are_not_found(backend) {
        let mut audit = start_audit(backend).await;
        let status = audit
            .client
            .store_message(message("nope", 1, "k"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains("nope"), "{status:?}");
        let status = audit
            .client
            .store_tool_usage(tool_usage("nope", 1, "k"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = audit
            .client
            .get_session(GetSessionRequest {
                session_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = audit
            .client
            .end_session(end("nope", 1, SessionStatus::Completed))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = audit
            .client
            .list_messages(ListMessagesRequest {
                session_id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}

each_store! {
    async fn a_session_id_reused_with_other_data_already_exists(backend) {
        let mut audit = start_audit(backend).await;
        create(&mut audit.client, "s1").await;
        let status = audit
            .client
            .create_session(CreateSessionRequest {
                session_id: "s1".into(),
                metadata: r#"{"seed":8}"#.into(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    }
}

each_store! {
    async fn an_ended_session_refuses_writes_and_a_different_end(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        client
            .end_session(end("s1", 3, SessionStatus::Completed))
            .await
            .unwrap();
        // Ending again the same way is a repeat.
        let again = client
            .end_session(end("s1", 3, SessionStatus::Completed))
            .await
            .unwrap();
        assert_eq!(again.into_inner().num_turns, 3);
        let status = client
            .end_session(end("s1", 4, SessionStatus::Failed))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let status = client
            .store_message(message("s1", 4, "late"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("completed"), "{status:?}");
        let status = client
            .store_tool_usage(tool_usage("s1", 4, "late"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
    }
}

each_store! {
    async fn oversized_messages_and_negative_turns_are_invalid(backend) {
        let mut audit = start_audit_with(backend, |config| config.max_message_bytes = 1024).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let mut big = message("s1", 1, "big");
        big.message = "x".repeat(1025);
        let status = client.store_message(big).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("1024"), "{status:?}");
        let mut big_result = tool_usage("s1", 1, "big");
        big_result.tool_result = "y".repeat(2000);
        let status = client.store_tool_usage(big_result).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);

        let status = client
            .store_message(message("s1", -1, "neg"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("turn_id"), "{status:?}");
        let status = client
            .store_tool_usage(tool_usage("s1", -5, "neg"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = client
            .end_session(end("s1", -1, SessionStatus::Completed))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

each_store! {
    async fn unknown_status_values_and_garbage_page_tokens_are_invalid(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let status = client
            .list_sessions(ListSessionsRequest {
                status: 42,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("42"), "{status:?}");
        let mut bad_end = end("s1", 1, SessionStatus::Completed);
        bad_end.status = 42;
        assert_eq!(
            client.end_session(bad_end).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let status = client
            .end_session(end("s1", 1, SessionStatus::Active))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = client
            .end_session(end("s1", 1, SessionStatus::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);

        for token in ["garbage", "m-1", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"] {
            let status = client
                .list_messages(ListMessagesRequest {
                    session_id: "s1".into(),
                    page_size: 10,
                    page_token: token.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{token}: {status:?}");
            let status = client
                .list_sessions(ListSessionsRequest {
                    page_token: token.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{token}: {status:?}");
        }
        let status = client
            .list_messages(ListMessagesRequest {
                session_id: "s1".into(),
                page_size: 5000,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

each_store! {
    async fn pages_walk_every_row_once_and_sessions_filter_by_status(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        for id in ["a", "b", "c"] {
            create(client, id).await;
        }
        client
            .end_session(end("b", 0, SessionStatus::Failed))
            .await
            .unwrap();
        for turn in 1..=25 {
            client
                .store_message(message("a", turn, &format!("m{turn}")))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = client
                .list_messages(ListMessagesRequest {
                    session_id: "a".into(),
                    page_size: 10,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            seen.extend(page.messages.iter().map(|m| m.turn_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, (1..=25).collect::<Vec<_>>());

        let failed = client
            .list_sessions(ListSessionsRequest {
                status: SessionStatus::Failed as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(failed.sessions.len(), 1);
        assert_eq!(failed.sessions[0].session_id, "b");
        let all = client
            .list_sessions(ListSessionsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<_> = all.sessions.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"], "newest first");
    }
}

each_store! {
    async fn two_watchers_see_every_message_in_order_and_the_stream_ends_with_the_session(backend) {
        let mut audit = start_audit(backend).await;
        create(&mut audit.client, "w").await;
        audit
            .client
            .store_message(message("w", 1, "m1"))
            .await
            .unwrap();
        let mut watchers = Vec::new();
        for _ in 0..2 {
            let stream = audit
                .client
                .watch_session(WatchSessionRequest {
                    session_id: "w".into(),
                    after_message_id: 0,
                })
                .await
                .unwrap()
                .into_inner();
            watchers.push(stream);
        }
        let writers: Vec<_> = (2..=40)
            .map(|turn| {
                let mut client = audit.client.clone();
                tokio::spawn(async move {
                    client
                        .store_message(message("w", turn, &format!("m{turn}")))
                        .await
                        .unwrap()
                        .into_inner()
                        .id
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        audit
            .client
            .end_session(end("w", 40, SessionStatus::Completed))
            .await
            .unwrap();
        let stored: Vec<i64> = audit
            .client
            .list_messages(ListMessagesRequest {
                session_id: "w".into(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages
            .iter()
            .map(|m| m.id)
            .collect();
        for mut stream in watchers {
            let mut ids = Vec::new();
            let collected = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(item) = stream.next().await {
                    ids.push(item.unwrap().id);
                }
            })
            .await;
            assert!(collected.is_ok(), "the stream did not end with the session");
            assert_eq!(ids, stored, "every message once, in storage order");
        }
    }
}

each_store! {
    async fn watching_an_unknown_session_is_not_found(backend) {
        let mut audit = start_audit(backend).await;
        let status = audit
            .client
            .watch_session(WatchSessionRequest {
                session_id: "ghost".into(),
                after_message_id: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}

/// SQLite-only: the "disk" is the file's page cap.
#[tokio::test]
async fn a_full_disk_is_unavailable_and_the_service_keeps_serving() {
    let mut audit = start_audit_with(StoreBackend::Sqlite, |config| {
        config.max_db_pages = Some(64)
    })
    .await;
    let client = &mut audit.client;
    create(client, "full").await;
    let mut acknowledged = 0;
    let mut refusal = None;
    for turn in 1..=400 {
        let mut request = message("full", turn, &format!("m{turn}"));
        request.message = "vault ".repeat(1500);
        match client.store_message(request).await {
            Ok(_) => acknowledged += 1,
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("the database never filled up");
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(refusal.message().contains("full"), "{refusal:?}");
    // Reads still work, and exactly the acknowledged rows are there.
    let session = client
        .get_session(GetSessionRequest {
            session_id: "full".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.message_count, acknowledged);
    assert_eq!(
        health_status(audit.server.addr, "heist.v1.AuditService")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
}

async fn next(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    let response = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a health update in time")
        .unwrap()
        .expect("the watch stream ended");
    response.status()
}

each_store! {
    async fn health_goes_not_serving_then_serving_then_not_serving_on_shutdown(backend) {
        let dir = TempDir::new().unwrap();
        let store = AuditStore::connect(backend.fresh_config(dir.path()))
            .await
            .unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server = TestServer::start(move |listener, shutdown| {
            heist_plumbing::serve(
                listener,
                AuditService::new(store).into_server(),
                async move {
                    let _ = ready_rx.await;
                },
                shutdown,
                ServeOptions {
                    grace_period: Duration::from_millis(500),
                    ..ServeOptions::default()
                },
            )
        })
        .await;
        let mut health = HealthClient::new(channel_to(server.addr));
        let mut watch = health
            .watch(HealthCheckRequest {
                service: "heist.v1.AuditService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut watch).await, ServingStatus::NotServing);
        assert_eq!(
            health_status(server.addr, "").await.unwrap(),
            ServingStatus::NotServing
        );
        ready_tx.send(()).unwrap();
        assert_eq!(next(&mut watch).await, ServingStatus::Serving);
        assert_eq!(
            health_status(server.addr, "").await.unwrap(),
            ServingStatus::Serving
        );
        let unknown = health_status(server.addr, "no.such.Service")
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        server.begin_stop();
        assert_eq!(next(&mut watch).await, ServingStatus::NotServing);
        drop(watch);
        server.stop().await.unwrap();
    }
}

each_store! {
    async fn reflection_lists_the_audit_service_and_health(backend) {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let audit = start_audit(backend).await;
        let mut client = ServerReflectionClient::new(audit.server.channel());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("not a service list: {response:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"heist.v1.AuditService"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    }
}

each_store! {
    async fn writes_need_audit_write_and_reads_need_audit_read(backend) {
        let audit = start_audit(backend).await;
        let mut reader = audit.client_with(&["audit:read"]);
        let status = reader
            .create_session(CreateSessionRequest {
                session_id: "s1".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("audit:write"), "{status:?}");
        let mut writer = audit.client_with(&["audit:write"]);
        create(&mut writer, "s1").await;
        let status = writer
            .get_session(GetSessionRequest {
                session_id: "s1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("audit:read"), "{status:?}");
        let mut anonymous = AuditServiceClient::new(audit.server.channel());
        let status = anonymous
            .get_session(GetSessionRequest {
                session_id: "s1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        // Health stays open.
        assert_eq!(
            health_status(audit.server.addr, "").await.unwrap(),
            ServingStatus::Serving
        );
    }
}

fn session_event(session_id: &str, kind: &str, key: &str) -> StoreSessionEventRequest {
    StoreSessionEventRequest {
        session_id: session_id.into(),
        kind: kind.into(),
        detail: r#"{"service":"memory","failures":5}"#.into(),
        idempotency_key: key.into(),
    }
}

fn list_events(session_id: &str, page_size: i32, page_token: String) -> ListSessionEventsRequest {
    ListSessionEventsRequest {
        session_id: session_id.into(),
        page_size,
        page_token,
    }
}

each_store! {
    async fn session_events_are_stored_repeated_and_listed_even_after_the_session_ended(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let open = client
            .store_session_event(session_event("s1", "breaker.open", "b1"))
            .await
            .unwrap()
            .into_inner();
        assert!(open.id > 0);
        assert_eq!(open.session_id, "s1");
        assert_eq!(open.kind, "breaker.open");
        assert_eq!(open.detail, r#"{"service":"memory","failures":5}"#);
        assert_eq!(open.idempotency_key, "b1");
        assert!(!open.timestamp.is_empty());
        let repeat = client
            .store_session_event(session_event("s1", "breaker.open", "b1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(repeat, open);
        let conflict = client
            .store_session_event(session_event("s1", "breaker.closed", "b1"))
            .await
            .unwrap_err();
        assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");

        client
            .end_session(end("s1", 0, SessionStatus::Interrupted))
            .await
            .unwrap();
        let closed = client
            .store_session_event(session_event("s1", "breaker.closed", "b2"))
            .await
            .unwrap()
            .into_inner();

        let first = client
            .list_session_events(list_events("s1", 1, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.events, vec![open]);
        assert!(!first.next_page_token.is_empty());
        let rest = client
            .list_session_events(list_events("s1", 1, first.next_page_token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.events, vec![closed]);
        assert_eq!(rest.next_page_token, "");
    }
}

each_store! {
    async fn a_bad_event_kind_is_invalid_and_an_unknown_session_is_not_found(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        for bad in ["", "Breaker.Open", "breaker open", &"k".repeat(65)] {
            let status = client
                .store_session_event(session_event("s1", bad, "k"))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
            assert!(status.message().contains("kind"), "{status:?}");
        }
        let status = client
            .store_session_event(session_event("nope", "breaker.open", "k"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains("nope"), "{status:?}");
        let status = client
            .list_session_events(list_events("nope", 0, String::new()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let status = client
            .list_session_events(list_events("s1", 0, "m1".into()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

each_store! {
    async fn storing_a_session_event_needs_audit_write_and_listing_needs_audit_read(backend) {
        let mut audit = start_audit(backend).await;
        create(&mut audit.client, "s1").await;
        let mut reader = audit.client_with(&["audit:read"]);
        let status = reader
            .store_session_event(session_event("s1", "breaker.open", "k"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("audit:write"), "{status:?}");
        let listed = reader
            .list_session_events(list_events("s1", 0, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.events.is_empty(), "the refused write stored nothing");
        let mut writer = audit.client_with(&["audit:write"]);
        writer
            .store_session_event(session_event("s1", "breaker.open", "k"))
            .await
            .unwrap();
        let status = writer
            .list_session_events(list_events("s1", 0, String::new()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("audit:read"), "{status:?}");
    }
}

/// A `StoreTurn` of `planner` in `turn_id`, its message keyed `key`, with one
/// tool call per key of `tool_keys`.
fn turn(session_id: &str, turn_id: i64, key: &str, tool_keys: &[&str]) -> StoreTurnRequest {
    StoreTurnRequest {
        message: Some(message(session_id, turn_id, key)),
        tool_calls: tool_keys
            .iter()
            .map(|tool_key| StoreToolUsageRequest {
                agent_name: "planner".into(),
                ..tool_usage(session_id, turn_id, tool_key)
            })
            .collect(),
    }
}

/// Every message and every tool call stored for `session_id`.
async fn stored(client: &mut Client, session_id: &str) -> (Vec<Message>, Vec<ToolUsage>) {
    heist_e2e::stored_rows(client, session_id).await
}

each_store! {
    async fn a_turn_is_stored_with_its_tool_calls_and_read_back(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let stored_turn = client
            .store_turn(turn("s1", 3, "m3", &["t3-0", "t3-1"]))
            .await
            .unwrap()
            .into_inner();
        let message = stored_turn.message.clone().unwrap();
        assert!(message.id > 0);
        assert_eq!(
            (message.turn_id, message.agent_name.as_str()),
            (3, "planner")
        );
        let keys: Vec<&str> = stored_turn
            .tool_calls
            .iter()
            .map(|call| call.idempotency_key.as_str())
            .collect();
        assert_eq!(keys, ["t3-0", "t3-1"]);

        let (messages, tool_usage) = stored(client, "s1").await;
        assert_eq!(messages, vec![message]);
        assert_eq!(tool_usage, stored_turn.tool_calls);
        let session = client
            .get_session(GetSessionRequest {
                session_id: "s1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((session.message_count, session.tool_usage_count), (1, 2));
    }
}

each_store! {
    async fn a_turn_without_a_message_is_invalid(backend) {
        let mut audit = start_audit(backend).await;
        create(&mut audit.client, "s1").await;
        let status = audit
            .client
            .store_turn(StoreTurnRequest {
                message: None,
                tool_calls: vec![tool_usage("s1", 1, "t1")],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), "message: required");
        let (messages, tool_usage) = stored(&mut audit.client, "s1").await;
        assert!(messages.is_empty() && tool_usage.is_empty());
    }
}

each_store! {
    async fn a_tool_call_of_another_session_is_invalid_and_nothing_of_the_turn_is_stored(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        create(client, "s2").await;
        let mut request = turn("s1", 1, "m1", &["t1", "t2"]);
        request.tool_calls[1].session_id = "s2".into();
        let status = client.store_turn(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("tool_calls[1].session_id: "),
            "names the field with its index: {status:?}"
        );
        for session_id in ["s1", "s2"] {
            let (messages, tool_usage) = stored(client, session_id).await;
            assert!(messages.is_empty() && tool_usage.is_empty(), "{session_id}");
        }
    }
}

each_store! {
    async fn a_repeated_turn_answers_the_same_and_a_conflicting_one_already_exists_storing_nothing(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        let first = client
            .store_turn(turn("s1", 1, "m1", &["t1", "t2"]))
            .await
            .unwrap()
            .into_inner();
        let again = client
            .store_turn(turn("s1", 1, "m1", &["t1", "t2"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, first);

        // A new message and a new tool call, then a stored key with other content.
        let mut conflicting = turn("s1", 1, "m2", &["t3", "t2"]);
        conflicting.tool_calls[1].tool_result = "85".into();
        let status = client.store_turn(conflicting).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(status.message().contains("t2"), "{status:?}");

        let (messages, tool_usage) = stored(client, "s1").await;
        assert_eq!(messages, vec![first.message.unwrap()], "m2 was not stored");
        assert_eq!(tool_usage, first.tool_calls, "t3 was not stored");
    }
}

each_store! {
    async fn a_turn_in_an_ended_session_is_refused_like_a_message(backend) {
        let mut audit = start_audit(backend).await;
        let client = &mut audit.client;
        create(client, "s1").await;
        client
            .end_session(end("s1", 2, SessionStatus::Completed))
            .await
            .unwrap();
        let message_status = client
            .store_message(message("s1", 3, "late"))
            .await
            .unwrap_err();
        let turn_status = client
            .store_turn(turn("s1", 3, "late", &["late-tool"]))
            .await
            .unwrap_err();
        assert_eq!(turn_status.code(), message_status.code(), "{turn_status:?}");
        assert_eq!(turn_status.code(), Code::FailedPrecondition);
        assert!(
            turn_status.message().contains("completed"),
            "{turn_status:?}"
        );
        let (messages, tool_usage) = stored(client, "s1").await;
        assert!(messages.is_empty() && tool_usage.is_empty());
    }
}
