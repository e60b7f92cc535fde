//! What a deployment's run must leave behind: its session in Audit's
//! PostgreSQL, its spans at the collector, its metrics in Prometheus.

use heist_e2e::ServiceProcess;
use heist_engines::{PrometheusServer, ScrapeTarget};

use super::{deploy_dir, mapping::Mapping, yaml};
use crate::otlp_collector::Collector;

/// The identity the orchestrator's development certificate proves.
pub(super) const ORCHESTRATOR_IDENTITY: &str = "spiffe://heist.local/orchestrator";

/// The orchestrator job's session, from its output, completed and is in
/// Audit's PostgreSQL: every one of its `turns`, each written through the
/// TLS identity `written_via` (None: not over mutual TLS). Returns its ID.
pub(super) async fn assert_session_in_audit(
    postgres_url: &str,
    stdout: &str,
    turns: i64,
    written_via: Option<&str>,
) -> String {
    assert!(
        stdout.contains("completed"),
        "the session completed:\n{stdout}"
    );
    let session_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .unwrap_or_else(|| panic!("no session ID in:\n{stdout}"))
        .trim()
        .to_owned();

    let (client, connection) = tokio_postgres::connect(postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT COUNT(*), MIN(written_via), MAX(written_via) FROM messages \
             WHERE session_id = $1 AND NOT is_error AND turn_id > 0",
            &[&session_id],
        )
        .await
        .unwrap();
    let (count, via_min, via_max): (i64, Option<String>, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(count, turns, "every turn of {session_id} is in Audit");
    assert_eq!(via_min.as_deref(), written_via);
    assert_eq!(via_min, via_max);
    let status: String = client
        .query_one(
            "SELECT status FROM sessions WHERE session_id = $1",
            &[&session_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "completed");
    session_id
}

/// Once the services have stopped (SIGTERM: each flushes its spans), the
/// collector standing in for Jaeger holds spans of `session_id` from the
/// orchestrator and from every service: the OTLP endpoint the deployment
/// gives each process is where its spans go.
pub(super) async fn assert_traced<'a>(
    collector: &Collector,
    session_id: &str,
    services: impl Iterator<Item = &'a mut ServiceProcess>,
) {
    for process in services {
        process.terminate().unwrap();
    }
    let names = [
        "heist-orchestrator",
        "heist-oauth",
        "heist-tools",
        "heist-memory",
        "heist-audit",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let traced: std::collections::BTreeSet<String> = collector
            .spans()
            .into_iter()
            .filter(|span| span.attr("session.id").as_deref() == Some(session_id))
            .map(|span| span.service)
            .collect();
        if names.iter().all(|name| traced.contains(*name)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans of {session_id} came from {traced:?} only, not from all of {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A private Prometheus given deploy/prometheus.yml's jobs and targets
/// (mapped) scrapes every service, and reads Audit's count of the session's
/// turns. (The orchestrator's target serves only while a run lasts.)
pub(super) async fn assert_scraped(mapping: &Mapping, turns: i64) {
    let config = yaml(&deploy_dir().join("prometheus.yml"));
    let targets: Vec<ScrapeTarget> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|job| {
            let name = job["job_name"].as_str().unwrap();
            let addresses: Vec<String> = job["static_configs"][0]["targets"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|target| mapping.addresses(target.as_str().unwrap(), "prometheus"))
                .collect();
            ScrapeTarget::new(name, addresses)
        })
        .collect();
    let prometheus = PrometheusServer::start(&targets).expect("the private Prometheus must start");
    let services_up = r#"sum(up{job=~"oauth|tools|memory|audit"})"#;
    prometheus
        .wait_for(
            services_up,
            |samples| samples.first().is_some_and(|sample| sample.value == 4.0),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|error| panic!("not every service was scraped: {error}"));
    let stored = r#"sum(rpc_server_requests_total{job="audit",method="StoreTurn",code="OK"})"#;
    prometheus
        .wait_for(
            stored,
            |samples| {
                samples
                    .first()
                    .is_some_and(|sample| sample.value == turns as f64)
            },
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|error| {
            panic!("Audit's StoreTurn count is not the session's turns: {error}")
        });
}
