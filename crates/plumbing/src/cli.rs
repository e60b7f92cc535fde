//! Flags every server binary shares.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use tokio::net::TcpListener;

use crate::telemetry::LogFormat;

/// Logging and shutdown flags, flattened into each server's own arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Log filter, e.g. `info` or `heist_audit=debug,info` (tracing EnvFilter syntax).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log line format on stderr: `text` (coloured only on a terminal, and
    /// never with `NO_COLOR` set) or `json` (one JSON object a line, with the
    /// span fields and `session.id`, for log collectors).
    #[arg(long, env = "HEIST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long to let in-flight calls finish after SIGINT/SIGTERM before
    /// closing connections, e.g. `5s` or `500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace_period: Duration,

    /// Once listening, write the bound address (`IP:PORT`) to this file;
    /// handy with `--listen 127.0.0.1:0`, which picks a free port.
    #[arg(long, value_name = "PATH")]
    pub addr_file: Option<PathBuf>,

    /// Also serve `grpc.health.v1.Health` alone (no reflection, no service
    /// RPCs, no auth) in plaintext on this address, for Kubernetes' gRPC
    /// probe, e.g. `0.0.0.0:8081`; it reports what the main port's health
    /// does. Off by default; must differ from `--listen`.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// Once the health port listens, write its bound address (`IP:PORT`)
    /// to this file; handy with `--health-listen 127.0.0.1:0`.
    #[arg(long, value_name = "PATH", requires = "health_listen")]
    pub health_addr_file: Option<PathBuf>,

    /// Serve Prometheus metrics (OpenMetrics text) at `http://ADDR/metrics`,
    /// e.g. `0.0.0.0:9464`; off by default (and the per-call metrics are then
    /// not counted). Must differ from `--listen`.
    #[arg(long, env = "HEIST_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Once the metrics port listens, write its bound address (`IP:PORT`)
    /// to this file; handy with `--metrics-listen 127.0.0.1:0`.
    #[arg(long, value_name = "PATH", requires = "metrics_listen")]
    pub metrics_addr_file: Option<PathBuf>,

    /// What one peer may make the server hold.
    #[command(flatten, next_help_heading = "Transport limits")]
    pub transport: TransportArgs,

    /// TLS on the main port, and on this server's own calls.
    #[command(flatten, next_help_heading = "TLS (plaintext without these)")]
    pub tls: TlsArgs,
}

/// TLS on the main port and for the calls a server makes (see [`crate::tls`]).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve TLS on the main port with this certificate chain (PEM, leaf
    /// first); it is also shown as the client certificate when this server
    /// calls a server that asks for one (mutual TLS). Read again when it
    /// changes on disk, and on SIGHUP.
    #[arg(
        long,
        env = "HEIST_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(
        long,
        env = "HEIST_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: accept only clients whose certificate this CA (PEM)
    /// signed; the identity each proves (its URI or DNS SAN) is recorded
    /// on the server span (and by Audit in the rows it writes).
    #[arg(
        long,
        env = "HEIST_TLS_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// The CA (PEM) that signed the certificates of the servers this one
    /// calls at `https://` URLs (OAuth, for keys and revocations).
    #[arg(long, env = "HEIST_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// How often to look for changed TLS files, e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub tls_reload: Duration,
}

impl TlsArgs {
    /// The main port's TLS, if `--tls-cert` is given.
    pub fn server_tls(&self) -> Result<Option<crate::tls::ServerTls>, crate::tls::TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = crate::tls::ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
        };
        crate::tls::ServerTls::load(files, self.tls_reload).map(Some)
    }

    /// The TLS of this server's calls, if `--tls-ca` is given; it shows
    /// `--tls-cert` to servers that ask for a client certificate.
    pub fn client_tls(&self) -> Result<Option<crate::tls::ClientTls>, crate::tls::TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let files = crate::tls::ClientTlsFiles {
            ca: ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        };
        let tls = crate::tls::ClientTls::load(files, self.tls_reload)?;
        tls.watch();
        Ok(Some(tls))
    }
}

/// What one peer may make the server hold (see [`crate::TransportLimits`]).
#[derive(Debug, Clone, clap::Args)]
pub struct TransportArgs {
    /// HTTP/2 streams one connection may have open at once (advertised to
    /// the peer; streams beyond it are refused).
    #[arg(long, default_value_t = 256)]
    pub max_concurrent_streams: u32,

    /// Streams reset for the peer's protocol errors (e.g. malformed headers)
    /// on one connection before it is closed with GOAWAY.
    #[arg(long, default_value_t = 64)]
    pub max_reset_streams: usize,

    /// How often to send an HTTP/2 keep-alive ping on each connection.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a keep-alive ping may go unanswered before the connection
    /// is closed (a dead or half-open peer).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// Close a connection that has had no open call for this long.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// The largest request message of most methods (health, reflection,
    /// reads, token requests), e.g. `16KiB`.
    #[arg(long, default_value = "16KiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// The largest request message of the methods that carry content
    /// (Audit's writes, StoreMemory, CallTool), e.g. `4MiB` (the most).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub max_large_message_size: usize,
}

impl TransportArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> crate::TransportLimits {
        crate::TransportLimits {
            max_concurrent_streams: self.max_concurrent_streams,
            max_local_error_reset_streams: self.max_reset_streams,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            idle_timeout: self.idle_timeout,
            max_message_size: self.max_message_size,
            max_large_message_size: self.max_large_message_size.min(4 * 1024 * 1024),
        }
    }
}

/// How a protected service reaches OAuth to verify tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// The OAuth service whose public keys verify callers' tokens; several
    /// replicas comma-separated (`http://a:8001,http://b:8001`), asked in turn
    /// until one answers.
    #[arg(long, env = "HEIST_OAUTH_URL", default_value = "http://127.0.0.1:8001")]
    pub oauth_url: String,

    /// How often to poll OAuth's revocation list (revoked tokens are refused
    /// here at most this long after revocation).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub revocation_poll: Duration,
}

impl AuthArgs {
    /// The authenticator these flags describe, reaching `https://` OAuth
    /// URLs with `tls`.
    pub fn authenticator(
        &self,
        tls: Option<crate::tls::ClientTls>,
    ) -> Result<crate::auth::Authenticator, crate::tls::TlsError> {
        let mut config = crate::auth::AuthConfig::new(self.oauth_url.clone());
        config.revocation_poll = self.revocation_poll;
        config.tls = tls;
        crate::auth::Authenticator::new(&config)
    }
}

impl CommonArgs {
    /// The serving options these flags describe (reading the TLS files).
    pub fn serve_options(&self) -> Result<crate::ServeOptions, crate::tls::TlsError> {
        Ok(crate::ServeOptions {
            grace_period: self.grace_period,
            limits: self.transport.limits(),
            health_port: self
                .health_listen
                .map(|address| crate::side_port::SideListen {
                    address,
                    addr_file: self.health_addr_file.clone(),
                }),
            tls: self.tls.server_tls()?,
            metrics: self
                .metrics_listen
                .map(|address| crate::side_port::SideListen {
                    address,
                    addr_file: self.metrics_addr_file.clone(),
                }),
            ..crate::ServeOptions::default()
        })
    }

    /// Runs a server binary's body with telemetry for `service_name` set up
    /// first and its spans flushed last, whatever the body returns. A failure
    /// is one readable line on stderr (`error: ` and the error with its causes)
    /// and exit code 1.
    pub async fn run_binary<F: std::future::Future<Output = anyhow::Result<()>>>(
        &self,
        service_name: &str,
        body: F,
    ) -> ExitCode {
        let telemetry =
            match crate::telemetry::init(service_name, &self.log_filter, self.log_format) {
                Ok(telemetry) => telemetry,
                Err(error) => return failure(&error.into()),
            };
        let outcome = body.await;
        telemetry.shutdown().await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => failure(&error),
        }
    }

    /// Binds `address` and, if asked, writes the bound address to `--addr-file`.
    pub async fn bind(&self, address: SocketAddr) -> std::io::Result<TcpListener> {
        let listener = TcpListener::bind(address).await.map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
        })?;
        if let Some(path) = &self.addr_file {
            write_addr_file(path, listener.local_addr()?)?;
        }
        Ok(listener)
    }
}

/// Writes `address` (`IP:PORT`) to `path` at once (through a temporary
/// file), so that a reader never sees half of it.
pub(crate) fn write_addr_file(path: &Path, address: SocketAddr) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, address.to_string())?;
    std::fs::rename(&temporary, path)
}

/// Says why a binary stops, on one line, and gives its exit code.
fn failure(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", crate::status::error_chain(error.as_ref()));
    ExitCode::FAILURE
}

/// Parses `500ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}`; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Parses `16KiB`, `4MiB`, `512B` or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "B"),
    };
    let value: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. 16KiB, 4MiB or 512"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024 * 1024,
        _ => return Err(format!("`{text}` has unknown unit; use B, KiB or MiB")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn transport_flags_default_to_the_documented_limits() {
        let flags = Flags::try_parse_from(["server"]).unwrap();
        assert_eq!(
            flags.common.serve_options().unwrap().limits,
            crate::TransportLimits::default()
        );
        let flags = Flags::try_parse_from([
            "server",
            "--max-concurrent-streams",
            "3",
            "--idle-timeout",
            "2s",
            "--max-message-size",
            "1KiB",
        ])
        .unwrap();
        let limits = flags.common.serve_options().unwrap().limits;
        assert_eq!(limits.max_concurrent_streams, 3);
        assert_eq!(limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_message_size, 1024);
    }

    #[test]
    fn the_health_port_is_off_unless_asked_for() {
        let flags = Flags::try_parse_from(["server"]).unwrap();
        assert_eq!(flags.common.serve_options().unwrap().health_port, None);
        let flags = Flags::try_parse_from([
            "server",
            "--health-listen",
            "127.0.0.1:0",
            "--health-addr-file",
            "h.addr",
        ])
        .unwrap();
        assert_eq!(
            flags.common.serve_options().unwrap().health_port,
            Some(crate::side_port::SideListen {
                address: "127.0.0.1:0".parse().unwrap(),
                addr_file: Some(PathBuf::from("h.addr")),
            })
        );
    }

    #[test]
    fn bad_health_flags_are_refused() {
        let error = Flags::try_parse_from(["server", "--health-listen", "8081"]).unwrap_err();
        assert!(error.to_string().contains("--health-listen"), "{error}");
        let error = Flags::try_parse_from(["server", "--health-addr-file", "h.addr"]).unwrap_err();
        assert!(error.to_string().contains("--health-listen"), "{error}");
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert!(parse_size("big").unwrap_err().contains("16KiB"));
        assert!(parse_size("3GiB").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        assert!(parse_duration("soon").unwrap_err().contains("500ms"));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("-1s").is_err());
    }
}
