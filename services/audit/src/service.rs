//! The gRPC face of the audit store: `heist.v1.AuditService`.
//!
//! Thin by design: each RPC converts its request into the store's types,
//! calls the store, and converts the answer back. Errors are mapped to gRPC
//! codes once, in [`StoreError`]'s `ServiceError` impl.
//!
//! Every row records the client (token `sub`) that wrote it and, under
//! mutual TLS, the identity its certificate proved; a row that
//! names an agent (a message, a tool call) may be written only by that agent
//! or by a client whose token grants `agents:act_for_any` (PERMISSION_DENIED).

use std::pin::Pin;

use heist_plumbing::{
    auth,
    peer::peer_identity,
    status::{ServiceError, to_status},
};
use heist_proto::v1::{
    self as pb,
    audit_service_server::{AuditService as AuditRpc, AuditServiceServer},
};
use opentelemetry::trace::TraceContextExt;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    convert::{self, Write, new_message, new_tool_usage},
    store::{
        AuditStore, EndSession, ErrorKind, NewSession, NewSessionEvent, NewTurn, PageRequest,
        SessionStatus, StoreError,
    },
    watch::{WatchLimits, Watchers, watch_session},
};

/// The scope each RPC needs, for the auth layer.
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("CreateSession", "audit:write"),
    ("StoreMessage", "audit:write"),
    ("StoreToolUsage", "audit:write"),
    ("StoreTurn", "audit:write"),
    ("EndSession", "audit:write"),
    ("GetSession", "audit:read"),
    ("ListSessions", "audit:read"),
    ("ListMessages", "audit:read"),
    ("ListToolUsage", "audit:read"),
    ("WatchSession", "audit:read"),
    ("StoreSessionEvent", "audit:write"),
    ("ListSessionEvents", "audit:read"),
    ("GetSessionUsage", "audit:read"),
    ("GetCheckpointKeys", "audit:read"),
    ("VerifySession", "audit:read"),
];

impl ServiceError for StoreError {
    fn code(&self) -> Code {
        match self.kind() {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        to_status(&error)
    }
}

/// The Audit service: a cheap handle on the store.
#[derive(Clone)]
pub struct AuditService {
    store: AuditStore,
    watchers: Watchers,
}

impl AuditService {
    /// A service over `store`, with the default [`WatchLimits`].
    pub fn new(store: AuditStore) -> Self {
        Self::with_watch_limits(store, WatchLimits::default())
    }

    /// A service over `store` with at most `limits` open `WatchSession` streams.
    pub fn with_watch_limits(store: AuditStore, limits: WatchLimits) -> Self {
        Self {
            store,
            watchers: Watchers::new(limits),
        }
    }

    /// How many `WatchSession` streams are live now (shared by every clone).
    pub fn watcher_count(&self) -> usize {
        self.watchers.count()
    }

    /// The service wrapped for a tonic server.
    pub fn into_server(self) -> AuditServiceServer<Self> {
        AuditServiceServer::new(self)
    }
}

/// The trace ID of the current span, hex, or empty when it is not traced.
fn current_trace_id() -> String {
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

/// Who writes the rows of `request`: its verified caller and the identity
/// its TLS client certificate proved (if any), under the current trace.
fn write_of<T>(request: &Request<T>) -> Result<Write, Status> {
    Ok(Write {
        trace_id: current_trace_id(),
        written_by: auth::caller_id(request)?,
        written_via: peer_identity(request)
            .map(|peer| peer.as_str().to_owned())
            .unwrap_or_default(),
    })
}

/// Parses a status field: `UNSPECIFIED` is `None`, an unknown number is an error.
fn parse_status(field: &str, value: i32) -> Result<Option<SessionStatus>, Status> {
    match pb::SessionStatus::try_from(value) {
        Ok(pb::SessionStatus::Unspecified) => Ok(None),
        Ok(pb::SessionStatus::Active) => Ok(Some(SessionStatus::Active)),
        Ok(pb::SessionStatus::Completed) => Ok(Some(SessionStatus::Completed)),
        Ok(pb::SessionStatus::Failed) => Ok(Some(SessionStatus::Failed)),
        Ok(pb::SessionStatus::Interrupted) => Ok(Some(SessionStatus::Interrupted)),
        Err(_) => Err(Status::invalid_argument(format!(
            "{field}: unknown session status {value}; use ACTIVE, COMPLETED, FAILED or INTERRUPTED"
        ))),
    }
}

fn page(page_size: i32, page_token: String) -> PageRequest {
    PageRequest {
        page_size,
        page_token,
    }
}

#[tonic::async_trait]
impl AuditRpc for AuditService {
    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let Write {
            written_by,
            written_via,
            ..
        } = write_of(&request)?;
        let request = request.into_inner();
        let session = self
            .store
            .create_session(NewSession {
                session_id: request.session_id,
                metadata: request.metadata,
                idempotency_key: request.idempotency_key,
                written_by,
                written_via,
            })
            .await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id), turn.id = request.get_ref().turn_id))]
    async fn store_message(
        &self,
        request: Request<pb::StoreMessageRequest>,
    ) -> Result<Response<pb::Message>, Status> {
        auth::require_agent(&request, &request.get_ref().agent_name)?;
        let write = write_of(&request)?;
        let message = self
            .store
            .store_message(new_message(request.into_inner(), write))
            .await?;
        Ok(Response::new(message.into()))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id), turn.id = request.get_ref().turn_id))]
    async fn store_tool_usage(
        &self,
        request: Request<pb::StoreToolUsageRequest>,
    ) -> Result<Response<pb::ToolUsage>, Status> {
        auth::require_agent(&request, &request.get_ref().agent_name)?;
        let write = write_of(&request)?;
        let usage = self
            .store
            .store_tool_usage(new_tool_usage(request.into_inner(), write))
            .await?;
        Ok(Response::new(usage.into()))
    }

    #[tracing::instrument(skip_all, fields(
        session.id = request.get_ref().message.as_ref().map(|m| tracing::field::display(heist_plumbing::quote(&m.session_id))),
        turn.id = request.get_ref().message.as_ref().map(|m| m.turn_id),
    ))]
    async fn store_turn(
        &self,
        request: Request<pb::StoreTurnRequest>,
    ) -> Result<Response<pb::StoreTurnResponse>, Status> {
        let body = request.get_ref();
        let agents = body.message.iter().map(|message| &message.agent_name);
        for agent in agents.chain(body.tool_calls.iter().map(|call| &call.agent_name)) {
            auth::require_agent(&request, agent)?;
        }
        let write = write_of(&request)?;
        let request = request.into_inner();
        let message = request
            .message
            .ok_or_else(|| Status::invalid_argument("message: required"))?;
        let turn = NewTurn {
            tool_calls: request
                .tool_calls
                .into_iter()
                .map(|call| new_tool_usage(call, write.clone()))
                .collect(),
            message: new_message(message, write),
        };
        let rows = self.store.store_turn(turn).await?;
        Ok(Response::new(rows.into()))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let status = parse_status("status", request.status)?.ok_or_else(|| {
            Status::invalid_argument(
                "status: say how the session ended: COMPLETED, FAILED or INTERRUPTED",
            )
        })?;
        let session = self
            .store
            .end_session(EndSession {
                session_id: request.session_id,
                num_turns: request.num_turns,
                status,
            })
            .await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let session_id = &request.get_ref().session_id;
        let session = self.store.get_session(session_id).await?;
        let seal = self.store.session_seal(session_id).await?;
        Ok(Response::new(convert::sealed(session, seal)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let request = request.into_inner();
        let status = parse_status("status", request.status)?;
        let found = self
            .store
            .list_sessions(status, page(request.page_size, request.page_token))
            .await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: found.items.into_iter().map(Into::into).collect(),
            next_page_token: found.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let request = request.into_inner();
        let found = self
            .store
            .list_messages(
                &request.session_id,
                page(request.page_size, request.page_token),
            )
            .await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: found.items.into_iter().map(Into::into).collect(),
            next_page_token: found.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn list_tool_usage(
        &self,
        request: Request<pb::ListToolUsageRequest>,
    ) -> Result<Response<pb::ListToolUsageResponse>, Status> {
        let request = request.into_inner();
        let found = self
            .store
            .list_tool_usage(
                &request.session_id,
                page(request.page_size, request.page_token),
            )
            .await?;
        Ok(Response::new(pb::ListToolUsageResponse {
            tool_usage: found.items.into_iter().map(Into::into).collect(),
            next_page_token: found.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id), event.kind = %heist_plumbing::quote(&request.get_ref().kind)))]
    async fn store_session_event(
        &self,
        request: Request<pb::StoreSessionEventRequest>,
    ) -> Result<Response<pb::SessionEvent>, Status> {
        let Write {
            written_by,
            written_via,
            ..
        } = write_of(&request)?;
        let request = request.into_inner();
        let event = self
            .store
            .store_session_event(NewSessionEvent {
                session_id: request.session_id,
                kind: request.kind,
                detail: request.detail,
                idempotency_key: request.idempotency_key,
                written_by,
                written_via,
            })
            .await?;
        Ok(Response::new(event.into()))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn list_session_events(
        &self,
        request: Request<pb::ListSessionEventsRequest>,
    ) -> Result<Response<pb::ListSessionEventsResponse>, Status> {
        let request = request.into_inner();
        let found = self
            .store
            .list_session_events(
                &request.session_id,
                page(request.page_size, request.page_token),
            )
            .await?;
        Ok(Response::new(pb::ListSessionEventsResponse {
            events: found.items.into_iter().map(Into::into).collect(),
            next_page_token: found.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn get_session_usage(
        &self,
        request: Request<pb::GetSessionUsageRequest>,
    ) -> Result<Response<pb::SessionUsage>, Status> {
        let usage = self
            .store
            .session_usage(&request.get_ref().session_id)
            .await?;
        Ok(Response::new(usage.into()))
    }

    async fn get_checkpoint_keys(
        &self,
        _request: Request<pb::GetCheckpointKeysRequest>,
    ) -> Result<Response<pb::CheckpointKeys>, Status> {
        Ok(Response::new(convert::checkpoint_keys(
            self.store.integrity(),
        )))
    }

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn verify_session(
        &self,
        request: Request<pb::VerifySessionRequest>,
    ) -> Result<Response<pb::SessionVerification>, Status> {
        let session_id = &request.get_ref().session_id;
        let found = self.store.verify_session(session_id).await?;
        Ok(Response::new(convert::verification(session_id, found)))
    }

    type WatchSessionStream = Pin<Box<dyn Stream<Item = Result<pb::Message, Status>> + Send>>;

    #[tracing::instrument(skip_all, fields(session.id = %heist_plumbing::quote(&request.get_ref().session_id)))]
    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let request = request.into_inner();
        let stream = watch_session(
            self.store.clone(),
            &self.watchers,
            request.session_id,
            request.after_message_id,
        )
        .await?;
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests;
