//! The whole mesh in this process: OAuth, Audit, Memory and one Tool service
//! hosting the tools, each on its own `127.0.0.1:0` port, an orchestrator
//! config that points at them, and clients that call them with a token.
//!
//! [`TestMesh::start`] starts the defaults; [`TestMesh::builder`] changes
//! them (`TestMesh::builder().tools("calculator").revocation_poll(..).start()`).
//! A new knob (TLS, say) is one more builder method and one more field.
//!
//! Audit, Memory and the Tool service can run as several replicas
//! (`.replicas(Replicated::Memory, 2)`): the first is `mesh.audit`,
//! `mesh.memory` or `mesh.tools`, the others are in `mesh.replicas`, and [`TestMesh::config`]
//! lists them all in `base_urls`. [`TestMesh::start_replica`] starts one
//! more, or brings a stopped one back on its port.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use heist_orchestrator::config::{Config, Endpoint, Endpoints};
use heist_plumbing::{
    ServeOptions,
    auth::{AuthConfig, Authenticator, BearerInterceptor},
};
use heist_proto::v1::{
    audit_service_client::AuditServiceClient, memory_service_client::MemoryServiceClient,
    o_auth_service_client::OAuthServiceClient, tool_service_client::ToolServiceClient,
};
use tempfile::TempDir;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{TestServer, dev_token, services, wait_until_serving};

/// A channel that sends a bearer token with every call.
pub type Bearer = InterceptedService<Channel, BearerInterceptor>;

/// Every service of the mesh, running in-process.
#[derive(Debug)]
pub struct TestMesh {
    /// OAuth (built-in development clients).
    pub oauth: TestServer,
    /// Audit (its database in `dir`).
    pub audit: TestServer,
    /// Memory.
    pub memory: TestServer,
    /// One Tool service with the builder's tools (by default calculator,
    /// file_reader and database_query).
    pub tools: TestServer,
    /// The replicas of Audit, Memory and the Tool service beyond the first
    /// (none unless the builder asked for them), in order.
    pub replicas: BTreeMap<Replicated, Vec<TestServer>>,
    /// Where the key, revocations and databases live.
    pub dir: TempDir,
    /// How it was started (to start more replicas alike).
    settings: TestMeshBuilder,
}

/// A service a [`TestMesh`] can run several replicas of (Audit's share one
/// SQLite file; Memory's each keep their own store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Replicated {
    /// The Audit service (every replica on the mesh's `audit.db`).
    Audit,
    /// The Memory service.
    Memory,
    /// The Tool service.
    Tools,
}

/// How a [`TestMesh`] is started; [`TestMesh::builder`] makes one.
#[derive(Debug, Clone)]
pub struct TestMeshBuilder {
    memory_limits: heist_memory::Limits,
    revocation_poll: Duration,
    tools: String,
    tool_call_timeout: Duration,
    replicas: BTreeMap<Replicated, usize>,
}

impl Default for TestMeshBuilder {
    fn default() -> Self {
        Self {
            memory_limits: heist_memory::Limits::default(),
            revocation_poll: Duration::from_millis(200),
            tools: "calculator,file_reader,database_query".into(),
            tool_call_timeout: Duration::from_secs(10),
            replicas: BTreeMap::new(),
        }
    }
}

impl TestMeshBuilder {
    /// Memory bounded by `limits` (default: [`heist_memory::Limits::default`]).
    pub fn memory_limits(mut self, limits: heist_memory::Limits) -> Self {
        self.memory_limits = limits;
        self
    }

    /// How often Audit, Memory and Tool fetch OAuth's revocation list
    /// (default 200 ms).
    pub fn revocation_poll(mut self, every: Duration) -> Self {
        self.revocation_poll = every;
        self
    }

    /// The tools the Tool service hosts, comma-separated
    /// (default `calculator,file_reader,database_query`).
    pub fn tools(mut self, names: &str) -> Self {
        names.clone_into(&mut self.tools);
        self
    }

    /// How long one tool call may run (default 10 s).
    pub fn tool_call_timeout(mut self, timeout: Duration) -> Self {
        self.tool_call_timeout = timeout;
        self
    }

    /// `count` replicas of `service` (default 1), each on its own port.
    pub fn replicas(mut self, service: Replicated, count: usize) -> Self {
        self.replicas.insert(service, count.max(1));
        self
    }

    /// An authenticator trusting the OAuth at `oauth_url`.
    fn authenticator(&self, oauth_url: String) -> Authenticator {
        let mut config = AuthConfig::new(oauth_url);
        config.revocation_poll = self.revocation_poll;
        Authenticator::new(&config).expect("valid oauth url")
    }

    /// One replica of `service` at `addr`, trusting the OAuth at
    /// `oauth_url` (Audit's database in `dir`).
    async fn replica(
        &self,
        service: Replicated,
        addr: SocketAddr,
        oauth_url: String,
        dir: &std::path::Path,
    ) -> TestServer {
        let auth = self.authenticator(oauth_url);
        match service {
            Replicated::Audit => {
                let store = heist_audit::StoreConfig::new(dir.join("audit.db"));
                services::audit_at(addr, store, auth, ServeOptions::default()).await
            }
            Replicated::Memory => {
                services::memory_at(
                    addr,
                    self.memory_limits.clone(),
                    auth,
                    ServeOptions::default(),
                )
                .await
            }
            Replicated::Tools => {
                let tools = heist_tools::ToolSet::from_names(
                    &self.tools,
                    &heist_tools::ToolsConfig {
                        documents_dir: crate::documents_dir(),
                        ..heist_tools::ToolsConfig::default()
                    },
                )
                .expect("the tools");
                services::tools_at(
                    addr,
                    tools,
                    self.tool_call_timeout,
                    auth,
                    ServeOptions::default(),
                )
                .await
            }
        }
    }

    /// Starts every service and waits until each is SERVING.
    pub async fn start(self) -> TestMesh {
        let dir = TempDir::new().expect("temp dir");
        let oauth =
            services::oauth(services::oauth_config(dir.path()), ServeOptions::default()).await;
        let any = services::ANY_PORT;
        let audit = self
            .replica(Replicated::Audit, any, oauth.url(), dir.path())
            .await;
        let memory = self
            .replica(Replicated::Memory, any, oauth.url(), dir.path())
            .await;
        let tools = self
            .replica(Replicated::Tools, any, oauth.url(), dir.path())
            .await;
        let mut replicas = BTreeMap::new();
        for (&service, &count) in &self.replicas {
            let mut more = Vec::new();
            for _ in 1..count {
                more.push(self.replica(service, any, oauth.url(), dir.path()).await);
            }
            replicas.insert(service, more);
        }
        let every = [&oauth, &audit, &memory, &tools]
            .into_iter()
            .chain(replicas.values().flatten());
        for server in every {
            wait_until_serving(server.addr, "")
                .await
                .expect("service serving");
        }
        TestMesh {
            oauth,
            audit,
            memory,
            tools,
            replicas,
            dir,
            settings: self,
        }
    }
}

impl TestMesh {
    /// Starts every service with the defaults and waits until each is SERVING.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder to start a mesh with other settings.
    pub fn builder() -> TestMeshBuilder {
        TestMeshBuilder::default()
    }

    /// A token from this mesh's OAuth for the built-in `orchestrator` client
    /// with `scopes` (space-separated).
    pub async fn token(&self, scopes: &str) -> String {
        dev_token(self.oauth.addr, "orchestrator", scopes)
            .await
            .unwrap_or_else(|status| panic!("a token for {scopes:?}: {status}"))
    }

    /// An OAuth client (its RPCs take no token).
    pub fn oauth_client(&self) -> OAuthServiceClient<Channel> {
        OAuthServiceClient::new(self.oauth.channel())
    }

    /// An Audit client calling with an orchestrator token for `scopes`.
    pub async fn audit_client(&self, scopes: &str) -> AuditServiceClient<Bearer> {
        AuditServiceClient::with_interceptor(self.audit.channel(), self.bearer(scopes).await)
    }

    /// A Memory client calling with an orchestrator token for `scopes`.
    pub async fn memory_client(&self, scopes: &str) -> MemoryServiceClient<Bearer> {
        MemoryServiceClient::with_interceptor(self.memory.channel(), self.bearer(scopes).await)
    }

    /// A Tool client calling with an orchestrator token for `scopes`.
    pub async fn tool_client(&self, scopes: &str) -> ToolServiceClient<Bearer> {
        ToolServiceClient::with_interceptor(self.tools.channel(), self.bearer(scopes).await)
    }

    async fn bearer(&self, scopes: &str) -> BearerInterceptor {
        BearerInterceptor::new(&self.token(scopes).await)
    }

    /// Starts a replica of `service` configured as this mesh's own, at
    /// `addr` (a stopped replica's address brings it back where the
    /// orchestrator expects it; `None`: a free port), and waits until it is
    /// SERVING. The caller keeps it (or puts it into [`TestMesh::replicas`]).
    pub async fn start_replica(&self, service: Replicated, addr: Option<SocketAddr>) -> TestServer {
        let addr = addr.unwrap_or(services::ANY_PORT);
        let server = self
            .settings
            .replica(service, addr, self.oauth.url(), self.dir.path())
            .await;
        wait_until_serving(server.addr, "")
            .await
            .expect("replica serving");
        server
    }

    /// The address of every replica of `service`, the first one first.
    pub fn replica_addrs(&self, service: Replicated) -> Vec<SocketAddr> {
        let first = match service {
            Replicated::Audit => self.audit.addr,
            Replicated::Memory => self.memory.addr,
            Replicated::Tools => self.tools.addr,
        };
        let more = self.replicas.get(&service).into_iter().flatten();
        std::iter::once(first)
            .chain(more.map(|server| server.addr))
            .collect()
    }

    /// The built-in orchestrator config, pointed at these services (every
    /// replica), offline.
    pub fn config(&self) -> Config {
        let mut config = Config::default_config();
        config.oauth.endpoint = endpoint(&self.oauth).into();
        config.audit = endpoints(&self.replica_addrs(Replicated::Audit));
        config.memory = endpoints(&self.replica_addrs(Replicated::Memory));
        let tools = endpoints(&self.replica_addrs(Replicated::Tools));
        for target in config.tool_services.values_mut() {
            target.clone_from(&tools);
        }
        config.source = "test mesh".into();
        config
    }
}

/// The endpoints at `addrs` (`http://ADDR` each).
pub fn endpoints(addrs: &[SocketAddr]) -> Endpoints {
    let urls: Vec<String> = addrs.iter().map(|addr| format!("http://{addr}")).collect();
    Endpoints::parse_list(&urls).expect("valid, distinct urls")
}

/// The built-in config file's text with the services at these URLs, for the
/// orchestrator binary (`--config`).
pub fn config_yaml(oauth: &str, tools: &str, memory: &str, audit: &str) -> String {
    let one = |url: &str| vec![url.to_owned()];
    config_yaml_replicas(&one(oauth), &one(tools), &one(memory), &one(audit))
}

/// Like [`config_yaml`], each service at every URL given: one URL is a
/// `base_url`, several are `base_urls`.
pub fn config_yaml_replicas(
    oauth: &[String],
    tools: &[String],
    memory: &[String],
    audit: &[String],
) -> String {
    let address = |urls: &[String]| match urls {
        [url] => format!("base_url: \"{url}\""),
        urls => {
            let quoted: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
            format!("base_urls: [{}]", quoted.join(", "))
        }
    };
    let mut text = heist_orchestrator::config::DEFAULT_CONFIG_YAML.to_owned();
    for (port, urls) in [("8001", oauth), ("8005", memory), ("8006", audit)] {
        text = text.replace(
            &format!("base_url: \"http://127.0.0.1:{port}\""),
            &address(urls),
        );
    }
    for port in ["8002", "8003", "8004"] {
        text = text.replace(
            &format!("{{ host: \"127.0.0.1\", port: {port} }}"),
            &format!("{{ {} }}", address(tools)),
        );
    }
    text
}

impl TestMesh {
    /// [`config_yaml`] for this mesh.
    pub fn yaml(&self) -> String {
        config_yaml(
            &self.oauth.url(),
            &self.tools.url(),
            &self.memory.url(),
            &self.audit.url(),
        )
    }
}

/// The endpoint of a test server.
pub fn endpoint(server: &TestServer) -> Endpoint {
    Endpoint::parse(&server.url()).expect("valid url")
}

/// An endpoint nothing listens on (a port bound, then released).
pub fn closed_endpoint() -> Endpoint {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    Endpoint::parse(&format!("http://{addr}")).expect("valid url")
}
