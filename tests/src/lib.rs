//! Test harness for the heist mesh: starts the real services for tests and benches.
//!
//! - [`TestServer`]: a service's `run` function in-process on `127.0.0.1:0`,
//!   stopped through a oneshot, its task joined (panics re-raised).
//! - [`ServiceProcess`]: a service's real binary as a child process on a free
//!   port (it writes the bound address to `--addr-file`), stopped with SIGTERM
//!   or killed with SIGKILL.
//!
//! - [`TestAuth`]: a signing key and an authenticator that trusts it, to
//!   mint tokens with any scopes for in-process services.
//!
//! - [`fake_llm::FakeServer`]: a scripted OpenAI-compatible HTTP server.
//! - [`processes::ProcessMesh`]: every service as a real process on fixed
//!   free ports, to kill and restart in fault tests.
//! - [`proxy::DelayProxy`]: a TCP proxy that makes a service slow on demand.
//! - [`mesh::TestMesh`]: every service in-process (started through
//!   [`mesh::TestMesh::builder`]), an orchestrator config pointing at them and
//!   clients that call them with a token.
//! - [`services`]: one start helper per service, for tests of one service.
//! - [`integrity`]: Audit's verdict on a session's hash chain, and the
//!   check that a session written through faults is intact.
//! - [`stores`]: the Audit store backends (SQLite, PostgreSQL) and
//!   [`each_store!`], which runs an Audit test on each.
//!
//! The end-to-end tests (`e2e/`, one module per area) and the benches are
//! built on these.

pub mod fake_llm;
pub mod integrity;
pub mod mesh;
pub mod processes;
pub mod proxy;
pub mod services;
pub mod stores;
pub mod tls;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use heist_plumbing::auth::{Audience, AuthConfig, Authenticator, BearerInterceptor};
use heist_proto::v1::{IssueTokenRequest, o_auth_service_client::OAuthServiceClient};
use heist_tokens::{SigningKey, TokenIssuer};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long a harness waits for a server to come up or go down.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A service running in this process on `127.0.0.1` at a free port.
#[derive(Debug)]
pub struct TestServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0`, then runs `run(listener, shutdown)` on a task.
    pub async fn start<F, Fut, E>(run: F) -> Self
    where
        F: FnOnce(TcpListener, Box<dyn Future<Output = ()> + Send + Unpin>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), run).await
    }

    /// Like [`TestServer::start`], bound to `addr` (e.g. where a stopped
    /// server listened, to bring it back where its clients expect it).
    pub async fn start_at<F, Fut, E>(addr: SocketAddr, run: F) -> Self
    where
        F: FnOnce(TcpListener, Box<dyn Future<Output = ()> + Send + Unpin>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|error| panic!("bind {addr}: {error}"));
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::new(Box::pin(async move {
            let _ = stopped.await;
        }));
        let server = run(listener, shutdown);
        let task = tokio::spawn(async move { server.await.map_err(|error| error.to_string()) });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new channel to the server (connected lazily).
    pub fn channel(&self) -> Channel {
        channel_to(self.addr)
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and waits for it; returns its outcome.
    pub async fn stop(mut self) -> Result<(), String> {
        self.begin_stop();
        let task = self.task.take().expect("server task");
        match tokio::time::timeout(STARTUP_TIMEOUT, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join_error)) if join_error.is_panic() => {
                std::panic::resume_unwind(join_error.into_panic())
            }
            Ok(Err(join_error)) => Err(join_error.to_string()),
            Err(_) => Err("server did not stop in time".to_owned()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

/// A token issuer and an authenticator that trusts it, for in-process services.
#[derive(Debug, Clone)]
pub struct TestAuth {
    /// Signs test tokens.
    pub issuer: TokenIssuer,
    /// Verifies them (hand it to a service's `run`).
    pub authenticator: Authenticator,
}

impl Default for TestAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl TestAuth {
    /// A fresh key, issuer `heist-test`.
    pub fn new() -> Self {
        let key = SigningKey::generate().expect("generate a signing key");
        let issuer = TokenIssuer::new(key, "heist-test", Duration::from_secs(300));
        let authenticator =
            Authenticator::with_verifier(issuer.verifier(), &AuthConfig::new("http://unused"));
        Self {
            issuer,
            authenticator,
        }
    }

    /// A token for `client` with `scopes`, for every audience of the mesh
    /// (as OAuth issues when no resource is named).
    pub fn token(&self, client: &str, scopes: &[&str]) -> String {
        self.token_for(client, scopes, &Audience::ALL)
    }

    /// A token for `client` with `scopes`, for `audiences` only.
    pub fn token_for(&self, client: &str, scopes: &[&str], audiences: &[Audience]) -> String {
        let audiences = audiences.iter().map(|audience| audience.as_str());
        self.issuer
            .issue(
                client,
                scopes,
                &audiences.collect::<Vec<_>>(),
                heist_tokens::unix_now(),
            )
            .expect("issue a token")
            .token
    }

    /// An interceptor sending a token with `scopes`.
    pub fn bearer(&self, scopes: &[&str]) -> BearerInterceptor {
        BearerInterceptor::new(&self.token("tester", scopes))
    }
}

/// Asks the OAuth service at `addr` for a token with the built-in development
/// secret of `client` (`<client>-dev-secret`), naming no resource: for every
/// audience the client may have.
pub async fn dev_token(
    addr: SocketAddr,
    client: &str,
    scope: &str,
) -> Result<String, tonic::Status> {
    dev_token_for(addr, client, scope, &[]).await
}

/// Like [`dev_token`], for the `resource` audiences only (RFC 8707).
pub async fn dev_token_for(
    addr: SocketAddr,
    client: &str,
    scope: &str,
    resource: &[&str],
) -> Result<String, tonic::Status> {
    dev_token_on(channel_to(addr), client, scope, resource).await
}

/// [`dev_token_for`] from the OAuth service behind `channel` (over TLS, say).
pub async fn dev_token_on(
    channel: Channel,
    client: &str,
    scope: &str,
    resource: &[&str],
) -> Result<String, tonic::Status> {
    let mut oauth = OAuthServiceClient::new(channel);
    let response = oauth
        .issue_token(IssueTokenRequest {
            grant_type: "client_credentials".into(),
            client_id: client.into(),
            client_secret: format!("{client}-dev-secret"),
            scope: scope.into(),
            session_id: String::new(),
            resource: resource.iter().map(|name| (*name).to_owned()).collect(),
        })
        .await?;
    Ok(response.into_inner().access_token)
}

/// What Audit holds for one session.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    /// The session row.
    pub session: heist_proto::v1::Session,
    /// Its messages, in storage order (every page).
    pub messages: Vec<heist_proto::v1::Message>,
    /// Its tool calls, in storage order (every page).
    pub tool_usage: Vec<heist_proto::v1::ToolUsage>,
}

/// Reads a session's audit trail with an orchestrator token from the OAuth
/// service at `oauth`, every page, through the orchestrator's paged reader
/// ([`heist_orchestrator::trail`]).
pub async fn audit_trail(oauth: SocketAddr, audit: SocketAddr, session_id: &str) -> AuditTrail {
    use heist_proto::v1::GetSessionRequest;
    let mut client = audit_reader(oauth, audit)
        .await
        .expect("an audit:read token");
    let session = client
        .get_session(GetSessionRequest {
            session_id: session_id.to_owned(),
        })
        .await
        .expect("the session")
        .into_inner();
    let (messages, tool_usage) = stored_rows(&client, session_id).await;
    AuditTrail {
        session,
        messages,
        tool_usage,
    }
}

/// The session ID an `orchestrator run` printed (`Session ID: heist_...`).
pub fn session_id_in(shown: &str) -> String {
    shown
        .lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .unwrap_or_else(|| panic!("no session ID in {shown}"))
        .trim()
        .to_owned()
}

/// A client of Audit at `audit` reading as the orchestrator, with an
/// `audit:read` token from the OAuth service at `oauth`.
pub async fn audit_reader(
    oauth: SocketAddr,
    audit: SocketAddr,
) -> Result<AuditReader, tonic::Status> {
    let token = dev_token(oauth, "orchestrator", "audit:read").await?;
    Ok(
        heist_proto::v1::audit_service_client::AuditServiceClient::with_interceptor(
            channel_to(audit),
            BearerInterceptor::new(&token),
        ),
    )
}

/// What [`audit_reader`] answers.
pub type AuditReader = heist_proto::v1::audit_service_client::AuditServiceClient<mesh::Bearer>;

/// Every message and every tool call Audit stored for `session_id`, read
/// page by page over `client` with the orchestrator's paged reader.
pub async fn stored_rows<T>(
    client: &heist_proto::v1::audit_service_client::AuditServiceClient<T>,
    session_id: &str,
) -> (
    Vec<heist_proto::v1::Message>,
    Vec<heist_proto::v1::ToolUsage>,
)
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use heist_orchestrator::trail::{session_messages, session_tool_usage};
    let messages = session_messages(session_id, |list| {
        let mut client = client.clone();
        async move { Ok(client.list_messages(list).await?.into_inner()) }
    })
    .await
    .expect("the messages");
    let tool_usage = session_tool_usage(session_id, |list| {
        let mut client = client.clone();
        async move { Ok(client.list_tool_usage(list).await?.into_inner()) }
    })
    .await
    .expect("the tool usage");
    (messages, tool_usage)
}

/// A lazily connected channel to `addr`.
pub fn channel_to(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// Asks `addr`'s health service about `service` (`""` for the whole server).
pub async fn health_status(
    addr: SocketAddr,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    health_status_on(channel_to(addr), service).await
}

/// Asks the health service behind `channel` about `service`.
pub async fn health_status_on(
    channel: Channel,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Waits (up to 10 s) until `addr`'s whole-server health is `wanted`;
/// answers the last status seen.
pub async fn health_within(addr: SocketAddr, wanted: ServingStatus) -> ServingStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = health_status(addr, "")
            .await
            .unwrap_or(ServingStatus::Unknown);
        if status == wanted || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A finished process's standard output, then its standard error.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits until `addr` reports SERVING for `service`.
pub async fn wait_until_serving(addr: SocketAddr, service: &str) -> Result<(), String> {
    wait_until_serving_on(addr, || channel_to(addr), service).await
}

/// Waits until the server at `addr`, reached by the channels `connect`
/// makes, reports SERVING for `service`.
pub async fn wait_until_serving_on(
    addr: SocketAddr,
    connect: impl Fn() -> Channel,
    service: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match health_status_on(connect(), service).await {
            Ok(ServingStatus::Serving) => return Ok(()),
            Ok(other) => last = format!("{other:?}"),
            Err(status) => last = status.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!(
        "{addr} not SERVING after {STARTUP_TIMEOUT:?}: {last}"
    ))
}

/// The documents the repository ships for file_reader (the tools' default
/// is relative to the working directory, so tests name them explicitly).
pub fn documents_dir() -> PathBuf {
    repo_root().join("services/tools/documents")
}

/// The repository's root (this crate lives in its `tests/`): the scripts,
/// the documents and the checkout the binaries are built from.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the repository")
        .to_path_buf()
}

/// The directory cargo puts this workspace's binaries in.
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The path of the workspace binary `name`; panics with the fix if it is not built.
pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (scripts/test.sh does) first",
        path.display()
    );
    path
}

/// A service binary running as a child process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The address it listens on.
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its log file (stderr and stdout).
    pub log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` with `args` plus `--listen LISTEN --addr-file ...`, in
    /// `dir`, and waits until it has bound its port (not until SERVING).
    /// `listen` is `127.0.0.1:0` for a free port, or a fixed address to restart
    /// a killed service where its clients expect it.
    /// It exports no spans (`OTEL_EXPORTER_OTLP_*ENDPOINT` are removed from
    /// its environment).
    pub fn start(binary: &Path, args: &[&str], listen: &str, dir: &Path) -> std::io::Result<Self> {
        Self::start_with_env(binary, args, listen, dir, &[])
    }

    /// Like [`ServiceProcess::start`], with `env` added to the child's
    /// environment, e.g. `[("OTEL_EXPORTER_OTLP_ENDPOINT", url)]` to export
    /// its spans.
    pub fn start_with_env(
        binary: &Path,
        args: &[&str],
        listen: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let name = binary
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "service".to_owned());
        Self::start_labelled(binary, &name, args, listen, dir, env)
    }

    /// Like [`ServiceProcess::start_with_env`], its address and log files
    /// named after `label` (`LABEL.addr`, `LABEL.log` in `dir`), so that
    /// replicas of one binary in one directory keep theirs apart.
    pub fn start_labelled(
        binary: &Path,
        label: &str,
        args: &[&str],
        listen: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let name = label.to_owned();
        let addr_file = dir.join(format!("{name}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let (log, log_file) = append_log(dir, &name)?;
        let child = Command::new(binary)
            .args(args)
            .arg("--listen")
            .arg(listen)
            .arg("--addr-file")
            .arg(&addr_file)
            .current_dir(dir)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let mut process = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                process.addr = addr;
                return Ok(process);
            }
            if let Some(status) = process.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "{name} exited with {status} before listening; log:\n{}",
                    std::fs::read_to_string(&process.log).unwrap_or_default()
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{name} did not bind in time"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the process has written a bound address (`IP:PORT`) to
    /// `file` (e.g. its `--health-addr-file`), at most [`STARTUP_TIMEOUT`];
    /// panics with its log if it exits first or writes none in time.
    pub fn wait_for_addr_file(&mut self, file: &Path) -> SocketAddr {
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(file)
                && let Ok(addr) = text.trim().parse()
            {
                return addr;
            }
            if let Ok(Some(status)) = self.try_wait() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no address in {} (log {})",
                file.display(),
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The TCP ports the process listens on (from `/proc`: its socket
    /// inodes matched against `/proc/net/tcp` and `tcp6` in LISTEN state).
    pub fn listening_ports(&self) -> Vec<u16> {
        let pid = self.pid();
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.flatten()
                        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                        .filter_map(|link| {
                            let link = link.to_string_lossy().into_owned();
                            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
        let mut ports = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address is field 1 (HEXIP:HEXPORT), st field 3
                // (0A: LISTEN), inode field 9.
                if let [_, local, _, "0A", _, _, _, _, _, inode, ..] = fields[..]
                    && inodes.contains(inode)
                    && let Some((_, port)) = local.rsplit_once(':')
                    && let Ok(port) = u16::from_str_radix(port, 16)
                {
                    ports.push(port);
                }
            }
        }
        ports.sort_unstable();
        ports
    }

    /// Starts `binary` with exactly `args` and no other environment than
    /// `env`, in `dir`, its output in `LABEL.log` there; does not wait for
    /// it. `addr` is the address its arguments tell it to listen on. For a
    /// deployment's command line taken as written (no `--listen` or
    /// `--addr-file` added, nothing inherited from the test's environment).
    pub fn start_exact(
        binary: &Path,
        label: &str,
        args: &[String],
        env: &[(String, String)],
        dir: &Path,
        addr: SocketAddr,
    ) -> std::io::Result<Self> {
        let (log, log_file) = append_log(dir, label)?;
        let child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        Ok(Self {
            addr,
            child: Some(child),
            log,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether it has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::io::Result<ExitStatus> {
        self.signal("TERM")?;
        self.wait_bounded()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.signal("KILL")?;
        self.wait_bounded()
    }

    fn signal(&self, signal: &str) -> std::io::Result<()> {
        // Reaped already: no process to signal (and `kill -SIG 0` would
        // signal this whole process group: the test itself).
        if self.child.is_none() {
            return Err(std::io::Error::other("the process has exited already"));
        }
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} failed")))
        }
    }

    fn wait_bounded(&mut self) -> std::io::Result<ExitStatus> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("process did not exit in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dir/LABEL.log`, opened to append (a restarted process adds to its log).
fn append_log(dir: &Path, label: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let log = dir.join(format!("{label}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    Ok((log, file))
}
