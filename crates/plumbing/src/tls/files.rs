//! Reading certificates, keys and CAs from PEM files, with errors that name
//! the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, detail: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what,
        detail: detail.to_string(),
    }
}

/// Every certificate in `path` (a chain: the leaf first).
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(path, "certificate", error))?;
    if chain.is_empty() {
        return Err(pem_error(path, "certificate", "no CERTIFICATE section"));
    }
    Ok(chain)
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| pem_error(path, "private key", error))
}

/// The CA certificates in `path`, as trust anchors.
pub(super) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|source| TlsError::Rustls {
            what: format!("cannot trust the CA in {}", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_file_is_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = certificates(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read ") && error.contains("missing.pem"),
            "{error}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let error = certificates(&empty).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem is not a PEM certificate"),
            "{error}"
        );
        let error = private_key(&empty).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem is not a PEM private key"),
            "{error}"
        );

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let error = certificates(&garbled).unwrap_err().to_string();
        assert!(
            error.contains("garbled.pem is not a PEM certificate"),
            "{error}"
        );

        let not_a_ca = dir.path().join("not-a-ca.pem");
        std::fs::write(
            &not_a_ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = roots(&not_a_ca).unwrap_err().to_string();
        assert!(
            error.contains("cannot trust the CA in") && error.contains("not-a-ca.pem"),
            "{error}"
        );
    }
}
