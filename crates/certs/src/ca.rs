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
        let generate = |cause| CertError::Generate {
            what: "the CA".to_owned(),
            cause,
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
        let generate = |cause| CertError::Generate {
            what: format!("the certificate for {}", leaf.name),
            cause,
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
    let read_error = |cause| CertError::Read {
        path: path.to_owned(),
        cause,
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
    use super::*;

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
