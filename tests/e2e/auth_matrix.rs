//! The auth matrix: every protected RPC of Audit, Memory and Tool, called
//! with no token, a garbled, forged, tampered, expired, wrong-audience (a
//! foreign one, and OAuth's token for every other service of the mesh),
//! under-scoped, revoked and valid token, against a real OAuth service whose
//! keys and revocation list the services fetch over gRPC; and every RPC that
//! names an agent with another agent's token (bound to its holder).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{path::Path, time::Duration};

use heist_e2e::{dev_token, dev_token_for, mesh::TestMesh};
use heist_plumbing::auth::{Audience, BearerInterceptor};
use heist_proto::v1::{
    self as pb, audit_service_client::AuditServiceClient,
    memory_service_client::MemoryServiceClient, revoke_token_request::Target,
    tool_service_client::ToolServiceClient,
};
use heist_tokens::{SigningKey, TokenIssuer, unix_now};
use tonic::{Code, Status};

/// Every protected RPC, with the scope it needs (`None`: any valid token).
const RPCS: &[(&str, Option<&str>)] = &[
    ("Audit/CreateSession", Some("audit:write")),
    ("Audit/StoreMessage", Some("audit:write")),
    ("Audit/StoreToolUsage", Some("audit:write")),
    ("Audit/StoreTurn", Some("audit:write")),
    ("Audit/EndSession", Some("audit:write")),
    ("Audit/GetSession", Some("audit:read")),
    ("Audit/ListSessions", Some("audit:read")),
    ("Audit/ListMessages", Some("audit:read")),
    ("Audit/ListToolUsage", Some("audit:read")),
    ("Audit/WatchSession", Some("audit:read")),
    ("Audit/StoreSessionEvent", Some("audit:write")),
    ("Audit/ListSessionEvents", Some("audit:read")),
    ("Audit/GetSessionUsage", Some("audit:read")),
    ("Memory/StoreMemory", Some("memory:write")),
    ("Memory/GetCompressedMemory", Some("memory:read")),
    ("Memory/ListMemoryTurns", Some("memory:read")),
    ("Memory/GetStats", Some("memory:read")),
    ("Memory/ClearMemory", Some("memory:admin")),
    ("Tool/ListTools", None),
    ("Tool/CallTool", Some("calculator:use")),
];

/// The RPCs that act as the agent they name (`planner` in [`call`]).
const AGENT_BOUND: &[&str] = &[
    "Audit/StoreMessage",
    "Audit/StoreToolUsage",
    "Audit/StoreTurn",
    "Memory/StoreMemory",
    "Memory/GetCompressedMemory",
    "Memory/ListMemoryTurns",
];

const ALL_SCOPES: &str = "audit:read audit:write memory:read memory:write memory:admin \
                          calculator:use file_reader:use database_query:use agents:act_for_any";

/// The mesh with the calculator alone, polling revocations every 100 ms.
async fn start_mesh() -> TestMesh {
    TestMesh::builder()
        .tools("calculator")
        .revocation_poll(Duration::from_millis(100))
        .tool_call_timeout(Duration::from_secs(5))
        .start()
        .await
}

/// Calls `rpc` on `mesh` with `token` (`None`: no authorization metadata).
async fn call(mesh: &TestMesh, rpc: &str, token: Option<&str>) -> Result<(), Status> {
    let bearer = BearerInterceptor::new(token.unwrap_or("\n"));
    let mut audit = AuditServiceClient::with_interceptor(mesh.audit.channel(), bearer.clone());
    let mut memory = MemoryServiceClient::with_interceptor(mesh.memory.channel(), bearer.clone());
    let mut tools = ToolServiceClient::with_interceptor(mesh.tools.channel(), bearer);
    let session = || "heist_auth_matrix".to_owned();
    let message = || pb::StoreMessageRequest {
        session_id: session(),
        agent_name: "planner".into(),
        ..Default::default()
    };
    let tool_call = || pb::StoreToolUsageRequest {
        session_id: session(),
        agent_name: "planner".into(),
        tool_name: "calculator".into(),
        ..Default::default()
    };
    match rpc {
        "Audit/CreateSession" => audit
            .create_session(pb::CreateSessionRequest {
                session_id: session(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/StoreMessage" => audit.store_message(message()).await.map(drop),
        "Audit/StoreToolUsage" => audit.store_tool_usage(tool_call()).await.map(drop),
        "Audit/StoreTurn" => audit
            .store_turn(pb::StoreTurnRequest {
                message: Some(message()),
                tool_calls: vec![tool_call()],
            })
            .await
            .map(drop),
        "Audit/EndSession" => audit
            .end_session(pb::EndSessionRequest {
                session_id: "heist_never_created".into(),
                status: pb::SessionStatus::Completed as i32,
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/GetSession" => audit
            .get_session(pb::GetSessionRequest {
                session_id: session(),
            })
            .await
            .map(drop),
        "Audit/ListSessions" => audit
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .map(drop),
        "Audit/ListMessages" => audit
            .list_messages(pb::ListMessagesRequest {
                session_id: session(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/ListToolUsage" => audit
            .list_tool_usage(pb::ListToolUsageRequest {
                session_id: session(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/WatchSession" => audit
            .watch_session(pb::WatchSessionRequest {
                session_id: session(),
                after_message_id: 0,
            })
            .await
            .map(drop),
        "Audit/StoreSessionEvent" => audit
            .store_session_event(pb::StoreSessionEventRequest {
                session_id: session(),
                kind: "breaker.open".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/ListSessionEvents" => audit
            .list_session_events(pb::ListSessionEventsRequest {
                session_id: session(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit/GetSessionUsage" => audit
            .get_session_usage(pb::GetSessionUsageRequest {
                session_id: session(),
            })
            .await
            .map(drop),
        "Memory/StoreMemory" => memory
            .store_memory(pb::StoreMemoryRequest {
                agent_id: "planner".into(),
                session_id: session(),
                turn_id: 1,
                message: "hello".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Memory/GetCompressedMemory" => memory
            .get_compressed_memory(pb::GetCompressedMemoryRequest {
                agent_id: "planner".into(),
                session_id: session(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Memory/ListMemoryTurns" => memory
            .list_memory_turns(pb::ListMemoryTurnsRequest {
                agent_id: "planner".into(),
                session_id: session(),
            })
            .await
            .map(drop),
        "Memory/GetStats" => memory.get_stats(pb::GetStatsRequest {}).await.map(drop),
        "Memory/ClearMemory" => memory
            .clear_memory(pb::ClearMemoryRequest {
                session_id: "nothing".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Tool/ListTools" => tools.list_tools(pb::ListToolsRequest {}).await.map(drop),
        "Tool/CallTool" => tools
            .call_tool(pb::CallToolRequest {
                tool_name: "calculator".into(),
                arguments: [("expression".to_owned(), "1 + 1".to_owned())].into(),
                ..Default::default()
            })
            .await
            .map(drop),
        other => panic!("unknown rpc {other}"),
    }
}

/// A token signed with the OAuth service's own key, for the checks after the signature.
fn signed_by_oauth(dir: &Path, audiences: &[&str], issued_at: u64) -> String {
    let key = SigningKey::load_or_generate(&dir.join("signing.key")).unwrap();
    TokenIssuer::new(key, "heist-oauth", Duration::from_secs(60))
        .issue(
            "orchestrator",
            &ALL_SCOPES.split(' ').collect::<Vec<_>>(),
            audiences,
            issued_at,
        )
        .unwrap()
        .token
}

fn assert_refused(outcome: Result<(), Status>, code: Code, rpc: &str, case: &str) {
    let status = outcome.expect_err(&format!("{rpc} accepted a {case} token"));
    assert_eq!(status.code(), code, "{rpc} with a {case} token: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_rpc_refuses_every_bad_token_and_accepts_a_valid_one() {
    let mesh = start_mesh().await;
    let valid = dev_token(mesh.oauth.addr, "orchestrator", ALL_SCOPES)
        .await
        .unwrap();
    let forged = {
        let stranger = TokenIssuer::new(
            SigningKey::generate().unwrap(),
            "heist-oauth",
            Duration::from_secs(60),
        );
        stranger
            .issue(
                "orchestrator",
                &ALL_SCOPES.split(' ').collect::<Vec<_>>(),
                &Audience::names(),
                unix_now(),
            )
            .unwrap()
            .token
    };
    let tampered = {
        let mut token = valid.clone().into_bytes();
        let last = token.len() - 2;
        token[last] = if token[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(token).unwrap()
    };
    let expired = signed_by_oauth(mesh.dir.path(), &Audience::names(), unix_now() - 3600);
    let wrong_audience = signed_by_oauth(mesh.dir.path(), &["some-other-mesh"], unix_now());
    // OAuth's own token for every audience but the service's.
    let mut for_the_others = std::collections::BTreeMap::new();
    for (service, audience) in [("Audit", "audit"), ("Memory", "memory"), ("Tool", "tools")] {
        let others: Vec<&str> = Audience::names()
            .into_iter()
            .filter(|other| *other != audience)
            .collect();
        let token = dev_token_for(mesh.oauth.addr, "orchestrator", ALL_SCOPES, &others)
            .await
            .unwrap();
        for_the_others.insert(service, (audience, token));
    }
    let under_scoped = dev_token(mesh.oauth.addr, "planner", "simulation:read")
        .await
        .unwrap();

    for (rpc, scope) in RPCS {
        assert_refused(
            call(&mesh, rpc, None).await,
            Code::Unauthenticated,
            rpc,
            "missing",
        );
        assert_refused(
            call(&mesh, rpc, Some("not-a-jwt")).await,
            Code::Unauthenticated,
            rpc,
            "garbled",
        );
        assert_refused(
            call(&mesh, rpc, Some(&forged)).await,
            Code::Unauthenticated,
            rpc,
            "forged",
        );
        assert_refused(
            call(&mesh, rpc, Some(&tampered)).await,
            Code::Unauthenticated,
            rpc,
            "tampered",
        );
        assert_refused(
            call(&mesh, rpc, Some(&expired)).await,
            Code::Unauthenticated,
            rpc,
            "expired",
        );
        assert_refused(
            call(&mesh, rpc, Some(&wrong_audience)).await,
            Code::Unauthenticated,
            rpc,
            "wrong-audience",
        );
        let service = rpc.split('/').next().unwrap();
        let (audience, others) = &for_the_others[service];
        let status = call(&mesh, rpc, Some(others)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
        assert!(
            status.message().contains(&format!("not \"{audience}\"")),
            "{rpc} does not name its audience: {status:?}"
        );
        match scope {
            Some(scope) => {
                let status = call(&mesh, rpc, Some(&under_scoped)).await.unwrap_err();
                assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
                assert!(
                    status.message().contains(scope),
                    "{rpc} does not name {scope}: {status:?}"
                );
            }
            None => call(&mesh, rpc, Some(&under_scoped)).await.unwrap(),
        }
        if let Err(status) = call(&mesh, rpc, Some(&valid)).await {
            assert!(
                !matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                "{rpc} refused a valid token: {status:?}"
            );
        }
    }

    // Another agent's token, with every scope that agent may hold.
    let hacker = dev_token(
        mesh.oauth.addr,
        "hacker",
        "audit:write memory:read memory:write",
    )
    .await
    .unwrap();
    for rpc in AGENT_BOUND {
        let status = call(&mesh, rpc, Some(&hacker)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert!(
            status.message().contains("hacker") && status.message().contains("planner"),
            "{rpc} does not name the client and the agent: {status:?}"
        );
    }

    // Revoked: every service refuses it once it has polled the revocation list.
    let revoked = dev_token(mesh.oauth.addr, "orchestrator", ALL_SCOPES)
        .await
        .unwrap();
    call(&mesh, "Tool/ListTools", Some(&revoked)).await.unwrap();
    mesh.oauth_client()
        .revoke_token(pb::RevokeTokenRequest {
            target: Some(Target::Token(revoked.clone())),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while call(&mesh, "Tool/ListTools", Some(&revoked)).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "revocation never reached the tool service"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (rpc, _) in RPCS {
        assert_refused(
            call(&mesh, rpc, Some(&revoked)).await,
            Code::Unauthenticated,
            rpc,
            "revoked",
        );
    }
}
