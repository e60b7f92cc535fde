//! The whole mesh as real processes on fixed free ports, so a test can
//! SIGKILL any service and restart it where its clients expect it.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use tempfile::TempDir;

use crate::{ServiceProcess, binary, mesh::config_yaml, wait_until_serving};

/// The services of a [`ProcessMesh`], by name.
pub const SERVICES: [&str; 4] = ["oauth", "audit", "memory", "tools"];

/// Every service of the mesh as a child process.
#[derive(Debug)]
pub struct ProcessMesh {
    /// Where logs, the key and the database live.
    pub dir: TempDir,
    addrs: BTreeMap<&'static str, SocketAddr>,
    processes: BTreeMap<&'static str, ServiceProcess>,
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

impl ProcessMesh {
    /// Starts every service and waits until each is SERVING.
    pub async fn start() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let addrs: BTreeMap<_, _> = SERVICES.iter().map(|name| (*name, free_addr())).collect();
        let mut mesh = Self {
            dir,
            addrs,
            processes: BTreeMap::new(),
        };
        for name in SERVICES {
            mesh.spawn(name);
        }
        for name in SERVICES {
            mesh.wait_serving(name).await;
        }
        mesh
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}", self.addrs[name])
    }

    fn spawn(&mut self, name: &'static str) {
        let oauth = self.url("oauth");
        let dir = self.dir.path();
        let key = dir.join("oauth.key");
        let revoked = dir.join("revoked.log");
        let db = dir.join("audit.db");
        let (binary_name, args): (&str, Vec<String>) = match name {
            "oauth" => (
                "heist-oauth",
                vec![
                    "--key-file".into(),
                    path(&key),
                    "--revocations-file".into(),
                    path(&revoked),
                    // Short-lived tokens are renewed during a test run.
                    "--token-lifetime".into(),
                    "8s".into(),
                ],
            ),
            "audit" => (
                "heist-audit",
                vec!["--db".into(), path(&db), "--oauth-url".into(), oauth],
            ),
            "memory" => ("heist-memory", vec!["--oauth-url".into(), oauth]),
            _ => ("heist-tools", vec!["--oauth-url".into(), oauth]),
        };
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        // OAuth logs each token it issues (never the token itself).
        let log = if name == "oauth" { "info" } else { "warn" };
        args.extend(["--grace-period", "1s", "--log", log]);
        let listen = self.addrs[name].to_string();
        let process = ServiceProcess::start(&binary(binary_name), &args, &listen, dir)
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        self.processes.insert(name, process);
    }

    /// Waits until `name` reports SERVING.
    pub async fn wait_serving(&self, name: &str) {
        if let Err(error) = wait_until_serving(self.addrs[name], "").await {
            panic!("{name} is not serving: {error}");
        }
    }

    /// SIGKILLs `name` (no drain, no flush).
    pub fn kill(&mut self, name: &str) {
        if let Some(process) = self.processes.get_mut(name) {
            let _ = process.kill();
        }
    }

    /// Starts `name` again on its address (after [`Self::kill`]).
    pub fn restart(&mut self, name: &str) {
        let name = SERVICES
            .into_iter()
            .find(|known| *known == name)
            .unwrap_or_else(|| panic!("unknown service {name}"));
        self.spawn(name);
    }

    /// The address of `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// An orchestrator config file for this mesh, written into its directory,
    /// with breakers that stay open 1 s (so a restarted service is used
    /// again soon).
    pub fn write_config(&self, file: &str) -> std::path::PathBuf {
        let yaml = config_yaml(
            &self.url("oauth"),
            &self.url("tools"),
            &self.url("memory"),
            &self.url("audit"),
        )
        .replace("open_for: 5s", "open_for: 1s");
        let path = self.dir.path().join(file);
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    /// Stops every service with SIGTERM.
    pub fn stop(&mut self) {
        for process in self.processes.values_mut() {
            let _ = process.terminate();
        }
    }
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Seeded points in time for fault injection: `count` delays in
/// `[min, max)`, the same for the same seed.
pub fn fault_points(seed: u64, count: usize, min: Duration, max: Duration) -> Vec<Duration> {
    let span = (max.saturating_sub(min)).as_millis().max(1) as u64;
    let mut state = seed;
    let mut points: Vec<Duration> = (0..count)
        .map(|_| {
            state = heist_orchestrator::turn_order::mix(state);
            min + Duration::from_millis(state % span)
        })
        .collect();
    points.sort();
    points
}
