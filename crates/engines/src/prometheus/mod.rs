//! A private Prometheus server: `prometheus` on a free port of 127.0.0.1,
//! scraping the given targets every second into a temporary TSDB, read back
//! through its HTTP query API.

mod api;
mod config;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::guard::{Guarded, Slot};
use crate::port::{free_port, http_status, wait_until};
use crate::{EngineError, system};

pub use api::{PromError, Sample};
pub use config::{SCRAPE_INTERVAL, ScrapeTarget};

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`PrometheusServer::wait_for`] asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The `up` series of one scraped process: did its last scrape succeed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetUp {
    /// The job (the [`ScrapeTarget::job`]).
    pub job: String,
    /// The `host:port` scraped.
    pub instance: String,
    /// True when the last scrape succeeded (`up == 1`).
    pub up: bool,
}

/// A running private Prometheus server; stopped and removed on drop.
///
/// Its first scrapes come a few seconds after the start (Prometheus applies
/// target changes every 5 s): wait with [`Self::wait_for_scrapes`] or
/// [`Self::wait_for`], never a sleep.
#[derive(Debug)]
pub struct PrometheusServer {
    /// `prometheus.yml`, the TSDB in `data/` and `prometheus.log`.
    dir: TempDir,
    port: u16,
    targets: Vec<ScrapeTarget>,
    client: reqwest::Client,
    /// `/api/v1/query` on it.
    query_url: reqwest::Url,
    process: Slot,
}

impl PrometheusServer {
    /// Starts a server on a free port that scrapes `targets` every
    /// [`SCRAPE_INTERVAL`]; returns once `/-/ready` answers. Unreachable
    /// targets do not stop the start: their `up` is 0.
    pub fn start(targets: &[ScrapeTarget]) -> Result<Self, EngineError> {
        let program = system::program("prometheus").ok_or(EngineError::NotInstalled {
            engine: "Prometheus",
            missing: "prometheus",
            package: "prometheus",
        })?;
        let yaml = config::render(targets)?;
        let dir = tempfile::Builder::new()
            .prefix("heist-prometheus-")
            .tempdir()
            .map_err(EngineError::io("creating the Prometheus directory"))?;
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, yaml)
            .map_err(EngineError::io("writing the Prometheus configuration"))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(|error| EngineError::Command {
                what: "building the HTTP client for Prometheus".into(),
                output: error.to_string(),
            })?;
        let port = free_port().map_err(EngineError::io("picking a free port"))?;
        let query_url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/api/v1/query"))
            .map_err(|error| EngineError::Command {
                what: "forming the Prometheus query URL".into(),
                output: error.to_string(),
            })?;
        let mut server = PrometheusServer {
            dir,
            port,
            targets: targets.to_vec(),
            client,
            query_url,
            process: Slot::default(),
        };
        server.launch(&program, &config_file)?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, the UI and the HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The targets it scrapes.
    pub fn targets(&self) -> &[ScrapeTarget] {
        &self.targets
    }

    /// The samples of the instant query `promql`, evaluated now.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut().append_pair("query", promql);
        let http = |source| PromError::Http {
            url: url.to_string(),
            source,
        };
        // Refusals come with 400 or 422 and a JSON body that says why: read it whatever the status.
        let response = self.client.get(url.as_str()).send().await.map_err(http)?;
        let body = response.text().await.map_err(http)?;
        api::decode(promql, &body)
    }

    /// Queries `promql` until `accept` takes its samples, and returns them;
    /// [`PromError::Timeout`] with the last samples after `timeout`. A query
    /// Prometheus refuses fails at once.
    pub async fn wait_for(
        &self,
        promql: &str,
        accept: impl Fn(&[Sample]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Sample>, PromError> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql).await?;
            if accept(&samples) {
                return Ok(samples);
            }
            if Instant::now() >= deadline {
                let last: Vec<String> = samples.iter().map(Sample::to_string).collect();
                return Err(PromError::Timeout {
                    promql: promql.to_owned(),
                    seconds: timeout.as_secs(),
                    last: last.join(", "),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The `up` series of every target scraped so far, sorted by job and instance.
    pub async fn targets_up(&self) -> Result<Vec<TargetUp>, PromError> {
        let samples = self.query("up").await?;
        let mut targets: Vec<TargetUp> = samples
            .iter()
            .map(|sample| TargetUp {
                job: sample.label("job").unwrap_or_default().to_owned(),
                instance: sample.label("instance").unwrap_or_default().to_owned(),
                up: sample.value == 1.0,
            })
            .collect();
        targets.sort();
        Ok(targets)
    }

    /// Waits until every address of every target has been scraped at least
    /// once (up or down), and returns [`Self::targets_up`].
    pub async fn wait_for_scrapes(&self, timeout: Duration) -> Result<Vec<TargetUp>, PromError> {
        let expected: usize = self.targets.iter().map(|t| t.addresses.len()).sum();
        self.wait_for("up", |samples| samples.len() >= expected, timeout)
            .await?;
        self.targets_up().await
    }

    /// Shuts the server down (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        system::tail(&self.log_path())
    }

    /// The directory it runs from (removed on drop).
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn launch(&mut self, program: &Path, config_file: &Path) -> Result<(), EngineError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(EngineError::io("opening the Prometheus log"))?;
        // Loopback only; no lifecycle or admin API; no Alertmanager or remote
        // storage is configured, so nothing is sent anywhere but to the targets.
        let args = vec![
            format!("--config.file={}", config_file.display()),
            format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ),
            format!("--web.listen-address=127.0.0.1:{}", self.port),
            "--log.level=info".to_owned(),
        ];
        self.process.hold(Guarded::spawn(
            None,
            "TERM",
            self.dir.path(),
            program,
            &args,
            log,
        )?);
        let port = self.port;
        let ready = wait_until(READY_TIMEOUT, || {
            http_status(port, "/-/ready") == Some(200) || !self.process.is_running()
        });
        if ready && self.is_running() {
            return Ok(());
        }
        self.stop();
        Err(EngineError::NotReady {
            engine: "Prometheus",
            port,
            seconds: READY_TIMEOUT.as_secs(),
            log: self.log_tail(),
        })
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
