//! A private PostgreSQL server: `initdb` into a temporary directory, `postgres`
//! on a free port of 127.0.0.1, a role `heist` with a random password.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::guard::{Guarded, Slot};
use crate::port::{free_port, wait_until};
use crate::{EngineError, system};

/// The role the server's clients log in as.
const ROLE: &str = "heist";
/// The database created at start.
const DATABASE: &str = "heist";
/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether commits wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: every commit is flushed (benchmarks, fault tests).
    Full,
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: fast, for tests
    /// that check behaviour, not crash safety.
    Relaxed,
}

/// A running private PostgreSQL server; stopped and removed on drop.
#[derive(Debug)]
pub struct PostgresServer {
    /// The programs (`initdb`, `postgres`, `pg_isready`, `psql`).
    bin: PathBuf,
    /// Holds `data/`, the socket, the password file and `postgres.log`.
    dir: TempDir,
    /// The user the server runs as (`postgres` when started by root).
    user: Option<String>,
    port: u16,
    password: String,
    durability: Durability,
    process: Slot,
    /// Numbers the databases of [`Self::fresh_database`].
    next_database: AtomicU64,
}

impl PostgresServer {
    /// Initialises a cluster and starts it, with a database `heist`.
    pub fn start(durability: Durability) -> Result<Self, EngineError> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("heist-postgres-")
            .tempdir()
            .map_err(EngineError::io("creating the PostgreSQL directory"))?;
        let user = system::running_as_root()?.then(|| "postgres".to_owned());
        let password = system::random_hex(16)?;
        let mut server = PostgresServer {
            bin,
            dir,
            user,
            port: 0,
            password,
            durability,
            process: Slot::default(),
            next_database: AtomicU64::new(1),
        };
        server.init_cluster()?;
        server.launch(free_port().map_err(EngineError::io("picking a free port"))?)?;
        server.psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
        Ok(server)
    }

    /// One relaxed-durability server shared by every test of this process,
    /// started on first use; it stops when the process ends. Tests take a
    /// [`Self::fresh_database`] of it each.
    pub fn shared() -> Result<&'static PostgresServer, EngineError> {
        static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| PostgresServer::start(Durability::Relaxed).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|error| EngineError::Command {
                what: "starting the shared PostgreSQL server".into(),
                output: error.clone(),
            })
    }

    /// `postgres://heist:PASSWORD@127.0.0.1:PORT/heist`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of `database` on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates a new empty database and returns its URL.
    pub fn fresh_database(&self) -> Result<String, EngineError> {
        let number = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{number}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url_for(&name))
    }

    /// The port it listens on (kept across [`Self::stop`] and [`Self::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Shuts the server down cleanly (SIGINT, fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the stopped or killed server again on the same port and data.
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
        system::tail(&self.dir.path().join("postgres.log"))
    }

    fn init_cluster(&self) -> Result<(), EngineError> {
        let password_file = self.dir.path().join("password");
        std::fs::write(&password_file, &self.password)
            .map_err(EngineError::io("writing the password file"))?;
        if let Some(user) = &self.user {
            system::chown_to(user, self.dir.path())?;
            system::chown_to(user, &password_file)?;
        }
        let data = self.data_dir();
        let args = [
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            ROLE.into(),
            format!("--pwfile={}", password_file.display()),
            "--auth=scram-sha-256".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ];
        system::run("initdb", self.as_user(&self.program("initdb"), &args))
    }

    /// The directory it runs from (removed on drop).
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }

    /// The path of one of PostgreSQL's programs, e.g. `psql`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    fn launch(&mut self, port: u16) -> Result<(), EngineError> {
        let log_path = self.dir.path().join("postgres.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(EngineError::io("opening the PostgreSQL log"))?;
        let mut args = vec![
            "-D".into(),
            self.data_dir().display().to_string(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            self.dir.path().display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "max_connections=400".into(),
        ];
        if self.durability == Durability::Relaxed {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                args.extend(["-c".into(), setting.into()]);
            }
        }
        let process = Guarded::spawn(
            self.user.as_deref(),
            "INT",
            self.dir.path(),
            &self.bin.join("postgres"),
            &args,
            log,
        )?;
        self.process.hold(process);
        self.port = port;
        let ready = wait_until(READY_TIMEOUT, || {
            let accepting = Command::new(self.program("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            accepting || !self.process.is_running()
        });
        if ready && self.is_running() {
            return Ok(());
        }
        self.stop();
        Err(EngineError::NotReady {
            engine: "PostgreSQL",
            port,
            seconds: READY_TIMEOUT.as_secs(),
            log: self.log_tail(),
        })
    }

    /// Runs one SQL statement as the role, in `database`.
    fn psql(&self, database: &str, sql: &str) -> Result<(), EngineError> {
        let mut command = Command::new(self.program("psql"));
        command
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url_for(database));
        system::run(&format!("psql `{sql}`"), command)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program args`, run as the server's user when there is one.
    fn as_user(&self, program: &Path, args: &[String]) -> Command {
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program).args(args);
                command
            }
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of `initdb` and `postgres`: the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
fn postgres_bin() -> Result<PathBuf, EngineError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    system::on_path("initdb")
        .and_then(|initdb| initdb.parent().map(Path::to_owned))
        .ok_or(EngineError::NotInstalled {
            engine: "PostgreSQL",
            missing: "initdb",
            package: "postgresql",
        })
}
