//! The plaintext port that serves `grpc.health.v1.Health` alone, for
//! Kubernetes' native gRPC probe (which speaks neither TLS nor auth).
//!
//! It answers from the main server's own reporter, so both ports always say
//! the same; everything else on it (reflection, the service's RPCs) is
//! UNIMPLEMENTED.

use std::{net::SocketAddr, path::PathBuf};

use tokio::net::TcpListener;

/// Where a server also serves health alone (`--health-listen`), and where it
/// writes the bound address (`--health-addr-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthListen {
    /// The address to bind, e.g. `0.0.0.0:8081` or `127.0.0.1:0`.
    pub address: SocketAddr,
    /// Once bound, the bound address (`IP:PORT`) is written here.
    pub addr_file: Option<PathBuf>,
}

/// Why the health port cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum HealthPortError {
    /// It would share the main port.
    #[error(
        "--health-listen {health} is the main listening address ({main}); give health its own port"
    )]
    SameAddress {
        /// The health address asked for.
        health: SocketAddr,
        /// The main port's bound address.
        main: SocketAddr,
    },
    /// The main port's bound address cannot be read.
    #[error("cannot read the main listening address: {0}")]
    MainAddress(#[source] std::io::Error),
    /// The address cannot be bound.
    #[error("cannot listen for health on {address}: {source}")]
    Bind {
        /// The health address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound address cannot be written to the address file.
    #[error("cannot write the health address to {}: {source}", path.display())]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl HealthListen {
    /// Binds the health port beside the main one (`main`) and writes its
    /// address to the address file if one is given; `service` names the
    /// server in the log.
    pub(crate) async fn bind(
        &self,
        main: &TcpListener,
        service: &str,
    ) -> Result<TcpListener, HealthPortError> {
        let address = self.address;
        let main = main.local_addr().map_err(HealthPortError::MainAddress)?;
        if same_port(address, main) {
            return Err(HealthPortError::SameAddress {
                health: address,
                main,
            });
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| HealthPortError::Bind { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| HealthPortError::Bind { address, source })?;
        if let Some(path) = &self.addr_file {
            crate::cli::write_addr_file(path, bound).map_err(|source| {
                HealthPortError::AddrFile {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        tracing::info!(service, address = %bound, "health port listening");
        Ok(listener)
    }
}

/// Whether binding `health` would collide with the bound `main` address: the
/// same port on the same IP, or on any IP when either is unspecified
/// (`0.0.0.0`). Port 0 never collides (it picks a free port).
fn same_port(health: SocketAddr, main: SocketAddr) -> bool {
    health.port() != 0
        && health.port() == main.port()
        && (health.ip() == main.ip() || health.ip().is_unspecified() || main.ip().is_unspecified())
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
        let health = HealthListen {
            address: main.local_addr().unwrap(),
            addr_file: None,
        };
        let error = health.bind(&main, "test").await.unwrap_err().to_string();
        assert!(error.contains("is the main listening address"), "{error}");
    }

    #[tokio::test]
    async fn the_bound_address_is_written_to_the_addr_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.addr");
        let health = HealthListen {
            address: addr("127.0.0.1:0"),
            addr_file: Some(path.clone()),
        };
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = health.bind(&main, "test").await.unwrap();
        let written: SocketAddr = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(written, listener.local_addr().unwrap());
    }
}
