//! A second listening address beside a server's main one: the health-only
//! port (`--health-listen`) and the metrics port (`--metrics-listen`). One
//! way to bind it: refused when it would be the main port, its bound address
//! written to its `--*-addr-file`, and logged.

use std::{net::SocketAddr, path::PathBuf};

use tokio::net::TcpListener;

/// Where a server also listens for one side job, and where it writes the
/// bound address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideListen {
    /// The address to bind, e.g. `0.0.0.0:8081` or `127.0.0.1:0`.
    pub address: SocketAddr,
    /// Once bound, the bound address (`IP:PORT`) is written here.
    pub addr_file: Option<PathBuf>,
}

/// What a side port is for, as its flag and its messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidePort {
    /// `--health-listen`: health alone, in plaintext.
    Health,
    /// `--metrics-listen`: Prometheus metrics over HTTP.
    Metrics,
}

impl SidePort {
    fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Metrics => "metrics",
        }
    }

    /// What failing to bind it says it could not do.
    fn job(self) -> &'static str {
        match self {
            Self::Health => "listen for health",
            Self::Metrics => "serve metrics",
        }
    }
}

/// Why a side port cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SidePortError {
    /// It would share the main port.
    #[error(
        "--{}-listen {address} is the main listening address ({main}); give {} its own port",
        port.name(),
        port.name()
    )]
    SameAddress {
        /// Which side port.
        port: SidePort,
        /// The address asked for.
        address: SocketAddr,
        /// The main port's bound address.
        main: SocketAddr,
    },
    /// The main port's bound address cannot be read.
    #[error("cannot read the main listening address: {0}")]
    MainAddress(#[source] std::io::Error),
    /// The address cannot be bound.
    #[error("cannot {} on {address}: {source}", port.job())]
    Bind {
        /// Which side port.
        port: SidePort,
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound address cannot be written to the address file.
    #[error("cannot write the {} address to {}: {source}", port.name(), path.display())]
    AddrFile {
        /// Which side port.
        port: SidePort,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SideListen {
    /// Binds the `port` beside `main` (when there is one: a side port may
    /// not be it) and writes its address to the address file if one is
    /// given; `service` names the server in the log.
    pub async fn bind(
        &self,
        port: SidePort,
        main: Option<&TcpListener>,
        service: &str,
    ) -> Result<TcpListener, SidePortError> {
        let address = self.address;
        if let Some(main) = main {
            let main = main.local_addr().map_err(SidePortError::MainAddress)?;
            if same_port(address, main) {
                return Err(SidePortError::SameAddress {
                    port,
                    address,
                    main,
                });
            }
        }
        let bind_error = |source| SidePortError::Bind {
            port,
            address,
            source,
        };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        if let Some(path) = &self.addr_file {
            crate::cli::write_addr_file(path, bound).map_err(|source| SidePortError::AddrFile {
                port,
                path: path.to_owned(),
                source,
            })?;
        }
        tracing::info!(service, address = %bound, "{} port listening", port.name());
        Ok(listener)
    }
}

/// Whether binding `side` would collide with the bound `main` address: the
/// same port on the same IP, or on any IP when either is unspecified
/// (`0.0.0.0`). Port 0 never collides (it picks a free port).
fn same_port(side: SocketAddr, main: SocketAddr) -> bool {
    side.port() != 0
        && side.port() == main.port()
        && (side.ip() == main.ip() || side.ip().is_unspecified() || main.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_main_port_is_refused_and_other_ports_are_not() {
        let main = addr("127.0.0.1:8001");
        assert!(same_port(addr("127.0.0.1:8001"), main));
        assert!(same_port(addr("0.0.0.0:8001"), main));
        assert!(same_port(addr("127.0.0.1:8001"), addr("0.0.0.0:8001")));
        assert!(!same_port(addr("127.0.0.1:8081"), main));
        assert!(!same_port(addr("127.0.0.2:8001"), main));
        assert!(!same_port(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }

    #[tokio::test]
    async fn the_same_address_as_the_main_port_is_a_clear_error() {
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let side = SideListen {
            address: main.local_addr().unwrap(),
            addr_file: None,
        };
        for (port, flag) in [
            (SidePort::Health, "--health-listen"),
            (SidePort::Metrics, "--metrics-listen"),
        ] {
            let error = side
                .bind(port, Some(&main), "test")
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains("is the main listening address"), "{error}");
            assert!(error.starts_with(flag), "{error}");
        }
    }

    #[tokio::test]
    async fn the_bound_address_is_written_to_the_addr_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.addr");
        let health = SideListen {
            address: addr("127.0.0.1:0"),
            addr_file: Some(path.clone()),
        };
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = health
            .bind(SidePort::Health, Some(&main), "test")
            .await
            .unwrap();
        let written: SocketAddr = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(written, listener.local_addr().unwrap());
    }
}
