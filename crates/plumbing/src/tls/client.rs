//! A client's side of TLS: the CA it trusts and the certificate it shows.

use std::{
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector as RustlsConnector, client::TlsStream};
use tonic::transport::{Channel, Endpoint};

use super::{TlsError, alpn, files, provider, reload::Reloading};

/// Where a client's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA (PEM) that must have signed the servers' certificates.
    pub ca: PathBuf,
    /// The certificate chain and key (PEM) shown to servers that ask for
    /// one (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A client's TLS, reloaded when its files change; a cheap handle.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
    reload_every: Duration,
    handshakes: Arc<AtomicU64>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("reload_every", &self.reload_every)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads `files` (an error names the file and what is wrong); they are
    /// read again every `reload_every` if changed, and on SIGHUP, once
    /// [`ClientTls::watch`] runs.
    pub fn load(files: ClientTlsFiles, reload_every: Duration) -> Result<Self, TlsError> {
        let mut watched = vec![files.ca.clone()];
        if let Some((cert, key)) = &files.identity {
            watched.extend([cert.clone(), key.clone()]);
        }
        let config = Reloading::new("client certificate", watched, move || config_of(&files))?;
        Ok(Self {
            config,
            reload_every,
            handshakes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Starts watching the files, for as long as a handle lives (once;
    /// needs a tokio runtime).
    pub fn watch(&self) {
        self.config.watch(self.reload_every);
    }

    /// Reads the files again now if they changed; true when new ones are
    /// in force.
    pub fn reload(&self) -> bool {
        self.config.reload(false)
    }

    /// Handshakes completed so far by channels made with this handle.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

fn config_of(files: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let roots = files::roots(&files.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "no TLS version to offer".to_owned(),
            source,
        })?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(files::certificates(cert)?, files::private_key(key)?)
            .map_err(|source| TlsError::Rustls {
                what: format!(
                    "client certificate {} with key {}",
                    cert.display(),
                    key.display()
                ),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn();
    Ok(config)
}

/// A channel to `endpoint` that connects on first use: TLS with `tls` for
/// an `https://` URL (an error without it), plaintext for `http://`.
pub fn connect_lazy(endpoint: Endpoint, tls: Option<&ClientTls>) -> Result<Channel, TlsError> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint.connect_lazy());
    }
    let Some(tls) = tls else {
        return Err(TlsError::NoCa {
            url: endpoint.uri().to_string(),
        });
    };
    Ok(endpoint.connect_with_connector_lazy(Connector {
        tls: tls.clone(),
        server_name: None,
    }))
}

/// A channel to `endpoint` over TLS, connecting on first use, that verifies
/// the server's certificate for `server_name` rather than the URL's host:
/// for an address resolved from a name (`https://10.0.0.7:8006` for
/// `audit.heist`), whose certificate names the name.
pub fn connect_lazy_verifying(endpoint: Endpoint, tls: &ClientTls, server_name: &str) -> Channel {
    endpoint.connect_with_connector_lazy(Connector {
        tls: tls.clone(),
        server_name: Some(server_name.to_owned()),
    })
}

/// Opens TCP to a URL's host and port, then TLS, verifying the host name
/// (or `server_name`, when given).
#[derive(Clone)]
struct Connector {
    tls: ClientTls,
    server_name: Option<String>,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri} names no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let verified = server_name.unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(verified.clone())
                .map_err(|_| invalid(format!("{verified:?} is not a host name TLS can verify")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = RustlsConnector::from(tls.config.current())
                .connect(name, tcp)
                .await
                .map_err(|error| {
                    std::io::Error::new(
                        error.kind(),
                        format!("TLS handshake with {verified} at {host}:{port} failed: {error}"),
                    )
                })?;
            tls.handshakes.fetch_add(1, Ordering::Relaxed);
            Ok(TokioIo::new(stream))
        })
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}
