//! Issuing tokens: [`TokenIssuer`] signs the claims of a client's access token.

use std::fmt::Write as _;
use std::time::Duration;

use crate::claims::Claims;
use crate::error::IssueError;
use crate::jwk::Jwk;
use crate::jws;
use crate::key::{PublicKey, SigningKey};
use crate::ring::KeyRing;
use crate::verify::{KeySet, Verifier};

/// Bytes of randomness in a `jti` (128 bits, 32 hex digits).
const JTI_BYTES: usize = 16;

/// A signed token and the claims it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT, for `authorization: Bearer <token>`.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Signs access tokens for one issuer with one key, and publishes that key and the older keys
/// whose tokens may still be in use. Each token names its own audiences.
#[derive(Clone, Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    /// Older keys still published (newest first): their tokens have not all expired.
    older: Vec<PublicKey>,
    issuer: String,
    lifetime: Duration,
    /// The encoded protected header, the same for every token of this key.
    encoded_header: String,
}

impl TokenIssuer {
    /// An issuer signing with `key`, naming `issuer` (`iss`), whose tokens expire `lifetime`
    /// after they are issued (whole seconds).
    pub fn new(key: SigningKey, issuer: impl Into<String>, lifetime: Duration) -> Self {
        let encoded_header = jws::encode_header(key.kid());
        Self {
            key,
            older: Vec::new(),
            issuer: issuer.into(),
            lifetime,
            encoded_header,
        }
    }

    /// The issuer signing with the active key of `ring` and publishing, besides it, the
    /// older keys of the ring not retired at `now` (see [`KeyRing::published`]; `keep` is the
    /// token lifetime plus the verifiers' leeway).
    pub fn from_ring(
        ring: &KeyRing,
        now: u64,
        keep: Duration,
        issuer: impl Into<String>,
        lifetime: Duration,
    ) -> Self {
        let mut this = Self::new(ring.active().clone(), issuer, lifetime);
        this.older = ring
            .published(now, keep)
            .into_iter()
            .filter(|key| key.kid() != this.key.kid())
            .collect();
        this
    }

    /// Issues a token for `sub` with `scopes`, for `audiences` (`aud`: a string for one, an
    /// array for several), at time `now` (seconds since the Unix epoch), with a fresh random
    /// `jti`.
    pub fn issue<S: AsRef<str>, A: AsRef<str>>(
        &self,
        sub: &str,
        scopes: &[S],
        audiences: &[A],
        now: u64,
    ) -> Result<IssuedToken, IssueError> {
        if sub.is_empty() {
            return Err(IssueError::EmptySubject);
        }
        if audiences.is_empty() {
            return Err(IssueError::NoAudience);
        }
        if audiences
            .iter()
            .any(|audience| audience.as_ref().is_empty())
        {
            return Err(IssueError::EmptyAudience);
        }
        let scopes: Vec<&str> = scopes.iter().map(AsRef::as_ref).collect();
        if let Some(bad) = scopes
            .iter()
            .find(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
        {
            return Err(IssueError::InvalidScope((*bad).to_owned()));
        }
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: audiences
                .iter()
                .map(|audience| audience.as_ref().to_owned())
                .collect(),
            scope: scopes.join(" "),
            iat: now,
            exp: now.saturating_add(self.lifetime.as_secs()),
            jti: random_jti()?,
        };
        let payload = serde_json::to_vec(&claims)?;
        let token = jws::sign(&self.key, &self.encoded_header, &payload);
        Ok(IssuedToken { token, claims })
    }

    /// The issuer (`iss`) of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How long tokens live.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The public keys that verify this issuer's tokens, in JWK form, current first.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.published().map(Jwk::from).collect()
    }

    /// The public keys published: the active key, then the older ones.
    fn published(&self) -> impl Iterator<Item = &PublicKey> {
        std::iter::once(self.key.public_key()).chain(&self.older)
    }

    /// A verifier of this issuer's own tokens (for introspection).
    pub fn verifier(&self) -> Verifier {
        let keys: KeySet = self.published().cloned().collect();
        Verifier::new(self.issuer.clone(), keys)
    }
}

/// A fresh random token ID: 128 bits as 32 lowercase hex digits.
fn random_jti() -> Result<String, IssueError> {
    let mut bytes = [0u8; JTI_BYTES];
    getrandom::fill(&mut bytes).map_err(IssueError::Random)?;
    Ok(bytes
        .iter()
        .fold(String::with_capacity(2 * JTI_BYTES), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = SigningKey::from_seed(&[2; 32]);
        TokenIssuer::new(key, "heist-oauth", Duration::from_secs(900))
    }

    #[test]
    fn issued_claims_name_the_client_scopes_and_lifetime() {
        let issued = issuer()
            .issue(
                "planner",
                &["calculator:use", "memory:read"],
                &["tools"],
                1_000,
            )
            .unwrap();
        let claims = issued.claims;
        assert_eq!(claims.iss, "heist-oauth");
        assert_eq!(claims.sub, "planner");
        assert_eq!(claims.aud, ["tools"]);
        assert_eq!(claims.scope, "calculator:use memory:read");
        assert_eq!((claims.iat, claims.exp), (1_000, 1_900));
    }

    #[test]
    fn every_token_gets_a_fresh_128_bit_hex_jti() {
        let issuer = issuer();
        let a = issuer
            .issue("planner", &["memory:read"], &["memory"], 1)
            .unwrap();
        let b = issuer
            .issue("planner", &["memory:read"], &["memory"], 1)
            .unwrap();
        assert_ne!(a.claims.jti, b.claims.jti);
        assert_ne!(a.token, b.token);
        assert_eq!(a.claims.jti.len(), 32);
        assert!(a.claims.jti.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_token_without_scopes_has_an_empty_scope_claim() {
        let issued = issuer()
            .issue::<&str, _>("planner", &[], &["tools"], 1)
            .unwrap();
        assert_eq!(issued.claims.scope, "");
    }

    #[test]
    fn an_empty_subject_or_a_scope_with_spaces_is_refused() {
        assert!(matches!(
            issuer().issue("", &["memory:read"], &["memory"], 1),
            Err(IssueError::EmptySubject)
        ));
        for bad in ["", "memory:read audit:write", "tab\tscope"] {
            match issuer().issue("planner", &[bad], &["memory"], 1) {
                Err(IssueError::InvalidScope(scope)) => assert_eq!(scope, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn several_audiences_are_an_array_and_none_or_an_empty_one_is_refused() {
        let issued = issuer()
            .issue("planner", &["x"], &["tools", "audit"], 1)
            .unwrap();
        assert_eq!(issued.claims.aud, ["tools", "audit"]);
        let payload = issued.token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&crate::b64::decode(payload).unwrap()).unwrap();
        assert_eq!(json["aud"], serde_json::json!(["tools", "audit"]));
        let one = issuer().issue("planner", &["x"], &["tools"], 1).unwrap();
        let payload = one.token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&crate::b64::decode(payload).unwrap()).unwrap();
        assert_eq!(json["aud"], serde_json::json!("tools"));
        assert!(matches!(
            issuer().issue::<_, &str>("planner", &["x"], &[], 1),
            Err(IssueError::NoAudience)
        ));
        assert!(matches!(
            issuer().issue("planner", &["x"], &["tools", ""], 1),
            Err(IssueError::EmptyAudience)
        ));
    }

    #[test]
    fn the_issuer_publishes_its_key_and_verifies_its_own_tokens() {
        let issuer = issuer();
        let jwks = issuer.jwks();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks[0].kid, issuer.key().kid());
        let issued = issuer
            .issue("planner", &["memory:read"], &["memory"], 1_000)
            .unwrap();
        let claims = issuer
            .verifier()
            .verify(&issued.token, "memory", 1_001, 0)
            .unwrap();
        assert_eq!(claims, issued.claims);
    }

    #[test]
    fn an_issuer_from_a_ring_signs_with_the_new_key_and_still_verifies_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        let keep = Duration::from_secs(60);
        let lifetime = Duration::from_secs(30);
        let ring = KeyRing::load_or_generate(&path, 1_000).unwrap();
        let old = TokenIssuer::from_ring(&ring, 1_000, keep, "iss", lifetime);
        let old_token = old.issue("planner", &["x"], &["aud"], 1_000).unwrap().token;
        let ring = KeyRing::rotate(&path, 1_010, keep).unwrap();
        let new = TokenIssuer::from_ring(&ring, 1_010, keep, "iss", lifetime);
        assert_eq!(new.jwks().len(), 2);
        assert_eq!(new.jwks()[0].kid, ring.active().kid());
        assert_ne!(new.key().kid(), old.key().kid());
        assert!(new.verifier().verify(&old_token, "aud", 1_011, 0).is_ok());
        // Past the old key's retirement it is no longer published nor trusted.
        let later = TokenIssuer::from_ring(&ring, 1_071, keep, "iss", lifetime);
        assert_eq!(later.jwks().len(), 1);
        let forged = old.issue("planner", &["x"], &["aud"], 1_071).unwrap().token;
        assert!(matches!(
            later.verifier().verify(&forged, "aud", 1_071, 0),
            Err(crate::TokenError::UnknownKid(_))
        ));
    }

    #[test]
    fn a_huge_lifetime_saturates_instead_of_overflowing() {
        let key = SigningKey::from_seed(&[2; 32]);
        let issuer = TokenIssuer::new(key, "i", Duration::MAX);
        let issued = issuer.issue("planner", &["x"], &["a"], 10).unwrap();
        assert_eq!(issued.claims.exp, u64::MAX);
    }
}
