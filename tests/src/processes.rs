//! The whole mesh as real processes on fixed free ports, so a test can
//! SIGKILL any service and restart it where its clients expect it.
//!
//! A service may run as several replicas, each its own process on its own
//! port, and take extra arguments ([`MeshOptions::replicas`],
//! [`MeshOptions::args`]: e.g. Audit twice on one PostgreSQL, Memory twice
//! on one Redis); the `*_replica` methods name a replica by its index, the
//! plain ones mean replica 0, and the config written lists every replica in
//! `base_urls`.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use tempfile::TempDir;

use crate::{ServiceProcess, binary, mesh::config_yaml_replicas};

/// The services of a [`ProcessMesh`], by name.
pub const SERVICES: [&str; 4] = ["oauth", "audit", "memory", "tools"];

/// How a [`ProcessMesh`] runs its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshOptions {
    /// OAuth's `--token-lifetime`; `None` keeps the service's default (5 minutes).
    pub token_lifetime: Option<String>,
    /// OAuth's log filter (at `info` it logs each token it issues).
    pub oauth_log: String,
    /// Audit's `--synchronous` (`None`: its default, `full`).
    pub audit_synchronous: Option<String>,
    /// How many replicas of a service run (by name; default 1).
    pub replicas: BTreeMap<String, usize>,
    /// Extra arguments of a service's every replica (by name).
    pub args: BTreeMap<String, Vec<String>>,
    /// A service's `--log` filter (by name; default `warn`, OAuth's
    /// `oauth_log`).
    pub logs: BTreeMap<String, String>,
    /// Memory's `--store` (`None`: its default, `memory`), e.g. a Redis URL.
    pub memory_store: Option<String>,
    /// Audit's `--store`, e.g. a PostgreSQL URL (`None`: `audit.db` in the
    /// mesh's directory).
    pub audit_store: Option<String>,
    /// OAuth's `--revocations`, e.g. a PostgreSQL or Redis URL shared by its
    /// replicas (`None`: `revoked.log` in the mesh's directory).
    pub oauth_revocations: Option<String>,
    /// TLS on every hop (`None`: plaintext), with a CA and certificates
    /// made in the mesh's `certs/` directory.
    pub tls: Option<crate::tls::TlsMode>,
}

impl MeshOptions {
    /// For tests: 8-second tokens (renewed during a run), OAuth logging each token.
    pub fn for_tests() -> Self {
        Self {
            token_lifetime: Some("8s".to_owned()),
            oauth_log: "info".to_owned(),
            audit_synchronous: None,
            replicas: BTreeMap::new(),
            args: BTreeMap::new(),
            logs: BTreeMap::new(),
            memory_store: None,
            audit_store: None,
            oauth_revocations: None,
            tls: None,
        }
    }

    /// As the services ship: default token lifetime, warnings only.
    pub fn as_shipped() -> Self {
        Self {
            token_lifetime: None,
            oauth_log: "warn".to_owned(),
            audit_synchronous: None,
            replicas: BTreeMap::new(),
            args: BTreeMap::new(),
            logs: BTreeMap::new(),
            memory_store: None,
            audit_store: None,
            oauth_revocations: None,
            tls: None,
        }
    }

    /// `count` replicas of `service` (one of [`SERVICES`]), each a process
    /// on its own port.
    pub fn replicas(mut self, service: &str, count: usize) -> Self {
        self.replicas.insert(service.to_owned(), count.max(1));
        self
    }

    /// `args` added to the command line of every replica of `service` (e.g.
    /// the address of the database its replicas share).
    pub fn args(mut self, service: &str, args: &[&str]) -> Self {
        self.args
            .entry(service.to_owned())
            .or_default()
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Every hop over TLS in `mode`.
    pub fn tls(mut self, mode: crate::tls::TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// `service`'s log filter (e.g. `warn,heist_plumbing::server=debug`
    /// for a `call served` line per call).
    pub fn log(mut self, service: &str, filter: &str) -> Self {
        self.logs.insert(service.to_owned(), filter.to_owned());
        self
    }

    /// How many replicas of `service` run.
    fn count(&self, service: &str) -> usize {
        self.replicas.get(service).copied().unwrap_or(1)
    }
}

/// One replica of a service: its name and index.
type ReplicaKey = (&'static str, usize);

/// Every service of the mesh as a child process.
#[derive(Debug)]
pub struct ProcessMesh {
    /// Where logs, the key and the database live.
    pub dir: TempDir,
    options: MeshOptions,
    addrs: BTreeMap<ReplicaKey, SocketAddr>,
    processes: BTreeMap<ReplicaKey, ServiceProcess>,
    /// The certificates, under TLS.
    certs: Option<crate::tls::TestCerts>,
    /// The test's own client TLS (the orchestrator's certificate), loaded once.
    client_tls: Option<heist_plumbing::tls::ClientTls>,
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The peak resident set size (`VmHWM`) of process `pid`, in bytes; `None`
/// when the process is gone or the kernel does not say.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The CPU time process `pid`'s live threads have used (`schedstat`, in
/// nanoseconds; a thread that has exited no longer counts).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|nanos| nanos.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// The CPU time the whole machine has been busy so far, every process and
/// every CPU together (`/proc/stat`: user, nice, system, irq, softirq and
/// steal, in 10 ms ticks): what a run costs including processes this
/// harness does not start, such as the engines.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&index| ticks.get(index))
        .sum();
    Some(Duration::from_millis(busy * 10))
}

impl ProcessMesh {
    /// Starts every service (as [`MeshOptions::for_tests`]) and waits until
    /// each is SERVING.
    pub async fn start() -> Self {
        Self::start_with(MeshOptions::for_tests()).await
    }

    /// Starts every service with `options` and waits until each is SERVING.
    pub async fn start_with(options: MeshOptions) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let keys: Vec<ReplicaKey> = SERVICES
            .iter()
            .flat_map(|name| (0..options.count(name)).map(|index| (*name, index)))
            .collect();
        let addrs: BTreeMap<_, _> = keys.iter().map(|key| (*key, free_addr())).collect();
        let certs = options.tls.map(|_| {
            let names: Vec<&str> = SERVICES.iter().copied().chain(["orchestrator"]).collect();
            crate::tls::TestCerts::new(&dir.path().join("certs"), &names)
        });
        let client_tls = certs
            .as_ref()
            .map(|certs| certs.client(Some("orchestrator")));
        let mut mesh = Self {
            dir,
            options,
            addrs,
            processes: BTreeMap::new(),
            certs,
            client_tls,
        };
        for key in keys.iter().copied() {
            // The free port may be taken by another process between our
            // probe and the service's bind: try again on a new one.
            let mut attempts = 1;
            while let Err(error) = mesh.try_spawn(key) {
                assert!(attempts < 3, "cannot start {key:?}: {error}");
                attempts += 1;
                mesh.addrs.insert(key, free_addr());
            }
        }
        for (name, index) in keys {
            mesh.wait_replica_serving(name, index).await;
        }
        mesh
    }

    /// The URL of every replica of `name`, in order.
    pub fn urls(&self, name: &str) -> Vec<String> {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        (0..self.replicas(name))
            .map(|index| format!("{scheme}://{}", self.addr_of(name, index)))
            .collect()
    }

    /// The certificates, when the mesh runs over TLS.
    pub fn certs(&self) -> Option<&crate::tls::TestCerts> {
        self.certs.as_ref()
    }

    /// A lazy channel to replica `index` of `name`: over TLS (showing the
    /// orchestrator's certificate) when the mesh runs so.
    pub fn channel_of(&self, name: &str, index: usize) -> tonic::transport::Channel {
        let addr = self.addr_of(name, index);
        match &self.client_tls {
            Some(tls) => crate::tls::tls_channel_to(addr, tls),
            None => crate::channel_to(addr),
        }
    }

    /// How many replicas of `name` run (or ran).
    pub fn replicas(&self, name: &str) -> usize {
        self.options.count(name)
    }

    fn key(name: &str, index: usize) -> ReplicaKey {
        let name = SERVICES
            .into_iter()
            .find(|known| *known == name)
            .unwrap_or_else(|| panic!("unknown service {name}"));
        (name, index)
    }

    fn spawn(&mut self, key: ReplicaKey) {
        if let Err(error) = self.try_spawn(key) {
            panic!("cannot start {key:?}: {error}");
        }
    }

    fn try_spawn(&mut self, replica: ReplicaKey) -> std::io::Result<()> {
        let (name, index) = replica;
        // Every OAuth replica: a service asks them in turn for keys and revocations.
        let oauth = self.urls("oauth").join(",");
        let dir = self.dir.path();
        let key = dir.join("oauth.key");
        let revoked = dir.join("revoked.log");
        let db = dir.join("audit.db");
        let (binary_name, args): (&str, Vec<String>) = match name {
            "oauth" => {
                let revocations = match &self.options.oauth_revocations {
                    Some(store) => store.clone(),
                    None => path(&revoked),
                };
                let mut args = vec![
                    "--key-file".into(),
                    path(&key),
                    "--revocations".into(),
                    revocations,
                ];
                if let Some(lifetime) = &self.options.token_lifetime {
                    args.extend(["--token-lifetime".into(), lifetime.clone()]);
                }
                ("heist-oauth", args)
            }
            "audit" => {
                let store = match &self.options.audit_store {
                    Some(store) => vec!["--store".into(), store.clone()],
                    None => vec!["--db".into(), path(&db)],
                };
                let signing = vec!["--key-file".into(), path(&dir.join("audit.key"))];
                let mut args = [store, signing, vec!["--oauth-url".into(), oauth]].concat();
                if let Some(synchronous) = &self.options.audit_synchronous {
                    args.extend(["--synchronous".into(), synchronous.clone()]);
                }
                ("heist-audit", args)
            }
            "memory" => {
                let mut args = vec!["--oauth-url".into(), oauth];
                if let Some(store) = &self.options.memory_store {
                    args.extend(["--store".into(), store.clone()]);
                }
                ("heist-memory", args)
            }
            _ => (
                "heist-tools",
                vec![
                    "--oauth-url".into(),
                    oauth,
                    "--documents-dir".into(),
                    path(&crate::documents_dir()),
                ],
            ),
        };
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        // OAuth may log each token it issues (never the token itself).
        let log = match self.options.logs.get(name) {
            Some(filter) => filter.as_str(),
            None if name == "oauth" => self.options.oauth_log.as_str(),
            None => "warn",
        };
        args.extend(["--grace-period", "1s", "--log", log]);
        let tls_args = match (&self.certs, self.options.tls) {
            (Some(certs), Some(mode)) => certs.server_args(name, mode),
            _ => Vec::new(),
        };
        args.extend(tls_args.iter().map(String::as_str));
        if let Some(extra) = self.options.args.get(name) {
            args.extend(extra.iter().map(String::as_str));
        }
        let listen = self.addrs[&replica].to_string();
        // Replica 0 keeps the service's own file names (`heist-tools.log`).
        let label = match index {
            0 => binary_name.to_owned(),
            index => format!("{binary_name}-{index}"),
        };
        let process =
            ServiceProcess::start_labelled(&binary(binary_name), &label, &args, &listen, dir, &[])?;
        self.processes.insert(replica, process);
        Ok(())
    }

    /// Waits until replica 0 of `name` reports SERVING.
    pub async fn wait_serving(&self, name: &str) {
        self.wait_replica_serving(name, 0).await;
    }

    /// Waits until replica `index` of `name` reports SERVING.
    pub async fn wait_replica_serving(&self, name: &str, index: usize) {
        let addr = self.addr_of(name, index);
        if let Err(error) =
            crate::wait_until_serving_on(addr, || self.channel_of(name, index), "").await
        {
            panic!("{name}[{index}] is not serving: {error}");
        }
    }

    /// SIGKILLs replica 0 of `name` (no drain, no flush).
    pub fn kill(&mut self, name: &str) {
        self.kill_replica(name, 0);
    }

    /// SIGKILLs replica `index` of `name` (no drain, no flush).
    pub fn kill_replica(&mut self, name: &str, index: usize) {
        if let Some(process) = self.processes.get_mut(&Self::key(name, index)) {
            let _ = process.kill();
        }
    }

    /// Starts replica 0 of `name` again on its address (after [`Self::kill`]).
    pub fn restart(&mut self, name: &str) {
        self.restart_replica(name, 0);
    }

    /// Starts replica `index` of `name` again on its address (after
    /// [`Self::kill_replica`]), with the same arguments.
    pub fn restart_replica(&mut self, name: &str, index: usize) {
        self.spawn(Self::key(name, index));
    }

    /// The address of replica 0 of `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addr_of(name, 0)
    }

    /// The address of replica `index` of `name`.
    pub fn addr_of(&self, name: &str, index: usize) -> SocketAddr {
        self.addrs[&Self::key(name, index)]
    }

    /// The process ID of replica 0 of `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.pid_of(name, 0)
    }

    /// The process ID of replica `index` of `name`, while it runs.
    pub fn pid_of(&self, name: &str, index: usize) -> Option<u32> {
        self.processes
            .get(&Self::key(name, index))
            .map(ServiceProcess::pid)
            .filter(|pid| *pid != 0)
    }

    /// The log file of replica `index` of `name`.
    pub fn log_of(&self, name: &str, index: usize) -> std::path::PathBuf {
        self.processes
            .get(&Self::key(name, index))
            .map(|process| process.log.clone())
            .unwrap_or_else(|| panic!("{name}[{index}] was never started"))
    }

    /// An orchestrator config file for this mesh, written into its directory,
    /// with breakers that stay open 1 s (so a restarted service is used
    /// again soon).
    pub fn write_config(&self, file: &str) -> std::path::PathBuf {
        self.write_config_with(file, &[])
    }

    /// Like [`Self::write_config`], with some services reached at other
    /// URLs (e.g. `[("audit", proxy.url())]` to go through a proxy). Every
    /// other service is listed with all its replicas.
    pub fn write_config_with(&self, file: &str, urls: &[(&str, &str)]) -> std::path::PathBuf {
        let url = |name: &str| {
            urls.iter()
                .find(|(service, _)| *service == name)
                .map_or_else(|| self.urls(name), |(_, url)| vec![(*url).to_owned()])
        };
        let mut yaml =
            config_yaml_replicas(&url("oauth"), &url("tools"), &url("memory"), &url("audit"))
                .replace("open_for: 5s", "open_for: 1s");
        if let Some(certs) = &self.certs {
            yaml.push_str(&certs.config_section());
        }
        let path = self.dir.path().join(file);
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    /// Stops every replica of every service with SIGTERM.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_rss_of_a_running_process_is_read_from_proc() {
        let bytes = peak_rss_bytes(std::process::id()).expect("VmHWM of this process");
        assert!(bytes > 1024 * 1024, "{bytes} bytes");
    }

    #[test]
    fn the_machine_is_busy_while_this_process_spins() {
        let before = machine_busy().expect("/proc/stat");
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(100) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = machine_busy().expect("/proc/stat");
        assert!(
            after >= before + Duration::from_millis(50),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn a_process_that_does_not_exist_has_no_peak_rss() {
        assert_eq!(peak_rss_bytes(u32::MAX), None);
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn the_cpu_time_of_a_busy_process_grows() {
        let before = cpu_time(std::process::id()).expect("CPU time of this process");
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = cpu_time(std::process::id()).expect("CPU time of this process");
        assert!(
            after >= before + Duration::from_millis(20),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn shipped_options_keep_the_default_token_lifetime() {
        assert_eq!(MeshOptions::as_shipped().token_lifetime, None);
        assert_eq!(
            MeshOptions::for_tests().token_lifetime.as_deref(),
            Some("8s")
        );
    }
}
