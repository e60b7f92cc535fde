//! The mesh scaled out, as real processes: two replicas of every service,
//! Audit's on one private PostgreSQL, Memory's on one private Redis, OAuth's
//! sharing one key file and their revocations in the PostgreSQL; one
//! orchestrator (in this process) with every address. Replicas are SIGKILLed
//! and restarted, and the engines themselves restarted, while a session runs.
//! The engines come from `heist-engines`: a test fails, never skips, when
//! one cannot start. Every loop is bounded in count and time.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use heist_e2e::{
    channel_to, dev_token,
    processes::{MeshOptions, ProcessMesh, SERVICES},
};
use heist_engines::{PostgresServer, RedisServer};
use heist_orchestrator::{
    app,
    config::Config,
    engine::{Orchestrator, SessionOutcome},
    llm::{BoxFuture, Completion, CompletionRequest, LlmBackend, LlmError, OfflineBackend},
    mesh::Mesh,
};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    GetSessionRequest, ListMemoryTurnsRequest, Message, SessionStatus,
    memory_service_client::MemoryServiceClient,
};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::replicas::{session, spool};

/// The longest a faulty session may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The offline LLM, answering each round after `pace`: the mesh answers a
/// turn in milliseconds, and the faults must land while the session runs.
pub(crate) struct Paced {
    pub(crate) offline: OfflineBackend,
    pub(crate) pace: Duration,
}

impl LlmBackend for Paced {
    fn complete<'a>(
        &'a self,
        request: CompletionRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(async move {
            tokio::time::sleep(self.pace).await;
            self.offline.complete(request).await
        })
    }

    fn describe(&self) -> String {
        format!("offline, paced {:?} a round", self.pace)
    }

    fn is_offline(&self) -> bool {
        true
    }

    fn model(&self) -> &str {
        self.offline.model()
    }

    fn provider_name(&self) -> &'static str {
        self.offline.provider_name()
    }
}

/// The scaled-out mesh: `replicas` of each service, Audit and OAuth's
/// revocations in a fresh database of the shared PostgreSQL, Memory in `redis`.
async fn scaled_out(database: &str, redis: &RedisServer, replicas: usize) -> ProcessMesh {
    let mut options = MeshOptions {
        audit_store: Some(database.to_owned()),
        memory_store: Some(redis.url()),
        oauth_revocations: Some(database.to_owned()),
        ..MeshOptions::for_tests()
    };
    for service in SERVICES {
        options = options.replicas(service, replicas);
    }
    ProcessMesh::start_with(options).await
}

/// An orchestrator with every replica's address, its LLM paced by `pace`.
async fn orchestrator(processes: &ProcessMesh, pace: Duration) -> Orchestrator {
    let config = Config::load(&processes.write_config("scaled.yaml")).unwrap();
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    let llm = Arc::new(Paced {
        offline: OfflineBackend::new(5),
        pace,
    });
    app::prepare(config, clients, llm, spool()).await.0
}

/// Waits (bounded) until the session has stored `more` messages past `from`
/// (it may not exist yet), asking replicas other than `down` (a replica
/// killed just now); answers how many it has stored.
async fn progress(
    processes: &ProcessMesh,
    session_id: &str,
    from: usize,
    more: usize,
    down: Option<(&str, usize)>,
) -> usize {
    let live = |service: &str| match down {
        Some((killed, index)) if killed == service => 1 - index,
        _ => 0,
    };
    // One token for the whole wait (8-second tokens outlive it).
    let oauth = processes.addr_of("oauth", live("oauth"));
    let mut audit = heist_e2e::audit_reader(oauth, processes.addr_of("audit", live("audit")))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored = audit
            .get_session(GetSessionRequest {
                session_id: session_id.to_owned(),
            })
            .await
            .map_or(0, |session| session.into_inner().message_count as usize);
        if stored >= from + more || Instant::now() > deadline {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every turn once, 1..=`turns`, in order.
fn assert_every_turn_once(messages: &[Message], turns: u64, what: &str) {
    let ids: Vec<i64> = messages.iter().map(|message| message.turn_id).collect();
    assert_eq!(
        ids,
        (1..=turns as i64).collect::<Vec<_>>(),
        "{what}: turn ids 1..N, none lost, none twice"
    );
}

/// Memory (replica `index`) holds every turn each agent spoke (the session
/// stays far below the per-stream bound of 1,000 turns).
async fn assert_memory_complete(
    processes: &ProcessMesh,
    index: usize,
    session_id: &str,
    messages: &[Message],
) {
    let mut spoken: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for message in messages.iter().filter(|message| !message.is_error) {
        spoken
            .entry(message.agent_name.clone())
            .or_default()
            .push(message.turn_id);
    }
    let token = dev_token(
        processes.addr("oauth"),
        "orchestrator",
        "memory:read agents:act_for_any",
    )
    .await
    .unwrap();
    let mut memory = MemoryServiceClient::with_interceptor(
        channel_to(processes.addr_of("memory", index)),
        BearerInterceptor::new(&token),
    );
    assert!(spoken.len() >= 2, "several agents spoke: {spoken:?}");
    for (agent, turns) in spoken {
        let kept = memory
            .list_memory_turns(ListMemoryTurnsRequest {
                agent_id: agent.clone(),
                session_id: session_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .turn_ids;
        assert_eq!(kept, turns, "memory replica {index} of {agent}");
    }
}

/// Runs `turns` turns of `session_id` in the background.
fn start_session(
    orchestrator: &Orchestrator,
    session_id: &'static str,
    turns: u64,
) -> tokio::task::JoinHandle<SessionOutcome> {
    let orchestrator = orchestrator.clone();
    tokio::spawn(async move {
        tokio::time::timeout(RUN_LIMIT, session(&orchestrator, session_id, turns))
            .await
            .expect("the session ends in time")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_turn_session_loses_nothing_while_one_replica_of_each_is_killed_three_times() {
    const TURNS: u64 = 200;
    let database = PostgresServer::shared()
        .and_then(PostgresServer::fresh_database)
        .expect("the private PostgreSQL must start");
    let redis = RedisServer::start().expect("the private Redis must start");
    let mut processes = scaled_out(&database, &redis, 2).await;
    let orchestrator = orchestrator(&processes, Duration::from_millis(40)).await;
    let session_id = "heist_20261201_130000_sc01";
    let running = start_session(&orchestrator, session_id, TURNS);

    // Three rounds; in each, every service loses one replica (replica 0,
    // then 1, then 0), while its twin serves, and gets it back. The session
    // must have moved on while each one is down.
    let mut stored = progress(&processes, session_id, 0, 4, None).await;
    let mut kills = 0;
    for round in 0..3 {
        let index = round % 2;
        for service in SERVICES {
            processes.kill_replica(service, index);
            kills += 1;
            stored = progress(&processes, session_id, stored, 2, Some((service, index))).await;
            processes.restart_replica(service, index);
            processes.wait_replica_serving(service, index).await;
        }
    }
    assert!(
        !running.is_finished(),
        "all {kills} kills landed mid-session"
    );
    let outcome = running.await.unwrap();

    assert_eq!(outcome.status.as_str(), "completed", "{outcome:?}");
    assert_eq!(outcome.turns.len() as u64, TURNS);
    assert_eq!(outcome.failed_turns, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.audit_failures, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.memory_failures, 0, "{:?}", outcome.breaker_events);
    assert_eq!(
        (outcome.audit_spooled_writes, outcome.audit_spooled),
        (0, 0),
        "a twin took every write: nothing waited in the spool"
    );
    assert!(outcome.tool_calls() > 0);

    // Both Audit replicas read the one database: every turn once, every tool call once.
    for index in 0..2 {
        let trail = heist_e2e::audit_trail(
            processes.addr("oauth"),
            processes.addr_of("audit", index),
            session_id,
        )
        .await;
        assert_eq!(trail.session.status(), SessionStatus::Completed);
        assert_every_turn_once(&trail.messages, TURNS, &format!("audit replica {index}"));
        assert_eq!(
            trail.tool_usage.len(),
            outcome.tool_calls(),
            "audit replica {index}: every tool call once"
        );
        assert_memory_complete(&processes, index, session_id, &trail.messages).await;
    }
    // Written through both replicas, retried past the killed ones: one
    // intact chain (checkpointed on the way, 200 turns), which both replicas
    // vouch for, and which the outcome carries.
    assert_sealed(&processes, session_id, &outcome, 2).await;
    processes.stop();
}

/// Asserts that each of the `replicas` Audit replicas finds `session_id`
/// intact with the same head, and that `outcome` carries that seal.
async fn assert_sealed(
    processes: &ProcessMesh,
    session_id: &str,
    outcome: &SessionOutcome,
    replicas: usize,
) {
    for index in 0..replicas {
        let verdict = heist_e2e::integrity::assert_chain_intact(
            processes.addr("oauth"),
            processes.addr_of("audit", index),
            session_id,
        )
        .await;
        let seal = outcome.chain_seal.as_ref().expect("the outcome is sealed");
        assert_eq!(
            seal.signed_rows,
            Some(seal.rows),
            "signed to its end: {seal:?}"
        );
        assert_eq!(seal.chain_head, verdict.chain_head, "audit replica {index}");
        assert_eq!(seal.rows, verdict.rows, "audit replica {index}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_session_makes_audit_unavailable_the_orchestrator_spools_and_nothing_is_lost()
 {
    const TURNS: u64 = 120;
    // Its own server, as durable as shipped (with `synchronous_commit=off` a
    // SIGKILL loses the last commits Audit already confirmed): this test kills it.
    let mut postgres = PostgresServer::start(heist_engines::Durability::Full)
        .expect("the private PostgreSQL must start");
    let redis = RedisServer::start().expect("the private Redis must start");
    let database = postgres.url();
    let processes = scaled_out(&database, &redis, 1).await;
    let orchestrator = orchestrator(&processes, Duration::from_millis(40)).await;
    let session_id = "heist_20261201_130000_sc02";
    let running = start_session(&orchestrator, session_id, TURNS);
    let stored = progress(&processes, session_id, 0, 10, None).await;

    postgres.kill();
    // While it is down Audit answers UNAVAILABLE, and says so in its health.
    let mut audit = heist_e2e::audit_reader(processes.addr("oauth"), processes.addr("audit"))
        .await
        .unwrap();
    let refused = audit
        .get_session(GetSessionRequest {
            session_id: session_id.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let audit_addr = processes.addr("audit");
    assert_eq!(
        heist_e2e::health_within(audit_addr, ServingStatus::NotServing).await,
        ServingStatus::NotServing,
        "health says so too"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.is_finished(), "the session goes on without Audit");
    postgres.start_again().expect("PostgreSQL starts again");
    assert_eq!(
        heist_e2e::health_within(audit_addr, ServingStatus::Serving).await,
        ServingStatus::Serving
    );

    let outcome = running.await.unwrap();
    assert_eq!(outcome.status.as_str(), "completed", "{outcome:?}");
    assert_eq!(outcome.failed_turns, 0);
    assert!(
        outcome.audit_spooled_writes > 0,
        "writes waited in the spool while PostgreSQL was down: {outcome:?}"
    );
    assert_eq!(
        outcome.audit_spooled, 0,
        "the spool drained once it was back"
    );
    let trail =
        heist_e2e::audit_trail(processes.addr("oauth"), processes.addr("audit"), session_id).await;
    assert!(trail.messages.len() > stored);
    assert_every_turn_once(&trail.messages, TURNS, "after the restart");
    assert_eq!(trail.tool_usage.len(), outcome.tool_calls());
    // The writes spooled while PostgreSQL was down, replayed: one intact chain.
    assert_sealed(&processes, session_id, &outcome, 1).await;
}
