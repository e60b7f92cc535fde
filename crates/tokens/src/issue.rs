//! Issuing tokens: [`TokenIssuer`] signs the claims of a client's access token.

use std::fmt::Write as _;
use std::time::Duration;

use crate::claims::Claims;
use crate::error::IssueError;
use crate::jwk::Jwk;
use crate::jws;
use crate::key::SigningKey;
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

/// Signs access tokens for one issuer and audience with one key.
#[derive(Clone, Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
    lifetime: Duration,
    /// The encoded protected header, the same for every token of this key.
    encoded_header: String,
}

impl TokenIssuer {
    /// An issuer signing with `key`, naming `issuer` (`iss`) and `audience` (`aud`), whose
    /// tokens expire `lifetime` after they are issued (whole seconds).
    pub fn new(
        key: SigningKey,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        lifetime: Duration,
    ) -> Self {
        let encoded_header = jws::encode_header(key.kid());
        Self {
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            lifetime,
            encoded_header,
        }
    }

    /// Issues a token for `sub` with `scopes` at time `now` (seconds since the Unix epoch),
    /// with a fresh random `jti`.
    pub fn issue<S: AsRef<str>>(
        &self,
        sub: &str,
        scopes: &[S],
        now: u64,
    ) -> Result<IssuedToken, IssueError> {
        if sub.is_empty() {
            return Err(IssueError::EmptySubject);
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
            aud: self.audience.clone(),
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

    /// The audience (`aud`) of the tokens.
    pub fn audience(&self) -> &str {
        &self.audience
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
        vec![Jwk::from(self.key.public_key())]
    }

    /// A verifier of this issuer's own tokens (for introspection).
    pub fn verifier(&self) -> Verifier {
        let keys: KeySet = [self.key.public_key().clone()].into_iter().collect();
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
        TokenIssuer::new(key, "heist-oauth", "heist-mesh", Duration::from_secs(900))
    }

    #[test]
    fn issued_claims_name_the_client_scopes_and_lifetime() {
        let issued = issuer()
            .issue("planner", &["calculator:use", "memory:read"], 1_000)
            .unwrap();
        let claims = issued.claims;
        assert_eq!(claims.iss, "heist-oauth");
        assert_eq!(claims.sub, "planner");
        assert_eq!(claims.aud, "heist-mesh");
        assert_eq!(claims.scope, "calculator:use memory:read");
        assert_eq!((claims.iat, claims.exp), (1_000, 1_900));
    }

    #[test]
    fn every_token_gets_a_fresh_128_bit_hex_jti() {
        let issuer = issuer();
        let a = issuer.issue("planner", &["memory:read"], 1).unwrap();
        let b = issuer.issue("planner", &["memory:read"], 1).unwrap();
        assert_ne!(a.claims.jti, b.claims.jti);
        assert_ne!(a.token, b.token);
        assert_eq!(a.claims.jti.len(), 32);
        assert!(a.claims.jti.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_token_without_scopes_has_an_empty_scope_claim() {
        let issued = issuer().issue::<&str>("planner", &[], 1).unwrap();
        assert_eq!(issued.claims.scope, "");
    }

    #[test]
    fn an_empty_subject_or_a_scope_with_spaces_is_refused() {
        assert!(matches!(
            issuer().issue("", &["memory:read"], 1),
            Err(IssueError::EmptySubject)
        ));
        for bad in ["", "memory:read audit:write", "tab\tscope"] {
            match issuer().issue("planner", &[bad], 1) {
                Err(IssueError::InvalidScope(scope)) => assert_eq!(scope, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_issuer_publishes_its_key_and_verifies_its_own_tokens() {
        let issuer = issuer();
        let jwks = issuer.jwks();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks[0].kid, issuer.key().kid());
        let issued = issuer.issue("planner", &["memory:read"], 1_000).unwrap();
        let claims = issuer
            .verifier()
            .verify(&issued.token, "heist-mesh", 1_001, 0)
            .unwrap();
        assert_eq!(claims, issued.claims);
    }

    #[test]
    fn a_huge_lifetime_saturates_instead_of_overflowing() {
        let key = SigningKey::from_seed(&[2; 32]);
        let issuer = TokenIssuer::new(key, "i", "a", Duration::MAX);
        let issued = issuer.issue("planner", &["x"], 10).unwrap();
        assert_eq!(issued.claims.exp, u64::MAX);
    }
}
