//! One typed client per service the engine calls (Audit, Memory, a tool
//! service), each applying the call's deadline, retries and circuit breaker
//! and attaching the caller's token in one place, so that a call site reads
//! as a plain call. OAuth's [`OAuthClient`] applies the deadline only: its
//! one caller, the [`crate::tokens::TokenCache`], retries a purchase within
//! the waiting caller's deadline and shares it among the callers waiting,
//! and OAuth has no breaker (without a token no call is sent anyway).
//!
//! A service with several replicas: each call starts at the next replica in
//! turn, through that replica's breaker ([`CallGuard`]), and a call to a
//! gone replica goes on to the next at once; the calls past any breaker
//! (OAuth's purchases, Memory's reconcile, the reads of [`read_across`]) go
//! on the same way.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use heist_plumbing::auth::Audience;
use heist_proto::v1::{
    CallToolRequest, CallToolResponse, ClearMemoryRequest, GetCompressedMemoryRequest,
    GetCompressedMemoryResponse, GetSessionRequest, IssueTokenRequest, IssueTokenResponse,
    ListMemoryTurnsRequest, ListMemoryTurnsResponse, Session, StoreMemoryRequest,
    StoreMemoryResponse, audit_service_client::AuditServiceClient,
    memory_service_client::MemoryServiceClient, o_auth_service_client::OAuthServiceClient,
    tool_service_client::ToolServiceClient,
};
use tonic::{Request, Status};

use crate::{
    mesh::{MeshChannel, request},
    replicas::{Pinned, failover},
    resilience::{CircuitBreaker, ResilienceError, RetryPolicy, call_across},
    spool::SpooledWrite,
};

/// The shortest deadline a call is sent with (what is left of an attempt's
/// deadline after a gone replica, never zero).
const MIN_DEADLINE: Duration = Duration::from_millis(1);

/// How one service's calls are made: across its replicas in turn, each
/// through its own breaker, retried by a policy, each attempt within a
/// deadline (a call that goes on from a gone replica to its twin stays
/// within the attempt's deadline). The requests are pinned ([`Pinned`]) to
/// the replica chosen, by index into the service's channel's replicas.
#[derive(Clone)]
pub struct CallGuard {
    /// One per replica, in the channel's order.
    breakers: Arc<[CircuitBreaker]>,
    /// The replica the next call starts at.
    next: Arc<AtomicUsize>,
    policy: RetryPolicy,
    deadline: Duration,
}

impl CallGuard {
    /// Calls through `breaker` (a service with one replica), retried by
    /// `policy`, each attempt within `deadline`.
    pub fn new(breaker: CircuitBreaker, policy: RetryPolicy, deadline: Duration) -> Self {
        Self::across(vec![breaker], policy, deadline)
    }

    /// Calls across replicas, `breakers[i]` guarding replica `i` (see
    /// [`crate::resilience::call_across`]), retried by `policy`, each attempt
    /// within `deadline`.
    pub fn across(breakers: Vec<CircuitBreaker>, policy: RetryPolicy, deadline: Duration) -> Self {
        Self {
            breakers: breakers.into(),
            next: Arc::default(),
            policy,
            deadline,
        }
    }

    /// Calls through `breaker` once (no retry), within `deadline`: for calls
    /// whose failure costs nothing to skip.
    pub fn once(breaker: CircuitBreaker, deadline: Duration) -> Self {
        Self::once_across(vec![breaker], deadline)
    }

    /// Like [`CallGuard::once`], across replicas (a gone replica still
    /// sends the call on to its twin: that is not a retry).
    pub fn once_across(breakers: Vec<CircuitBreaker>, deadline: Duration) -> Self {
        let policy = RetryPolicy::new(1, Duration::ZERO, Duration::ZERO, 1.0, Default::default())
            .unwrap_or_default();
        Self::across(breakers, policy, deadline)
    }

    /// The replica the next call starts at (round-robin).
    fn start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `body` with `token` by `send`, past the breakers (they neither
    /// refuse it nor count the answer), going on from a gone replica to the
    /// next, within the deadline.
    async fn call_unguarded<B, T, Fut>(
        &self,
        body: B,
        token: &str,
        send: impl Fn(Request<B>) -> Fut,
    ) -> Result<T, Status>
    where
        B: Clone,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        failover(self.breakers.len(), self.start(), |pinned| {
            let left = self.deadline.saturating_sub(started.elapsed());
            send(pinned_request(body.clone(), Some(token), left, pinned))
        })
        .await
    }

    /// Sends `body` with `token` by `send`, once per replica tried per
    /// attempt (idempotent calls only: every body carries its idempotency
    /// key or only reads).
    async fn call<B, T, Fut>(
        &self,
        body: &B,
        token: Option<&str>,
        send: impl Fn(Request<B>) -> Fut,
    ) -> Result<T, ResilienceError>
    where
        B: Clone,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut started = Instant::now();
        call_across(&self.breakers, self.start(), &self.policy, true, |tried| {
            if tried.first_of_attempt {
                started = Instant::now();
            }
            let left = self.deadline.saturating_sub(started.elapsed());
            send(pinned_request(
                body.clone(),
                token,
                left,
                Pinned(tried.replica),
            ))
        })
        .await
    }
}

/// Sends `body` with `token` (if any) by `send`, within `deadline`, to the
/// first of `replicas` replicas, going on from a gone one to the next: for
/// reads past any breaker (the `sessions` and `resume` commands).
pub async fn read_across<B, T, Fut>(
    replicas: usize,
    body: &B,
    token: Option<&str>,
    deadline: Duration,
    send: impl Fn(Request<B>) -> Fut,
) -> Result<T, Status>
where
    B: Clone,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    failover(replicas, 0, |pinned| {
        let left = deadline.saturating_sub(started.elapsed());
        send(pinned_request(body.clone(), token, left, pinned))
    })
    .await
}

/// A request carrying `token` (if any), a `grpc-timeout` of `deadline` (at
/// least [`MIN_DEADLINE`]) and the replica it goes to.
fn pinned_request<T>(
    message: T,
    token: Option<&str>,
    deadline: Duration,
    pinned: Pinned,
) -> Request<T> {
    let mut request = request(message, token, deadline.max(MIN_DEADLINE));
    request.extensions_mut().insert(pinned);
    request
}

/// OAuth's token purchases, each within a deadline, going on from a gone
/// replica to the next.
#[derive(Clone)]
pub struct OAuthClient {
    client: OAuthServiceClient<MeshChannel>,
    /// How many replicas the client's channel has.
    replicas: usize,
    /// The replica the next purchase starts at.
    next: Arc<AtomicUsize>,
    deadline: Duration,
}

impl OAuthClient {
    /// OAuth through `client` (over `replicas` replicas), each call within
    /// `deadline`.
    pub fn new(
        client: OAuthServiceClient<MeshChannel>,
        replicas: usize,
        deadline: Duration,
    ) -> Self {
        Self {
            client,
            replicas,
            next: Arc::default(),
            deadline,
        }
    }

    /// Buys a client-credentials token for `client_id` with `scopes`, for
    /// `audience` alone (its RFC 8707 `resource`) (one attempt, sent on to
    /// the next replica if the first is gone; the request carries the
    /// credentials, so no bearer token).
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
        audience: Audience,
    ) -> Result<IssueTokenResponse, Status> {
        let body = IssueTokenRequest {
            grant_type: "client_credentials".into(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
            scope: scopes.join(" "),
            session_id: String::new(),
            resource: vec![audience.as_str().to_owned()],
        };
        let started = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        failover(self.replicas, start, |pinned| {
            let mut client = self.client.clone();
            let left = self.deadline.saturating_sub(started.elapsed());
            let request = pinned_request(body.clone(), None, left, pinned);
            async move { Ok(client.issue_token(request).await?.into_inner()) }
        })
        .await
    }
}

/// Audit's writes, and the verification of a session's chain at its end.
#[derive(Clone)]
pub struct AuditClient {
    client: AuditServiceClient<MeshChannel>,
    guard: CallGuard,
}

impl AuditClient {
    /// Audit through `client`, its calls guarded by `guard`.
    pub fn new(client: AuditServiceClient<MeshChannel>, guard: CallGuard) -> Self {
        Self { client, guard }
    }

    /// Sends one write (the RPC its kind names).
    pub async fn send(
        &self,
        write: &SpooledWrite,
        token: Option<&str>,
    ) -> Result<(), ResilienceError> {
        self.guard
            .call(write, token, |request| {
                let mut client = self.client.clone();
                async move {
                    let (metadata, extensions, write) = request.into_parts();
                    match write {
                        SpooledWrite::CreateSession(body) => client
                            .create_session(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                        SpooledWrite::StoreMessage(body) => client
                            .store_message(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                        SpooledWrite::StoreToolUsage(body) => client
                            .store_tool_usage(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                        SpooledWrite::EndSession(body) => client
                            .end_session(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                        SpooledWrite::StoreSessionEvent(body) => client
                            .store_session_event(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                        SpooledWrite::StoreTurn(body) => client
                            .store_turn(Request::from_parts(metadata, extensions, body))
                            .await
                            .map(drop),
                    }
                }
            })
            .await
    }

    /// Session `session_id` as Audit stores it, with its seal
    /// (`GetSession`): one attempt, past the breakers, going on from a gone
    /// replica to the next, within the deadline.
    pub async fn session(&self, session_id: &str, token: &str) -> Result<Session, Status> {
        let body = GetSessionRequest {
            session_id: session_id.to_owned(),
        };
        self.guard
            .call_unguarded(body, token, |request| {
                let mut client = self.client.clone();
                async move { Ok(client.get_session(request).await?.into_inner()) }
            })
            .await
    }
}

/// Memory's calls: an agent's compressed memory and the session's memory
/// writes through the guard; the reconcile's listings, clears and re-sends
/// (the `*_unguarded` ones and [`MemoryClient::list_memory_turns`],
/// [`MemoryClient::clear_memory`]) with the guard's deadline and the token
/// only, past the breaker, so a reconcile is tried even while it is open.
#[derive(Clone)]
pub struct MemoryClient {
    client: MemoryServiceClient<MeshChannel>,
    guard: CallGuard,
}

impl MemoryClient {
    /// Memory through `client`, its calls guarded by `guard`.
    pub fn new(client: MemoryServiceClient<MeshChannel>, guard: CallGuard) -> Self {
        Self { client, guard }
    }

    /// An agent's compressed memory of a session.
    pub async fn compressed_memory(
        &self,
        body: GetCompressedMemoryRequest,
        token: &str,
    ) -> Result<GetCompressedMemoryResponse, ResilienceError> {
        self.guard
            .call(&body, Some(token), |request| {
                let mut client = self.client.clone();
                async move { Ok(client.get_compressed_memory(request).await?.into_inner()) }
            })
            .await
    }

    /// Stores one turn in an agent's memory, through the guard.
    pub async fn store_memory(
        &self,
        body: &StoreMemoryRequest,
        token: &str,
    ) -> Result<StoreMemoryResponse, ResilienceError> {
        self.guard
            .call(body, Some(token), |request| {
                let mut client = self.client.clone();
                async move { Ok(client.store_memory(request).await?.into_inner()) }
            })
            .await
    }

    /// Stores one turn in an agent's memory, past the breaker (a reconcile's
    /// re-send).
    pub async fn store_memory_unguarded(
        &self,
        body: StoreMemoryRequest,
        token: &str,
    ) -> Result<StoreMemoryResponse, Status> {
        self.guard
            .call_unguarded(body, token, |request| {
                let mut client = self.client.clone();
                async move { Ok(client.store_memory(request).await?.into_inner()) }
            })
            .await
    }

    /// The turn IDs Memory keeps for an agent's stream, past the breaker.
    pub async fn list_memory_turns(
        &self,
        body: ListMemoryTurnsRequest,
        token: &str,
    ) -> Result<ListMemoryTurnsResponse, Status> {
        self.guard
            .call_unguarded(body, token, |request| {
                let mut client = self.client.clone();
                async move { Ok(client.list_memory_turns(request).await?.into_inner()) }
            })
            .await
    }

    /// Clears an agent's stream (with a `memory:admin` token), past the
    /// breaker.
    pub async fn clear_memory(&self, body: ClearMemoryRequest, token: &str) -> Result<(), Status> {
        self.guard
            .call_unguarded(body, token, |request| {
                let mut client = self.client.clone();
                async move { client.clear_memory(request).await.map(drop) }
            })
            .await
    }
}

/// One tool service's calls.
#[derive(Clone)]
pub struct ToolClient {
    client: ToolServiceClient<MeshChannel>,
    guard: CallGuard,
}

impl ToolClient {
    /// A tool service through `client`, its calls guarded by `guard`.
    pub fn new(client: ToolServiceClient<MeshChannel>, guard: CallGuard) -> Self {
        Self { client, guard }
    }

    /// Calls a tool, with the agent's token (none when it asks for no scope).
    pub async fn call_tool(
        &self,
        body: CallToolRequest,
        token: Option<&str>,
    ) -> Result<CallToolResponse, ResilienceError> {
        self.guard
            .call(&body, token, |request| {
                let mut client = self.client.clone();
                async move { Ok(client.call_tool(request).await?.into_inner()) }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::resilience::{BreakerSettings, Breakers};

    fn guard(attempts: u32) -> CallGuard {
        guard_opening_after(100, attempts)
    }

    fn guard_opening_after(failures: u32, attempts: u32) -> CallGuard {
        let breakers = Breakers::new(
            BreakerSettings::new(failures, Duration::from_secs(30))
                .expect("valid breaker settings"),
        );
        let policy = RetryPolicy::new(
            attempts,
            Duration::ZERO,
            Duration::ZERO,
            1.0,
            Default::default(),
        )
        .expect("valid policy");
        CallGuard::new(breakers.get("test"), policy, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn every_attempt_carries_the_token_and_the_deadline() {
        let seen = guard(1)
            .call(
                &"body",
                Some("t0k3n"),
                |request: Request<&str>| async move {
                    let metadata = request.metadata();
                    let auth = metadata
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let timeout = metadata.get("grpc-timeout").is_some();
                    Ok((auth, timeout, *request.get_ref()))
                },
            )
            .await
            .unwrap();
        assert_eq!(seen, (Some("Bearer t0k3n".to_owned()), true, "body"));
    }

    #[tokio::test]
    async fn a_call_without_a_token_has_no_authorization() {
        let auth = guard(1)
            .call(&(), None, |request: Request<()>| async move {
                Ok(request.metadata().get("authorization").is_some())
            })
            .await
            .unwrap();
        assert!(!auth);
    }

    #[tokio::test]
    async fn an_unavailable_service_is_tried_as_often_as_the_policy_says() {
        let attempts = AtomicU32::new(0);
        let outcome: Result<(), _> = guard(3)
            .call(&(), Some("t"), |_request: Request<()>| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        match outcome {
            Err(ResilienceError::Status(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable)
            }
            other => panic!("expected the last status, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let attempts = AtomicU32::new(0);
        let outcome: Result<(), _> = guard(3)
            .call(&(), Some("t"), |_request: Request<()>| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::invalid_argument("bad")) }
            })
            .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(
            matches!(outcome, Err(ResilienceError::Status(status)) if status.code() == tonic::Code::InvalidArgument)
        );
    }

    #[tokio::test]
    async fn an_unguarded_call_carries_token_and_deadline_and_leaves_the_breaker_alone() {
        let guard = guard_opening_after(1, 1);
        let failed: Result<(), _> = guard
            .call_unguarded((), "t0k3n", |request: Request<()>| async move {
                let metadata = request.metadata();
                assert_eq!(
                    metadata.get("authorization").unwrap().to_str().unwrap(),
                    "Bearer t0k3n"
                );
                assert!(metadata.get("grpc-timeout").is_some());
                Err(Status::unavailable("down"))
            })
            .await;
        assert_eq!(failed.unwrap_err().code(), tonic::Code::Unavailable);
        // One counted failure would have opened this breaker.
        let guarded = guard
            .call(&(), Some("t"), |_request: Request<()>| async { Ok(7) })
            .await;
        assert!(
            matches!(guarded, Ok(7)),
            "breaker still closed: {guarded:?}"
        );
        // The same failure through the guard opens it.
        let _: Result<(), _> = guard
            .call(&(), Some("t"), |_request: Request<()>| async {
                Err(Status::unavailable("down"))
            })
            .await;
        let refused: Result<(), _> = guard
            .call(&(), Some("t"), |_request: Request<()>| async { Ok(()) })
            .await;
        assert!(matches!(refused, Err(ResilienceError::BreakerOpen(_))));
    }
}
