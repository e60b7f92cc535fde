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
mod container;
mod k8s;
mod mapping;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use heist_e2e::{ServiceProcess, processes::free_addr, repo_root};
use heist_engines::{PostgresServer, PrometheusServer, RedisServer, ScrapeTarget};
use tonic_health::pb::health_check_response::ServingStatus;

use compose::{Compose, Mount, Service, image_env, start_order};
use container::{Container, flag};
use mapping::{Mapping, Paths, listen_ports};

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

/// Everything the deployment's containers share on this machine.
struct Deployment {
    compose: Compose,
    mapping: Mapping,
    root: tempfile::TempDir,
    image_env: Vec<(String, String)>,
}

impl Deployment {
    /// The compose file with its addresses mapped onto `postgres` and `redis`.
    fn new(postgres_url: &str, redis: &RedisServer, jaeger: SocketAddr) -> Self {
        let compose = compose();
        let mut mapping = Mapping::default();
        for (name, service) in heist_services(&compose) {
            let mut text = service.command.join(" ");
            for mount in service.volumes.iter().map(|entry| Mount::parse(entry)) {
                if mount.is_bind() {
                    text.push(' ');
                    text.push_str(&read(&deploy_dir().join(&mount.source)));
                }
            }
            for port in listen_ports(&text) {
                mapping.insert(name, port, free_addr());
            }
        }
        let postgres = &compose.services["postgres"].environment;
        let written = format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        );
        mapping.urls.insert(written, postgres_url.to_owned());
        let redis_command = &compose.services["redis"].command;
        let password = redis_command
            .iter()
            .position(|arg| arg == "--requirepass")
            .map(|at| redis_command[at + 1].clone())
            .expect("redis is started with --requirepass");
        mapping
            .urls
            .insert(format!("redis://:{password}@redis:6379/0"), redis.url());
        mapping.insert("jaeger", 4317, jaeger);
        Self {
            compose,
            mapping,
            root: tempfile::tempdir().unwrap(),
            image_env: image_env(&read(&repo_root().join("Dockerfile"))),
        }
    }

    /// Service `name` as a process would run it here: its directories made,
    /// its bind-mounted files copied with their addresses mapped.
    fn container(&self, name: &str) -> Container {
        let service = &self.compose.services[name];
        let dir = self.root.path().join("containers").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Paths::default();
        paths.insert("/var/lib/heist", &dir); // the image's WORKDIR, its own
        paths.insert(
            "/usr/share/heist/documents",
            &repo_root().join("services/tools/documents"),
        );
        for mount in service.volumes.iter().map(|entry| Mount::parse(entry)) {
            let here = if mount.is_bind() {
                let copy = self
                    .root
                    .path()
                    .join("binds")
                    .join(name)
                    .join(mount.source.trim_start_matches("./"));
                std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
                let text = read(&deploy_dir().join(&mount.source));
                std::fs::write(&copy, self.mapping.addresses(&text, name)).unwrap();
                copy
            } else {
                assert!(
                    self.compose.volumes.contains_key(&mount.source),
                    "{name} mounts {:?}, which is not a named volume",
                    mount.source
                );
                let volume = self.root.path().join("volumes").join(&mount.source);
                std::fs::create_dir_all(&volume).unwrap();
                volume
            };
            paths.insert(&mount.target, &here);
        }
        let map = |text: &str| paths.rewrite(&self.mapping.addresses(text, name));
        let mut env: Vec<(String, String)> = self.image_env.clone();
        env.retain(|(key, _)| !service.environment.contains_key(key));
        env.extend(
            service
                .environment
                .iter()
                .map(|(key, value)| (key.clone(), map(value))),
        );
        let health = service.healthcheck.as_ref().map(|check| {
            assert_eq!(
                check.test[0], "CMD",
                "{name}'s health check is an exec form"
            );
            check.test[1..].iter().map(|arg| map(arg)).collect()
        });
        Container {
            name: name.to_owned(),
            args: service.command.iter().map(|arg| map(arg)).collect(),
            env: env
                .into_iter()
                .map(|(key, value)| (key, paths.rewrite(&value)))
                .collect(),
            health,
            dir,
        }
    }
}

/// The identity the orchestrator's development certificate proves.
const ORCHESTRATOR_IDENTITY: &str = "spiffe://heist.local/orchestrator";

/// The orchestrator job's session, from its output, completed and is in
/// Audit's PostgreSQL: every one of its `turns`, each written through the
/// TLS identity `written_via` (None: not over mutual TLS). Returns its ID.
async fn assert_session_in_audit(
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
async fn assert_traced<'a>(
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
    assert_scraped(&deployment, turns).await;
    assert_traced(&collector, &session_id, running.iter_mut()).await;
}

/// A private Prometheus given deploy/prometheus.yml's jobs and targets
/// (mapped) scrapes every service, and reads Audit's count of the session's
/// turns. (The orchestrator's target serves only while a run lasts.)
async fn assert_scraped(deployment: &Deployment, turns: i64) {
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
                .map(|target| {
                    deployment
                        .mapping
                        .addresses(target.as_str().unwrap(), "prometheus")
                })
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
        container.wait_healthy(process).await;
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

#[test]
fn every_dependency_waits_for_something_its_target_can_report() {
    let compose = compose();
    for (name, service) in &compose.services {
        for (target, dependency) in &service.depends_on {
            let target_service = &compose.services[target];
            match dependency.condition.as_str() {
                "service_started" => {}
                "service_healthy" => assert!(
                    target_service.healthcheck.is_some(),
                    "{name} waits for {target} to be healthy, which has no health check"
                ),
                "service_completed_successfully" => assert!(
                    target_service.is_job(),
                    "{name} waits for {target} to complete, which is no job"
                ),
                other => panic!("{name} depends on {target} with an unknown condition {other}"),
            }
        }
    }
    assert_eq!(start_order(&compose).len(), compose.services.len());
}

#[test]
fn the_image_holds_every_binary_and_directory_the_artefacts_use() {
    let dockerfile = read(&repo_root().join("Dockerfile"));
    let copied: Vec<&str> = dockerfile
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("target/release/"))
        .collect();
    let compose = compose();
    let mut used: Vec<&str> = Vec::new();
    for (_, service) in heist_services(&compose) {
        used.push(&service.command[0]);
        if let Some(check) = &service.healthcheck {
            used.push(&check.test[1]);
        }
    }
    // Each file's first object is its workload.
    let k8s = ["oauth", "tools", "memory", "audit", "orchestrator-job"].map(|file| {
        let text = read(&deploy_dir().join(format!("k8s/base/{file}.yaml")));
        let first = text.split("\n---\n").next().unwrap().to_owned();
        serde_norway::from_str::<serde_norway::Value>(&first).unwrap()
    });
    for manifest in &k8s {
        let command = &manifest["spec"]["template"]["spec"]["containers"][0]["command"][0];
        used.push(command.as_str().unwrap());
    }
    used.push("heist-probe"); // the readiness probes, as the tests run them
    for binary in used {
        assert!(
            copied.contains(&binary),
            "the Dockerfile copies {copied:?}, not {binary}"
        );
    }
    assert!(dockerfile.contains("COPY services/tools/documents /usr/share/heist/documents"));
    assert!(dockerfile.contains("USER 10001:10001"));
}

#[test]
fn the_build_stages_toolchain_is_new_enough_for_every_locked_dependency() {
    let dockerfile = read(&repo_root().join("Dockerfile"));
    let image = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("FROM rust:"))
        .expect("a rust build stage");
    // MAJOR.MINOR[.PATCH], a missing part 0.
    let version = |text: &str| -> [u32; 3] {
        let mut parts = text.split('.').map(|part| part.parse().unwrap_or(0));
        [(); 3].map(|()| parts.next().unwrap_or(0))
    };
    let toolchain = version(image.split('-').next().unwrap());
    let metadata = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        metadata.status.success(),
        "{}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    for package in metadata["packages"].as_array().unwrap() {
        if let Some(needed) = package["rust_version"].as_str() {
            assert!(
                version(needed) <= toolchain,
                "{} {} needs Rust {needed}; the Dockerfile builds with rust:{image}",
                package["name"],
                package["version"]
            );
        }
    }
}

#[test]
fn the_deployments_agents_are_the_built_in_configs() {
    let built_in = yaml(&repo_root().join("orchestrator/heist.yaml"));
    let deployed = yaml(&deploy_dir().join("k8s/base/heist.yaml"));
    assert_eq!(deployed["agents"], built_in["agents"]);
    assert_eq!(
        deployed["session"]["turn_order"],
        built_in["session"]["turn_order"]
    );
}

#[test]
fn the_deployments_clients_are_the_shipped_registry() {
    let shipped = yaml(&repo_root().join("services/oauth/clients.yaml"));
    let deployed = yaml(&deploy_dir().join("k8s/base/clients.yaml"));
    assert_eq!(deployed["clients"], shipped["clients"]);
}

#[test]
fn prometheus_scrapes_every_metrics_listen_of_the_compose_file_and_nothing_else() {
    let compose = compose();
    let mut listens: Vec<String> = Vec::new();
    for (name, service) in heist_services(&compose) {
        let mut text = service.command.join(" ");
        for mount in service.volumes.iter().map(|entry| Mount::parse(entry)) {
            if mount.is_bind() {
                text.push(' ');
                text.push_str(&read(&deploy_dir().join(&mount.source)));
            }
        }
        let metrics = flag(&service.command, "metrics-listen")
            .map(str::to_owned)
            .or_else(|| {
                let config = text.split_once("metrics:")?.1;
                let port = listen_ports(config).first().copied()?;
                Some(format!("0.0.0.0:{port}"))
            });
        if let Some(listen) = metrics {
            listens.push(listen.replace("0.0.0.0", name));
        }
    }
    let prometheus = yaml(&deploy_dir().join("prometheus.yml"));
    let mut targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().unwrap().clone())
        .flat_map(|config| config["targets"].as_sequence().unwrap().clone())
        .map(|target| target.as_str().unwrap().to_owned())
        .collect();
    listens.sort();
    targets.sort();
    assert_eq!(
        listens.len(),
        5,
        "four services and the orchestrator: {listens:?}"
    );
    assert_eq!(targets, listens);
}
