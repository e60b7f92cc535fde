//! Connections to the mesh: one HTTP/2 channel per service endpoint, shared
//! by every agent and every session, each call traced and given a deadline
//! (and timed, when a benchmark asks: see [`crate::rpc_timing`]).

use std::{collections::BTreeMap, time::Duration};

use heist_plumbing::propagation::{TracedChannel, traced};
use heist_proto::v1::{
    audit_service_client::AuditServiceClient, memory_service_client::MemoryServiceClient,
    o_auth_service_client::OAuthServiceClient, tool_service_client::ToolServiceClient,
};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Endpoint,
};

use crate::{
    config::Config,
    rpc_timing::{RpcTimings, Timed},
};

/// The channel every client of the mesh uses: traced, and timed on demand.
pub type MeshChannel = Timed<TracedChannel>;

/// How long connecting to a service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An endpoint URL that does not make a channel.
#[derive(Debug, thiserror::Error)]
#[error("{service}: invalid endpoint {url:?}: {source}")]
pub struct MeshError {
    service: String,
    url: String,
    source: tonic::transport::Error,
}

/// The clients of every service, built once (connections open lazily).
#[derive(Clone)]
pub struct Mesh {
    /// OAuth.
    pub oauth: OAuthServiceClient<MeshChannel>,
    /// Audit.
    pub audit: AuditServiceClient<MeshChannel>,
    /// Memory.
    pub memory: MemoryServiceClient<MeshChannel>,
    /// Tool services by tool name (tools on one endpoint share a channel).
    pub tools: BTreeMap<String, ToolRoute>,
    /// The raw channel and URL of each named service, for health checks.
    pub endpoints: Vec<NamedEndpoint>,
}

/// Where a tool is served.
#[derive(Clone)]
pub struct ToolRoute {
    /// The service's URL.
    pub url: String,
    /// Its client.
    pub client: ToolServiceClient<MeshChannel>,
}

/// A service the health report checks.
#[derive(Clone)]
pub struct NamedEndpoint {
    /// E.g. `OAuth Service` or `Tool Service (calculator)`.
    pub name: String,
    /// `http://host:port`.
    pub url: String,
    /// Its channel.
    pub channel: MeshChannel,
    /// Whether a run refuses to start without it.
    pub required: bool,
    /// The name of its circuit breaker (`audit`, `tool:calculator`, ...).
    pub breaker: String,
}

/// Makes channels, timed into `timings` when there is one.
struct Channels<'a> {
    timings: Option<&'a RpcTimings>,
}

impl Channels<'_> {
    /// A channel to `url` for the config entry `entry`, timed under `label`.
    fn make(&self, entry: &str, label: &str, url: &str) -> Result<MeshChannel, MeshError> {
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|source| MeshError {
            service: entry.to_owned(),
            url: url.to_owned(),
            source,
        })?;
        let channel = traced(
            endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy(),
        );
        Ok(match self.timings {
            Some(timings) => timings.wrap(label, channel),
            None => Timed::untimed(channel),
        })
    }
}

impl Mesh {
    /// Clients for every endpoint in `config`.
    pub fn connect(config: &Config) -> Result<Self, MeshError> {
        Self::build(config, &Channels { timings: None })
    }

    /// Like [`Mesh::connect`], with every call's latency recorded in
    /// `timings`, under `oauth`, `audit`, `memory` or `tools`.
    pub fn connect_timed(config: &Config, timings: &RpcTimings) -> Result<Self, MeshError> {
        Self::build(
            config,
            &Channels {
                timings: Some(timings),
            },
        )
    }

    fn build(config: &Config, channels: &Channels<'_>) -> Result<Self, MeshError> {
        let oauth = channels.make("oauth_service", "oauth", &config.oauth.endpoint.url)?;
        let audit = channels.make("audit_service", "audit", &config.audit.url)?;
        let memory = channels.make("memory_service", "memory", &config.memory.url)?;
        let mut endpoints = vec![
            NamedEndpoint {
                name: "OAuth Service".into(),
                url: config.oauth.endpoint.url.clone(),
                channel: oauth.clone(),
                required: true,
                breaker: crate::resilience::OAUTH.to_owned(),
            },
            NamedEndpoint {
                name: "Audit Service".into(),
                url: config.audit.url.clone(),
                channel: audit.clone(),
                required: true,
                breaker: crate::resilience::AUDIT.to_owned(),
            },
            NamedEndpoint {
                name: "Memory Service".into(),
                url: config.memory.url.clone(),
                channel: memory.clone(),
                required: false,
                breaker: crate::resilience::MEMORY.to_owned(),
            },
        ];
        let mut by_url: BTreeMap<String, MeshChannel> = BTreeMap::new();
        let mut tools = BTreeMap::new();
        for (tool, endpoint) in &config.tool_services {
            let shared = match by_url.get(&endpoint.url) {
                Some(shared) => shared.clone(),
                None => {
                    let made =
                        channels.make(&format!("tool_services.{tool}"), "tools", &endpoint.url)?;
                    by_url.insert(endpoint.url.clone(), made.clone());
                    made
                }
            };
            endpoints.push(NamedEndpoint {
                name: format!("Tool Service ({tool})"),
                url: endpoint.url.clone(),
                channel: shared.clone(),
                required: false,
                breaker: crate::resilience::tool_service(tool),
            });
            tools.insert(
                tool.clone(),
                ToolRoute {
                    url: endpoint.url.clone(),
                    client: ToolServiceClient::new(shared),
                },
            );
        }
        Ok(Self {
            oauth: OAuthServiceClient::new(oauth),
            audit: AuditServiceClient::new(audit),
            memory: MemoryServiceClient::new(memory),
            tools,
            endpoints,
        })
    }
}

/// A request carrying `token` as bearer (if any) and a `grpc-timeout` deadline.
pub fn request<T>(message: T, token: Option<&str>, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    if let Some(value) = token.and_then(|token| {
        format!("Bearer {token}")
            .parse::<MetadataValue<Ascii>>()
            .ok()
    }) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
