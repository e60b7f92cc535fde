//! The errors of the crate: one enum per operation (keys, JWKs, issuing, verifying).
//!
//! No message ever contains a token, a key or a secret: at most a short, quoted excerpt of a
//! header value (an algorithm name, a key ID) so that an operator can see what was sent.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The longest excerpt of a token-supplied value (`alg`, `kid`) that an error repeats.
const MAX_EXCERPT_CHARS: usize = 64;

/// Loading, generating or saving a signing key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random number generator failed.
    #[error("cannot generate a signing key: the system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The key file exists but could not be read.
    #[error("cannot read signing key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file is not a key written by this crate; it is never replaced silently.
    #[error(
        "signing key file {path} is corrupt ({reason}); restore it or delete it to generate a \
         new key (tokens signed with the old key then stop verifying)"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (with the line, for a key ring).
        reason: String,
    },
    /// A new key could not be written to the key file.
    #[error("cannot write signing key file {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// A JWK (or raw public key bytes) does not describe an Ed25519 signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// A field has a value other than the one Ed25519 JWKs carry.
    #[error("JWK field `{field}` must be {expected}")]
    Field {
        /// The JWK member, e.g. `kty`.
        field: &'static str,
        /// What it must be, e.g. "`OKP`".
        expected: &'static str,
    },
    /// The bytes are not a usable Ed25519 public key (not a curve point, or a weak key).
    #[error("JWK field `x` is not a valid Ed25519 public key")]
    InvalidKey,
}

/// Issuing a token failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The subject (client ID) is empty.
    #[error("cannot issue a token for an empty subject")]
    EmptySubject,
    /// A scope is empty or contains whitespace, so it cannot be joined into the `scope` claim.
    #[error(
        "cannot issue a token with scope {0:?}: scopes must be non-empty and without whitespace"
    )]
    InvalidScope(String),
    /// The operating system's random number generator failed (for the `jti`).
    #[error("cannot issue a token: the system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// No audience asked for: every token is for at least one.
    #[error("cannot issue a token for no audience")]
    NoAudience,
    /// An audience is empty, so no service could accept the token.
    #[error("cannot issue a token for an empty audience")]
    EmptyAudience,
    /// The claims could not be encoded as JSON.
    #[error("cannot encode token claims: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The three dot-separated parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    /// The protected header.
    Header,
    /// The payload (the claims).
    Claims,
    /// The signature.
    Signature,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Claims => "claims",
            Self::Signature => "signature",
        })
    }
}

/// A token was rejected. Each check has its own variant so that callers can map them
/// (introspection `reason`, gRPC status) and so that [`TokenError::UnknownKid`] can trigger a
/// refresh of the public keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than the limit.
    #[error("token is too long ({len} bytes, at most {max})")]
    TooLong {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not three dot-separated parts.
    #[error("token is not a compact JWS: expected 3 dot-separated parts")]
    NotThreeParts,
    /// A part is not base64url without padding.
    #[error("token {0} is not valid base64url")]
    InvalidBase64(TokenPart),
    /// The header or the claims are not a JSON object.
    #[error("token {0} is not a JSON object")]
    InvalidJson(TokenPart),
    /// A header field or claim is missing or has the wrong type.
    #[error("token {part} field `{field}` is missing or is not {expected}")]
    InvalidField {
        /// Where the field is.
        part: TokenPart,
        /// The field, e.g. `exp`.
        field: &'static str,
        /// The type it must have, e.g. "a non-negative integer".
        expected: &'static str,
    },
    /// The header names an algorithm other than `EdDSA` (`none`, `HS256`, ...).
    #[error("token algorithm {0:?} is not accepted (only EdDSA is)")]
    UnsupportedAlgorithm(String),
    /// The header has a field whose value this verifier does not support (`typ` other than
    /// `JWT`, or any `crit` extension).
    #[error("token header field `{0}` has an unsupported value")]
    UnsupportedHeader(&'static str),
    /// No known key has the header's key ID; refreshing the public keys may help.
    #[error("token key ID {0:?} is not a known key")]
    UnknownKid(String),
    /// The signature does not verify with the named key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token has expired (beyond the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// The `nbf` or `iat` claim is in the future (beyond the leeway).
    #[error("token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The later of `nbf` and `iat`.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token is not for the audience the verifier requires.
    #[error("token is for {}, not {expected:?}", Audiences(.found))]
    WrongAudience {
        /// The audience the verifier requires.
        expected: String,
        /// The token's audiences (each an excerpt).
        found: Vec<String>,
    },
    /// The issuer is not the expected one.
    #[error("token issuer is not {expected:?}")]
    WrongIssuer {
        /// The issuer the verifier expected.
        expected: String,
    },
}

impl TokenError {
    /// A short, stable, lowercase reason for introspection responses and metrics
    /// (`expired`, `bad signature`, `malformed`...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong { .. }
            | Self::NotThreeParts
            | Self::InvalidBase64(_)
            | Self::InvalidJson(_)
            | Self::InvalidField { .. }
            | Self::UnsupportedHeader(_) => "malformed",
            Self::UnsupportedAlgorithm(_) => "unsupported algorithm",
            Self::UnknownKid(_) => "unknown key",
            Self::BadSignature => "bad signature",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not yet valid",
            Self::WrongAudience { .. } => "wrong audience",
            Self::WrongIssuer { .. } => "wrong issuer",
        }
    }
}

/// The most audiences of a token that an error lists.
const MAX_LISTED_AUDIENCES: usize = 8;

/// A token's audiences in a message: `audience "tools"`, `audiences "tools", "memory"`.
struct Audiences<'a>(&'a [String]);

impl fmt::Display for Audiences<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => return f.write_str("no audience"),
            [_] => f.write_str("audience ")?,
            _ => f.write_str("audiences ")?,
        }
        for (index, audience) in self.0.iter().take(MAX_LISTED_AUDIENCES).enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{audience:?}")?;
        }
        if self.0.len() > MAX_LISTED_AUDIENCES {
            write!(f, " and {} more", self.0.len() - MAX_LISTED_AUDIENCES)?;
        }
        Ok(())
    }
}

/// A bounded excerpt of a token-supplied value for an error message.
pub(crate) fn excerpt(value: &str) -> String {
    value.chars().take(MAX_EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_cut_to_a_bounded_length() {
        assert_eq!(excerpt("EdDSA"), "EdDSA");
        assert_eq!(excerpt(&"k".repeat(1000)).len(), MAX_EXCERPT_CHARS);
    }

    #[test]
    fn field_errors_name_the_part_and_the_field() {
        let error = TokenError::InvalidField {
            part: TokenPart::Claims,
            field: "exp",
            expected: "a non-negative integer",
        };
        assert_eq!(
            error.to_string(),
            "token claims field `exp` is missing or is not a non-negative integer"
        );
        assert_eq!(error.reason(), "malformed");
    }
}
