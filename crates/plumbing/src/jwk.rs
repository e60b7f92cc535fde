//! JWKs between their wire form (`heist.v1.Jwk`, what OAuth's `GetPublicKeys`
//! and Audit's `GetCheckpointKeys` answer) and `heist_tokens`' [`Jwk`].

use heist_proto::v1 as pb;
use heist_tokens::Jwk;

/// The wire form of `jwk`.
pub fn to_proto(jwk: Jwk) -> pb::Jwk {
    pb::Jwk {
        kty: jwk.kty,
        crv: jwk.crv,
        x: jwk.x,
        kid: jwk.kid,
        alg: jwk.alg,
        r#use: jwk.use_,
    }
}

/// The JWK a wire `Jwk` describes (checked when turned into a key).
pub fn from_proto(jwk: pb::Jwk) -> Jwk {
    Jwk {
        kty: jwk.kty,
        crv: jwk.crv,
        x: jwk.x,
        kid: jwk.kid,
        alg: jwk.alg,
        use_: jwk.r#use,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwk_survives_the_wire_both_ways() {
        let key = heist_tokens::SigningKey::generate().unwrap();
        let jwk = Jwk::from(key.public_key());
        let back = from_proto(to_proto(jwk.clone()));
        assert_eq!(back, jwk);
        assert_eq!(back.to_public_key().unwrap(), *key.public_key());
    }
}
