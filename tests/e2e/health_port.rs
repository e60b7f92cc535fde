//! The health-only port (`--health-listen`), for Kubernetes' native gRPC
//! probe: every binary answers `grpc.health.v1.Health` Check and Watch on it
//! in plaintext (grpcurl too), and nothing else (its own RPCs and reflection
//! are UNIMPLEMENTED); it says what the main port says, NOT_SERVING while a
//! dependency is down and during the drain, and stops with the server; bad
//! `--health-listen` values stop the binary with one clear line.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use heist_e2e::{
    ServiceProcess, binary, channel_to, health_status, health_within, processes::free_addr,
    wait_until_serving,
};
use heist_engines::RedisServer;
use heist_proto::v1::{
    GetPublicKeysRequest, GetStatsRequest, ListSessionsRequest, ListToolsRequest,
    audit_service_client::AuditServiceClient, memory_service_client::MemoryServiceClient,
    o_auth_service_client::OAuthServiceClient, tool_service_client::ToolServiceClient,
};
use tempfile::TempDir;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};

use crate::service_logs::run_bounded;

/// A binary started with a health port on a free port of 127.0.0.1.
struct Probed {
    process: ServiceProcess,
    health: SocketAddr,
}

/// Starts `name` with `args` plus `--health-listen 127.0.0.1:0` and waits
/// until the health port is bound (its address file written).
fn start_probed(name: &str, args: &[&str], dir: &Path) -> Probed {
    let health_file = dir.join(format!("{name}.health"));
    let _ = std::fs::remove_file(&health_file);
    let health_file_arg = health_file.to_string_lossy().into_owned();
    let mut all = args.to_vec();
    all.extend(["--health-listen", "127.0.0.1:0"]);
    all.extend(["--health-addr-file", &health_file_arg]);
    if !args.contains(&"--grace-period") {
        all.extend(["--grace-period", "1s"]);
    }
    let mut process = ServiceProcess::start(&binary(name), &all, "127.0.0.1:0", dir).unwrap();
    let health = process.wait_for_addr_file(&health_file);
    Probed { process, health }
}

/// The four binaries, each with a health port, OAuth first (the others
/// fetch its keys to be SERVING).
fn start_every_binary(dir: &Path) -> Vec<(&'static str, Probed)> {
    let oauth = start_probed("heist-oauth", &[], dir);
    let oauth_url = format!("http://{}", oauth.process.addr);
    let db = dir.join("audit.db").to_string_lossy().into_owned();
    let tools = start_probed(
        "heist-tools",
        &["--tools", "calculator", "--oauth-url", &oauth_url],
        dir,
    );
    let memory = start_probed("heist-memory", &["--oauth-url", &oauth_url], dir);
    let audit = start_probed(
        "heist-audit",
        &["--db", &db, "--oauth-url", &oauth_url],
        dir,
    );
    vec![
        ("heist.v1.OAuthService", oauth),
        ("heist.v1.ToolService", tools),
        ("heist.v1.MemoryService", memory),
        ("heist.v1.AuditService", audit),
    ]
}

/// The code of a business RPC of `service` at `addr` (no token).
async fn business_call(service: &str, addr: SocketAddr) -> Code {
    let channel = channel_to(addr);
    let outcome = match service {
        "heist.v1.OAuthService" => OAuthServiceClient::new(channel)
            .get_public_keys(GetPublicKeysRequest::default())
            .await
            .map(drop),
        "heist.v1.ToolService" => ToolServiceClient::new(channel)
            .list_tools(ListToolsRequest::default())
            .await
            .map(drop),
        "heist.v1.MemoryService" => MemoryServiceClient::new(channel)
            .get_stats(GetStatsRequest::default())
            .await
            .map(drop),
        _ => AuditServiceClient::new(channel)
            .list_sessions(ListSessionsRequest::default())
            .await
            .map(drop),
    };
    outcome.err().map_or(Code::Ok, |status| status.code())
}

/// The code of a reflection `list_services` at `addr`.
async fn reflection_call(addr: SocketAddr) -> Code {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(channel_to(addr));
    match client
        .server_reflection_info(tokio_stream::once(request))
        .await
    {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().next().await {
            Some(Err(status)) => status.code(),
            _ => Code::Ok,
        },
    }
}

/// A Watch of the whole server's health at `addr`.
async fn watch(addr: SocketAddr) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    HealthClient::new(channel_to(addr))
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next status a Watch sends (within 10 s).
async fn next_status(
    stream: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a health update within 10 s")
        .expect("the Watch stream is open")
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_answers_check_and_watch_on_its_health_port_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let binaries = start_every_binary(dir.path());
    for (service, probed) in &binaries {
        wait_until_serving(probed.health, "").await.unwrap();
        assert_eq!(
            health_status(probed.health, service).await.unwrap(),
            ServingStatus::Serving,
            "{service}: Check by the service's name"
        );
        assert_eq!(
            health_status(probed.process.addr, "").await.unwrap(),
            ServingStatus::Serving,
            "{service}: the main port says the same"
        );
        assert_eq!(
            next_status(&mut watch(probed.health).await).await,
            ServingStatus::Serving,
            "{service}: Watch"
        );

        assert_eq!(
            business_call(service, probed.health).await,
            Code::Unimplemented,
            "{service}: its own RPCs are not on the health port"
        );
        assert_ne!(
            business_call(service, probed.process.addr).await,
            Code::Unimplemented,
            "{service}: they are on the main port"
        );
        assert_eq!(
            reflection_call(probed.health).await,
            Code::Unimplemented,
            "{service}: no reflection on the health port"
        );
        assert_eq!(
            reflection_call(probed.process.addr).await,
            Code::Ok,
            "{service}: reflection on the main port"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_checks_health_on_the_health_port_without_reflection() {
    let dir = TempDir::new().unwrap();
    let tools = start_probed(
        "heist-tools",
        &["--tools", "calculator", "--oauth-url", "http://127.0.0.1:9"],
        dir.path(),
    );
    // No OAuth: Tools is up but NOT_SERVING, which grpcurl must show too.
    assert_eq!(
        health_within(tools.health, ServingStatus::NotServing).await,
        ServingStatus::NotServing
    );
    let protoset = dir.path().join("health.protoset");
    std::fs::write(&protoset, tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap();
    let output = Command::new("grpcurl")
        .arg("-plaintext")
        .arg("-protoset")
        .arg(&protoset)
        .arg(tools.health.to_string())
        .arg("grpc.health.v1.Health/Check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""status": "NOT_SERVING""#), "{stdout}");

    let listed = Command::new("grpcurl")
        .args(["-plaintext", &tools.health.to_string(), "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(!listed.status.success());
    assert!(
        stderr.contains("does not support the reflection API"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_follows_redis_going_away_and_the_drain_then_closes() {
    let mut redis = RedisServer::start().expect("the private Redis must start");
    let dir = TempDir::new().unwrap();
    let oauth = start_probed("heist-oauth", &[], dir.path());
    let oauth_url = format!("http://{}", oauth.process.addr);
    let store = redis.url();
    let mut memory = start_probed(
        "heist-memory",
        &[
            "--oauth-url",
            &oauth_url,
            "--store",
            &store,
            "--grace-period",
            "3s",
        ],
        dir.path(),
    );
    wait_until_serving(memory.health, "").await.unwrap();
    let mut updates = watch(memory.health).await;
    assert_eq!(next_status(&mut updates).await, ServingStatus::Serving);

    redis.stop();
    assert_eq!(next_status(&mut updates).await, ServingStatus::NotServing);
    assert_eq!(
        health_status(memory.health, "").await.unwrap(),
        ServingStatus::NotServing,
        "Check says it too"
    );
    assert_eq!(
        health_status(memory.process.addr, "").await.unwrap(),
        ServingStatus::NotServing,
        "as the main port does"
    );

    redis.start_again().unwrap();
    assert_eq!(next_status(&mut updates).await, ServingStatus::Serving);

    // SIGTERM, with a Watch open on the main port that holds its drain for
    // the grace period: meanwhile the health port says NOT_SERVING, on its
    // open Watch and to a new connection; then it closes with the server,
    // within that one grace period (its own open Watch is cut).
    let _holds_the_drain = watch(memory.process.addr).await;
    let started = Instant::now();
    let health = memory.health;
    let exit = tokio::task::spawn_blocking(move || memory.process.terminate().unwrap());
    assert_eq!(next_status(&mut updates).await, ServingStatus::NotServing);
    assert_eq!(
        health_status(health, "").await.unwrap(),
        ServingStatus::NotServing,
        "a probe during the drain"
    );
    let status = exit.await.unwrap();
    assert!(status.success(), "{status}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "the drain took one grace period: {took:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(health).await.is_err(),
        "the health port is closed"
    );
}

#[test]
fn bad_health_listen_values_stop_the_binary_with_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let main = free_addr().to_string();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases = [
        (
            main.clone(),
            format!("--health-listen {main} is the main listening address ({main})"),
        ),
        (
            taken.clone(),
            format!("cannot listen for health on {taken}: "),
        ),
        (
            "8081".to_owned(),
            "invalid value '8081' for '--health-listen <ADDR>'".to_owned(),
        ),
    ];
    for (health, expected) in cases {
        let output = run_bounded(
            Command::new(binary("heist-tools"))
                .args(["--tools", "calculator", "--log", "off"])
                .args(["--listen", &main, "--health-listen", &health])
                .args(["--oauth-url", "http://127.0.0.1:9"])
                .current_dir(dir.path()),
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!output.status.success(), "{health}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{health}: {stderr}");
        assert!(first.contains(&expected), "{health}: {stderr}");
        let errors = stderr.lines().filter(|line| line.contains("error")).count();
        assert_eq!(errors, 1, "{health}: one error line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_keeps_the_main_ports_message_size_limit() {
    let dir = TempDir::new().unwrap();
    let tools = start_probed(
        "heist-tools",
        &[
            "--tools",
            "calculator",
            "--oauth-url",
            "http://127.0.0.1:9",
            "--max-message-size",
            "1KiB",
        ],
        dir.path(),
    );
    for addr in [tools.health, tools.process.addr] {
        let fits = health_status(addr, &"x".repeat(512)).await.unwrap_err();
        assert_eq!(fits.code(), Code::NotFound, "{addr}: {fits:?}");
        let over = health_status(addr, &"x".repeat(2048)).await.unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted, "{addr}: {over:?}");
        assert!(over.message().contains("limit of 1024 bytes"), "{over:?}");
    }
}
