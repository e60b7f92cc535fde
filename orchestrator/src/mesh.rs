//! Connections to the mesh: one HTTP/2 channel per service replica, shared
//! by every agent and every session, behind one balanced channel per service
//! (see [`crate::replicas`]); each call traced and given a deadline (and
//! timed, when a benchmark asks: see [`crate::rpc_timing`]).

use std::{collections::BTreeMap, time::Duration};

use heist_plumbing::{
    propagation::traced_at,
    tls::{ClientTls, connect_lazy_verifying},
};
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
    config::{Config, Endpoints},
    replicas::{Address, Balanced, Replica, resolve},
    rpc_timing::{RpcTimings, Timed},
};

/// The channel every client of the mesh uses: over a service's replicas (see
/// [`Balanced`]), each call traced, and timed on demand.
pub type MeshChannel = Timed<Balanced>;

/// How long connecting to a service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A service whose channel cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// An endpoint URL that does not make a channel.
    #[error("{service}: invalid endpoint {url:?}: {source}")]
    Url {
        /// The config entry.
        service: String,
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A service without any address (its config entry gives none).
    #[error("{0}: no address; give base_url or base_urls")]
    NoAddress(String),
    /// The `tls` section's files do not load.
    #[error("tls: {0}")]
    Tls(#[from] heist_plumbing::tls::TlsError),
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
    /// Tool services by tool name (tools at the same addresses share a channel).
    pub tools: BTreeMap<String, ToolRoute>,
    /// Every named service with its replicas, for health checks and breakers.
    pub endpoints: Vec<NamedEndpoint>,
    /// The TLS of every channel, when the config has a `tls` section.
    pub tls: Option<ClientTls>,
}

/// Where a tool is served.
#[derive(Clone)]
pub struct ToolRoute {
    /// The service's URLs as configured (`http://a:1, http://b:2` for several).
    pub url: String,
    /// Its client.
    pub client: ToolServiceClient<MeshChannel>,
    /// How many replicas its channel has.
    pub replicas: usize,
}

/// A service the health report checks and the breakers guard, with its replicas.
#[derive(Clone)]
pub struct NamedEndpoint {
    /// E.g. `OAuth Service` or `Tool Service (calculator)`.
    pub name: String,
    /// Its URLs as configured (`http://a:1, http://b:2` for several).
    pub url: String,
    /// Whether a run refuses to start without it.
    pub required: bool,
    /// The name of its circuit breaker (`audit`, `tool:calculator`, ...); each replica's is
    /// this name, or `audit@127.0.0.1:8006` when there are several.
    pub service: String,
    /// Its replicas, in the order of the service's channel (a call pinned to `i` goes to
    /// `replicas[i]`).
    pub replicas: Vec<ReplicaEndpoint>,
}

impl NamedEndpoint {
    /// Each replica's breaker name, in order.
    pub fn breakers(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|replica| replica.breaker.clone())
            .collect()
    }
}

/// One replica of a named service.
#[derive(Clone)]
pub struct ReplicaEndpoint {
    /// `http://host:port` as called (resolved from the configured name, if it was one).
    pub url: String,
    /// A channel to this replica alone (its health).
    pub channel: MeshChannel,
    /// The name of its circuit breaker.
    pub breaker: String,
}

/// Makes channels, timed into `timings` when there is one, over TLS with
/// `tls` when there is that.
struct Channels<'a> {
    timings: Option<&'a RpcTimings>,
    tls: Option<ClientTls>,
}

impl Channels<'_> {
    /// A channel over the replicas at `addresses` for the config entry `entry`.
    fn make(&self, entry: &str, addresses: &[Address]) -> Result<Balanced, MeshError> {
        let mut replicas = Vec::with_capacity(addresses.len());
        for address in addresses {
            let url = match &self.tls {
                Some(_) => address.url.replacen("http://", "https://", 1),
                None => address.url.clone(),
            };
            let endpoint = Endpoint::from_shared(url.clone()).map_err(|source| MeshError::Url {
                service: entry.to_owned(),
                url,
                source,
            })?;
            let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
            let channel = match &self.tls {
                // The certificate names the host as configured, not the
                // address it resolved to.
                Some(tls) => connect_lazy_verifying(endpoint, tls, &address.configured_host()),
                None => endpoint.connect_lazy(),
            };
            replicas.push(Replica {
                address: address.clone(),
                channel: traced_at(channel, &address.host, address.port),
            });
        }
        Balanced::new(replicas).ok_or_else(|| MeshError::NoAddress(entry.to_owned()))
    }

    /// `balanced`, timed under `label` when timing.
    fn timed(&self, label: &str, balanced: Balanced) -> MeshChannel {
        match self.timings {
            Some(timings) => timings.wrap(label, balanced),
            None => Timed::untimed(balanced),
        }
    }

    /// The named service `spec` over `balanced`: one replica entry per
    /// address, each breaker named after the service (and the address, when
    /// there are several).
    fn named(&self, spec: &Spec<'_>, balanced: &Balanced) -> NamedEndpoint {
        let several = balanced.replicas().len() > 1;
        let replicas = balanced
            .replicas()
            .iter()
            .enumerate()
            .filter_map(|(index, replica)| {
                let alone = balanced.only(index)?;
                let breaker = if several {
                    crate::resilience::replica(&spec.service, replica.address.authority())
                } else {
                    spec.service.clone()
                };
                Some(ReplicaEndpoint {
                    url: replica.address.url.clone(),
                    channel: self.timed(spec.label, alone),
                    breaker,
                })
            })
            .collect();
        NamedEndpoint {
            name: spec.name.clone(),
            url: spec.configured.to_string(),
            required: spec.required,
            service: spec.service.clone(),
            replicas,
        }
    }

    /// The named service `spec` (its names resolved) and its channel.
    async fn service(&self, spec: Spec<'_>) -> Result<(NamedEndpoint, MeshChannel), MeshError> {
        let balanced = self.make(spec.entry, &resolve(spec.configured).await)?;
        let named = self.named(&spec, &balanced);
        Ok((named, self.timed(spec.label, balanced)))
    }
}

/// The TLS of every call, if the config has a `tls` section (its files
/// watched from now on).
fn client_tls(config: &Config) -> Result<Option<ClientTls>, MeshError> {
    let Some(settings) = &config.tls else {
        return Ok(None);
    };
    let tls = ClientTls::load(settings.files(), settings.reload)?;
    tls.watch();
    Ok(Some(tls))
}

/// One service of the config, as the mesh builds it.
struct Spec<'a> {
    /// The config entry (`audit_service`, `tool_services.calculator`).
    entry: &'a str,
    /// The timing label (`audit`, `tools`).
    label: &'a str,
    /// The health report's name (`Audit Service`).
    name: String,
    /// Its addresses as configured.
    configured: &'a Endpoints,
    /// Whether a run refuses to start without it.
    required: bool,
    /// Its breaker name (`audit`, `tool:calculator`).
    service: String,
}

impl Mesh {
    /// Clients for every service in `config`, each over every address of its replicas (host
    /// names resolved now).
    pub async fn connect(config: &Config) -> Result<Self, MeshError> {
        Self::build(
            config,
            &Channels {
                timings: None,
                tls: client_tls(config)?,
            },
        )
        .await
    }

    /// Like [`Mesh::connect`], with every call's latency recorded in
    /// `timings`, under `oauth`, `audit`, `memory` or `tools`.
    pub async fn connect_timed(config: &Config, timings: &RpcTimings) -> Result<Self, MeshError> {
        Self::build(
            config,
            &Channels {
                timings: Some(timings),
                tls: client_tls(config)?,
            },
        )
        .await
    }

    async fn build(config: &Config, channels: &Channels<'_>) -> Result<Self, MeshError> {
        use crate::resilience::{AUDIT, MEMORY, OAUTH};
        let spec = |entry, label, name: &str, configured, required, service: &str| Spec {
            entry,
            label,
            name: name.to_owned(),
            configured,
            required,
            service: service.to_owned(),
        };
        let (oauth_named, oauth) = channels
            .service(spec(
                "oauth_service",
                "oauth",
                "OAuth Service",
                &config.oauth.endpoint,
                true,
                OAUTH,
            ))
            .await?;
        let (audit_named, audit) = channels
            .service(spec(
                "audit_service",
                "audit",
                "Audit Service",
                &config.audit,
                true,
                AUDIT,
            ))
            .await?;
        let (memory_named, memory) = channels
            .service(spec(
                "memory_service",
                "memory",
                "Memory Service",
                &config.memory,
                false,
                MEMORY,
            ))
            .await?;
        let mut endpoints = vec![oauth_named, audit_named, memory_named];
        let mut by_urls: BTreeMap<String, Balanced> = BTreeMap::new();
        let mut tools = BTreeMap::new();
        for (tool, configured) in &config.tool_services {
            let key = configured.to_string();
            let entry = format!("tool_services.{tool}");
            let tool_spec = Spec {
                entry: &entry,
                label: "tools",
                name: format!("Tool Service ({tool})"),
                configured,
                required: false,
                service: crate::resilience::tool_service(tool),
            };
            let balanced = match by_urls.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let made = channels.make(&entry, &resolve(configured).await)?;
                    by_urls.insert(key.clone(), made.clone());
                    made
                }
            };
            endpoints.push(channels.named(&tool_spec, &balanced));
            tools.insert(
                tool.clone(),
                ToolRoute {
                    url: key,
                    replicas: balanced.replicas().len(),
                    client: ToolServiceClient::new(channels.timed("tools", balanced)),
                },
            );
        }
        Ok(Self {
            oauth: OAuthServiceClient::new(oauth),
            audit: AuditServiceClient::new(audit),
            memory: MemoryServiceClient::new(memory),
            tools,
            endpoints,
            tls: channels.tls.clone(),
        })
    }

    /// OAuth's client for token purchases, each within `deadline`, sent on
    /// from a gone replica to the next.
    pub fn oauth_client(&self, deadline: Duration) -> crate::clients::OAuthClient {
        let replicas = self.replica_count(crate::resilience::OAUTH);
        crate::clients::OAuthClient::new(self.oauth.clone(), replicas, deadline)
    }

    /// The breakers of the replicas of `service` (`audit`, `tool:calculator`,
    /// ...) from `breakers`, in the order of its channel's replicas: what a
    /// [`crate::clients::CallGuard`] for it calls through.
    pub fn breakers_of(
        &self,
        breakers: &crate::resilience::Breakers,
        service: &str,
    ) -> Vec<crate::resilience::CircuitBreaker> {
        match self.service(service) {
            Some(named) => named
                .replicas
                .iter()
                .map(|replica| breakers.get(&replica.breaker))
                .collect(),
            None => vec![breakers.get(service)],
        }
    }

    /// How many replicas `service` (`audit`, `tool:calculator`, ...) has.
    pub fn replica_count(&self, service: &str) -> usize {
        self.service(service)
            .map_or(1, |named| named.replicas.len())
    }

    /// The named service whose breaker is `service` (`audit`, `tool:calculator`, ...).
    pub fn service(&self, service: &str) -> Option<&NamedEndpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.service == service)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use heist_proto::v1::GetStatsRequest;
    use tracing::{
        Subscriber,
        field::{Field, Visit},
        span::{Attributes, Id, Record},
    };
    use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

    use super::*;
    use crate::replicas::Pinned;

    /// The `server.port` each client span recorded, in order.
    #[derive(Clone, Default)]
    struct Ports(Arc<Mutex<Vec<u64>>>);

    impl Visit for Ports {
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "server.port" {
                self.0.lock().unwrap().push(value as u64);
            }
        }

        fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Ports {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
            attrs.record(&mut self.clone());
        }

        fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            values.record(&mut self.clone());
        }
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn each_client_span_names_the_replica_its_call_went_to() {
        let (first, second) = (closed_port(), closed_port());
        let mut config = Config::default_config();
        config.memory = Endpoints::parse_list(&[
            format!("http://127.0.0.1:{first}"),
            format!("http://127.0.0.1:{second}"),
        ])
        .unwrap();
        let mesh = Mesh::connect(&config).await.unwrap();
        let named = mesh.service(crate::resilience::MEMORY).unwrap();
        assert_eq!(
            named.breakers(),
            [
                format!("memory@127.0.0.1:{first}"),
                format!("memory@127.0.0.1:{second}")
            ]
        );
        let ports = Ports::default();
        let _guard = tracing_subscriber::registry()
            .with(ports.clone())
            .set_default();
        for replica in [1, 0, 1] {
            let mut call = request(GetStatsRequest {}, None, Duration::from_secs(1));
            call.extensions_mut().insert(Pinned(replica));
            let refused = mesh.memory.clone().get_stats(call).await;
            assert!(refused.is_err(), "nothing listens there");
        }
        // Unpinned calls take the replicas in turn.
        for _ in 0..2 {
            let call = request(GetStatsRequest {}, None, Duration::from_secs(1));
            let _ = mesh.memory.clone().get_stats(call).await;
        }
        let seen = ports.0.lock().unwrap().clone();
        let (first, second) = (u64::from(first), u64::from(second));
        assert_eq!(seen[..3], [second, first, second]);
        let mut turns = seen[3..].to_vec();
        turns.sort_unstable();
        let mut both = vec![first, second];
        both.sort_unstable();
        assert_eq!(turns, both);
    }
}
