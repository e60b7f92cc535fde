//! JSON Web Keys (RFC 7517) for Ed25519 public keys (RFC 8037): what `GetPublicKeys` publishes
//! and what verifiers load.

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::error::JwkError;
use crate::key::PublicKey;

/// The JWS algorithm of every token: Ed25519 signatures.
pub const ALGORITHM: &str = "EdDSA";

/// One Ed25519 public key in JWK form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key ID that tokens name in their `kid` header.
    pub kid: String,
    /// Algorithm: `EdDSA` (may be empty when read).
    #[serde(default)]
    pub alg: String,
    /// Use: `sig` (may be empty when read).
    #[serde(default, rename = "use")]
    pub use_: String,
}

impl From<&PublicKey> for Jwk {
    fn from(key: &PublicKey) -> Self {
        Self {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: b64::encode(key.as_bytes()),
            kid: key.kid().to_owned(),
            alg: ALGORITHM.to_owned(),
            use_: "sig".to_owned(),
        }
    }
}

impl Jwk {
    /// The public key this JWK describes. `alg` and `use` may be empty but must otherwise be
    /// `EdDSA` and `sig`; an empty `kid` is replaced by the key's RFC 7638 thumbprint.
    pub fn to_public_key(&self) -> Result<PublicKey, JwkError> {
        require(&self.kty, "kty", "OKP", "`OKP`")?;
        require(&self.crv, "crv", "Ed25519", "`Ed25519`")?;
        if !self.alg.is_empty() {
            require(&self.alg, "alg", ALGORITHM, "`EdDSA` or empty")?;
        }
        if !self.use_.is_empty() {
            require(&self.use_, "use", "sig", "`sig` or empty")?;
        }
        let bytes = b64::decode_array(&self.x).ok_or(JwkError::Field {
            field: "x",
            expected: "32 bytes in base64url without padding",
        })?;
        let key = PublicKey::from_bytes(&bytes)?;
        Ok(if self.kid.is_empty() {
            key
        } else {
            key.with_kid(self.kid.clone())
        })
    }
}

fn require(
    value: &str,
    field: &'static str,
    wanted: &str,
    expected: &'static str,
) -> Result<(), JwkError> {
    if value == wanted {
        Ok(())
    } else {
        Err(JwkError::Field { field, expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;

    fn sample() -> Jwk {
        Jwk::from(SigningKey::from_seed(&[3; 32]).public_key())
    }

    #[test]
    fn a_jwk_round_trips_to_the_same_public_key() {
        let key = SigningKey::from_seed(&[3; 32]);
        let jwk = Jwk::from(key.public_key());
        assert_eq!(jwk.kty, "OKP");
        assert_eq!(jwk.crv, "Ed25519");
        assert_eq!(jwk.alg, "EdDSA");
        assert_eq!(jwk.use_, "sig");
        assert_eq!(jwk.kid, key.kid());
        assert_eq!(&jwk.to_public_key().unwrap(), key.public_key());
    }

    #[test]
    fn a_jwk_round_trips_through_json_with_a_use_member() {
        let jwk = sample();
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["use"], "sig");
        assert_eq!(serde_json::from_value::<Jwk>(json).unwrap(), jwk);
    }

    #[test]
    fn the_rfc_8037_example_jwk_is_accepted_and_named_by_its_thumbprint() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":""}"#,
        )
        .unwrap();
        let key = jwk.to_public_key().unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn a_jwk_keeps_the_kid_it_names() {
        let jwk = Jwk {
            kid: "key-2024".to_owned(),
            ..sample()
        };
        assert_eq!(jwk.to_public_key().unwrap().kid(), "key-2024");
    }

    #[test]
    fn jwks_of_other_kinds_are_rejected_naming_the_field() {
        let cases = [
            (
                Jwk {
                    kty: "RSA".into(),
                    ..sample()
                },
                "kty",
            ),
            (
                Jwk {
                    crv: "X25519".into(),
                    ..sample()
                },
                "crv",
            ),
            (
                Jwk {
                    alg: "HS256".into(),
                    ..sample()
                },
                "alg",
            ),
            (
                Jwk {
                    use_: "enc".into(),
                    ..sample()
                },
                "use",
            ),
            (
                Jwk {
                    x: "AAAA".into(),
                    ..sample()
                },
                "x",
            ),
            (
                Jwk {
                    x: "not base64!".into(),
                    ..sample()
                },
                "x",
            ),
        ];
        for (jwk, field) in cases {
            match jwk.to_public_key() {
                Err(JwkError::Field { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: expected a field error, got {other:?}"),
            }
        }
    }
}
