//! JWT access tokens of the heist mesh: Ed25519 signing keys, claims, issuing and verification.
//!
//! The OAuth service signs tokens with a [`SigningKey`] through a [`TokenIssuer`]; every other
//! service checks them locally with a [`Verifier`] holding the public keys ([`KeySet`], filled
//! from the [`Jwk`]s that `GetPublicKeys` publishes). Tokens are compact JWS (RFC 7515) with
//! `alg: EdDSA` (RFC 8037), a `kid` (the RFC 7638 thumbprint of the public key) and
//! `typ: JWT`. Time is always passed in (`now`, seconds since the Unix epoch) so that tests
//! control it; [`unix_now`] reads the system clock for everyone else.
//!
//! # Why no JWT library
//!
//! `jsonwebtoken` (11) needs a crypto backend: `rust_crypto` brings RSA, P-256, P-384, HMAC
//! and, by default, PEM/ASN.1 parsing: about 210 lines of `cargo tree` against 54 for
//! `ed25519-dalek` + `base64` + `sha2` + `getrandom` here; `aws_lc_rs` needs a C toolchain
//! and CMake. The mesh signs with one algorithm, so a hand-written compact encoder and a
//! verifier that accepts only `EdDSA` (about 100 lines in `jws`) are smaller
//! and leave no algorithm-confusion surface (`none`, HS256 with a public key as secret).
//!
//! # Layout
//!
//! - `key`: [`SigningKey`] and [`PublicKey`]; `ring`: [`KeyRing`], the active key and the
//!   older keys still published; `key_file`: the ring file on disk (0600, atomic writes).
//! - `jwk`: [`Jwk`] from and to public keys.
//! - `audience`: [`Audience`], the mesh's resource indicators (RFC 8707): one per service.
//! - `claims`: [`Claims`] and the time, audience and issuer checks.
//! - `jws`: the compact form: header, signing, splitting, signature check.
//! - `fields`: typed access to header and claim members with errors naming them.
//! - `issue`: [`TokenIssuer`]; `verify`: [`KeySet`] and [`Verifier`].
//! - `error`: one error enum per operation; no message repeats a token or a key.

mod audience;
mod b64;
mod claims;
mod error;
mod fields;
mod issue;
mod jwk;
mod jws;
mod key;
mod key_file;
mod ring;
mod verify;

use std::time::{SystemTime, UNIX_EPOCH};

pub use audience::{Audience, UnknownAudience};
pub use claims::{ACT_FOR_ANY_SCOPE, Claims};
pub use error::{IssueError, JwkError, KeyError, TokenError, TokenPart};
pub use issue::{IssuedToken, TokenIssuer};
pub use jwk::{ALGORITHM, Jwk};
pub use jws::MAX_TOKEN_LEN;
pub use key::{PublicKey, SigningKey};
pub use ring::KeyRing;
pub use verify::{DEFAULT_LEEWAY_SECS, KeySet, Verifier};

/// The current time in whole seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_now_reads_a_plausible_current_time() {
        // 2024-01-01T00:00:00Z; the clock of any machine running this is later.
        assert!(unix_now() > 1_704_067_200);
    }
}
