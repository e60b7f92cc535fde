//! The whole mesh in this process: OAuth, Audit, Memory and one Tool service
//! hosting the tools, each on its own `127.0.0.1:0` port, an orchestrator
//! config that points at them, and clients that call them with a token.
//!
//! [`TestMesh::start`] starts the defaults; [`TestMesh::builder`] changes
//! them (`TestMesh::builder().tools("calculator").revocation_poll(..).start()`).
//! A new knob (TLS, say) is one more builder method and one more field.

use std::time::Duration;

use heist_orchestrator::config::{Config, Endpoint};
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
    /// Where the key, revocations and databases live.
    pub dir: TempDir,
}

/// How a [`TestMesh`] is started; [`TestMesh::builder`] makes one.
#[derive(Debug, Clone)]
pub struct TestMeshBuilder {
    memory_limits: heist_memory::Limits,
    revocation_poll: Duration,
    tools: String,
    tool_call_timeout: Duration,
}

impl Default for TestMeshBuilder {
    fn default() -> Self {
        Self {
            memory_limits: heist_memory::Limits::default(),
            revocation_poll: Duration::from_millis(200),
            tools: "calculator,file_reader,database_query".into(),
            tool_call_timeout: Duration::from_secs(10),
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

    /// Starts every service and waits until each is SERVING.
    pub async fn start(self) -> TestMesh {
        let dir = TempDir::new().expect("temp dir");
        let oauth =
            services::oauth(services::oauth_config(dir.path()), ServeOptions::default()).await;
        let authenticator = || {
            let mut config = AuthConfig::new(oauth.url());
            config.revocation_poll = self.revocation_poll;
            Authenticator::new(&config).expect("valid oauth url")
        };
        let audit = services::audit(
            heist_audit::StoreConfig::new(dir.path().join("audit.db")),
            authenticator(),
            ServeOptions::default(),
        )
        .await;
        let memory =
            services::memory(self.memory_limits, authenticator(), ServeOptions::default()).await;
        let tools = heist_tools::ToolSet::from_names(
            &self.tools,
            &heist_tools::ToolsConfig {
                documents_dir: crate::documents_dir(),
                ..heist_tools::ToolsConfig::default()
            },
        )
        .expect("the tools");
        let tools = services::tools(
            tools,
            self.tool_call_timeout,
            authenticator(),
            ServeOptions::default(),
        )
        .await;
        for server in [&oauth, &audit, &memory, &tools] {
            wait_until_serving(server.addr, "")
                .await
                .expect("service serving");
        }
        TestMesh {
            oauth,
            audit,
            memory,
            tools,
            dir,
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
    /// The built-in orchestrator config, pointed at these services, offline.
    pub fn config(&self) -> Config {
        let mut config = Config::default_config();
        config.oauth.endpoint = endpoint(&self.oauth).into();
        config.audit = endpoint(&self.audit).into();
        config.memory = endpoint(&self.memory).into();
        for target in config.tool_services.values_mut() {
            *target = endpoint(&self.tools).into();
        }
        config.source = "test mesh".into();
        config
    }
}

/// The built-in config file's text with the services at these URLs, for the
/// orchestrator binary (`--config`).
pub fn config_yaml(oauth: &str, tools: &str, memory: &str, audit: &str) -> String {
    let mut text = heist_orchestrator::config::DEFAULT_CONFIG_YAML.to_owned();
    for (port, url) in [("8001", oauth), ("8005", memory), ("8006", audit)] {
        text = text.replace(&format!("http://127.0.0.1:{port}"), url);
    }
    for port in ["8002", "8003", "8004"] {
        text = text.replace(
            &format!("{{ host: \"127.0.0.1\", port: {port} }}"),
            &format!("{{ base_url: \"{tools}\" }}"),
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
