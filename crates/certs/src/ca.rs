//! The development CA: a key and its self-signed certificate, made fresh or
//! loaded from files, issuing leaf certificates.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::CertError;
use crate::files::{Access, write_atomically};
use crate::leaf::{CLOCK_SKEW, IssuedCert, Leaf, to_offset};

/// The stem of the CA's files: `ca.pem` and `ca-key.pem`.
pub(crate) const CA_STEM: &str = "ca";

/// The CA's certificate file name in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// The CA's key file name in a certificate directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a [`DevCa::new`] CA is valid: 10 years.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);

/// The longest PEM file [`DevCa::load`] reads; a CA certificate or key is a few KiB.
const MAX_PEM_LEN: u64 = 64 * 1024;

/// A certificate authority for development: an ECDSA P-256 key and its
/// self-signed certificate, which signs leaf certificates ([`DevCa::issue`]).
/// Trust it by giving servers and clients [`DevCa::cert_pem`] (`ca.pem`).
pub struct DevCa {
    /// Signs leaves: the CA's key with its subject and key identifier.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    cert_pem: String,
}

impl DevCa {
    /// A fresh CA named `common_name`, valid from an hour ago for 10 years,
    /// allowed to sign leaf certificates only (path length 0).
    pub fn new(common_name: &str) -> Result<Self, CertError> {
        let generate = |source| CertError::Generate {
            what: "the CA".to_owned(),
            source,
        };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // A unit unique to this key: verifiers find a certificate's issuer by
        // subject name, so two CAs with the same common name (a directory made
        // again) would otherwise look alike, and a leaf of the other one would
        // fail as a bad signature rather than as an unknown issuer.
        let unit = key_unit(&params.key_identifier(&key));
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, unit);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = to_offset(now - CLOCK_SKEW, "not_before")?;
        params.not_after = to_offset(now + CA_VALIDITY, "not_after")?;
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA in `cert_pem` with its key in `key_pem`, e.g. `ca.pem` and
    /// `ca-key.pem` written by [`DevCa::write`]. Fails with the file and the
    /// reason when a file is missing, is not PEM, is not a CA certificate, or
    /// when the key is not the certificate's.
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<Self, CertError> {
        let cert_text = read_pem(cert_pem)?;
        let key_text = read_pem(key_pem)?;
        let key = KeyPair::from_pem(&key_text).map_err(|error| {
            CertError::bad_ca_file(key_pem, format!("not a PEM private key ({error})"))
        })?;
        let der = CertificateDer::from_pem_slice(cert_text.as_bytes()).map_err(|error| {
            CertError::bad_ca_file(cert_pem, format!("not a PEM certificate ({error})"))
        })?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|error| {
            CertError::bad_ca_file(cert_pem, format!("not an X.509 certificate ({error})"))
        })?;
        if !cert.is_ca() {
            return Err(CertError::bad_ca_file(
                cert_pem,
                "the certificate is not a CA certificate (no basicConstraints CA:TRUE)",
            ));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::bad_ca_file(
                key_pem,
                format!(
                    "this key does not belong to the CA certificate {}",
                    cert_pem.display()
                ),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|error| {
            CertError::bad_ca_file(cert_pem, format!("cannot sign with it ({error})"))
        })?;
        Ok(Self {
            issuer,
            cert_pem: cert_text,
        })
    }

    /// The CA certificate, PEM: what servers and clients trust.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `leaf` with a fresh ECDSA P-256 key, signed by this CA.
    pub fn issue(&self, leaf: &Leaf) -> Result<IssuedCert, CertError> {
        let generate = |source| CertError::Generate {
            what: format!("the certificate for {}", leaf.name),
            source,
        };
        let params = leaf.params()?;
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `dir/ca.pem` (mode 0644) and `dir/ca-key.pem` (mode 0600), each
    /// atomically, creating `dir` if needed.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        write_atomically(dir, CA_KEY_FILE, &self.key_pem(), Access::Private)?;
        write_atomically(dir, CA_CERT_FILE, &self.cert_pem, Access::Public)
    }
}

/// Never prints the private key.
impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// `key <hex>`: the first 8 bytes of a key identifier, in hex.
fn key_unit(key_identifier: &[u8]) -> String {
    let hex: String = key_identifier
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("key {hex}")
}

/// The text of the PEM file at `path`, bounded in size.
fn read_pem(path: &Path) -> Result<String, CertError> {
    use std::io::Read as _;
    let read_error = |source| CertError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_PEM_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => CertError::bad_ca_file(path, "not text"),
            _ => read_error(error),
        })?;
    if text.len() as u64 > MAX_PEM_LEN {
        return Err(CertError::bad_ca_file(path, "too long for a PEM file"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{CertificateError, RootCertStore};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn roots(ca: &DevCa) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem())).unwrap();
        Arc::new(roots)
    }

    /// What a rustls client trusting `ca` says of `leaf` presented by `host`.
    fn verify_as_server(ca: &DevCa, leaf: &IssuedCert, host: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider)
            .build()
            .unwrap();
        let host = ServerName::try_from(host.to_owned()).unwrap();
        verifier
            .verify_server_cert(&der(&leaf.cert_pem), &[], &host, &[], UnixTime::now())
            .map(drop)
    }

    /// What a rustls server trusting `ca` says of `leaf` presented by a client.
    fn verify_as_client(ca: &DevCa, leaf: &IssuedCert) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider)
            .build()
            .unwrap();
        verifier
            .verify_client_cert(&der(&leaf.cert_pem), &[], UnixTime::now())
            .map(drop)
    }

    fn certificate_error(result: Result<(), rustls::Error>) -> CertificateError {
        match result {
            Err(rustls::Error::InvalidCertificate(error)) => error,
            other => panic!("expected an invalid certificate, got {other:?}"),
        }
    }

    #[test]
    fn a_service_certificate_verifies_for_its_name_localhost_and_loopback_as_server_and_client() {
        let ca = DevCa::new("test CA").unwrap();
        let leaf = ca.issue(&Leaf::service("oauth")).unwrap();
        for host in ["oauth", "localhost", "127.0.0.1", "::1"] {
            verify_as_server(&ca, &leaf, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        verify_as_client(&ca, &leaf).unwrap();
    }

    #[test]
    fn a_service_name_with_an_underscore_still_verifies() {
        let ca = DevCa::new("test CA").unwrap();
        let leaf = ca.issue(&Leaf::service("database_query")).unwrap();
        verify_as_server(&ca, &leaf, "database_query").unwrap();
        verify_as_server(&ca, &leaf, "localhost").unwrap();
    }

    #[test]
    fn the_key_is_the_certificates_and_rustls_takes_it() {
        let ca = DevCa::new("test CA").unwrap();
        let leaf = ca.issue(&Leaf::service("tools")).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider.key_provider.load_private_key(key).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![der(&leaf.cert_pem)], signing_key);
        certified.keys_match().unwrap();
    }

    #[test]
    fn an_expired_certificate_fails_as_expired() {
        let ca = DevCa::new("test CA").unwrap();
        let now = SystemTime::now();
        let expired = Leaf {
            not_before: now - 2 * HOUR,
            not_after: now - HOUR,
            ..Leaf::service("oauth")
        };
        let leaf = ca.issue(&expired).unwrap();
        let error = certificate_error(verify_as_server(&ca, &leaf, "localhost"));
        assert!(
            matches!(
                error,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn expiry_set_only_by_not_after_still_fails_as_expired() {
        let ca = DevCa::new("test CA").unwrap();
        let expired = Leaf {
            not_after: SystemTime::now() - HOUR,
            ..Leaf::service("oauth")
        };
        let leaf = ca.issue(&expired).unwrap();
        let error = certificate_error(verify_as_client(&ca, &leaf));
        assert!(
            matches!(
                error,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_certificate_for_another_host_fails_as_not_valid_for_name() {
        let ca = DevCa::new("test CA").unwrap();
        let other = Leaf {
            dns_names: vec!["other.example".to_owned()],
            ip_addresses: vec![],
            ..Leaf::service("oauth")
        };
        let leaf = ca.issue(&other).unwrap();
        verify_as_server(&ca, &leaf, "other.example").unwrap();
        for host in ["localhost", "127.0.0.1", "oauth"] {
            let error = certificate_error(verify_as_server(&ca, &leaf, host));
            assert!(
                matches!(
                    error,
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ),
                "{host}: {error:?}"
            );
        }
    }

    #[test]
    fn a_certificate_from_another_ca_fails_as_unknown_issuer() {
        // The same common name on purpose: a directory made again.
        let ca = DevCa::new("test CA").unwrap();
        let stranger = DevCa::new("test CA").unwrap();
        let leaf = stranger.issue(&Leaf::service("oauth")).unwrap();
        let error = certificate_error(verify_as_server(&ca, &leaf, "localhost"));
        assert_eq!(error, CertificateError::UnknownIssuer);
        let error = certificate_error(verify_as_client(&ca, &leaf));
        assert_eq!(error, CertificateError::UnknownIssuer);
    }

    #[test]
    fn a_written_ca_loads_back_and_its_new_leaves_verify_against_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new("test CA").unwrap();
        ca.write(dir.path()).unwrap();
        let old_leaf = ca.issue(&Leaf::service("memory")).unwrap();
        let loaded = DevCa::load(
            &dir.path().join(CA_CERT_FILE),
            &dir.path().join(CA_KEY_FILE),
        )
        .unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.key_pem(), ca.key_pem());
        // Renewing under the loaded CA keeps trust: clients holding the
        // original ca.pem accept the new leaf, and the old one still verifies.
        let renewed = loaded.issue(&Leaf::service("memory")).unwrap();
        assert_ne!(renewed, old_leaf);
        verify_as_server(&ca, &renewed, "localhost").unwrap();
        verify_as_client(&ca, &renewed).unwrap();
        verify_as_server(&loaded, &old_leaf, "127.0.0.1").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_ca_key_is_written_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        DevCa::new("test CA").unwrap().write(dir.path()).unwrap();
        let mode = |name| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode(CA_CERT_FILE), 0o644);
    }

    fn load_error(dir: &Path) -> String {
        DevCa::load(&dir.join(CA_CERT_FILE), &dir.join(CA_KEY_FILE))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn missing_garbage_and_mismatched_ca_files_are_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let message = load_error(path);
        assert!(
            message.starts_with("cannot read ") && message.contains("ca.pem"),
            "{message}"
        );

        let ca = DevCa::new("test CA").unwrap();
        ca.write(path).unwrap();
        std::fs::write(path.join(CA_KEY_FILE), "garbage").unwrap();
        let message = load_error(path);
        assert!(
            message.contains("ca-key.pem is not a usable CA file: not a PEM private key"),
            "{message}"
        );

        ca.write(path).unwrap();
        std::fs::write(path.join(CA_CERT_FILE), "garbage").unwrap();
        let message = load_error(path);
        assert!(
            message.contains("ca.pem is not a usable CA file: not a PEM certificate"),
            "{message}"
        );

        std::fs::write(path.join(CA_CERT_FILE), [0xff, 0xfe, 0x00]).unwrap();
        let message = load_error(path);
        assert!(
            message.ends_with("ca.pem is not a usable CA file: not text"),
            "{message}"
        );

        // Another CA's key beside this certificate.
        ca.write(path).unwrap();
        let stranger = DevCa::new("test CA").unwrap();
        std::fs::write(path.join(CA_KEY_FILE), stranger.key_pem()).unwrap();
        let message = load_error(path);
        assert!(
            message.contains("this key does not belong to the CA certificate"),
            "{message}"
        );

        // A leaf is not a CA, even with its own key.
        let leaf = ca.issue(&Leaf::service("oauth")).unwrap();
        std::fs::write(path.join(CA_CERT_FILE), &leaf.cert_pem).unwrap();
        std::fs::write(path.join(CA_KEY_FILE), &leaf.key_pem).unwrap();
        let message = load_error(path);
        assert!(message.contains("not a CA certificate"), "{message}");
    }

    #[test]
    fn names_that_cannot_go_into_a_certificate_are_refused_with_the_field() {
        let ca = DevCa::new("test CA").unwrap();
        let bad_dns = Leaf {
            dns_names: vec!["bad\u{e9}.example".to_owned()],
            ..Leaf::service("oauth")
        };
        let error = ca.issue(&bad_dns).unwrap_err();
        assert!(
            matches!(
                error,
                CertError::InvalidInput {
                    field: "DNS name",
                    ..
                }
            ),
            "{error}"
        );
        let bad_uri = Leaf {
            uri: Some("spiffe://heist.local/\u{e9}".to_owned()),
            ..Leaf::service("oauth")
        };
        let error = ca.issue(&bad_uri).unwrap_err();
        assert!(
            matches!(error, CertError::InvalidInput { field: "URI", .. }),
            "{error}"
        );
    }
}
