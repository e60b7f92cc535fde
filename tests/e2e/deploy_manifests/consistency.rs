//! The deployment's files against the rest of the repository: what they
//! share stays equal, and what they name exists.

use heist_e2e::repo_root;

use super::{
    command_with_mounted_files, compose, compose::start_order, container::flag, deploy_dir,
    heist_services, mapping::listen_ports, read, yaml,
};

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
        let text = command_with_mounted_files(service);
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
