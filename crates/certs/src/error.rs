//! What can go wrong making, loading or writing certificates.

use std::io;
use std::path::PathBuf;

/// Why a certificate could not be made, loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen could not make a key or a certificate from the parameters.
    #[error("cannot generate {what}: {cause}")]
    Generate {
        /// What was being generated (`the CA`, `the certificate for oauth`).
        what: String,
        /// rcgen's reason.
        cause: rcgen::Error,
    },
    /// A name, DNS name or URI cannot go into a certificate.
    #[error("invalid {field} `{value}`: {reason}")]
    InvalidInput {
        /// Which input (`name`, `DNS name`, `URI`, `validity`).
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A CA file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// A CA file was read but does not hold what it should.
    #[error("{} is not a usable CA file: {reason}", path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate or key file could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file (or the directory it goes into).
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
}

impl CertError {
    /// An [`CertError::InvalidInput`] for `field` holding `value`.
    pub(crate) fn invalid(field: &'static str, value: &str, reason: impl ToString) -> Self {
        Self::InvalidInput {
            field,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// A [`CertError::BadCaFile`] for `path`.
    pub(crate) fn bad_ca_file(path: &std::path::Path, reason: impl ToString) -> Self {
        Self::BadCaFile {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}
