//! The service binaries' logs and start-up, for real: each binary runs as a
//! process with stdout and stderr in a file, as `scripts/start_services.sh`
//! starts it.
//!
//! - A caller's value cannot forge a log line, write a terminal escape
//!   sequence, or grow the log by more than a bounded amount (issue 11, item 2).
//! - A log written to a file has no colour; `--log-format json` writes one
//!   JSON object a line carrying `session.id` (issue 12, item 5).
//! - No binary names the directory it was built in; a missing documents
//!   directory stops `heist-tools` with one readable line (issue 11, item 9).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
#![allow(clippy::needless_update)] // requests may gain fields: `..Default::default()` keeps this file compiling

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, binary, channel_to, dev_token, repo_root, wait_until_serving};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CreateSessionRequest, GetSessionRequest, IssueTokenRequest,
    audit_service_client::AuditServiceClient, o_auth_service_client::OAuthServiceClient,
};
use tempfile::TempDir;
use tonic::{Code, Request};

/// The escape byte that starts every ANSI colour code and terminal command.
const ESC: u8 = 0x1b;

/// A forged log line, as OAuth would write one for an admin token.
const FORGED: &str = "1999-01-01T09:00:00.000000Z  INFO issue_token{client.id=planner}: \
                      heist_oauth::service: token issued jti=forged scope=oauth:admin";

/// How much one refused call with a 1 MiB value may grow a log, at most.
const BOUNDED_GROWTH: u64 = 8 * 1024;

fn log_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Asserts the log holds no escape byte and no line that begins like `FORGED`.
fn assert_clean(log: &[u8], what: &str) {
    let text = String::from_utf8_lossy(log);
    assert!(
        !log.contains(&ESC),
        "{what}: raw ESC byte in the log:\n{text:.2000}"
    );
    assert!(
        !text.lines().any(|line| line.starts_with("1999-01-01")),
        "{what}: a forged line:\n{text:.2000}"
    );
}

async fn start_oauth(dir: &Path, log: &[&str]) -> ServiceProcess {
    let mut args = vec![
        "--key-file",
        "oauth.key",
        "--revocations-file",
        "revoked.log",
    ];
    args.extend_from_slice(log);
    let oauth = ServiceProcess::start(&binary("heist-oauth"), &args, "127.0.0.1:0", dir).unwrap();
    wait_until_serving(oauth.addr, "").await.unwrap();
    oauth
}

fn issue(client_id: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_secret: "planner-dev-secret".into(),
        scope: "calculator:use".into(),
        ..IssueTokenRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_id_forges_no_oauth_log_line_and_grows_the_log_boundedly() {
    let dir = TempDir::new().unwrap();
    let mut oauth = start_oauth(dir.path(), &["--log", "info"]).await;
    let mut client = OAuthServiceClient::new(channel_to(oauth.addr));
    dev_token(oauth.addr, "planner", "calculator:use")
        .await
        .unwrap();

    for client_id in [
        format!("planner\n{FORGED}"),
        format!("planner\r{FORGED}"),
        "planner\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}[31m".to_owned(),
        format!("planner\u{2028}{FORGED}"),
    ] {
        let status = client.issue_token(issue(&client_id)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{client_id:?}");
    }
    // 12,000 bytes: the most an IssueToken request (16 KiB at most) can
    // carry in a client_id; a 1 MiB one is refused before it is read.
    let before = log_len(&oauth.log);
    let status = client
        .issue_token(issue(&"ç".repeat(6000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .issue_token(issue(&"a".repeat(1 << 20)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let growth = log_len(&oauth.log) - before;
    oauth.terminate().unwrap();

    let log = log_bytes(&oauth.log);
    assert_clean(&log, "oauth");
    let text = String::from_utf8(log).unwrap();
    assert_eq!(
        text.matches("token issued").count(),
        1,
        "only the real token is logged as issued:\n{text}"
    );
    assert_eq!(text.matches("token refused").count(), 5, "{text}");
    assert!(text.contains(r"client.id=planner\n1999-01-01"), "{text}");
    assert!(
        growth <= BOUNDED_GROWTH,
        "a 12,000-byte and a 1 MiB client_id grew the log by {growth} bytes"
    );
    assert!(text.contains("…(12000 bytes)"), "{text}");
}

/// Starts OAuth and Audit (Audit's log as `log` asks), and a client of Audit.
async fn oauth_and_audit(
    dir: &Path,
    audit_log: &[&str],
) -> (
    ServiceProcess,
    ServiceProcess,
    AuditServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            BearerInterceptor,
        >,
    >,
) {
    let oauth = start_oauth(dir, &["--log", "warn"]).await;
    let oauth_url = format!("http://{}", oauth.addr);
    let mut args = vec!["--db", "audit.db", "--oauth-url", &oauth_url];
    args.extend_from_slice(audit_log);
    let audit = ServiceProcess::start(&binary("heist-audit"), &args, "127.0.0.1:0", dir).unwrap();
    wait_until_serving(audit.addr, "heist.v1.AuditService")
        .await
        .unwrap();
    let token = dev_token(oauth.addr, "orchestrator", "audit:read audit:write")
        .await
        .unwrap();
    let client = AuditServiceClient::with_interceptor(
        channel_to(audit.addr),
        BearerInterceptor::new(&token),
    );
    (oauth, audit, client)
}

/// A request carrying `session_id` in its W3C baggage, as the orchestrator sends it.
fn in_session<T>(message: T, baggage_session_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "baggage",
        format!("session.id={baggage_session_id}").parse().unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_session_id_forges_no_audit_log_line() {
    let dir = TempDir::new().unwrap();
    let (_oauth, mut audit, mut client) =
        oauth_and_audit(dir.path(), &["--log", "info,heist_plumbing::server=debug"]).await;
    // Percent-encoded in the header, decoded by the baggage propagator:
    // a newline, a forged line, a clear-screen sequence.
    let hostile = "x%0A1999-01-01T09%3A00%3A00.000000Z%20INFO%20forged%1B%5B2J";
    for session_id in ["x\n1999-01-01T09:00:00Z INFO forged", "\u{1b}[2J"] {
        let status = client
            .get_session(in_session(
                GetSessionRequest {
                    session_id: session_id.into(),
                    ..GetSessionRequest::default()
                },
                hostile,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    let before = log_len(&audit.log);
    let long = "y".repeat(4000);
    let status = client
        .get_session(in_session(GetSessionRequest::default(), &long))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let growth = log_len(&audit.log) - before;
    audit.terminate().unwrap();

    let log = log_bytes(&audit.log);
    assert_clean(&log, "audit");
    let text = String::from_utf8(log).unwrap();
    assert_eq!(text.matches("call served").count(), 3, "{text}");
    assert!(text.contains(r"session.id=x\n1999-01-01"), "{text}");
    assert!(
        growth < 1024,
        "a 4,000-byte baggage value grew the log by {growth} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_the_session_id() {
    let dir = TempDir::new().unwrap();
    let (_oauth, mut audit, mut client) = oauth_and_audit(
        dir.path(),
        &[
            "--log-format",
            "json",
            "--log",
            "info,heist_plumbing::server=debug",
        ],
    )
    .await;
    client
        .create_session(in_session(
            CreateSessionRequest {
                session_id: "json-session-1".into(),
                ..CreateSessionRequest::default()
            },
            "json-session-1",
        ))
        .await
        .unwrap();
    audit.terminate().unwrap();

    let text = String::from_utf8(log_bytes(&audit.log)).unwrap();
    assert!(!text.as_bytes().contains(&ESC), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "audit listening"),
        "{text}"
    );
    let served = lines
        .iter()
        .find(|line| line["fields"]["message"] == "call served")
        .unwrap_or_else(|| panic!("no call served line: {text}"));
    assert_eq!(served["span"]["session.id"], "json-session-1", "{served}");
    assert_eq!(served["span"]["rpc.method"], "CreateSession", "{served}");
    assert!(
        served["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|span| span["session.id"] == "json-session-1"),
        "{served}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_log_written_to_a_file_has_no_colour() {
    let dir = TempDir::new().unwrap();
    let mut oauth = start_oauth(dir.path(), &["--log", "info"]).await;
    dev_token(oauth.addr, "planner", "calculator:use")
        .await
        .unwrap();
    oauth.terminate().unwrap();
    let log = log_bytes(&oauth.log);
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("oauth listening"), "{text}");
    assert!(text.contains("token issued"), "{text}");
    assert!(!log.contains(&ESC), "colour codes in a file:\n{text}");
}

/// Runs `command` to its end, killing it after 60 s (it should take well under one).
pub(crate) fn run_bounded(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn no_binary_names_the_directory_it_was_built_in() {
    let checkout = repo_root();
    let checkout = checkout.to_str().unwrap();
    for name in [
        "heist-oauth",
        "heist-tools",
        "heist-memory",
        "heist-audit",
        "orchestrator",
    ] {
        let output = run_bounded(Command::new(binary(name)).arg("--help"));
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{name} --help");
        assert!(
            !help.contains(checkout),
            "{name} --help names {checkout}:\n{help}"
        );
        assert!(help.contains("--log-format"), "{name} --help:\n{help}");
    }
    let output = run_bounded(Command::new(binary("heist-tools")).arg("--help"));
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("[default: services/tools/documents]"),
        "{help}"
    );
    assert!(help.contains("HEIST_DOCUMENTS_DIR"), "{help}");
}

#[test]
fn a_missing_documents_directory_stops_heist_tools_with_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let absent = dir.path().join("absent");
    let tools = |env: Option<&Path>| {
        let mut command = Command::new(binary("heist-tools"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--oauth-url",
                "http://127.0.0.1:9",
            ])
            .args(["--log", "warn"])
            .current_dir(dir.path())
            .env_remove("HEIST_DOCUMENTS_DIR");
        if let Some(path) = env {
            command.env("HEIST_DOCUMENTS_DIR", path);
        }
        run_bounded(&mut command)
    };
    for (output, named) in [
        (
            tools(None),
            "documents directory services/tools/documents (relative to",
        ),
        (
            tools(Some(&absent)),
            &*format!("documents directory {}:", absent.display()),
        ),
    ] {
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!output.status.success(), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|line| !line.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(named), "{stderr}");
        assert!(
            lines[0].contains("--documents-dir or HEIST_DOCUMENTS_DIR"),
            "{stderr}"
        );
    }
    // Tools that need no documents start without them.
    let mut calculator = ServiceProcess::start(
        &binary("heist-tools"),
        &[
            "--tools",
            "calculator",
            "--oauth-url",
            "http://127.0.0.1:9",
            "--log",
            "warn",
        ],
        "127.0.0.1:0",
        dir.path(),
    )
    .unwrap();
    assert!(calculator.try_wait().unwrap().is_none());
    calculator.terminate().unwrap();
}

#[test]
fn the_orchestrator_writes_json_log_lines_too() {
    let dir = TempDir::new().unwrap();
    // Every service at a closed port: health fails, and logs why.
    let closed = "http://127.0.0.1:9";
    let config = dir.path().join("heist.yaml");
    std::fs::write(
        &config,
        heist_e2e::mesh::config_yaml(closed, closed, closed, closed),
    )
    .unwrap();
    let output = run_bounded(
        Command::new(binary("orchestrator"))
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "--log", "debug", "health"])
            .current_dir(dir.path()),
    );
    assert!(!output.status.success(), "health with every service down");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "no log line at debug");
    assert!(
        lines
            .iter()
            .all(|line| line["level"].is_string() && line["fields"].is_object()),
        "{stderr}"
    );
    assert!(!stderr.as_bytes().contains(&ESC), "{stderr}");
}
