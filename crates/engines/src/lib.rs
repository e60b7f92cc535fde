//! Private PostgreSQL, Redis and Prometheus servers for tests and benchmarks.
//!
//! Each server runs from a temporary directory on a free port of 127.0.0.1
//! and stops when its handle is dropped, or, should the test process die
//! first, when the process's end closes the pipe its guard reads (see
//! `guard`): nothing outlives the run.
//!
//! - [`PostgresServer::start`] runs `initdb` and `postgres` (as the
//!   `postgres` user when run as root, since PostgreSQL refuses root), with
//!   a password-protected role `heist` and a database `heist`;
//!   [`PostgresServer::shared`] is one relaxed-durability server per test
//!   binary, from which each test takes a [`PostgresServer::fresh_database`].
//! - [`RedisServer::start`] runs `redis-server` with a password and no
//!   persistence; it starts in milliseconds, so each test takes its own.
//! - [`PrometheusServer::start`] runs `prometheus` scraping the given
//!   [`ScrapeTarget`]s every second; [`PrometheusServer::query`] and
//!   [`PrometheusServer::wait_for`] read back through its HTTP query API.
//!   [`promtool_check_metrics`] lints an exposition with `promtool`.
//!
//! PostgreSQL and Redis can be stopped, killed and started again on the same port and data,
//! for fault tests. When an engine is not installed, starting it fails with
//! [`EngineError::NotInstalled`], naming the Debian package; tests fail on
//! it rather than skip.

mod guard;
mod port;
mod postgres;
mod prometheus;
mod promtool;
mod redis;
mod system;

pub use postgres::{Durability, PostgresServer};
pub use prometheus::{
    PromError, PrometheusServer, SCRAPE_INTERVAL, Sample, ScrapeTarget, TargetUp,
};
pub use promtool::promtool_check_metrics;
pub use redis::RedisServer;

/// Why an engine could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's programs are not on this machine.
    #[error(
        "{engine} is not installed ({missing} not found); install the Debian package \
         `{package}` (scripts/install_engines.sh does)"
    )]
    NotInstalled {
        /// `PostgreSQL`, `Redis` or `Prometheus`.
        engine: &'static str,
        /// The program looked for.
        missing: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A program failed; `output` holds what it printed.
    #[error("{what} failed: {output}")]
    Command {
        /// What was being done, e.g. `initdb`.
        what: String,
        /// The program's stderr and stdout, trimmed.
        output: String,
    },
    /// The server did not accept connections in time.
    #[error("{engine} on port {port} did not become ready within {seconds} s: {log}")]
    NotReady {
        /// `PostgreSQL`, `Redis` or `Prometheus`.
        engine: &'static str,
        /// The port it was started on.
        port: u16,
        /// How long it was waited for.
        seconds: u64,
        /// The end of its log.
        log: String,
    },
    /// A scrape target cannot go into a Prometheus configuration.
    #[error("scrape target `{job}`: {reason}")]
    BadTarget {
        /// The target's job name.
        job: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl EngineError {
    /// An [`EngineError::Io`] saying what was being done.
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| EngineError::Io { what, source }
    }
}

#[cfg(test)]
mod tests;
