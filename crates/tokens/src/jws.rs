//! The JWS compact serialization (RFC 7515) restricted to what this mesh uses: a protected
//! header `{"alg":"EdDSA","kid":...,"typ":"JWT"}`, a JSON payload, an Ed25519 signature.

use crate::b64;
use crate::error::{TokenError, TokenPart, excerpt};
use crate::fields::Fields;
use crate::jwk::ALGORITHM;
use crate::key::{PublicKey, SigningKey};

/// The longest token accepted, in bytes. Issued tokens are well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The encoded protected header for tokens signed with the key named `kid`.
pub(crate) fn encode_header(kid: &str) -> String {
    let header = serde_json::json!({ "alg": ALGORITHM, "kid": kid, "typ": "JWT" });
    b64::encode(header.to_string().as_bytes())
}

/// Signs `payload` under an already encoded header, giving the compact token.
pub(crate) fn sign(key: &SigningKey, encoded_header: &str, payload: &[u8]) -> String {
    let signing_input = format!("{encoded_header}.{}", b64::encode(payload));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64::encode(&signature))
}

/// The three parts of a compact token, still encoded.
pub(crate) struct Parts<'a> {
    /// `header.claims`, the bytes the signature covers.
    signing_input: &'a str,
    /// The encoded header.
    pub(crate) header: &'a str,
    /// The encoded claims.
    pub(crate) claims: &'a str,
    /// The encoded signature.
    signature: &'a str,
}

impl<'a> Parts<'a> {
    /// Splits a token into its parts, checking its length first.
    pub(crate) fn split(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::NotThreeParts)?;
        let (header, claims) = signing_input
            .split_once('.')
            .ok_or(TokenError::NotThreeParts)?;
        if claims.contains('.') {
            return Err(TokenError::NotThreeParts);
        }
        Ok(Self {
            signing_input,
            header,
            claims,
            signature,
        })
    }

    /// Reads the header, accepting only `EdDSA` with no critical extensions; the key ID.
    pub(crate) fn kid(&self) -> Result<String, TokenError> {
        let header = Fields::decode(TokenPart::Header, self.header)?;
        let alg = header.string("alg")?;
        if alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm(excerpt(&alg)));
        }
        if let Some(typ) = header.optional_string("typ")?
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(TokenError::UnsupportedHeader("typ"));
        }
        if header.has("crit") {
            return Err(TokenError::UnsupportedHeader("crit"));
        }
        header.string("kid")
    }

    /// Checks the signature with `key`.
    pub(crate) fn check_signature(&self, key: &PublicKey) -> Result<(), TokenError> {
        let signature =
            b64::decode(self.signature).ok_or(TokenError::InvalidBase64(TokenPart::Signature))?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| TokenError::BadSignature)?;
        if key.verifies(self.signing_input.as_bytes(), &signature) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    fn kid_of(encoded_header: &str) -> Result<String, TokenError> {
        let token = format!("{encoded_header}.e30.c2ln");
        Parts::split(&token)?.kid()
    }

    #[test]
    fn the_header_names_eddsa_the_kid_and_jwt() {
        let encoded = encode_header("my-kid");
        let json: serde_json::Value =
            serde_json::from_slice(&b64::decode(&encoded).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"alg": "EdDSA", "kid": "my-kid", "typ": "JWT"})
        );
        assert_eq!(kid_of(&encoded), Ok("my-kid".to_owned()));
    }

    #[test]
    fn tokens_split_into_exactly_three_parts() {
        for token in ["", "a", "a.b", "a.b.c.d", "a.b.c.d.e"] {
            assert_eq!(
                Parts::split(token).err(),
                Some(TokenError::NotThreeParts),
                "{token}"
            );
        }
        let parts = Parts::split("a.b.c").unwrap();
        assert_eq!(
            (
                parts.signing_input,
                parts.header,
                parts.claims,
                parts.signature
            ),
            ("a.b", "a", "b", "c")
        );
    }

    #[test]
    fn tokens_over_the_size_limit_are_rejected_before_parsing() {
        let token = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            Parts::split(&token).err(),
            Some(TokenError::TooLong {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn algorithms_other_than_eddsa_are_rejected() {
        for alg in ["none", "HS256", "RS256", "ES256", "eddsa", ""] {
            let encoded = header(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#));
            assert_eq!(
                kid_of(&encoded),
                Err(TokenError::UnsupportedAlgorithm(alg.to_owned()))
            );
        }
        assert!(matches!(
            kid_of(&header(r#"{"kid":"k"}"#)),
            Err(TokenError::InvalidField { field: "alg", .. })
        ));
    }

    #[test]
    fn other_types_and_critical_extensions_are_rejected() {
        assert_eq!(
            kid_of(&header(r#"{"alg":"EdDSA","kid":"k","typ":"JWE"}"#)),
            Err(TokenError::UnsupportedHeader("typ"))
        );
        assert_eq!(
            kid_of(&header(
                r#"{"alg":"EdDSA","kid":"k","crit":["b64"],"b64":false}"#
            )),
            Err(TokenError::UnsupportedHeader("crit"))
        );
        assert_eq!(
            kid_of(&header(r#"{"alg":"EdDSA","kid":"k"}"#)),
            Ok("k".to_owned())
        );
    }

    #[test]
    fn a_header_without_kid_is_rejected() {
        assert!(matches!(
            kid_of(&header(r#"{"alg":"EdDSA"}"#)),
            Err(TokenError::InvalidField { field: "kid", .. })
        ));
    }

    #[test]
    fn signatures_of_the_wrong_length_or_encoding_are_rejected() {
        let key = SigningKey::from_seed(&[5; 32]);
        let parts = Parts::split("a.b.c2ln").unwrap();
        assert_eq!(
            parts.check_signature(key.public_key()),
            Err(TokenError::BadSignature)
        );
        let parts = Parts::split("a.b.!!").unwrap();
        assert_eq!(
            parts.check_signature(key.public_key()),
            Err(TokenError::InvalidBase64(TokenPart::Signature))
        );
    }
}
