//! `WatchSession` streams against the real Audit server: a cancelled watch
//! releases its watcher at once, with no message stored, and the number of
//! watchers is capped per session and in total (issue 11 item 5).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use heist_audit::{AuditService, AuditStore, WatchLimits};
use heist_e2e::{TestAuth, TestServer, each_store, stores::StoreBackend};
use heist_plumbing::{
    ServeOptions,
    auth::{Audience, AuthLayer, BearerInterceptor},
};
use heist_proto::v1::{
    CreateSessionRequest, Message, StoreMessageRequest, WatchSessionRequest,
    audit_service_client::AuditServiceClient,
};
use tempfile::TempDir;
use tonic::{Code, Streaming, service::interceptor::InterceptedService, transport::Channel};

type Client = AuditServiceClient<InterceptedService<Channel, BearerInterceptor>>;

struct Audit {
    /// A clone of the served service, to read its watcher count.
    service: AuditService,
    server: TestServer,
    client: Client,
    _dir: TempDir,
}

async fn start_audit(backend: StoreBackend, limits: WatchLimits) -> Audit {
    let dir = TempDir::new().unwrap();
    let store = AuditStore::connect(backend.fresh_config(dir.path()))
        .await
        .unwrap();
    let service = AuditService::with_watch_limits(store, limits);
    let served = service.clone();
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = TestServer::start(move |listener, shutdown| {
        heist_plumbing::serve_protected(
            listener,
            served.into_server(),
            AuthLayer::new(
                authenticator,
                Audience::Audit,
                heist_audit::service::METHOD_SCOPES,
            ),
            shutdown,
            ServeOptions::default(),
        )
    })
    .await;
    let client = AuditServiceClient::with_interceptor(
        server.channel(),
        auth.bearer(&["audit:read", "audit:write", "agents:act_for_any"]),
    );
    Audit {
        service,
        server,
        client,
        _dir: dir,
    }
}

impl Audit {
    async fn create(&mut self, session_id: &str) {
        self.client
            .create_session(CreateSessionRequest {
                session_id: session_id.into(),
                metadata: "{}".into(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap();
    }

    async fn watch(&mut self, session_id: &str) -> Result<Streaming<Message>, tonic::Status> {
        self.client
            .watch_session(WatchSessionRequest {
                session_id: session_id.into(),
                after_message_id: 0,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn store(&mut self, session_id: &str, turn_id: i64) {
        self.client
            .store_message(StoreMessageRequest {
                session_id: session_id.into(),
                turn_id,
                agent_name: "planner".into(),
                agent_role: "Strategic Planner".into(),
                message: format!("turn {turn_id}"),
                is_error: false,
                idempotency_key: String::new(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Waits (bounded) until `want` watchers are live; the count seen last.
    async fn watchers_become(&self, want: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.service.watcher_count();
            if now == want || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

each_store! {
    async fn cancelled_watches_release_their_watchers_without_any_message_stored(backend) {
        const WATCHES: usize = 100;
        let mut audit = start_audit(backend, WatchLimits {
            per_session: WATCHES,
            total: WATCHES,
        })
        .await;
        audit.create("s1").await;
        let mut streams = Vec::new();
        for _ in 0..WATCHES {
            streams.push(audit.watch("s1").await.unwrap());
        }
        assert_eq!(audit.watchers_become(WATCHES).await, WATCHES);

        drop(streams);
        assert_eq!(
            audit.watchers_become(0).await,
            0,
            "cancelled watches still hold their watchers"
        );

        // The places are free again, and a new watch still sees new messages.
        let mut again: Vec<_> = Vec::new();
        for _ in 0..WATCHES {
            again.push(audit.watch("s1").await.unwrap());
        }
        audit.store("s1", 1).await;
        let first = tokio::time::timeout(Duration::from_secs(10), again[0].message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.turn_id, 1);
        drop(again);
        assert_eq!(audit.watchers_become(0).await, 0);
        audit.server.stop().await.unwrap();
    }
}

each_store! {
    async fn watchers_are_capped_per_session_and_in_total_with_resource_exhausted(backend) {
        let mut audit = start_audit(backend, WatchLimits {
            per_session: 2,
            total: 3,
        })
        .await;
        for session in ["s1", "s2", "s3"] {
            audit.create(session).await;
        }
        let mut on_s1 = vec![
            audit.watch("s1").await.unwrap(),
            audit.watch("s1").await.unwrap(),
        ];
        let refused = audit.watch("s1").await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("this session already has 2 open WatchSession streams"),
            "{refused:?}"
        );

        let _on_s2 = audit.watch("s2").await.unwrap();
        let refused = audit.watch("s3").await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("the service already has 3 open WatchSession streams"),
            "{refused:?}"
        );
        assert_eq!(
            audit.service.watcher_count(),
            3,
            "refused watches hold nothing"
        );

        // Closing one watch frees its place at once.
        drop(on_s1.pop());
        assert_eq!(audit.watchers_become(2).await, 2);
        let _on_s3 = audit.watch("s3").await.unwrap();
        audit.server.begin_stop();
    }
}

each_store! {
    async fn refused_watches_of_unknown_sessions_hold_no_place(backend) {
        let mut audit = start_audit(backend, WatchLimits {
            per_session: 1,
            total: 1,
        })
        .await;
        for _ in 0..3 {
            let refused = audit.watch("nope").await.unwrap_err();
            assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        }
        assert_eq!(audit.watchers_become(0).await, 0);
        audit.create("s1").await;
        let _watch = audit.watch("s1").await.unwrap();
        assert_eq!(audit.service.watcher_count(), 1);
    }
}
