//! The gRPC face of the memory store: `heist.v1.MemoryService`.
//!
//! The store is a [`Backend`]: in this process (behind one `Mutex`; every
//! operation on it is O(log n) and answers copy no text while it is held) or
//! on Redis (one atomic script per operation). Scopes: `memory:write` to store,
//! `memory:read` to read, `memory:admin` to clear. An agent stores and reads
//! only its own memory: the token's `sub` must be the request's `agent_id`,
//! unless the token grants `agents:act_for_any` (the orchestrator's).

use std::sync::Arc;

use heist_plumbing::{
    auth,
    status::{ServiceError, to_status},
};
use heist_proto::v1::{
    self as pb,
    memory_service_server::{MemoryService as MemoryRpc, MemoryServiceServer},
};
use tonic::{Code, Request, Response, Status};

use crate::store::{Backend, DEFAULT_MAX_CHARS, DEFAULT_RECENT_COUNT, ErrorKind, MemoryError};

/// The scope each RPC needs, for the auth layer.
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("StoreMemory", "memory:write"),
    ("GetCompressedMemory", "memory:read"),
    ("ListMemoryTurns", "memory:read"),
    ("GetStats", "memory:read"),
    ("ClearMemory", "memory:admin"),
];

impl ServiceError for MemoryError {
    fn code(&self) -> Code {
        match self.kind() {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }
}

impl From<MemoryError> for Status {
    fn from(error: MemoryError) -> Self {
        to_status(&error)
    }
}

/// The Memory service: a cheap handle on the store.
#[derive(Clone)]
pub struct MemoryService {
    store: Backend,
    /// The store's per-(agent, session) bound, told to clients.
    max_per_stream: i64,
}

impl MemoryService {
    /// A service over `store`.
    pub fn new(store: Backend) -> Self {
        let max_per_stream = i64::try_from(store.limits().max_per_stream).unwrap_or(i64::MAX);
        Self {
            store,
            max_per_stream,
        }
    }

    /// The store's instance ID (see `StoreMemoryResponse.instance_id`).
    pub fn instance_id(&self) -> Arc<str> {
        self.store.instance_id()
    }

    /// The service wrapped for a tonic server.
    pub fn into_server(self) -> MemoryServiceServer<Self> {
        MemoryServiceServer::new(self)
    }
}

/// An empty ID means "every": `None`.
fn optional(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

fn or_default(value: i32, default: i64) -> i64 {
    if value == 0 {
        default
    } else {
        i64::from(value)
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl MemoryRpc for MemoryService {
    #[tracing::instrument(skip_all, fields(agent.name = %heist_plumbing::quote(&request.get_ref().agent_id), turn.id = request.get_ref().turn_id))]
    async fn store_memory(
        &self,
        request: Request<pb::StoreMemoryRequest>,
    ) -> Result<Response<pb::StoreMemoryResponse>, Status> {
        auth::require_agent(&request, &request.get_ref().agent_id)?;
        let request = request.into_inner();
        let outcome = self
            .store
            .store(
                &request.agent_id,
                &request.session_id,
                request.turn_id,
                &request.message,
                jiff::Timestamp::now(),
            )
            .await?;
        Ok(Response::new(pb::StoreMemoryResponse {
            stored: outcome.stored,
            memories_count: count(outcome.memories_count),
            instance_id: self.store.instance_id().to_string(),
            max_per_stream: self.max_per_stream,
        }))
    }

    #[tracing::instrument(skip_all, fields(agent.name = %heist_plumbing::quote(&request.get_ref().agent_id)))]
    async fn get_compressed_memory(
        &self,
        request: Request<pb::GetCompressedMemoryRequest>,
    ) -> Result<Response<pb::GetCompressedMemoryResponse>, Status> {
        auth::require_agent(&request, &request.get_ref().agent_id)?;
        let request = request.into_inner();
        let compressed = self
            .store
            .compressed(
                &request.agent_id,
                &request.session_id,
                or_default(request.recent_count, DEFAULT_RECENT_COUNT),
                or_default(request.max_chars, DEFAULT_MAX_CHARS),
            )
            .await?;
        Ok(Response::new(pb::GetCompressedMemoryResponse {
            recent: compressed
                .recent
                .into_iter()
                .map(|entry| pb::MemoryEntry {
                    turn_id: entry.turn_id,
                    message: entry.message.to_string(),
                    timestamp: entry.stored_at.to_string(),
                })
                .collect(),
            summary: compressed.summary,
            memories_count: count(compressed.memories_count),
        }))
    }

    #[tracing::instrument(skip_all, fields(agent.name = %heist_plumbing::quote(&request.get_ref().agent_id)))]
    async fn list_memory_turns(
        &self,
        request: Request<pb::ListMemoryTurnsRequest>,
    ) -> Result<Response<pb::ListMemoryTurnsResponse>, Status> {
        auth::require_agent(&request, &request.get_ref().agent_id)?;
        let request = request.into_inner();
        let turn_ids = self
            .store
            .turn_ids(&request.agent_id, &request.session_id)
            .await?;
        Ok(Response::new(pb::ListMemoryTurnsResponse {
            turn_ids,
            instance_id: self.store.instance_id().to_string(),
            max_per_stream: self.max_per_stream,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.store.stats().await?;
        Ok(Response::new(pb::GetStatsResponse {
            total_memories: count(stats.total_memories),
            total_streams: count(stats.total_streams),
            total_sessions: count(stats.total_sessions),
            total_agents: count(stats.total_agents),
            evicted_memories: count(stats.evicted_memories),
            evicted_sessions: count(stats.evicted_sessions),
            max_per_stream: count(stats.max_per_stream),
            max_total: count(stats.max_total),
            total_bytes: count(stats.total_bytes),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn clear_memory(
        &self,
        request: Request<pb::ClearMemoryRequest>,
    ) -> Result<Response<pb::ClearMemoryResponse>, Status> {
        let request = request.into_inner();
        let cleared = self
            .store
            .clear(optional(&request.agent_id), optional(&request.session_id))
            .await?;
        tracing::info!(cleared, "memory cleared");
        Ok(Response::new(pb::ClearMemoryResponse {
            cleared: count(cleared),
        }))
    }
}
