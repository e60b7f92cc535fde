//! The gRPC face of the tools: `heist.v1.ToolService`.
//!
//! `ListTools` needs any valid token; `CallTool` needs the tool's own scope
//! (e.g. `calculator:use`). A call runs on a blocking thread under the
//! service's time limit or the caller's `grpc-timeout`, whichever is
//! shorter, and is told who calls and when the caller stops waiting
//! ([`Caller`]); the tool's refusals become precise statuses.

use std::{collections::HashMap, sync::Arc, time::Duration};

use heist_plumbing::{
    auth::{act_as, require_scope},
    status::{ServiceError, to_status},
};
use heist_proto::v1::{
    self as pb,
    tool_service_server::{ToolService as ToolRpc, ToolServiceServer},
};
use tonic::{Code, Request, Response, Status};

use crate::caller::{Caller, grpc_timeout};
use crate::{Tool, ToolError, ToolSet};

impl ServiceError for ToolError {
    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ToolError> for Status {
    fn from(error: ToolError) -> Self {
        to_status(&error)
    }
}

/// The longest tool name a call may give: no tool's name comes near it, so a
/// longer one is malformed, not merely unknown.
pub const MAX_TOOL_NAME_BYTES: usize = 128;

/// The Tool service: the hosted tools and the per-call time limit.
#[derive(Clone)]
pub struct ToolService {
    tools: Arc<ToolSet>,
    call_timeout: Duration,
}

impl ToolService {
    /// A service hosting `tools`, each call limited to `call_timeout`.
    pub fn new(tools: ToolSet, call_timeout: Duration) -> Self {
        Self {
            tools: Arc::new(tools),
            call_timeout,
        }
    }

    /// The service wrapped for a tonic server.
    pub fn into_server(self) -> ToolServiceServer<Self> {
        ToolServiceServer::new(self)
    }

    fn hosted(&self) -> String {
        self.tools
            .iter()
            .map(|tool| tool.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn info(tool: &Arc<dyn Tool>) -> pb::ToolInfo {
    pb::ToolInfo {
        name: tool.name().to_owned(),
        description: tool.description().to_owned(),
        required_scope: tool.required_scope().to_owned(),
        parameters_schema: tool.parameters_schema().to_string(),
        primary_argument: tool.primary_argument().to_owned(),
    }
}

#[tonic::async_trait]
impl ToolRpc for ToolService {
    #[tracing::instrument(skip_all)]
    async fn list_tools(
        &self,
        _request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        Ok(Response::new(pb::ListToolsResponse {
            tools: self.tools.iter().map(info).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(
        tool.name = %heist_plumbing::quote(&request.get_ref().tool_name),
        agent.name = %heist_plumbing::quote(&request.get_ref().agent_name),
        turn.id = request.get_ref().turn_id,
    ))]
    async fn call_tool(
        &self,
        request: Request<pb::CallToolRequest>,
    ) -> Result<Response<pb::CallToolResponse>, Status> {
        let tool = crate::metrics::tool_label(&request.get_ref().tool_name);
        let outcome = self.call(request).await;
        let code = outcome.as_ref().map_or_else(Status::code, |_| Code::Ok);
        crate::metrics::called(tool, code);
        outcome
    }
}

impl ToolService {
    /// `CallTool` itself: finds the tool, checks the caller and runs it.
    async fn call(
        &self,
        request: Request<pb::CallToolRequest>,
    ) -> Result<Response<pb::CallToolResponse>, Status> {
        let name = &request.get_ref().tool_name;
        if name.len() > MAX_TOOL_NAME_BYTES {
            return Err(ToolError::invalid(format!(
                "tool_name is {} bytes long, over the limit of {MAX_TOOL_NAME_BYTES}; \
                 this service hosts: {}",
                name.len(),
                self.hosted()
            ))
            .into());
        }
        let tool = self.tools.get(name).cloned().ok_or_else(|| {
            Status::from(ToolError::NotFound(format!(
                "tool_name: no tool {:?} here; this service hosts: {}",
                heist_plumbing::quote(name),
                self.hosted()
            )))
        })?;
        let claims = require_scope(&request, tool.required_scope())?;
        // An agent calls tools as itself: a named agent must be the token's
        // holder (or the token acts for any agent); an empty name is anonymous.
        let agent = &request.get_ref().agent_name;
        if !agent.is_empty() {
            act_as(claims, agent)?;
        }
        let client = claims.sub.clone();
        // The caller's own deadline, if shorter than the service's limit; the
        // guard cancels the work when this future ends or is dropped (the
        // caller went away, or tonic enforced its `grpc-timeout`).
        let caller_budget = grpc_timeout(request.metadata());
        let started = std::time::Instant::now();
        let (caller, _cancel_on_drop) = Caller::new(
            client,
            caller_budget.and_then(|budget| started.checked_add(budget)),
        );
        let limit = caller_budget.map_or(self.call_timeout, |b| b.min(self.call_timeout));
        let arguments: HashMap<String, String> = request.into_inner().arguments;
        let span = tracing::info_span!("tool.work", tool.name = tool.name());
        let work = tokio::task::spawn_blocking(move || {
            span.in_scope(|| tool.call_for(&arguments, &caller))
        });
        let output = match tokio::time::timeout(limit, work).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(join_error)) => {
                return Err(ToolError::Internal(format!("the tool failed: {join_error}")).into());
            }
            Err(_) if limit < self.call_timeout => {
                return Err(ToolError::DeadlineExceeded(format!(
                    "the caller's deadline of {limit:?} passed before the tool answered"
                ))
                .into());
            }
            Err(_) => {
                return Err(ToolError::DeadlineExceeded(format!(
                    "the tool did not answer within {:?}",
                    self.call_timeout
                ))
                .into());
            }
        };
        Ok(Response::new(pb::CallToolResponse {
            text: output.text,
            data_json: output.data.to_string(),
            duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        }))
    }
}
