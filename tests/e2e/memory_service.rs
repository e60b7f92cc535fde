//! The Memory service against the real server on 127.0.0.1:0, through the
//! generated client: every RPC and every bad input, on both stores.
//!
//! [`memory_contract!`] runs each test twice, `name::in_memory` and
//! `name::on_redis` (on a private Redis that must start: a test fails, never
//! skips, without it). Backend-specific, because the contract differs on
//! purpose: what a restart of Memory keeps (nothing in memory; everything on
//! Redis, see `memory_replicas`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_e2e::{TestAuth, TestServer, services};
use heist_engines::RedisServer;
use heist_memory::{Backend, Limits, StoreConfig};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    ClearMemoryRequest, GetCompressedMemoryRequest, GetStatsRequest, ListMemoryTurnsRequest,
    StoreMemoryRequest, memory_service_client::MemoryServiceClient,
};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

pub(crate) type Client = MemoryServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// The store a test's Memory runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Redis,
}

/// Each `fn name(backend) { body }` becomes tests `name::in_memory` and `name::on_redis`.
macro_rules! memory_contract {
    ($(fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn in_memory() {
                let $backend = Kind::Memory;
                $body
            }

            #[tokio::test]
            async fn on_redis() {
                let $backend = Kind::Redis;
                $body
            }
        }
    )*};
}

/// A Memory server, with the Redis it runs on (if any, stopped on drop).
pub(crate) struct Memory {
    pub(crate) server: TestServer,
    pub(crate) auth: TestAuth,
    pub(crate) redis: Option<RedisServer>,
}

impl Memory {
    /// A client whose token is issued to `planner` with `scopes`.
    pub(crate) fn client(&self, scopes: &[&str]) -> Client {
        self.client_of("planner", scopes)
    }

    pub(crate) fn client_of(&self, agent: &str, scopes: &[&str]) -> Client {
        let bearer = BearerInterceptor::new(&self.auth.token(agent, scopes));
        MemoryServiceClient::with_interceptor(self.server.channel(), bearer)
    }

    /// The orchestrator's client: every scope, for every agent.
    pub(crate) fn full_client(&self) -> Client {
        full_client_of(&self.server, &self.auth)
    }
}

/// The orchestrator's client of `server`, with a token from `auth`.
pub(crate) fn full_client_of(server: &TestServer, auth: &TestAuth) -> Client {
    let scopes = [
        "memory:read",
        "memory:write",
        "memory:admin",
        "agents:act_for_any",
    ];
    let bearer = BearerInterceptor::new(&auth.token("orchestrator", &scopes));
    MemoryServiceClient::with_interceptor(server.channel(), bearer)
}

/// Memory bounded by `limits` on a store of `kind` (a new private Redis for `Redis`).
pub(crate) async fn start_memory(kind: Kind, limits: Limits) -> Memory {
    let redis =
        (kind == Kind::Redis).then(|| RedisServer::start().expect("the private Redis must start"));
    let store = match &redis {
        None => StoreConfig::Memory,
        Some(redis) => StoreConfig::Redis(redis.url()),
    };
    let auth = TestAuth::new();
    let server = start_on(&store, limits, &auth).await;
    Memory {
        server,
        auth,
        redis,
    }
}

/// Another Memory server on `store`, trusting `auth` (a replica, or a restart).
pub(crate) async fn start_on(store: &StoreConfig, limits: Limits, auth: &TestAuth) -> TestServer {
    let backend = Backend::open(store, limits).await.expect("the store opens");
    services::memory_on(backend, auth.authenticator.clone(), ServeOptions::default()).await
}

pub(crate) fn turn(agent: &str, session: &str, turn_id: i64, message: &str) -> StoreMemoryRequest {
    StoreMemoryRequest {
        agent_id: agent.into(),
        session_id: session.into(),
        turn_id,
        message: message.into(),
        idempotency_key: String::new(),
    }
}

pub(crate) fn compressed(
    agent: &str,
    session: &str,
    recent: i32,
    max_chars: i32,
) -> GetCompressedMemoryRequest {
    GetCompressedMemoryRequest {
        agent_id: agent.into(),
        session_id: session.into(),
        recent_count: recent,
        max_chars,
    }
}

#[tokio::test]
async fn in_memory_answers_name_the_run_of_the_service_and_its_bound_and_a_restart_changes_the_run()
{
    let limits = Limits {
        max_per_stream: 7,
        ..Limits::default()
    };
    let memory = start_memory(Kind::Memory, limits.clone()).await;
    let mut client = memory.full_client();
    let stored = client
        .store_memory(turn("planner", "s1", 1, "we go at dawn"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.instance_id.len(), 16, "{stored:?}");
    assert_eq!(stored.max_per_stream, 7);
    let listed = client
        .list_memory_turns(ListMemoryTurnsRequest {
            agent_id: "planner".into(),
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.turn_ids, [1]);
    assert_eq!(listed.instance_id, stored.instance_id, "one run, one ID");
    assert_eq!(listed.max_per_stream, 7);

    let restarted = start_memory(Kind::Memory, limits).await;
    let again = restarted
        .full_client()
        .store_memory(turn("planner", "s1", 2, "the vault"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(again.instance_id, stored.instance_id, "another run");
    assert_eq!(again.memories_count, 1, "the new run lost turn 1");
}

memory_contract! {
    fn turns_are_stored_and_served_recent_verbatim_older_summarised(backend) {
        let memory = start_memory(backend, Limits::default()).await;
        let mut client = memory.full_client();
        for turn_id in 1..=12 {
            let stored = client
                .store_memory(turn(
                    "planner",
                    "s1",
                    turn_id,
                    &format!("Turn {turn_id} plan. Details follow."),
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(stored.stored);
            assert_eq!(stored.memories_count, turn_id);
        }
        let answer = client
            .get_compressed_memory(compressed("planner", "s1", 0, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.memories_count, 12);
        let recent: Vec<_> = answer.recent.iter().map(|entry| entry.turn_id).collect();
        assert_eq!(recent, [8, 9, 10, 11, 12], "the default keeps 5 verbatim");
        assert_eq!(answer.recent[4].message, "Turn 12 plan. Details follow.");
        assert!(answer.summary.contains("Turn 1:"), "{}", answer.summary);
        assert!(answer.summary.contains("Turn 7:"), "{}", answer.summary);
        assert!(!answer.summary.contains("Turn 8:"), "{}", answer.summary);

        let tight = client
            .get_compressed_memory(compressed("planner", "s1", 2, 40))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tight.recent.len(), 2);
        assert!(tight.summary.chars().count() <= 40, "{}", tight.summary);

        let turns = client
            .list_memory_turns(ListMemoryTurnsRequest {
                agent_id: "planner".into(),
                session_id: "s1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(turns.turn_ids, (1..=12).collect::<Vec<_>>());
    }

    fn a_repeated_turn_is_stored_once_and_a_different_one_conflicts(backend) {
        let memory = start_memory(backend, Limits::default()).await;
        let mut client = memory.full_client();
        client
            .store_memory(turn("mole", "s1", 3, "the guard sleeps"))
            .await
            .unwrap();
        let again = client
            .store_memory(turn("mole", "s1", 3, "the guard sleeps"))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.stored);
        assert_eq!(again.memories_count, 1);
        let status = client
            .store_memory(turn("mole", "s1", 3, "the guard is awake"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
    }

    fn an_unknown_agent_or_session_gets_an_empty_answer(backend) {
        let memory = start_memory(backend, Limits::default()).await;
        let mut client = memory.full_client();
        let answer = client
            .get_compressed_memory(compressed("ghost", "nowhere", 5, 100))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.memories_count, 0);
        assert!(answer.recent.is_empty() && answer.summary.is_empty());
    }

    fn bad_input_is_invalid_argument_naming_the_field(backend) {
        let memory = start_memory(backend, Limits {
            max_message_bytes: 1000,
            ..Limits::default()
        })
        .await;
        let mut client = memory.full_client();
        for (request, field) in [
            (turn("", "s1", 1, "x"), "agent_id"),
            (turn("planner", "", 1, "x"), "session_id"),
            (turn(&"a".repeat(129), "s1", 1, "x"), "agent_id"),
            (turn("planner", "s1", -1, "x"), "turn_id"),
            (turn("planner", "s1", 1, &"x".repeat(1001)), "1000"),
            (turn("planner", "s1", 1, ""), "message"),
        ] {
            let status = client.store_memory(request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().contains(field), "{field}: {status:?}");
        }
        for (recent, max_chars, field) in [
            (-1, 100, "recent_count"),
            (101, 100, "recent_count"),
            (5, -3, "max_chars"),
            (5, 70000, "max_chars"),
        ] {
            let status = client
                .get_compressed_memory(compressed("planner", "s1", recent, max_chars))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().contains(field), "{status:?}");
        }
        let status = client
            .clear_memory(ClearMemoryRequest {
                agent_id: "planner".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    fn limits_evict_and_stats_count_and_clear_empties(backend) {
        let limits = Limits {
            max_per_stream: 3,
            max_total: 6,
            ..Limits::default()
        };
        let memory = start_memory(backend, limits).await;
        let mut client = memory.full_client();
        for turn_id in 1..=5 {
            client
                .store_memory(turn("planner", "old", turn_id, "plan"))
                .await
                .unwrap();
        }
        for turn_id in 1..=3 {
            client
                .store_memory(turn("hacker", "mid", turn_id, "hack"))
                .await
                .unwrap();
            client
                .store_memory(turn("mole", "new", turn_id, "leak"))
                .await
                .unwrap();
        }
        let stats = client
            .get_stats(GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.max_per_stream, 3);
        assert_eq!(stats.max_total, 6);
        assert!(stats.total_memories <= 6, "{stats:?}");
        assert_eq!(
            stats.evicted_sessions, 1,
            "the least recently written session goes: {stats:?}"
        );
        assert!(stats.evicted_memories >= 2 + 3, "{stats:?}");
        let old = client
            .get_compressed_memory(compressed("planner", "old", 5, 100))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(old.memories_count, 0);

        let cleared = client
            .clear_memory(ClearMemoryRequest {
                session_id: "mid".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cleared.cleared, 3);
        let cleared = client
            .clear_memory(ClearMemoryRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cleared.cleared, 3);
        let stats = client
            .get_stats(GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.total_memories, 0);
    }

    fn each_rpc_needs_its_scope(backend) {
        let memory = start_memory(backend, Limits::default()).await;
        let mut reader = memory.client(&["memory:read"]);
        let status = reader
            .store_memory(turn("planner", "s1", 1, "x"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("memory:write"));
        let mut writer = memory.client(&["memory:write"]);
        writer
            .store_memory(turn("planner", "s1", 1, "x"))
            .await
            .unwrap();
        let status = writer.get_stats(GetStatsRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("memory:read"));
        let status = memory
            .client(&["memory:read", "memory:write"])
            .clear_memory(ClearMemoryRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("memory:admin"));
    }
}
