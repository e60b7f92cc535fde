//! Verifying tokens: the [`KeySet`] of trusted public keys and the [`Verifier`] that checks a
//! token's header, signature and claims against it.

use std::collections::HashMap;

use crate::claims::{Claims, TokenClaims};
use crate::error::{JwkError, TokenError, excerpt};
use crate::jwk::Jwk;
use crate::jws::Parts;
use crate::key::PublicKey;

/// The clock skew tolerated on `exp`, `nbf` and `iat` unless the caller chooses another.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// The trusted public keys, by key ID.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys of a JWKS (e.g. a `GetPublicKeys` response); fails on the first unusable JWK.
    pub fn from_jwks<'a>(jwks: impl IntoIterator<Item = &'a Jwk>) -> Result<Self, JwkError> {
        jwks.into_iter().map(Jwk::to_public_key).collect()
    }

    /// Adds a key, replacing any key with the same ID.
    pub fn insert(&mut self, key: PublicKey) {
        self.keys.insert(key.kid().to_owned(), key);
    }

    /// The key with this ID.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// True when every key of `self` is also in `other` (with the same key).
    pub fn is_subset_of(&self, other: &KeySet) -> bool {
        self.keys
            .iter()
            .all(|(kid, key)| other.get(kid).is_some_and(|other| other == key))
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for KeySet {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(keys: I) -> Self {
        let mut set = Self::new();
        keys.into_iter().for_each(|key| set.insert(key));
        set
    }
}

/// Verifies tokens of one issuer against a set of public keys.
#[derive(Clone, Debug)]
pub struct Verifier {
    issuer: String,
    keys: KeySet,
}

impl Verifier {
    /// A verifier accepting tokens whose `iss` is `issuer`, signed by one of `keys`.
    pub fn new(issuer: impl Into<String>, keys: KeySet) -> Self {
        Self {
            issuer: issuer.into(),
            keys,
        }
    }

    /// The issuer that tokens must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trusted keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Replaces the trusted keys (after fetching them again on [`TokenError::UnknownKid`]).
    pub fn set_keys(&mut self, keys: KeySet) {
        self.keys = keys;
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch), tolerating `leeway`
    /// seconds of clock skew: [`Verifier::verify_any_audience`], then that `aud` (a string or
    /// an array) contains `expected_audience`.
    pub fn verify(
        &self,
        token: &str,
        expected_audience: &str,
        now: u64,
        leeway: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any_audience(token, now, leeway)?;
        claims.require_audience(expected_audience)?;
        Ok(claims)
    }

    /// Verifies everything but the audience: size, structure, `alg: EdDSA`, a known `kid`,
    /// the signature, then `exp`, `nbf`/`iat` and `iss`. For the issuer itself (introspection,
    /// revocation: a token for any audience is one of its own) and for callers that check
    /// the audience apart ([`Claims::require_audience`]).
    pub fn verify_any_audience(
        &self,
        token: &str,
        now: u64,
        leeway: u64,
    ) -> Result<Claims, TokenError> {
        let parts = Parts::split(token)?;
        let kid = parts.kid()?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKid(excerpt(&kid)))?;
        parts.check_signature(key)?;
        TokenClaims::decode(parts.claims)?.check(&self.issuer, now, leeway)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_set_is_a_subset_only_when_every_key_is_kept() {
        let a = crate::SigningKey::generate().unwrap().public_key().clone();
        let b = crate::SigningKey::generate().unwrap().public_key().clone();
        let both: KeySet = [a.clone(), b.clone()].into_iter().collect();
        let only_a: KeySet = [a].into_iter().collect();
        let only_b: KeySet = [b].into_iter().collect();
        assert!(only_a.is_subset_of(&both));
        assert!(!both.is_subset_of(&only_a));
        assert!(!only_a.is_subset_of(&only_b));
        assert!(KeySet::new().is_subset_of(&only_b));
    }
    use crate::b64;
    use crate::error::TokenPart;
    use crate::issue::{IssuedToken, TokenIssuer};
    use crate::jws::MAX_TOKEN_LEN;
    use crate::key::SigningKey;

    const ISS: &str = "heist-oauth";
    const AUD: &str = "audit";
    const NOW: u64 = 1_700_000_000;
    const LIFETIME: u64 = 900;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[11; 32])
    }

    fn issue_with(key: SigningKey) -> IssuedToken {
        TokenIssuer::new(key, ISS, Duration::from_secs(LIFETIME))
            .issue("planner", &["calculator:use", "memory:read"], &[AUD], NOW)
            .unwrap()
    }

    fn issue() -> IssuedToken {
        issue_with(key())
    }

    fn verifier() -> Verifier {
        Verifier::new(ISS, [key().public_key().clone()].into_iter().collect())
    }

    fn verify(token: &str) -> Result<Claims, TokenError> {
        verifier().verify(token, AUD, NOW + 1, DEFAULT_LEEWAY_SECS)
    }

    /// The token with one part replaced.
    fn with_part(token: &str, index: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = part;
        parts.join(".")
    }

    fn encode_json(json: &serde_json::Value) -> String {
        b64::encode(json.to_string().as_bytes())
    }

    #[test]
    fn an_issued_token_verifies_and_gives_back_its_claims() {
        let issued = issue();
        let claims = verify(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert!(claims.has_scope("calculator:use"));
        assert!(!claims.has_scope("memory:write"));
    }

    #[test]
    fn a_tampered_payload_fails_the_signature_check() {
        let issued = issue();
        let mut claims = serde_json::to_value(&issued.claims).unwrap();
        claims["scope"] = "memory:admin".into();
        let forged = with_part(&issued.token, 1, &encode_json(&claims));
        assert_eq!(verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_tampered_signature_fails_the_signature_check() {
        let issued = issue();
        let signature = issued.token.rsplit('.').next().unwrap();
        let mut bytes = b64::decode(signature).unwrap();
        bytes[10] ^= 1;
        let forged = with_part(&issued.token, 2, &b64::encode(&bytes));
        assert_eq!(verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_signed_by_another_key_under_our_kid_is_rejected() {
        let other = issue_with(SigningKey::from_seed(&[12; 32]));
        let our_header = issue().token.split('.').next().unwrap().to_owned();
        let forged = with_part(&other.token, 0, &our_header);
        assert_eq!(verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_signed_by_an_unknown_key_names_its_kid() {
        let other_key = SigningKey::from_seed(&[12; 32]);
        let kid = other_key.kid().to_owned();
        let other = issue_with(other_key);
        assert_eq!(verify(&other.token), Err(TokenError::UnknownKid(kid)));
    }

    #[test]
    fn refreshing_the_keys_makes_a_new_kid_verify() {
        let other_key = SigningKey::from_seed(&[12; 32]);
        let other = issue_with(other_key.clone());
        let mut verifier = verifier();
        let jwks = [
            Jwk::from(key().public_key()),
            Jwk::from(other_key.public_key()),
        ];
        verifier.set_keys(KeySet::from_jwks(&jwks).unwrap());
        assert_eq!(verifier.keys().len(), 2);
        assert!(verifier.verify(&other.token, AUD, NOW, 0).is_ok());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_rejected() {
        let issued = issue();
        let header = encode_json(&serde_json::json!({"alg": "none", "kid": key().kid()}));
        let forged = with_part(&with_part(&issued.token, 0, &header), 2, "");
        assert_eq!(
            verify(&forged),
            Err(TokenError::UnsupportedAlgorithm("none".to_owned()))
        );
    }

    #[test]
    fn an_hs256_token_is_rejected_before_any_key_is_used() {
        let issued = issue();
        let header =
            encode_json(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": key().kid()}));
        let forged = with_part(&issued.token, 0, &header);
        assert_eq!(
            verify(&forged),
            Err(TokenError::UnsupportedAlgorithm("HS256".to_owned()))
        );
    }

    #[test]
    fn an_expired_token_is_rejected_but_accepted_within_the_leeway() {
        let token = issue().token;
        let exp = NOW + LIFETIME;
        let verifier = verifier();
        assert!(verifier.verify(&token, AUD, exp + 29, 30).is_ok());
        assert_eq!(
            verifier.verify(&token, AUD, exp + 30, 30),
            Err(TokenError::Expired { exp, now: exp + 30 })
        );
        assert_eq!(
            verifier.verify(&token, AUD, exp, 0),
            Err(TokenError::Expired { exp, now: exp })
        );
    }

    #[test]
    fn a_token_issued_in_the_future_is_rejected() {
        let token = issue().token;
        assert_eq!(
            verifier().verify(&token, AUD, NOW - 31, 30),
            Err(TokenError::NotYetValid {
                not_before: NOW,
                now: NOW - 31
            })
        );
        assert!(verifier().verify(&token, AUD, NOW - 30, 30).is_ok());
    }

    #[test]
    fn a_token_for_another_audience_is_rejected() {
        let token = issue().token;
        assert_eq!(
            verifier().verify(&token, "tools", NOW, 30),
            Err(TokenError::WrongAudience {
                expected: "tools".to_owned(),
                found: vec![AUD.to_owned()],
            })
        );
        // The issuer's own check takes any audience.
        assert!(verifier().verify_any_audience(&token, NOW, 30).is_ok());
    }

    #[test]
    fn a_token_of_another_issuer_is_rejected() {
        let token = issue().token;
        let verifier = Verifier::new("someone-else", verifier().keys().clone());
        assert_eq!(
            verifier.verify(&token, AUD, NOW, 30),
            Err(TokenError::WrongIssuer {
                expected: "someone-else".to_owned()
            })
        );
    }

    #[test]
    fn garbage_strings_are_rejected_with_precise_errors() {
        let huge = "a.".repeat(MAX_TOKEN_LEN);
        let cases: [(&str, TokenError); 7] = [
            ("", TokenError::NotThreeParts),
            ("a.b", TokenError::NotThreeParts),
            ("a.b.c.d", TokenError::NotThreeParts),
            ("..", TokenError::InvalidJson(TokenPart::Header)),
            ("!!.e30.c2ln", TokenError::InvalidBase64(TokenPart::Header)),
            (
                "e30.e30.c2ln",
                TokenError::InvalidField {
                    part: TokenPart::Header,
                    field: "alg",
                    expected: "a string",
                },
            ),
            (
                &huge,
                TokenError::TooLong {
                    len: huge.len(),
                    max: MAX_TOKEN_LEN,
                },
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(verify(token), Err(expected), "{:.40}", token);
        }
    }

    #[test]
    fn a_signed_payload_that_is_not_json_is_malformed() {
        let key = key();
        let header = crate::jws::encode_header(key.kid());
        let token = crate::jws::sign(&key, &header, b"not json");
        assert_eq!(
            verify(&token),
            Err(TokenError::InvalidJson(TokenPart::Claims))
        );
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let issued = issue();
        let tampered = format!("{}x", issued.token);
        let mut messages = vec![verify(&tampered).unwrap_err().to_string()];
        messages.push(
            verifier()
                .verify(&issued.token, "x", NOW + 10_000, 0)
                .unwrap_err()
                .to_string(),
        );
        for message in messages {
            assert!(!message.contains(&issued.token), "{message}");
            for part in issued.token.split('.') {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn a_jwks_with_an_unusable_key_is_refused() {
        let mut jwk = Jwk::from(key().public_key());
        jwk.crv = "P-256".to_owned();
        assert!(KeySet::from_jwks([&jwk]).is_err());
    }
}
