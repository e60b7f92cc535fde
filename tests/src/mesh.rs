//! The whole mesh in this process: OAuth, Audit, Memory and one Tool service
//! hosting all three tools, each on its own `127.0.0.1:0` port, and an
//! orchestrator config that points at them.

use std::time::Duration;

use heist_orchestrator::config::{Config, Endpoint};
use heist_plumbing::{
    ServeOptions,
    auth::{AuthConfig, Authenticator},
};
use tempfile::TempDir;

use crate::{TestServer, wait_until_serving};

/// Every service of the mesh, running in-process.
#[derive(Debug)]
pub struct TestMesh {
    /// OAuth (built-in development clients).
    pub oauth: TestServer,
    /// Audit (its database in `dir`).
    pub audit: TestServer,
    /// Memory.
    pub memory: TestServer,
    /// One Tool service with calculator, file_reader and database_query.
    pub tools: TestServer,
    /// Where the key, revocations and databases live.
    pub dir: TempDir,
}

fn authenticator(oauth: &TestServer) -> Authenticator {
    let mut config = AuthConfig::new(oauth.url());
    config.revocation_poll = Duration::from_millis(200);
    Authenticator::new(&config).expect("valid oauth url")
}

impl TestMesh {
    /// Starts every service and waits until each is SERVING.
    pub async fn start() -> Self {
        Self::start_with_memory_limits(heist_memory::Limits::default()).await
    }

    /// Like [`TestMesh::start`], with Memory bounded by `memory_limits`.
    pub async fn start_with_memory_limits(memory_limits: heist_memory::Limits) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let oauth_config = heist_oauth::OAuthConfig {
            clients_file: None,
            key_file: dir.path().join("signing.key"),
            revocations_file: dir.path().join("revoked.log"),
            issuer: "heist-oauth".into(),
            token_lifetime: Duration::from_secs(300),
        };
        let oauth = TestServer::start(move |listener, shutdown| {
            heist_oauth::run(listener, oauth_config, shutdown, ServeOptions::default())
        })
        .await;
        let store = heist_audit::StoreConfig::new(dir.path().join("audit.db"));
        let auth = authenticator(&oauth);
        let audit = TestServer::start(move |listener, shutdown| {
            heist_audit::run(listener, store, auth, shutdown, ServeOptions::default())
        })
        .await;
        let auth = authenticator(&oauth);
        let memory = TestServer::start(move |listener, shutdown| {
            heist_memory::run(
                listener,
                memory_limits,
                auth,
                shutdown,
                ServeOptions::default(),
            )
        })
        .await;
        let tools = heist_tools::ToolSet::from_names(
            "calculator,file_reader,database_query",
            &heist_tools::ToolsConfig {
                documents_dir: crate::documents_dir(),
                ..heist_tools::ToolsConfig::default()
            },
        )
        .expect("the tools");
        let auth = authenticator(&oauth);
        let tools = TestServer::start(move |listener, shutdown| {
            heist_tools::run(
                listener,
                tools,
                Duration::from_secs(10),
                auth,
                shutdown,
                ServeOptions::default(),
            )
        })
        .await;
        for server in [&oauth, &audit, &memory, &tools] {
            wait_until_serving(server.addr, "")
                .await
                .expect("service serving");
        }
        Self {
            oauth,
            audit,
            memory,
            tools,
            dir,
        }
    }

    /// The built-in orchestrator config, pointed at these services, offline.
    pub fn config(&self) -> Config {
        let mut config = Config::default_config();
        config.oauth.endpoint = endpoint(&self.oauth);
        config.audit = endpoint(&self.audit);
        config.memory = endpoint(&self.memory);
        for target in config.tool_services.values_mut() {
            *target = endpoint(&self.tools);
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
