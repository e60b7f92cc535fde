//! Tokens bound to their holder, through the real Memory and Audit services on
//! 127.0.0.1:0: a client reads and writes only its own agent's memory and
//! audit rows unless its token grants `agents:act_for_any`, and every audit
//! row read back names the client that wrote it (`written_by`), also in a
//! file migrated from schema version 2. A tool call that names an agent must
//! come from that agent's own token too.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use heist_audit::{
    AuditStore, StoreConfig,
    store::{NewMessage, NewSession},
};
use heist_e2e::{TestAuth, TestServer, services};
use heist_memory::Limits;
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    self as pb, audit_service_client::AuditServiceClient,
    memory_service_client::MemoryServiceClient, tool_service_client::ToolServiceClient,
};
use heist_tokens::ACT_FOR_ANY_SCOPE;
use tempfile::TempDir;
use tokio_stream::StreamExt;
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

type Audit = AuditServiceClient<InterceptedService<Channel, BearerInterceptor>>;
type Memory = MemoryServiceClient<InterceptedService<Channel, BearerInterceptor>>;

const AGENTS: [&str; 4] = ["planner", "hacker", "safecracker", "mole"];
const SESSION: &str = "heist_binding";

async fn start_memory(auth: &TestAuth) -> TestServer {
    let authenticator = auth.authenticator.clone();
    services::memory(Limits::default(), authenticator, ServeOptions::default()).await
}

async fn start_audit(auth: &TestAuth, path: &Path) -> TestServer {
    let authenticator = auth.authenticator.clone();
    let config = StoreConfig::new(path);
    services::audit(config, authenticator, ServeOptions::default()).await
}

fn memory_as(server: &TestServer, auth: &TestAuth, client: &str, scopes: &[&str]) -> Memory {
    let bearer = BearerInterceptor::new(&auth.token(client, scopes));
    MemoryServiceClient::with_interceptor(server.channel(), bearer)
}

fn audit_as(server: &TestServer, auth: &TestAuth, client: &str, scopes: &[&str]) -> Audit {
    let bearer = BearerInterceptor::new(&auth.token(client, scopes));
    AuditServiceClient::with_interceptor(server.channel(), bearer)
}

/// The orchestrator's scopes for Audit: read, write, and for every agent.
const AUDIT_ORCHESTRATOR: &[&str] = &["audit:read", "audit:write", ACT_FOR_ANY_SCOPE];

fn remember(agent: &str, turn_id: i64) -> pb::StoreMemoryRequest {
    pb::StoreMemoryRequest {
        agent_id: agent.into(),
        session_id: SESSION.into(),
        turn_id,
        message: format!("{agent} in turn {turn_id}"),
        idempotency_key: String::new(),
    }
}

fn recall(agent: &str) -> pb::GetCompressedMemoryRequest {
    pb::GetCompressedMemoryRequest {
        agent_id: agent.into(),
        session_id: SESSION.into(),
        ..Default::default()
    }
}

fn turns_of(agent: &str) -> pb::ListMemoryTurnsRequest {
    pb::ListMemoryTurnsRequest {
        agent_id: agent.into(),
        session_id: SESSION.into(),
    }
}

fn said(agent: &str, turn_id: i64, key: &str) -> pb::StoreMessageRequest {
    pb::StoreMessageRequest {
        session_id: SESSION.into(),
        turn_id,
        agent_name: agent.into(),
        agent_role: "crew".into(),
        message: format!("{agent} speaks in turn {turn_id}"),
        is_error: false,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn used(agent: &str, turn_id: i64, key: &str) -> pb::StoreToolUsageRequest {
    pb::StoreToolUsageRequest {
        session_id: SESSION.into(),
        turn_id,
        agent_name: agent.into(),
        tool_name: "calculator".into(),
        tool_params: "2 + 2".into(),
        tool_result: "4".into(),
        success: true,
        duration_ms: 1,
        idempotency_key: key.into(),
    }
}

fn event(key: &str) -> pb::StoreSessionEventRequest {
    pb::StoreSessionEventRequest {
        session_id: SESSION.into(),
        kind: "breaker.open".into(),
        detail: "memory".into(),
        idempotency_key: key.into(),
    }
}

/// A refusal for acting as `agent` with a token issued to `client`, naming both.
fn assert_not_the_agent<T: std::fmt::Debug>(outcome: Result<T, Status>, client: &str, agent: &str) {
    let status = outcome.expect_err(&format!("{client} acted as {agent}"));
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for needle in [client, agent, ACT_FOR_ANY_SCOPE] {
        assert!(
            status.message().contains(needle),
            "the refusal does not name {needle}: {status:?}"
        );
    }
}

async fn create_session(audit: &mut Audit) -> pb::Session {
    audit
        .create_session(pb::CreateSessionRequest {
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn messages(audit: &mut Audit) -> Vec<pb::Message> {
    audit
        .list_messages(pb::ListMessagesRequest {
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages
}

#[tokio::test]
async fn a_planner_token_cannot_store_or_read_hackers_memory_but_can_its_own() {
    let auth = TestAuth::new();
    let server = start_memory(&auth).await;
    let mut orchestrator = memory_as(
        &server,
        &auth,
        "orchestrator",
        &["memory:read", "memory:write", ACT_FOR_ANY_SCOPE],
    );
    orchestrator
        .store_memory(remember("hacker", 1))
        .await
        .unwrap();
    let mut planner = memory_as(&server, &auth, "planner", &["memory:read", "memory:write"]);

    assert_not_the_agent(
        planner.store_memory(remember("hacker", 2)).await,
        "planner",
        "hacker",
    );
    assert_not_the_agent(
        planner.get_compressed_memory(recall("hacker")).await,
        "planner",
        "hacker",
    );
    assert_not_the_agent(
        planner.list_memory_turns(turns_of("hacker")).await,
        "planner",
        "hacker",
    );
    // An empty or differently spelled agent is someone else too.
    assert_not_the_agent(planner.store_memory(remember("", 2)).await, "planner", "");
    assert_not_the_agent(
        planner.store_memory(remember("Planner", 2)).await,
        "planner",
        "Planner",
    );

    planner.store_memory(remember("planner", 1)).await.unwrap();
    let own = planner
        .get_compressed_memory(recall("planner"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.recent.len(), 1);
    assert_eq!(own.recent[0].message, "planner in turn 1");
    let own_turns = planner
        .list_memory_turns(turns_of("planner"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own_turns.turn_ids, [1]);

    let hackers = orchestrator
        .list_memory_turns(turns_of("hacker"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hackers.turn_ids, [1], "the refused write stored nothing");
}

#[tokio::test]
async fn the_orchestrators_scope_reads_and_writes_memory_for_every_agent() {
    let auth = TestAuth::new();
    let server = start_memory(&auth).await;
    let scopes = ["memory:read", "memory:write"];
    let mut without = memory_as(&server, &auth, "orchestrator", &scopes);
    assert_not_the_agent(
        without.store_memory(remember("mole", 1)).await,
        "orchestrator",
        "mole",
    );
    let mut orchestrator = memory_as(
        &server,
        &auth,
        "orchestrator",
        &[scopes[0], scopes[1], ACT_FOR_ANY_SCOPE],
    );
    for agent in AGENTS {
        orchestrator.store_memory(remember(agent, 1)).await.unwrap();
        let recalled = orchestrator
            .get_compressed_memory(recall(agent))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(recalled.recent[0].message, format!("{agent} in turn 1"));
        let turns = orchestrator
            .list_memory_turns(turns_of(agent))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(turns.turn_ids, [1], "{agent}");
    }
}

#[tokio::test]
async fn an_audit_write_token_stores_rows_only_in_its_own_agents_name() {
    let auth = TestAuth::new();
    let dir = TempDir::new().unwrap();
    let server = start_audit(&auth, &dir.path().join("audit.db")).await;
    let mut orchestrator = audit_as(&server, &auth, "orchestrator", AUDIT_ORCHESTRATOR);
    create_session(&mut orchestrator).await;
    let mut planner = audit_as(&server, &auth, "planner", &["audit:write"]);

    assert_not_the_agent(
        planner.store_message(said("hacker", 1, "m1")).await,
        "planner",
        "hacker",
    );
    assert_not_the_agent(
        planner.store_tool_usage(used("hacker", 1, "t1")).await,
        "planner",
        "hacker",
    );
    assert_not_the_agent(
        planner
            .store_turn(pb::StoreTurnRequest {
                message: Some(said("hacker", 1, "m1")),
                tool_calls: vec![],
            })
            .await,
        "planner",
        "hacker",
    );
    // The message is the planner's, but a tool call names the hacker.
    assert_not_the_agent(
        planner
            .store_turn(pb::StoreTurnRequest {
                message: Some(said("planner", 1, "m1")),
                tool_calls: vec![used("hacker", 1, "t1")],
            })
            .await,
        "planner",
        "hacker",
    );
    assert!(
        messages(&mut orchestrator).await.is_empty(),
        "no refused write was stored"
    );

    let message = planner
        .store_message(said("planner", 1, "m1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(message.written_by, "planner");
    let turn = planner
        .store_turn(pb::StoreTurnRequest {
            message: Some(said("planner", 2, "m2")),
            tool_calls: vec![used("planner", 2, "t2")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(turn.message.unwrap().written_by, "planner");
    assert_eq!(turn.tool_calls[0].written_by, "planner");
    let agents: Vec<String> = messages(&mut orchestrator)
        .await
        .into_iter()
        .map(|message| message.agent_name)
        .collect();
    assert_eq!(agents, ["planner", "planner"]);
}

#[tokio::test]
async fn the_orchestrators_scope_writes_audit_rows_for_every_agent() {
    let auth = TestAuth::new();
    let dir = TempDir::new().unwrap();
    let server = start_audit(&auth, &dir.path().join("audit.db")).await;
    let mut without = audit_as(
        &server,
        &auth,
        "orchestrator",
        &["audit:read", "audit:write"],
    );
    create_session(&mut without).await;
    assert_not_the_agent(
        without.store_message(said("planner", 1, "m1")).await,
        "orchestrator",
        "planner",
    );
    let mut orchestrator = audit_as(&server, &auth, "orchestrator", AUDIT_ORCHESTRATOR);
    for (turn_id, agent) in (1..).zip(AGENTS) {
        orchestrator
            .store_turn(pb::StoreTurnRequest {
                message: Some(said(agent, turn_id, &format!("m{turn_id}"))),
                tool_calls: vec![used(agent, turn_id, &format!("t{turn_id}"))],
            })
            .await
            .unwrap();
        orchestrator
            .store_message(said(agent, turn_id + 10, &format!("m{}", turn_id + 10)))
            .await
            .unwrap();
    }
    let stored = messages(&mut orchestrator).await;
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|row| row.written_by == "orchestrator"));
}

#[tokio::test]
async fn every_audit_row_read_back_names_the_client_that_wrote_it_and_a_repeat_keeps_it() {
    let auth = TestAuth::new();
    let dir = TempDir::new().unwrap();
    let server = start_audit(&auth, &dir.path().join("audit.db")).await;
    let mut orchestrator = audit_as(&server, &auth, "orchestrator", AUDIT_ORCHESTRATOR);
    let mut planner = audit_as(&server, &auth, "planner", &["audit:write"]);
    let mut mole = audit_as(&server, &auth, "mole", &["audit:write"]);

    assert_eq!(
        create_session(&mut orchestrator).await.written_by,
        "orchestrator"
    );
    let again = create_session(&mut planner).await;
    assert_eq!(
        again.written_by, "orchestrator",
        "a repeat keeps the creator"
    );
    let mut watch = orchestrator
        .watch_session(pb::WatchSessionRequest {
            session_id: SESSION.into(),
            after_message_id: 0,
        })
        .await
        .unwrap()
        .into_inner();

    let first = orchestrator
        .store_message(said("planner", 1, "m1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.written_by, "orchestrator");
    let repeat = planner
        .store_message(said("planner", 1, "m1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeat, first, "a repeat by another client changes nothing");
    planner
        .store_message(said("planner", 2, "m2"))
        .await
        .unwrap();
    let tool = planner
        .store_tool_usage(used("planner", 2, "t2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tool.written_by, "planner");
    let tool_repeat = orchestrator
        .store_tool_usage(used("planner", 2, "t2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tool_repeat.written_by, "planner");
    let event_row = mole
        .store_session_event(event("e1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(event_row.written_by, "mole");
    let event_repeat = orchestrator
        .store_session_event(event("e1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(event_repeat.written_by, "mole");

    let session = orchestrator
        .get_session(pb::GetSessionRequest {
            session_id: SESSION.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.written_by, "orchestrator");
    assert_eq!(
        session.written_via, "",
        "over plaintext no certificate proves an identity"
    );
    let listed = orchestrator
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions[0].written_by, "orchestrator");
    let writers: Vec<String> = messages(&mut orchestrator)
        .await
        .into_iter()
        .map(|message| message.written_by)
        .collect();
    assert_eq!(writers, ["orchestrator", "planner"]);
    let tools = orchestrator
        .list_tool_usage(pb::ListToolUsageRequest {
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tools.tool_usage.len(), 1);
    assert_eq!(tools.tool_usage[0].written_by, "planner");
    let events = orchestrator
        .list_session_events(pb::ListSessionEventsRequest {
            session_id: SESSION.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].written_by, "mole");

    let watched: Vec<String> = (&mut watch)
        .take(2)
        .map(|message| message.unwrap().written_by)
        .collect()
        .await;
    assert_eq!(
        watched,
        ["orchestrator", "planner"],
        "the watch stream shows writers too"
    );
}

/// Writes a session with one message as a version 2 build would have left it:
/// the rows without `written_by` (nor version 4's `written_via`), and
/// `user_version` 2.
fn version_2_file(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = AuditStore::open(StoreConfig::new(path)).unwrap();
        store
            .create_session(NewSession {
                session_id: SESSION.into(),
                ..NewSession::default()
            })
            .await
            .unwrap();
        store
            .store_message(NewMessage {
                session_id: SESSION.into(),
                turn_id: 1,
                agent_name: "planner".into(),
                message: "from version 2".into(),
                idempotency_key: "old-1".into(),
                ..NewMessage::default()
            })
            .await
            .unwrap();
        store.shutdown();
    });
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "ALTER TABLE sessions DROP COLUMN written_by;
         ALTER TABLE messages DROP COLUMN written_by;
         ALTER TABLE tool_usage DROP COLUMN written_by;
         ALTER TABLE session_events DROP COLUMN written_by;
         ALTER TABLE sessions DROP COLUMN written_via;
         ALTER TABLE messages DROP COLUMN written_via;
         ALTER TABLE tool_usage DROP COLUMN written_via;
         ALTER TABLE session_events DROP COLUMN written_via;
         ALTER TABLE messages DROP COLUMN input_tokens;
         ALTER TABLE messages DROP COLUMN output_tokens;
         ALTER TABLE messages DROP COLUMN tokens_estimated;
         ALTER TABLE sessions DROP COLUMN chain_seq;
         ALTER TABLE sessions DROP COLUMN prev_hash;
         ALTER TABLE sessions DROP COLUMN row_hash;
         ALTER TABLE messages DROP COLUMN chain_seq;
         ALTER TABLE messages DROP COLUMN prev_hash;
         ALTER TABLE messages DROP COLUMN row_hash;
         ALTER TABLE tool_usage DROP COLUMN chain_seq;
         ALTER TABLE tool_usage DROP COLUMN prev_hash;
         ALTER TABLE tool_usage DROP COLUMN row_hash;
         ALTER TABLE session_events DROP COLUMN chain_seq;
         ALTER TABLE session_events DROP COLUMN prev_hash;
         ALTER TABLE session_events DROP COLUMN row_hash;
         ALTER TABLE sessions DROP COLUMN end_seq;
         ALTER TABLE sessions DROP COLUMN end_prev_hash;
         ALTER TABLE sessions DROP COLUMN end_hash;
         ALTER TABLE sessions DROP COLUMN chain_head;
         ALTER TABLE sessions DROP COLUMN chain_next;
         ALTER TABLE sessions DROP COLUMN signed_next;
         DROP TABLE checkpoints;
         PRAGMA user_version = 2;",
    )
    .unwrap();
}

#[tokio::test]
async fn a_version_2_database_is_migrated_and_its_rows_read_back_with_no_writer() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("audit.db");
    tokio::task::spawn_blocking({
        let path = path.clone();
        move || version_2_file(&path)
    })
    .await
    .unwrap();

    let auth = TestAuth::new();
    let server = start_audit(&auth, &path).await;
    let mut orchestrator = audit_as(&server, &auth, "orchestrator", AUDIT_ORCHESTRATOR);
    let session = orchestrator
        .get_session(pb::GetSessionRequest {
            session_id: SESSION.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.written_by, "", "unknown for a row from before");
    orchestrator
        .store_message(said("hacker", 2, "new-2"))
        .await
        .unwrap();
    let stored = messages(&mut orchestrator).await;
    let rows: Vec<(&str, &str)> = stored
        .iter()
        .map(|row| (row.message.as_str(), row.written_by.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("from version 2", ""),
            ("hacker speaks in turn 2", "orchestrator")
        ]
    );
    server.stop().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 6);
    let nulls: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE written_by IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 1, "the old row keeps a NULL writer");
}

async fn start_calculator(auth: &TestAuth) -> TestServer {
    let authenticator = auth.authenticator.clone();
    let tools =
        heist_tools::ToolSet::from_names("calculator", &heist_tools::ToolsConfig::default())
            .unwrap();
    services::tools(
        tools,
        std::time::Duration::from_secs(5),
        authenticator,
        ServeOptions::default(),
    )
    .await
}

#[tokio::test]
async fn a_tool_call_names_only_the_agent_that_holds_the_token() {
    let auth = TestAuth::new();
    let server = start_calculator(&auth).await;
    let call = |client: &str, scopes: &[&str], agent: &str| {
        let bearer = BearerInterceptor::new(&auth.token(client, scopes));
        let mut tools = ToolServiceClient::with_interceptor(server.channel(), bearer);
        let request = pb::CallToolRequest {
            tool_name: "calculator".into(),
            arguments: [("expression".to_owned(), "6 * 7".to_owned())].into(),
            session_id: SESSION.into(),
            agent_name: agent.into(),
            turn_id: 1,
        };
        async move {
            tools
                .call_tool(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let refused = call("planner", &["calculator:use"], "hacker")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("\"planner\""), "{refused:?}");
    assert!(refused.message().contains("\"hacker\""), "{refused:?}");

    let own = call("planner", &["calculator:use"], "planner")
        .await
        .unwrap();
    assert!(own.text.contains("42"), "{own:?}");
    let anonymous = call("planner", &["calculator:use"], "").await.unwrap();
    assert!(anonymous.text.contains("42"), "{anonymous:?}");
    let for_any = call(
        "orchestrator",
        &["calculator:use", ACT_FOR_ANY_SCOPE],
        "hacker",
    )
    .await
    .unwrap();
    assert!(for_any.text.contains("42"), "{for_any:?}");
}
