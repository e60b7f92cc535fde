//! What rustls (ring provider) says of a certificate: the verifiers the mesh's
//! TLS servers and clients use, built from a CA certificate alone.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

/// An hour.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// The one certificate in `pem`.
pub(crate) fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// `time` as rustls' clock reading.
pub(crate) fn at(time: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970"),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(der(ca_pem)).expect("a usable trust anchor");
    Arc::new(roots)
}

/// What a client trusting `ca_pem` says, at `now`, of `leaf_pem` presented by
/// the server it dialled as `host` (a DNS name or an IP address).
pub(crate) fn verify_server(
    ca_pem: &str,
    leaf_pem: &str,
    host: &str,
    now: SystemTime,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca_pem), provider())
        .build()
        .expect("a server verifier");
    let host = ServerName::try_from(host.to_owned()).expect("a DNS name or an IP address");
    verifier
        .verify_server_cert(&der(leaf_pem), &[], &host, &[], at(now))
        .map(drop)
}

/// What a server trusting `ca_pem` (and requiring client certificates) says,
/// at `now`, of `leaf_pem` presented by a client.
pub(crate) fn verify_client(
    ca_pem: &str,
    leaf_pem: &str,
    now: SystemTime,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider())
        .build()
        .expect("a client verifier");
    verifier
        .verify_client_cert(&der(leaf_pem), &[], at(now))
        .map(drop)
}

/// The certificate error in `result`; panics on success or another error.
pub(crate) fn certificate_error(result: Result<(), rustls::Error>) -> CertificateError {
    match result {
        Err(rustls::Error::InvalidCertificate(error)) => error,
        other => panic!("expected an invalid certificate, got {other:?}"),
    }
}

/// Whether `error` says the certificate has expired.
pub(crate) fn is_expired(error: &CertificateError) -> bool {
    matches!(
        error,
        CertificateError::Expired | CertificateError::ExpiredContext { .. }
    )
}
