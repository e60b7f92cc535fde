//! A server's side of TLS: its certificate, and whom it lets in.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rustls::{ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::{TlsError, alpn, files, provider, reload::Reloading};
use crate::peer::PeerIdentity;

/// Where a server's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// With a CA (PEM): mutual TLS, only clients with a certificate it
    /// signed are accepted.
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS, reloaded when its files change; a cheap handle.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
    reload_every: Duration,
    mutual: bool,
    handshakes: Arc<AtomicU64>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .field("reload_every", &self.reload_every)
            .finish_non_exhaustive()
    }
}

/// A connection that finished its handshake, and who the client proved to be.
pub(crate) struct TlsAccepted {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) peer: Option<PeerIdentity>,
}

impl ServerTls {
    /// Reads `files` (an error names the file and what is wrong); they are
    /// read again every `reload_every` if changed, and on SIGHUP, once the
    /// server runs.
    pub fn load(files: ServerTlsFiles, reload_every: Duration) -> Result<Self, TlsError> {
        let mut watched = vec![files.cert.clone(), files.key.clone()];
        watched.extend(files.client_ca.clone());
        let mutual = files.client_ca.is_some();
        let config = Reloading::new("server certificate", watched, move || config_of(&files))?;
        Ok(Self {
            config,
            reload_every,
            mutual,
            handshakes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Reads the files again now if they changed; true when new ones are
    /// in force (the watcher does this by itself).
    pub fn reload(&self) -> bool {
        self.config.reload(false)
    }

    /// Starts watching the files (once; the server does it).
    pub(crate) fn watch(&self) {
        self.config.watch(self.reload_every);
    }

    /// The handshake on `tcp`, with the configuration in force now. A
    /// refused client gets rustls' alert and then an orderly close, so it
    /// reads why (`certificate required`, `unknown CA`) rather than a reset.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsAccepted> {
        let accepting = TlsAcceptor::from(self.config.current()).accept(tcp);
        let stream = match accepting.into_fallible().await {
            Ok(stream) => stream,
            Err((error, tcp)) => {
                close_after_alert(tcp).await;
                return Err(error);
            }
        };
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[CertificateDer<'_>]>::first)
            .and_then(identity_of);
        Ok(TlsAccepted { stream, peer })
    }
}

/// Closes our side, then reads (and drops) what the client still sends for
/// a moment: closing with unread data would reset the connection and the
/// client might never read the alert.
async fn close_after_alert(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tcp.shutdown().await;
    let mut sink = [0_u8; 4096];
    let drain = async { while matches!(tcp.read(&mut sink).await, Ok(read) if read > 0) {} };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

fn config_of(files: &ServerTlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = files::certificates(&files.cert)?;
    let key = files::private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "no TLS version to offer".to_owned(),
            source,
        })?;
    let builder = match &files.client_ca {
        Some(path) => {
            let roots = files::roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| TlsError::ClientCa {
                    path: path.clone(),
                    detail: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: format!(
                "certificate {} with key {}",
                files.cert.display(),
                files.key.display()
            ),
            source,
        })?;
    config.alpn_protocols = alpn();
    Ok(config)
}

/// Who a client certificate names: its first URI SAN (a SPIFFE ID, say),
/// else its first DNS SAN.
fn identity_of(certificate: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let parsed = webpki::EndEntityCert::try_from(certificate).ok()?;
    let name = parsed
        .valid_uri_names()
        .next()
        .or_else(|| parsed.valid_dns_names().next())?;
    Some(PeerIdentity::new(name))
}
