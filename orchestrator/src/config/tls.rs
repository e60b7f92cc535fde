//! The `tls` section: the CA the orchestrator verifies every service by, and the certificate it
//! shows under mutual TLS. With it, every service is called over TLS; without it, an `https://`
//! address is refused (there would be nothing to verify the server by).

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, Endpoints, fields::Fields, raw::RawTls};

/// TLS on every call the orchestrator makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA (PEM) that signed the services' certificates.
    pub ca: PathBuf,
    /// The certificate chain and key (PEM) shown to services that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// How often changed files are read again.
    pub reload: Duration,
}

impl TlsSettings {
    /// The files as the TLS layer takes them.
    pub fn files(&self) -> heist_plumbing::tls::ClientTlsFiles {
        heist_plumbing::tls::ClientTlsFiles {
            ca: self.ca.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// Reads the `tls` section, and refuses an `https://` address without it.
pub(super) fn build_tls<'e>(
    fields: &Fields<'_>,
    raw: Option<&RawTls>,
    services: impl IntoIterator<Item = (String, &'e Endpoints)>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(raw) = raw else {
        for (entry, endpoints) in services {
            if let Some(https) = endpoints.iter().find(|endpoint| endpoint.is_https()) {
                return Err(fields.invalid(
                    &entry,
                    format!(
                        "{https} is https, but there is no tls section to verify it by; add \
                         `tls: {{ ca: PATH }}` (and cert and key for mutual TLS)"
                    ),
                ));
            }
        }
        return Ok(None);
    };
    let ca = fields.required_text("tls.ca", &raw.ca)?;
    let cert = fields.optional_text("tls.cert", raw.cert.as_deref())?;
    let key = fields.optional_text("tls.key", raw.key.as_deref())?;
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(fields.invalid(
                "tls.key",
                "tls.cert needs its key; give tls.key too".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(fields.invalid(
                "tls.cert",
                "tls.key needs its certificate; give tls.cert too".to_owned(),
            ));
        }
    };
    let reload = fields.duration("tls.reload", raw.reload.as_deref(), Duration::from_secs(2))?;
    Ok(Some(TlsSettings {
        ca: PathBuf::from(ca),
        identity,
        reload,
    }))
}
