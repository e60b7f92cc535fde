//! Several OAuth processes acting as one: the real `heist-oauth` binary,
//! started twice (or more) on one key file and one revocation store
//! (PostgreSQL or Redis, private engines from `heist-engines`: a test fails,
//! never skips, when its engine cannot start), and a Tool service trusting
//! one replica.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Barrier,
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, TestServer, binary, channel_to, dev_token, services};
use heist_engines::{Durability, PostgresServer, RedisServer};
use heist_plumbing::{
    ServeOptions,
    auth::{AuthConfig, Authenticator, BearerInterceptor},
};
use heist_proto::v1::{
    self as pb, o_auth_service_client::OAuthServiceClient, revoke_token_request::Target,
    tool_service_client::ToolServiceClient,
};
use tempfile::TempDir;
use tonic::{Code, transport::Channel};

/// How often the Tool service polls its OAuth replica's revocation list.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// One `heist-oauth` process in a directory of its own (its log and address
/// file), with `args` (the shared key file, the revocation store).
pub(crate) fn replica(root: &Path, name: &str, args: &[&str]) -> ServiceProcess {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    ServiceProcess::start(&binary("heist-oauth"), args, "127.0.0.1:0", &dir).unwrap()
}

/// The arguments of a replica on `key` and the revocation store `store`.
pub(crate) fn replica_args<'a>(key: &'a Path, store: &'a str) -> Vec<&'a str> {
    vec![
        "--key-file",
        key.to_str().unwrap(),
        "--revocations",
        store,
        "--log",
        "warn",
    ]
}

pub(crate) async fn serving(process: &ServiceProcess) {
    heist_e2e::wait_until_serving(process.addr, "")
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{error}; log:\n{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            )
        });
}

pub(crate) fn oauth(process: &ServiceProcess) -> OAuthServiceClient<Channel> {
    OAuthServiceClient::new(channel_to(process.addr))
}

type Authorized =
    OAuthServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerInterceptor>>;

pub(crate) fn oauth_with(process: &ServiceProcess, token: &str) -> Authorized {
    OAuthServiceClient::with_interceptor(channel_to(process.addr), BearerInterceptor::new(token))
}

/// The key IDs a replica publishes.
pub(crate) async fn published_kids(process: &ServiceProcess) -> Vec<String> {
    oauth(process)
        .get_public_keys(pb::GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect()
}

/// A Tool service (calculator) trusting the OAuth replica at `oauth`.
pub(crate) async fn tool_service_trusting(oauth: &ServiceProcess) -> TestServer {
    tool_service_trusting_urls(&format!("http://{}", oauth.addr)).await
}

/// A Tool service (calculator) trusting the OAuth replicas at `oauth_urls`
/// (comma-separated, as `--oauth-url` takes them).
async fn tool_service_trusting_urls(oauth_urls: &str) -> TestServer {
    let mut config = AuthConfig::new(oauth_urls);
    config.revocation_poll = POLL;
    tool_service_with(&config).await
}

/// A Tool service (calculator) authenticating with `config`.
pub(crate) async fn tool_service_with(config: &AuthConfig) -> TestServer {
    let tools =
        heist_tools::ToolSet::from_names("calculator", &heist_tools::ToolsConfig::default())
            .unwrap();
    let server = services::tools(
        tools,
        Duration::from_secs(10),
        Authenticator::new(config).unwrap(),
        ServeOptions::default(),
    )
    .await;
    heist_e2e::wait_until_serving(server.addr, "")
        .await
        .unwrap();
    server
}

/// `ListTools` at `tools` with `token`: Ok, or the refusal's code.
async fn list_tools(tools: &TestServer, token: &str) -> Result<(), Code> {
    ToolServiceClient::with_interceptor(tools.channel(), BearerInterceptor::new(token))
        .list_tools(pb::ListToolsRequest {})
        .await
        .map(drop)
        .map_err(|status| status.code())
}

/// Introspects `token` at `at` as the orchestrator (`oauth:introspect`).
pub(crate) async fn introspect(
    at: &ServiceProcess,
    as_introspector: &str,
    token: &str,
) -> Result<pb::IntrospectTokenResponse, tonic::Status> {
    oauth_with(at, as_introspector)
        .introspect_token(pb::IntrospectTokenRequest {
            token: token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn revoke_request(token: &str) -> pb::RevokeTokenRequest {
    pb::RevokeTokenRequest {
        target: Some(Target::Token(token.into())),
    }
}

#[tokio::test]
async fn a_token_issued_by_one_replica_verifies_at_the_other_and_at_services_trusting_either() {
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("keys/signing.key");
    // A revocation file is one process's own: each replica has its file.
    let (file_a, file_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = replica(
        dir.path(),
        "a",
        &replica_args(&key, file_a.to_str().unwrap()),
    );
    serving(&a).await;
    let b = replica(
        dir.path(),
        "b",
        &replica_args(&key, file_b.to_str().unwrap()),
    );
    serving(&b).await;
    assert_eq!(published_kids(&a).await, published_kids(&b).await);
    assert_eq!(published_kids(&a).await.len(), 1);

    let token = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    let introspector = dev_token(b.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    // Each replica accepts the other's tokens, as bearer and as subject.
    let answer = introspect(&b, &introspector, &token).await.unwrap();
    assert!(answer.active, "{answer:?}");
    assert_eq!(answer.sub, "planner");
    let answer = introspect(&a, &introspector, &token).await.unwrap();
    assert!(answer.active, "{answer:?}");

    let trusting_a = tool_service_trusting(&a).await;
    let trusting_b = tool_service_trusting(&b).await;
    assert_eq!(list_tools(&trusting_a, &token).await, Ok(()));
    assert_eq!(list_tools(&trusting_b, &token).await, Ok(()));
    let from_b = dev_token(b.addr, "planner", "calculator:use")
        .await
        .unwrap();
    assert_eq!(list_tools(&trusting_a, &from_b).await, Ok(()));
}

#[tokio::test]
async fn a_service_given_every_oauth_replica_starts_and_polls_while_the_first_is_dead() {
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("signing.key");
    let store = RedisServer::start().unwrap();
    let a = replica(dir.path(), "a", &replica_args(&key, &store.url()));
    let mut b = replica(dir.path(), "b", &replica_args(&key, &store.url()));
    serving(&a).await;
    serving(&b).await;
    let urls = format!("http://{},http://{}", b.addr, a.addr);
    b.kill().unwrap();

    // The first replica listed is dead: keys come from the second.
    let tools = tool_service_trusting_urls(&urls).await;
    let token = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    assert_eq!(list_tools(&tools, &token).await, Ok(()));

    // Revocations are polled from the live replica too.
    oauth(&a)
        .revoke_token(revoke_request(&token))
        .await
        .unwrap();
    let revoked_at = Instant::now();
    while list_tools(&tools, &token).await.is_ok() {
        assert!(
            revoked_at.elapsed() < POLL * 4 + Duration::from_millis(500),
            "still accepted {:?} after its revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(list_tools(&tools, &token).await, Err(Code::Unauthenticated));
}

#[tokio::test]
async fn replicas_starting_at_once_on_a_missing_key_file_create_one_key() {
    const REPLICAS: usize = 4;
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("shared/signing.key");
    let barrier = Barrier::new(REPLICAS);
    let replicas: Vec<ServiceProcess> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..REPLICAS)
            .map(|index| {
                let (key, barrier, root) = (&key, &barrier, dir.path());
                scope.spawn(move || {
                    let name = format!("replica{index}");
                    let store = root.join(format!("{name}.log"));
                    let args = replica_args(key, store.to_str().unwrap());
                    // Spawned together: each creates the key once it has bound.
                    barrier.wait();
                    replica(root, &name, &args)
                })
            })
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut kids = Vec::new();
    for process in &replicas {
        serving(process).await;
        kids.push(published_kids(process).await);
    }
    assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    let on_disk = heist_tokens::SigningKey::load_or_generate(&key).unwrap();
    assert_eq!(kids[0], vec![on_disk.kid().to_owned()]);
    let names: Vec<_> = std::fs::read_dir(key.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("signing.key")]);
}

/// A shared revocation store under test, and what keeps its engine running.
enum Store {
    Postgres,
    Redis(Option<RedisServer>),
}

impl Store {
    /// A fresh, empty store: a new database, or a Redis server of its own.
    fn fresh(&mut self) -> String {
        match self {
            Self::Postgres => PostgresServer::shared()
                .and_then(PostgresServer::fresh_database)
                .expect("PostgreSQL must start for this test"),
            Self::Redis(server) => server
                .insert(RedisServer::start().expect("Redis must start for this test"))
                .url(),
        }
    }
}

/// Revoked through replica A: refused by replica B (introspection and a
/// bearer check), listed by B, and refused within the poll interval by a
/// Tool service whose OAuth is B.
async fn a_revocation_through_one_replica_holds_at_the_other(mut store: Store) {
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("signing.key");
    let url = store.fresh();
    let a = replica(dir.path(), "a", &replica_args(&key, &url));
    let b = replica(dir.path(), "b", &replica_args(&key, &url));
    serving(&a).await;
    serving(&b).await;
    let tools = tool_service_trusting(&b).await;

    // Every token first (each costs an Argon2 check), so that what follows
    // the revocation is timed by the poll alone.
    let token = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    let introspector = dev_token(a.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    let admin = dev_token(a.addr, "orchestrator", "oauth:admin")
        .await
        .unwrap();
    assert_eq!(list_tools(&tools, &token).await, Ok(()));
    let jti = introspect(&b, &introspector, &token).await.unwrap().jti;

    let revoked = oauth(&a)
        .revoke_token(revoke_request(&token))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.newly_revoked);
    let revoked_at = Instant::now();

    // The Tool service polls B every POLL: refused within it (and a margin).
    while list_tools(&tools, &token).await.is_ok() {
        assert!(
            revoked_at.elapsed() < POLL * 2 + Duration::from_millis(500),
            "the Tool service still accepts the token {:?} after its revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(list_tools(&tools, &token).await, Err(Code::Unauthenticated));

    // B at once: introspection says revoked, the list names it, a repeat is no news.
    let answer = introspect(&b, &introspector, &token).await.unwrap();
    assert_eq!((answer.active, answer.reason.as_str()), (false, "revoked"));
    let listed = oauth(&b)
        .list_revoked_tokens(pb::ListRevokedTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.revoked.iter().any(|entry| entry.jti == jti),
        "{listed:?}"
    );
    let again = oauth(&b)
        .revoke_token(revoke_request(&token))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.newly_revoked, "revoked already, through A");

    // B's own bearer check: the introspector's token, revoked through A by jti.
    let introspector_jti = introspect(&a, &introspector, &introspector)
        .await
        .unwrap()
        .jti;
    oauth_with(&a, &admin)
        .revoke_token(pb::RevokeTokenRequest {
            target: Some(Target::Jti(introspector_jti)),
        })
        .await
        .unwrap();
    let refused = introspect(&b, &introspector, &token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

#[tokio::test]
async fn a_revocation_through_one_replica_holds_at_the_other_on_postgres() {
    a_revocation_through_one_replica_holds_at_the_other(Store::Postgres).await;
}

#[tokio::test]
async fn a_revocation_through_one_replica_holds_at_the_other_on_redis() {
    a_revocation_through_one_replica_holds_at_the_other(Store::Redis(None)).await;
}

/// Runs `heist-oauth` with `args` until it exits (it must, within 20 s) and
/// gives its exit code and the lines of its stderr.
fn run_to_exit(dir: &Path, args: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut child = Command::new(binary("heist-oauth"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log", "error"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("heist-oauth {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    (output.status.code(), stderr)
}

/// A failed start says why on one line (at `--log error`, nothing else is
/// written), checked for `words`, for repeats and against `secret`.
pub(crate) fn the_one_error_line(dir: &Path, args: &[&str], words: &[&str], secret: &str) {
    let (code, stderr) = run_to_exit(dir, args);
    assert!(
        code.is_some_and(|code| code != 0),
        "{args:?}: {code:?} {stderr:?}"
    );
    let lines: Vec<&String> = stderr.iter().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr:#?}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for word in words {
        assert!(line.contains(word), "{args:?}: {line:?} lacks {word:?}");
    }
    let parts: Vec<&str> = line.split(": ").collect();
    assert!(
        parts.windows(2).all(|pair| pair[0] != pair[1]),
        "a cause said twice: {line}"
    );
    assert!(
        !stderr.iter().any(|line| line.contains(secret)),
        "the password shows in {stderr:#?}"
    );
}

#[test]
fn a_bad_key_file_or_revocation_store_stops_the_binary_with_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let corrupt = dir.path().join("corrupt.key");
    std::fs::write(&corrupt, "not a key\n").unwrap();
    let unreadable = dir.path().join("a-directory.key");
    std::fs::create_dir(&unreadable).unwrap();
    let redis = RedisServer::start().expect("Redis must start for this test");
    let postgres = PostgresServer::shared().expect("PostgreSQL must start for this test");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = dir.path().join("good.key");
    let key = key.to_str().unwrap();
    let secret = "Wr0ngPassw0rd";
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--key-file".into(), corrupt.display().to_string()],
            vec!["corrupt.key", "corrupt"],
        ),
        (
            vec!["--key-file".into(), unreadable.display().to_string()],
            vec![
                "cannot read signing key file",
                "a-directory.key",
                "directory",
            ],
        ),
        (
            vec![
                "--revocations".into(),
                format!("redis://:{secret}@127.0.0.1:{}/", redis.port()),
            ],
            vec!["redis 127.0.0.1", "unavailable"],
        ),
        (
            vec![
                "--revocations".into(),
                format!(
                    "postgres://heist:{secret}@127.0.0.1:{}/heist",
                    postgres.port()
                ),
            ],
            vec!["postgres 127.0.0.1", "password"],
        ),
        (
            vec![
                "--revocations".into(),
                format!("postgres://heist:{secret}@127.0.0.1:{closed}/heist"),
            ],
            vec!["postgres 127.0.0.1", "unavailable"],
        ),
        (
            vec![
                "--revocations".into(),
                format!("postgress://heist:{secret}@db/heist"),
            ],
            vec!["unknown scheme"],
        ),
    ];
    for (mut args, words) in cases {
        if !args.contains(&"--key-file".to_owned()) {
            args.extend(["--key-file".into(), key.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        the_one_error_line(dir.path(), &args, &words, secret);
    }
}

/// The store an engine-down test stops: a private server, never the shared one.
enum Stoppable {
    Postgres(PostgresServer),
    Redis(RedisServer),
}

impl Stoppable {
    fn url(&self) -> String {
        match self {
            Self::Postgres(server) => server.url(),
            Self::Redis(server) => server.url(),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Postgres(server) => server.stop(),
            Self::Redis(server) => server.stop(),
        }
    }

    fn start_again(&mut self) {
        match self {
            Self::Postgres(server) => server.start_again(),
            Self::Redis(server) => server.start_again(),
        }
        .expect("the engine starts again");
    }
}

/// With its store down, OAuth claims nothing: revoking, introspecting and
/// listing answer UNAVAILABLE; issuing, which needs no store, goes on.
/// Once the engine is back, revoking works again.
async fn with_the_store_down_oauth_fails_closed(mut engine: Stoppable) {
    let dir = TempDir::new().unwrap();
    let key: PathBuf = dir.path().join("signing.key");
    let url = engine.url();
    let a = replica(dir.path(), "a", &replica_args(&key, &url));
    serving(&a).await;
    let token = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    let introspector = dev_token(a.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();

    engine.stop();
    let started = Instant::now();
    let revoke = oauth(&a).revoke_token(revoke_request(&token)).await;
    assert_eq!(
        revoke.as_ref().map_err(tonic::Status::code).err(),
        Some(Code::Unavailable),
        "{revoke:?}"
    );
    assert!(
        revoke.unwrap_err().message().contains("revocation store"),
        "a readable reason"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let introspected = introspect(&a, &introspector, &token).await;
    assert_eq!(
        introspected.map_err(|status| status.code()).err(),
        Some(Code::Unavailable)
    );
    let listed = oauth(&a)
        .list_revoked_tokens(pb::ListRevokedTokensRequest {})
        .await;
    assert_eq!(
        listed.map_err(|status| status.code()).err(),
        Some(Code::Unavailable)
    );
    let issued = dev_token(a.addr, "planner", "calculator:use").await;
    assert!(issued.is_ok(), "issuing needs no store: {issued:?}");

    engine.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match oauth(&a).revoke_token(revoke_request(&token)).await {
            Ok(response) => {
                assert!(response.into_inner().newly_revoked);
                break;
            }
            Err(status) if Instant::now() < deadline => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("still failing once the engine is back: {status:?}"),
        }
    }
}

#[tokio::test]
async fn with_postgres_down_revoke_and_introspect_are_unavailable_and_issue_works() {
    let server =
        PostgresServer::start(Durability::Relaxed).expect("PostgreSQL must start for this test");
    with_the_store_down_oauth_fails_closed(Stoppable::Postgres(server)).await;
}

#[tokio::test]
async fn with_redis_down_revoke_and_introspect_are_unavailable_and_issue_works() {
    let server = RedisServer::start().expect("Redis must start for this test");
    with_the_store_down_oauth_fails_closed(Stoppable::Redis(server)).await;
}
