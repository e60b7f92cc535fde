//! deploy/compose.yaml as the test reads it: the keys that decide what a
//! container runs (command, environment, volumes, health check,
//! dependencies, restart policy); the others (build, ports) are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The compose file.
#[derive(Debug, Deserialize)]
pub(super) struct Compose {
    /// Its services, by name (also their host names on the compose network).
    pub(super) services: BTreeMap<String, Service>,
    /// Its named volumes.
    #[serde(default)]
    pub(super) volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

/// One compose service.
#[derive(Debug, Deserialize)]
pub(super) struct Service {
    /// The image it runs.
    pub(super) image: String,
    /// The command (exec form); the image's binary is its first element.
    #[serde(default)]
    pub(super) command: Vec<String>,
    /// Its environment (map form).
    #[serde(default)]
    pub(super) environment: BTreeMap<String, String>,
    /// `SOURCE:TARGET[:ro]`: a named volume or a path relative to the file.
    #[serde(default)]
    pub(super) volumes: Vec<String>,
    /// Its health check.
    pub(super) healthcheck: Option<Healthcheck>,
    /// What must be started, healthy or done before it.
    #[serde(default)]
    pub(super) depends_on: BTreeMap<String, Dependency>,
    /// `"no"` for a one-shot job.
    pub(super) restart: Option<String>,
}

impl Service {
    /// Whether it runs once and exits (a job), rather than serving.
    pub(super) fn is_job(&self) -> bool {
        self.restart.as_deref() == Some("no")
    }
}

/// A health check.
#[derive(Debug, Deserialize)]
pub(super) struct Healthcheck {
    /// `["CMD", program, args...]`.
    pub(super) test: Vec<String>,
}

/// A `depends_on` entry (long form).
#[derive(Debug, Deserialize)]
pub(super) struct Dependency {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub(super) condition: String,
}

/// One volume entry, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// A named volume's name, or a path relative to the compose file.
    pub(super) source: String,
    /// Where it appears in the container.
    pub(super) target: String,
}

impl Mount {
    /// `SOURCE:TARGET[:MODE]`.
    pub(super) fn parse(entry: &str) -> Self {
        let mut parts = entry.split(':');
        let source = parts.next().unwrap_or_default().to_owned();
        let target = parts
            .next()
            .unwrap_or_else(|| panic!("volume {entry:?} has no target"))
            .to_owned();
        Self { source, target }
    }

    /// Whether the source is a file or directory beside the compose file
    /// (a bind mount), not a named volume.
    pub(super) fn is_bind(&self) -> bool {
        self.source.starts_with("./") || self.source.starts_with("../")
    }
}

/// The services in an order that satisfies every `depends_on`.
pub(super) fn start_order(compose: &Compose) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < compose.services.len() {
        let before = order.len();
        for (name, service) in &compose.services {
            if !order.contains(name) && service.depends_on.keys().all(|dep| order.contains(dep)) {
                order.push(name.clone());
            }
        }
        assert!(
            order.len() > before,
            "depends_on has a cycle or names an unknown service"
        );
    }
    order
}

/// The environment a Dockerfile's last stage sets (`ENV K=V \` lines).
pub(super) fn image_env(dockerfile: &str) -> Vec<(String, String)> {
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map_or(dockerfile, |(_, stage)| stage);
    let mut env = Vec::new();
    let mut in_env = false;
    for line in last_stage.lines() {
        let line = line.trim();
        let rest = if let Some(rest) = line.strip_prefix("ENV ") {
            rest
        } else if in_env {
            line
        } else {
            continue;
        };
        in_env = rest.ends_with('\\');
        let pair = rest.trim_end_matches('\\').trim();
        if let Some((key, value)) = pair.split_once('=') {
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    env
}
