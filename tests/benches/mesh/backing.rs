//! Where the benchmarked mesh keeps its state: as shipped (Audit on SQLite,
//! Memory in process) or on the engines (Audit on PostgreSQL, Memory on
//! Redis, private servers started for the run), with one Audit replica or
//! two on the one database.

use heist_e2e::{processes::MeshOptions, tls::TlsMode};
use heist_engines::{Durability, PostgresServer, RedisServer};

/// The engines of a `--store postgres` run, started once for all its runs.
pub(crate) struct Engines {
    postgres: PostgresServer,
    redis: RedisServer,
}

impl Engines {
    /// Starts a PostgreSQL (durable: every commit flushed, as SQLite's
    /// `synchronous=FULL`) and a Redis.
    pub(crate) fn start() -> Result<Self, String> {
        let postgres = PostgresServer::start(Durability::Full)
            .map_err(|error| format!("PostgreSQL: {error}"))?;
        let redis = RedisServer::start().map_err(|error| format!("Redis: {error}"))?;
        Ok(Self { postgres, redis })
    }
}

/// One way of keeping the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    /// SQLite and in-process Memory, one replica each.
    Embedded,
    /// PostgreSQL and Redis, with this many Audit replicas.
    OnEngines { audit_replicas: usize },
    /// As shipped, with mutual TLS on every hop (a dev CA made per run).
    MutualTls,
    /// As shipped, with every process counting its metrics (services
    /// serving `/metrics`, the orchestrator counting).
    Metrics,
    /// Audit without the hash chain (`heist-audit --no-chain`), on SQLite
    /// or on the engines with one replica: what the chain costs.
    ChainOff { on_engines: bool },
}

impl Backing {
    /// How the tables name it.
    pub(crate) fn label(self) -> String {
        match self {
            Backing::Embedded => "sqlite + in-process memory".to_owned(),
            Backing::OnEngines { audit_replicas: 1 } => "postgres + redis".to_owned(),
            Backing::OnEngines { audit_replicas } => {
                format!("postgres + redis, {audit_replicas} audit replicas")
            }
            Backing::MutualTls => "sqlite, mutual TLS on every hop".to_owned(),
            Backing::Metrics => "sqlite, metrics on".to_owned(),
            Backing::ChainOff { on_engines: false } => "sqlite, chain off".to_owned(),
            Backing::ChainOff { on_engines: true } => "postgres + redis, chain off".to_owned(),
        }
    }

    /// The key of its figures in the JSON.
    pub(crate) fn key(self) -> String {
        match self {
            Backing::Embedded => "sqlite".to_owned(),
            Backing::OnEngines { audit_replicas } => format!("postgres_x{audit_replicas}"),
            Backing::MutualTls => "mutual_tls".to_owned(),
            Backing::Metrics => "metrics_on".to_owned(),
            Backing::ChainOff { on_engines: false } => "sqlite_chain_off".to_owned(),
            Backing::ChainOff { on_engines: true } => "postgres_chain_off".to_owned(),
        }
    }

    /// `options` for one run: on the engines, a fresh database and the Redis
    /// restarted empty (it persists nothing), so every run starts empty, as
    /// SQLite's fresh file does.
    pub(crate) fn options(
        self,
        options: MeshOptions,
        engines: Option<&mut Engines>,
    ) -> Result<MeshOptions, String> {
        let audit_replicas = match self {
            Backing::Embedded => return Ok(options),
            Backing::MutualTls => return Ok(options.tls(TlsMode::Mutual)),
            Backing::Metrics => {
                let on = ["--metrics-listen", "127.0.0.1:0"];
                return Ok(heist_e2e::processes::SERVICES
                    .iter()
                    .fold(options, |options, service| options.args(service, &on)));
            }
            Backing::ChainOff { on_engines } => {
                let off = options.args("audit", &["--no-chain"]);
                return match on_engines {
                    false => Ok(off),
                    true => Backing::OnEngines { audit_replicas: 1 }.options(off, engines),
                };
            }
            Backing::OnEngines { audit_replicas } => audit_replicas,
        };
        let engines = engines.ok_or("the engines were not started")?;
        let database = engines
            .postgres
            .fresh_database()
            .map_err(|error| error.to_string())?;
        engines
            .redis
            .start_again()
            .map_err(|error| format!("Redis: {error}"))?;
        Ok(MeshOptions {
            audit_store: Some(database),
            memory_store: Some(engines.redis.url()),
            ..options
        }
        .replicas("audit", audit_replicas))
    }
}
