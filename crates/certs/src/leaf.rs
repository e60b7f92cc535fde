//! What a leaf certificate says ([`Leaf`]) and what issuing one gives
//! ([`IssuedCert`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
    string::Ia5String,
};

use crate::CertError;
use crate::files::{Access, check_name, write_atomically};

/// The trust domain of the mesh's SPIFFE IDs: `spiffe://heist.local/<name>`.
pub const TRUST_DOMAIN: &str = "heist.local";

/// How long [`Leaf::service`] certificates are valid: 30 days.
pub const SERVICE_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How far back [`Leaf::service`] certificates start: an hour, for clocks a
/// little behind.
pub const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// What a leaf (end-entity) certificate says. Every field is public so that a
/// test can make the certificate it needs from [`Leaf::service`]:
///
/// ```
/// # use std::time::{Duration, SystemTime};
/// # use heist_certs::Leaf;
/// let hour = Duration::from_secs(3600);
/// let now = SystemTime::now();
/// let expired = Leaf { not_before: now - 2 * hour, not_after: now - hour, ..Leaf::service("oauth") };
/// let wrong_host = Leaf {
///     dns_names: vec!["other.example".into()],
///     ip_addresses: vec![],
///     ..Leaf::service("oauth")
/// };
/// ```
///
/// Every leaf has the extended key usages serverAuth and clientAuth, so one
/// certificate serves a service both as a server and as a client of others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name, and [`IssuedCert::write`]'s usual file name.
    pub name: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// A URI subject alternative name: the SPIFFE ID the mesh reads a peer's
    /// identity from.
    pub uri: Option<String>,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until (a time in the past makes an expired certificate).
    pub not_after: SystemTime,
}

impl Leaf {
    /// The certificate of the mesh service `name`: DNS names `name` and
    /// `localhost`, IP addresses 127.0.0.1 and ::1, URI
    /// `spiffe://heist.local/<name>`, valid from an hour ago until 30 days from
    /// now.
    pub fn service(name: &str) -> Self {
        let now = SystemTime::now();
        Self {
            name: name.to_owned(),
            dns_names: vec![name.to_owned(), "localhost".to_owned()],
            ip_addresses: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            uri: Some(spiffe_id(name)),
            not_before: now - CLOCK_SKEW,
            not_after: now + SERVICE_VALIDITY,
        }
    }

    /// The same leaf, valid from an hour ago until `validity` from now.
    pub fn valid_for(self, validity: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + validity,
            ..self
        }
    }

    /// rcgen's parameters for this leaf, checking every name on the way.
    pub(crate) fn params(&self) -> Result<CertificateParams, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, self.name.as_str());
        for dns in &self.dns_names {
            let name = Ia5String::try_from(dns.as_str())
                .map_err(|error| CertError::invalid("DNS name", dns, error))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .extend(self.ip_addresses.iter().copied().map(SanType::IpAddress));
        if let Some(uri) = &self.uri {
            let value = Ia5String::try_from(uri.as_str())
                .map_err(|error| CertError::invalid("URI", uri, error))?;
            params.subject_alt_names.push(SanType::URI(value));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(self.not_before, "not_before")?;
        params.not_after = to_offset(self.not_after, "not_after")?;
        Ok(params)
    }
}

/// The SPIFFE ID of the mesh service `name`: `spiffe://heist.local/<name>`.
pub fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{name}")
}

/// `time` as rcgen's date type (whole seconds, as X.509 stores them).
pub(crate) fn to_offset(
    time: SystemTime,
    field: &'static str,
) -> Result<time::OffsetDateTime, CertError> {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CertError::invalid("validity", field, "before 1970"))?
        .as_secs();
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .ok_or_else(|| CertError::invalid("validity", field, "too far in the future"))
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// Its private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `dir/<name>.pem` (mode 0644) and `dir/<name>-key.pem` (mode 0600),
    /// each atomically, creating `dir` if needed. The key goes first, so that a
    /// reader who sees the new certificate finds its key.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), CertError> {
        check_name(name)?;
        write_atomically(dir, &key_file(name), &self.key_pem, Access::Private)?;
        write_atomically(dir, &cert_file(name), &self.cert_pem, Access::Public)
    }
}

/// Never prints the private key.
impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The certificate file of `name`: `<name>.pem`.
pub fn cert_file(name: &str) -> String {
    format!("{name}.pem")
}

/// The key file of `name`: `<name>-key.pem`.
pub fn key_file(name: &str) -> String {
    format!("{name}-key.pem")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_leaf_names_the_service_localhost_loopback_and_its_spiffe_id() {
        let before = SystemTime::now();
        let leaf = Leaf::service("tools");
        assert_eq!(leaf.name, "tools");
        assert_eq!(leaf.dns_names, ["tools", "localhost"]);
        assert_eq!(
            leaf.ip_addresses,
            [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(leaf.uri.as_deref(), Some("spiffe://heist.local/tools"));
        assert!(leaf.not_before <= before - CLOCK_SKEW + Duration::from_secs(1));
        assert!(leaf.not_after >= before + SERVICE_VALIDITY);
        let short = leaf.valid_for(Duration::from_secs(86_400));
        assert!(short.not_after < before + Duration::from_secs(86_401 + 1));
    }

    #[test]
    fn times_before_1970_are_refused() {
        let error = to_offset(UNIX_EPOCH - Duration::from_secs(1), "not_before").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid validity `not_before`: before 1970"
        );
    }

    #[test]
    fn the_debug_form_of_an_issued_cert_hides_the_key() {
        let issued = IssuedCert {
            cert_pem: "CERT".to_owned(),
            key_pem: "SECRET".to_owned(),
        };
        assert!(!format!("{issued:?}").contains("SECRET"));
    }

    #[test]
    fn writing_under_a_bad_file_name_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let issued = IssuedCert {
            cert_pem: "CERT".to_owned(),
            key_pem: "KEY".to_owned(),
        };
        for name in ["ca", "../escape", ""] {
            issued.write(dir.path(), name).unwrap_err();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        issued.write(dir.path(), "oauth").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("oauth.pem")).unwrap(),
            "CERT"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("oauth-key.pem")).unwrap(),
            "KEY"
        );
    }
}
