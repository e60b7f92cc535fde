//! Metrics as an operator sees them: a real Prometheus (Debian's package,
//! a private server on a free port) scrapes every process of a mesh while
//! the orchestrator, a process too, runs sessions; what Prometheus reads back
//! through its query API matches what Audit holds, and `promtool check
//! metrics` finds nothing wrong in any exposition.

use std::{path::Path, process::Command, time::Duration};

use heist_e2e::{
    binary, dev_token_for,
    processes::{MeshOptions, ProcessMesh, free_addr},
};
use heist_engines::{PrometheusServer, ScrapeTarget, promtool_check_metrics};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{StoreMessageRequest, audit_service_client::AuditServiceClient};

const SERVICES: [&str; 4] = ["oauth", "audit", "memory", "tools"];

/// The metrics address a service wrote to its file.
fn metrics_addr(dir: &Path, service: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{service}.metrics")))
        .unwrap_or_else(|error| panic!("{service} wrote no metrics address: {error}"))
}

/// The one value of `promql` (0 when there is no series).
async fn value(prometheus: &PrometheusServer, promql: &str) -> f64 {
    let samples = prometheus.query(promql).await.unwrap();
    samples.first().map_or(0.0, |sample| sample.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_request_error_and_turn_counts_that_match_audit() {
    let files = tempfile::tempdir().unwrap();
    let mut options = MeshOptions::for_tests();
    for service in SERVICES {
        let file = files.path().join(format!("{service}.metrics"));
        let file = file.to_string_lossy().into_owned();
        options = options.args(
            service,
            &[
                "--metrics-listen",
                "127.0.0.1:0",
                "--metrics-addr-file",
                &file,
            ],
        );
    }
    let mut mesh = ProcessMesh::start_with(options).await;
    let orchestrator_metrics = free_addr().to_string();
    let mut targets: Vec<ScrapeTarget> = SERVICES
        .iter()
        .map(|service| ScrapeTarget::new(*service, [metrics_addr(files.path(), service)]))
        .collect();
    targets.push(ScrapeTarget::new(
        "orchestrator",
        [orchestrator_metrics.clone()],
    ));
    let prometheus = PrometheusServer::start(&targets).expect("the private Prometheus must start");

    // Prometheus's first scrapes done (the orchestrator's address still down),
    // then sessions long enough to be scraped several times while they run.
    prometheus
        .wait_for_scrapes(Duration::from_secs(30))
        .await
        .expect("Prometheus scrapes its targets");
    let config = mesh.write_config("metrics.yaml");
    let run = Command::new(binary("orchestrator"))
        .args([
            "--config",
            &config.to_string_lossy(),
            "--metrics-listen",
            &orchestrator_metrics,
        ])
        .args([
            "run",
            "--sessions",
            "8",
            "--turns",
            "150",
            "--seed",
            "5",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scraped_running = prometheus
        .wait_for(
            r#"sum(heist_orchestrator_turns_total{outcome="ok"})"#,
            |samples| samples.first().is_some_and(|sample| sample.value > 0.0),
            Duration::from_secs(60),
        )
        .await;
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "the run failed");
    scraped_running.expect("Prometheus scraped the orchestrator's turns while it ran");

    // What Audit holds.
    let db = rusqlite::Connection::open(mesh.dir.path().join("audit.db")).unwrap();
    let count =
        |sql: &str| -> f64 { db.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap() as f64 };
    let sessions = count("SELECT COUNT(*) FROM sessions");
    let messages = count("SELECT COUNT(*) FROM messages");
    let failed = count("SELECT COUNT(*) FROM messages WHERE is_error");
    assert_eq!((sessions, failed), (8.0, 0.0));

    // Errors Audit refuses, and stores nothing of.
    let audit_addr = mesh.addr("audit");
    let token = dev_token_for(
        mesh.addr("oauth"),
        "orchestrator",
        "audit:write agents:act_for_any",
        &["audit"],
    )
    .await
    .unwrap();
    let mut audit = AuditServiceClient::with_interceptor(
        heist_e2e::channel_to(audit_addr),
        BearerInterceptor::new(&token),
    );
    for _ in 0..3 {
        let refused = audit
            .store_message(StoreMessageRequest {
                session_id: "not a session id".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
    assert_eq!(count("SELECT COUNT(*) FROM messages"), messages);

    // Prometheus's view, once it has scraped the final counts.
    let turns_ok = r#"sum(rpc_server_requests_total{job="audit",method="StoreTurn",code="OK"})"#;
    prometheus
        .wait_for(
            turns_ok,
            |s| s.first().is_some_and(|s| s.value == messages),
            Duration::from_secs(30),
        )
        .await
        .expect("Audit's StoreTurn count as Prometheus reads it is the messages Audit holds");
    let refused = r#"sum(rpc_server_requests_total{job="audit",method="StoreMessage",code="INVALID_ARGUMENT"})"#;
    prometheus
        .wait_for(
            refused,
            |s| s.first().is_some_and(|s| s.value == 3.0),
            Duration::from_secs(30),
        )
        .await
        .expect("the three refused writes");
    let created = r#"sum(rpc_server_requests_total{job="audit",method="CreateSession",code="OK"})"#;
    assert_eq!(value(&prometheus, created).await, sessions);
    // The orchestrator counted the same calls from its side (its series went
    // stale when it exited: read them over the last minutes).
    let made = r#"max(max_over_time(rpc_client_requests_total{job="orchestrator",method="StoreTurn",code="OK"}[5m]))"#;
    let made = value(&prometheus, made).await;
    assert!(made > 0.0 && made <= messages, "{made} of {messages}");
    let up = prometheus.targets_up().await.unwrap();
    for service in SERVICES {
        assert!(
            up.iter().any(|target| target.job == service && target.up),
            "{service}: {up:?}"
        );
    }
    assert!(
        up.iter().any(|target| target.job == "orchestrator"),
        "{up:?}"
    );

    // Every exposition passes promtool.
    for service in SERVICES {
        let text = reqwest::get(format!(
            "http://{}/metrics",
            metrics_addr(files.path(), service)
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(
            text.contains("rpc_server_requests_total"),
            "{service}: {text}"
        );
        if let Err(problems) = promtool_check_metrics(&text) {
            panic!("promtool on {service}'s metrics: {problems}");
        }
    }
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_metrics_listen_serves_none_and_a_bad_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(binary("heist-oauth"))
        .args(["--listen", "127.0.0.1:0", "--key-file"])
        .arg(dir.path().join("key"))
        .args(["--metrics-listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot serve metrics on 127.0.0.1:"),
        "{stderr}"
    );
    let output = Command::new(binary("heist-oauth"))
        .args(["--metrics-listen", "localhost:9464"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics-listen"));
}
