//! A private Redis server: `redis-server` on a free port of 127.0.0.1 with a
//! random password and no persistence (no RDB snapshots, no AOF).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::guard::{Guarded, Slot};
use crate::port::{connect, free_port, wait_until};
use crate::{EngineError, system};

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private Redis server; stopped and removed on drop. Each start
/// is empty: nothing is persisted, so a restart loses every key.
#[derive(Debug)]
pub struct RedisServer {
    program: PathBuf,
    /// The working directory and `redis.log`.
    dir: TempDir,
    port: u16,
    password: String,
    process: Slot,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Result<Self, EngineError> {
        let program = system::program("redis-server").ok_or(EngineError::NotInstalled {
            engine: "Redis",
            missing: "redis-server",
            package: "redis-server",
        })?;
        let dir = tempfile::Builder::new()
            .prefix("heist-redis-")
            .tempdir()
            .map_err(EngineError::io("creating the Redis directory"))?;
        let mut server = RedisServer {
            program,
            dir,
            port: 0,
            password: system::random_hex(16)?,
            process: Slot::default(),
        };
        server.launch(free_port().map_err(EngineError::io("picking a free port"))?)?;
        Ok(server)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// The port it listens on (kept across [`Self::stop`] and [`Self::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password clients must give.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Shuts the server down (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the stopped or killed server again on the same port, empty.
    pub fn start_again(&mut self) -> Result<(), EngineError> {
        self.stop();
        self.launch(self.port)
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        system::tail(&self.dir.path().join("redis.log"))
    }

    /// The directory it runs from (removed on drop).
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }

    fn launch(&mut self, port: u16) -> Result<(), EngineError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .map_err(EngineError::io("opening the Redis log"))?;
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
            "--requirepass",
            &self.password,
        ]
        .map(str::to_owned)
        .into();
        self.process.hold(Guarded::spawn(
            None,
            "TERM",
            self.dir.path(),
            &self.program,
            &args,
            log,
        )?);
        self.port = port;
        let password = self.password.clone();
        let ready = wait_until(READY_TIMEOUT, || {
            answers_ping(port, &password) || !self.process.is_running()
        });
        if ready && self.is_running() {
            return Ok(());
        }
        self.stop();
        Err(EngineError::NotReady {
            engine: "Redis",
            port,
            seconds: READY_TIMEOUT.as_secs(),
            log: self.log_tail(),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when the server on `port` takes `password` and answers PING.
fn answers_ping(port: u16, password: &str) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    let request = format!("AUTH {password}\r\nPING\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut chunk = [0; 64];
    while !answer.ends_with(b"+PONG\r\n") && answer.len() < 256 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
        }
    }
    answer.ends_with(b"+PONG\r\n")
}
