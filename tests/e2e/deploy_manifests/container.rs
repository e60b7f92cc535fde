//! A deployment's container as a process on this machine: the binary its
//! command names, exactly its arguments and environment, a working
//! directory of its own, and its health check run as written.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, binary, processes::free_addr};

/// How long a service may take to pass its health check.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

/// How long a job may run.
const JOB_WITHIN: Duration = Duration::from_secs(120);

/// How many times a service is started again when a port the mapping chose
/// was taken by another test before it bound it.
const PORT_TAKEN_RETRIES: usize = 3;

/// A container on this machine: its directories and what it runs.
pub(super) struct Container {
    /// Its name (the compose service, the Deployment or Job).
    pub(super) name: String,
    /// The command: the binary's name, then its arguments.
    pub(super) args: Vec<String>,
    /// Its whole environment.
    pub(super) env: Vec<(String, String)>,
    /// The health check command, when it has one.
    pub(super) health: Option<Vec<String>>,
    /// Its working directory.
    pub(super) dir: PathBuf,
}

impl Container {
    fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new(binary(&args[0]));
        command
            .args(&args[1..])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    /// Runs a job to its end; its output.
    pub(super) fn run_job(&self) -> std::process::Output {
        let mut child = self
            .command(&self.args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + JOB_WITHIN;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the {} job did not finish within {JOB_WITHIN:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// Starts a service, then waits until it serves ([`Self::wait_serving`]).
    pub(super) async fn serve(&self) -> ServiceProcess {
        let mut process = self.start();
        self.wait_serving(&mut process).await;
        process
    }

    /// Runs its health check until it passes. The mapping chose its loopback
    /// ports free, but a test running beside this one may take one before
    /// it binds: then it is started again on the same ports (at most
    /// [`PORT_TAKEN_RETRIES`] times). Panics with its log if it exits
    /// otherwise or does not pass in time.
    pub(super) async fn wait_serving(&self, process: &mut ServiceProcess) {
        for _ in 0..PORT_TAKEN_RETRIES {
            if self.wait_healthy(process, true).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            *process = self.start();
        }
        self.wait_healthy(process, false).await;
    }

    /// Starts a service; does not wait.
    pub(super) fn start(&self) -> ServiceProcess {
        ServiceProcess::start_exact(
            &binary(&self.args[0]),
            &self.name,
            &self.args[1..],
            &self.env,
            &self.dir,
            free_addr(),
        )
        .unwrap()
    }

    /// Runs its health check until it passes (true); panics with its log if
    /// it exits or does not pass in time, except that it answers false when
    /// it exited because a port was taken and `port_taken_is_retried`.
    async fn wait_healthy(
        &self,
        process: &mut ServiceProcess,
        port_taken_is_retried: bool,
    ) -> bool {
        let check = self
            .health
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no health check", self.name));
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let output = self.command(check).output().unwrap();
            if output.status.success() {
                return true;
            }
            let log_file = process.log.clone();
            let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
            if let Some(status) = process.try_wait().unwrap() {
                if port_taken_is_retried && log().contains("Address already in use") {
                    return false;
                }
                panic!("{} exited with {status}; log:\n{}", self.name, log());
            }
            assert!(
                Instant::now() < deadline,
                "{} failed its health check for {HEALTHY_WITHIN:?}: {}\nlog:\n{}",
                self.name,
                String::from_utf8_lossy(&output.stderr),
                log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The value of `--NAME=VALUE` in `args`.
pub(super) fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|arg| arg.strip_prefix(prefix.as_str()))
}
