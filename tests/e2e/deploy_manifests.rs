//! The deployment artefacts run as written, with no Docker engine or
//! cluster: what is checked is that the binaries, flags, environment and
//! config files the artefacts give them work together.
//!
//! - deploy/compose.yaml: its containers started as processes with exactly
//!   its commands, environments (the Dockerfile's `ENV` under the file's
//!   `environment`), mounted files and health checks, in its `depends_on`
//!   order; then the orchestrator job runs its session through them.
//! - deploy/k8s/overlays/tls, rendered by `kubectl kustomize` with
//!   development Secrets: each Deployment's and the Job's container with its
//!   command, args, env (values and Secret keys), ConfigMap and Secret
//!   files, and its readiness probe as the health check.
//!
//! Both over mutual TLS on a private PostgreSQL and Redis, exporting spans to
//! an OTLP receiver in the test where Jaeger would be, with host names,
//! ports and paths mapped onto this machine as `mapping` documents. The
//! files the deployment shares with the rest of the repository are checked
//! to stay equal.

mod compose;
mod compose_run;
mod consistency;
mod container;
mod evidence;
mod k8s;
mod mapping;

use std::path::{Path, PathBuf};

use heist_e2e::{processes::free_addr, repo_root};
use heist_engines::{PostgresServer, RedisServer};
use tonic_health::pb::health_check_response::ServingStatus;

use compose::{Compose, Service, image_env, start_order};
use compose_run::Deployment;
use container::{Container, flag};
use evidence::{ORCHESTRATOR_IDENTITY, assert_scraped, assert_session_in_audit, assert_traced};
use mapping::Mapping;

use crate::otlp_collector::Collector;

/// The image every heist container runs.
const IMAGE: &str = "heist:dev";

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn compose() -> Compose {
    serde_norway::from_str(&read(&deploy_dir().join("compose.yaml"))).unwrap()
}

fn yaml(path: &Path) -> serde_norway::Value {
    serde_norway::from_str(&read(path)).unwrap()
}

/// The heist services of the compose file (those running the heist image).
fn heist_services(compose: &Compose) -> impl Iterator<Item = (&String, &Service)> {
    compose
        .services
        .iter()
        .filter(|(_, service)| service.image == IMAGE)
}

/// A compose service's command and the files it bind-mounts, as one text:
/// everywhere it names an address.
fn command_with_mounted_files(service: &Service) -> String {
    let mut text = service.command.join(" ");
    for mount in service
        .volumes
        .iter()
        .map(|entry| compose::Mount::parse(entry))
    {
        if mount.is_bind() {
            text.push(' ');
            text.push_str(&read(&deploy_dir().join(&mount.source)));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_files_containers_run_a_session_over_mutual_tls_on_postgres_and_redis() {
    let postgres = PostgresServer::shared().expect("the private PostgreSQL must start");
    let postgres_url = postgres.fresh_database().unwrap();
    let redis = RedisServer::start().expect("the private Redis must start");
    let collector = Collector::start().await;
    let deployment = Deployment::new(&postgres_url, &redis, collector.addr());

    let mut running = Vec::new();
    let mut session_output = None;
    for name in start_order(&deployment.compose) {
        let service = &deployment.compose.services[&name];
        if service.image != IMAGE {
            continue; // an engine: the test's own, or (Jaeger, Prometheus) not run here
        }
        let container = deployment.container(&name);
        if !service.is_job() {
            running.push(container.serve().await);
            continue;
        }
        let output = container.run_job();
        assert!(
            output.status.success(),
            "the {name} job failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if name == "orchestrator" {
            let turns: i64 = flag(&container.args, "turns").unwrap().parse().unwrap();
            session_output = Some((String::from_utf8_lossy(&output.stdout).into_owned(), turns));
        }
    }
    assert_eq!(running.len(), 4, "oauth, tools, memory and audit serve");
    let (stdout, turns) = session_output.expect("the orchestrator job ran");
    let session_id =
        assert_session_in_audit(&postgres_url, &stdout, turns, Some(ORCHESTRATOR_IDENTITY)).await;
    assert_scraped(&deployment.mapping, turns).await;
    assert_traced(&collector, &session_id, running.iter_mut()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_kubernetes_tls_overlays_workloads_run_a_session_over_mutual_tls() {
    run_rendered("overlays/tls", Some(ORCHESTRATOR_IDENTITY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_kubernetes_bases_workloads_run_a_session_in_plaintext() {
    run_rendered("base", None).await;
}

/// Renders `variant` of deploy/k8s, runs its Deployments and then its Job,
/// and checks the session in Audit (`written_via`: the TLS identity the
/// orchestrator's writes must carry, if any) and in the traces.
async fn run_rendered(variant: &str, written_via: Option<&str>) {
    let postgres = PostgresServer::shared().expect("the private PostgreSQL must start");
    let postgres_url = postgres.fresh_database().unwrap();
    let redis = RedisServer::start().expect("the private Redis must start");
    let root = tempfile::tempdir().unwrap();
    let rendered = k8s::Rendered::render(&repo_root(), root.path(), variant);
    let workloads = rendered.workloads();
    let mut mapping = Mapping::default();
    for workload in &workloads {
        for port in rendered.listen_ports(workload) {
            mapping.insert(workload.name, port, free_addr());
        }
    }
    mapping.urls = rendered.engine_urls(&postgres_url, &redis.url());
    assert_eq!(
        mapping.urls.len(),
        2,
        "a PostgreSQL and a Redis URL: {:?}",
        mapping.urls
    );
    let collector = Collector::start().await;
    mapping.insert("jaeger", 4317, collector.addr());
    let image_env = image_env(&read(&repo_root().join("Dockerfile")));

    // Every Deployment at once (as a cluster starts them), then each must
    // pass its readiness probe; then the Job.
    let containers: Vec<(&str, Container)> = workloads
        .iter()
        .map(|workload| {
            let container = rendered.container(workload, &mapping, &image_env, root.path());
            (workload.kind, container)
        })
        .collect();
    let mut running = Vec::new();
    for (kind, container) in &containers {
        if *kind == "Deployment" {
            running.push((container, container.start()));
        }
    }
    for (container, process) in &mut running {
        container.wait_serving(process).await;
    }
    assert_eq!(running.len(), 4, "oauth, tools, memory and audit serve");
    let (_, job) = containers
        .iter()
        .find(|(kind, _)| *kind == "Job")
        .expect("the orchestrator Job");
    let output = job.run_job();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the orchestrator Job failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let turns: i64 = flag(&job.args, "turns").unwrap().parse().unwrap();
    let session_id = assert_session_in_audit(&postgres_url, &stdout, turns, written_via).await;
    assert_traced(
        &collector,
        &session_id,
        running.iter_mut().map(|(_, process)| process),
    )
    .await;
}

#[tokio::test]
async fn heist_probe_exits_1_naming_why_when_nothing_serves_or_the_service_is_not_serving() {
    let probe = |addr: &str| {
        std::process::Command::new(heist_e2e::binary("heist-probe"))
            .arg(addr)
            .output()
            .unwrap()
    };
    let nothing = free_addr().to_string();
    let output = probe(&nothing);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to {nothing}")),
        "{stderr}"
    );

    // Memory without OAuth's keys is NOT_SERVING on its health port.
    let dir = tempfile::tempdir().unwrap();
    let health = free_addr();
    let _memory = heist_e2e::ServiceProcess::start(
        &heist_e2e::binary("heist-memory"),
        &[
            "--health-listen",
            &health.to_string(),
            "--oauth-url",
            &format!("http://{}", free_addr()),
        ],
        "127.0.0.1:0",
        dir.path(),
    )
    .unwrap();
    let not_serving = heist_e2e::health_within(health, ServingStatus::NotServing).await;
    assert_eq!(not_serving, ServingStatus::NotServing);
    let output = probe(&health.to_string());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("answers NOT_SERVING"), "{stderr}");
}
