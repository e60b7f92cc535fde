//! Private PostgreSQL and Redis servers for tests and benchmarks.
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
//!
//! Both can be stopped, killed and started again on the same port and data,
//! for fault tests. When an engine is not installed, starting it fails with
//! [`EngineError::NotInstalled`], naming the Debian package; tests fail on
//! it rather than skip.

mod guard;
mod port;
mod postgres;
mod redis;
mod system;

pub use postgres::{Durability, PostgresServer};
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
        /// `PostgreSQL` or `Redis`.
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
        /// `PostgreSQL` or `Redis`.
        engine: &'static str,
        /// The port it was started on.
        port: u16,
        /// How long it was waited for.
        seconds: u64,
        /// The end of its log.
        log: String,
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
