//! A development CA in one command: a CA and a certificate per service, for
//! running the mesh over TLS on one machine.
//!
//! # Layout
//!
//! - `ca.rs`: [`DevCa`], the CA (a key and its self-signed certificate), made
//!   fresh ([`DevCa::new`]) or loaded from `ca.pem` and `ca-key.pem`
//!   ([`DevCa::load`]); it issues leaves ([`DevCa::issue`]).
//! - `leaf.rs`: [`Leaf`], what a leaf certificate says (names, SPIFFE ID,
//!   validity), with [`Leaf::service`] for a mesh service, and
//!   [`IssuedCert`], a certificate with its key.
//! - `files.rs`: atomic writes (temporary file + rename in the same
//!   directory), keys mode 0600, and [`check_name`] for leaf file names.
//! - `main.rs`: the `heist-dev-certs` binary.
//!
//! Keys are ECDSA P-256 (rcgen with the `ring` provider), which rustls
//! accepts for TLS 1.2 and 1.3.
//!
//! ```
//! use heist_certs::{DevCa, Leaf};
//! let ca = DevCa::new("heist mesh development CA")?;
//! let oauth = ca.issue(&Leaf::service("oauth"))?;
//! assert!(oauth.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! # Ok::<(), heist_certs::CertError>(())
//! ```

mod ca;
mod error;
mod files;
mod leaf;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY, DevCa};
pub use error::CertError;
pub use files::check_name;
pub use leaf::{
    CLOCK_SKEW, IssuedCert, Leaf, SERVICE_VALIDITY, TRUST_DOMAIN, cert_file, key_file, spiffe_id,
};
