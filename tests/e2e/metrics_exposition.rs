//! Each binary's Prometheus metrics over HTTP (`--metrics-listen`): after a
//! few calls, `GET /metrics` answers the classic text format with the
//! service's own metrics beside the RPC ones, and `promtool check metrics`
//! finds no problem in it; a binary started without `--metrics-listen`
//! listens on its main port alone.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    io::Write as _,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
};

use heist_e2e::{ServiceProcess, binary, channel_to, dev_token, wait_until_serving};
use heist_plumbing::{auth::BearerInterceptor, metrics::sample};
use heist_proto::v1::{
    CallToolRequest, CreateSessionRequest, IssueTokenRequest, StoreMemoryRequest,
    StoreMessageRequest, audit_service_client::AuditServiceClient,
    memory_service_client::MemoryServiceClient, o_auth_service_client::OAuthServiceClient,
    tool_service_client::ToolServiceClient,
};
use tempfile::TempDir;

/// A binary started with `--metrics-listen 127.0.0.1:0`, and where its
/// metrics are served.
struct Metered {
    process: ServiceProcess,
    metrics: SocketAddr,
}

fn start_metered(name: &str, args: &[&str], dir: &Path) -> Metered {
    let file = dir.join(format!("{name}.metrics"));
    let file_arg = file.to_string_lossy().into_owned();
    let mut all = args.to_vec();
    all.extend([
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-addr-file",
        &file_arg,
    ]);
    let mut process = ServiceProcess::start(&binary(name), &all, "127.0.0.1:0", dir).unwrap();
    let metrics = process.wait_for_addr_file(&file);
    Metered { process, metrics }
}

/// `GET http://ADDR/metrics` as curl asks it: the classic text format.
async fn scrape(addr: SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.unwrap()
}

/// What `promtool check metrics` says of `text` (fed on stdin): `Ok(())`
/// when it exits 0 and says nothing.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", output.status))
    }
}

/// Checks one scrape: the service's metric names and the RPC ones are
/// there, the samples `expected` read at least their values, and promtool
/// finds nothing wrong.
fn check_scrape(service: &str, text: &str, names: &[&str], expected: &[(&str, f64)]) {
    for name in names.iter().chain(&["rpc_server_requests_total"]) {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{service}: no {name} in\n{text}"
        );
    }
    for (series, at_least) in expected {
        let value = sample(text, series).unwrap_or_else(|| panic!("{service}: no {series}"));
        assert!(value >= *at_least, "{service}: {series} is {value}");
    }
    promtool_check(text).unwrap_or_else(|problem| panic!("{service}: promtool: {problem}\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_serves_its_own_metrics_that_promtool_accepts() {
    let dir = TempDir::new().unwrap();
    let oauth = start_metered("heist-oauth", &[], dir.path());
    let oauth_url = format!("http://{}", oauth.process.addr);
    let db = dir.path().join("audit.db").to_string_lossy().into_owned();
    let tools = start_metered(
        "heist-tools",
        &["--tools", "calculator", "--oauth-url", &oauth_url],
        dir.path(),
    );
    let memory = start_metered("heist-memory", &["--oauth-url", &oauth_url], dir.path());
    let audit = start_metered(
        "heist-audit",
        &["--db", &db, "--oauth-url", &oauth_url],
        dir.path(),
    );
    for server in [&oauth, &tools, &memory, &audit] {
        wait_until_serving(server.process.addr, "").await.unwrap();
    }

    let oauth_addr = oauth.process.addr;
    let planner = dev_token(oauth_addr, "planner", "calculator:use memory:write")
        .await
        .unwrap();
    let orchestrator = dev_token(oauth_addr, "orchestrator", "audit:write agents:act_for_any")
        .await
        .unwrap();
    let refused = OAuthServiceClient::new(channel_to(oauth_addr))
        .issue_token(IssueTokenRequest {
            client_id: "planner".into(),
            client_secret: "wrong".into(),
            scope: "calculator:use".into(),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err());
    ToolServiceClient::with_interceptor(
        channel_to(tools.process.addr),
        BearerInterceptor::new(&planner),
    )
    .call_tool(CallToolRequest {
        tool_name: "calculator".into(),
        arguments: [("expression".to_owned(), "6*7".to_owned())].into(),
        agent_name: "planner".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    MemoryServiceClient::with_interceptor(
        channel_to(memory.process.addr),
        BearerInterceptor::new(&planner),
    )
    .store_memory(StoreMemoryRequest {
        agent_id: "planner".into(),
        session_id: "s1".into(),
        turn_id: 1,
        message: "we go at dawn".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut audit_client = AuditServiceClient::with_interceptor(
        channel_to(audit.process.addr),
        BearerInterceptor::new(&orchestrator),
    );
    audit_client
        .create_session(CreateSessionRequest {
            session_id: "s1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    audit_client
        .store_message(StoreMessageRequest {
            session_id: "s1".into(),
            turn_id: 1,
            agent_name: "planner".into(),
            agent_role: "Strategic Planner".into(),
            message: "we go at dawn".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    check_scrape(
        "oauth",
        &scrape(oauth.metrics).await,
        &[
            "heist_oauth_tokens_issued_total",
            "heist_oauth_tokens_refused_total",
            "heist_oauth_revocations_total",
        ],
        &[
            ("heist_oauth_tokens_issued_total", 2.0),
            (
                "heist_oauth_tokens_refused_total{reason=\"bad_secret\"}",
                1.0,
            ),
        ],
    );
    check_scrape(
        "tools",
        &scrape(tools.metrics).await,
        &[
            "heist_tools_calls_total",
            "heist_tools_database_query_duration_seconds",
        ],
        &[(
            "heist_tools_calls_total{tool=\"calculator\",outcome=\"ok\"}",
            1.0,
        )],
    );
    check_scrape(
        "memory",
        &scrape(memory.metrics).await,
        &[
            "heist_memory_entries",
            "heist_memory_bytes",
            "heist_memory_evictions_total",
        ],
        &[("heist_memory_entries", 1.0), ("heist_memory_bytes", 13.0)],
    );
    check_scrape(
        "audit",
        &scrape(audit.metrics).await,
        &[
            "heist_audit_commits_total",
            "heist_audit_commit_batch_size",
            "heist_audit_commit_duration_seconds",
            "heist_audit_rows_total",
            "heist_audit_watchers",
        ],
        &[
            ("heist_audit_commits_total{store=\"sqlite\"}", 2.0),
            ("heist_audit_rows_total{table=\"sessions\"}", 1.0),
            ("heist_audit_rows_total{table=\"messages\"}", 1.0),
            ("heist_audit_watchers", 0.0),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_without_metrics_listen_listens_on_its_main_port_alone() {
    let dir = TempDir::new().unwrap();
    let start = |name: &str, args: &[&str]| {
        ServiceProcess::start(&binary(name), args, "127.0.0.1:0", dir.path()).unwrap()
    };
    let oauth = start("heist-oauth", &[]);
    let oauth_url = format!("http://{}", oauth.addr);
    let db = dir.path().join("audit.db").to_string_lossy().into_owned();
    let others = [
        start(
            "heist-tools",
            &["--tools", "calculator", "--oauth-url", &oauth_url],
        ),
        start("heist-memory", &["--oauth-url", &oauth_url]),
        start("heist-audit", &["--db", &db, "--oauth-url", &oauth_url]),
    ];
    for process in std::iter::once(&oauth).chain(&others) {
        wait_until_serving(process.addr, "").await.unwrap();
        assert_eq!(
            process.listening_ports(),
            [process.addr.port()],
            "{}",
            process.log.display()
        );
    }

    // The same look finds the metrics port of a binary that has one.
    let metered = start_metered("heist-memory", &["--oauth-url", &oauth_url], dir.path());
    wait_until_serving(metered.process.addr, "").await.unwrap();
    let mut both = vec![metered.process.addr.port(), metered.metrics.port()];
    both.sort_unstable();
    assert_eq!(metered.process.listening_ports(), both);
}
