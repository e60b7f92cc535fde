//! TLS for every hop, with rustls (the `ring` provider).
//!
//! - [`ServerTls`]: a server's certificate and key, and with a client CA,
//!   mutual TLS (only clients whose certificate that CA signed get in; the
//!   identity each proved travels with its requests as a
//!   [`crate::peer::PeerIdentity`]).
//! - [`ClientTls`]: the CA a client trusts, and the certificate it presents
//!   when the server asks for one; [`connect_lazy`] makes a channel that
//!   speaks TLS to `https://` URLs and plaintext to `http://` ones.
//!
//! Both read PEM files and watch them: a changed file (new modification time,
//! size or inode) is read again at the next poll, and SIGHUP reads every file
//! at once. A reload changes what new connections get; open connections keep
//! the session they have, so nothing is dropped. A file that does not load
//! (half written, key not matching the certificate) leaves the previous
//! configuration in force, with a warning, and is tried again when it
//! changes. Both speak HTTP/2 only (ALPN `h2`).

mod client;
mod files;
mod reload;
mod server;

pub use client::{ClientTls, ClientTlsFiles, connect_lazy, connect_lazy_verifying};
pub use server::{ServerTls, ServerTlsFiles};

use std::{path::PathBuf, sync::Arc};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading said.
        source: std::io::Error,
    },
    /// A file is not PEM of the kind expected.
    #[error("{path} is not a PEM {what}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold, e.g. `certificate`.
        what: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// A certificate, key or CA that rustls refuses.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being set up, naming the files.
        what: String,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A client CA that cannot verify certificates.
    #[error("cannot verify clients with the CA in {path}: {detail}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// An `https://` URL with no CA to verify its server by.
    #[error(
        "{url} is https but no CA is configured to verify it (--tls-ca, or `tls.ca` in the orchestrator's config)"
    )]
    NoCa {
        /// The URL.
        url: String,
    },
    /// A URL tonic cannot use.
    #[error("invalid URL {url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// What tonic said.
        source: tonic::transport::Error,
    },
}

/// The one crypto provider the mesh uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol both sides offer and require.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec()]
}
