//! The claims of an access token and the checks on them (time, audience, issuer).

use serde::{Deserialize, Serialize};

use crate::error::{TokenError, TokenPart};
use crate::fields::Fields;

/// The scope that lets a client act for any agent (the orchestrator writes
/// every agent's memory and audit rows); without it a client acts only as itself.
pub const ACT_FOR_ANY_SCOPE: &str = "agents:act_for_any";

/// The claims of an access token (RFC 7519 and RFC 8693's space-separated `scope`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer: the OAuth service's URL or name.
    pub iss: String,
    /// The subject: the client ID the token was issued to.
    pub sub: String,
    /// The audience the token is for. After verification, the audience that matched.
    pub aud: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, in seconds since the Unix epoch.
    pub exp: u64,
    /// The token's unique ID (for revocation).
    pub jti: String,
}

impl Claims {
    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// True when the token grants exactly this scope (no prefix or wildcard matching).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|granted| granted == scope)
    }

    /// True when the holder may act as `agent`: the token was issued to that
    /// agent (`sub` equals it), or it grants [`ACT_FOR_ANY_SCOPE`].
    pub fn may_act_as(&self, agent: &str) -> bool {
        self.sub == agent || self.has_scope(ACT_FOR_ANY_SCOPE)
    }
}

/// What the checks need: the claims as they are in a token, where `aud` may be a list and
/// `nbf` may be present.
pub(crate) struct TokenClaims {
    claims: Claims,
    audiences: Vec<String>,
    not_before: Option<u64>,
}

impl TokenClaims {
    /// Reads the claims from the token's (base64url) payload.
    pub(crate) fn decode(encoded: &str) -> Result<Self, TokenError> {
        let fields = Fields::decode(TokenPart::Claims, encoded)?;
        let audiences = fields.strings("aud")?;
        Ok(Self {
            claims: Claims {
                iss: fields.string("iss")?,
                sub: fields.string("sub")?,
                aud: String::new(),
                scope: fields.optional_string("scope")?.unwrap_or_default(),
                iat: fields.seconds("iat")?,
                exp: fields.seconds("exp")?,
                jti: fields.string("jti")?,
            },
            audiences,
            not_before: fields.optional_seconds("nbf")?,
        })
    }

    /// Checks expiry, `nbf`/`iat`, audience and issuer; the claims on success, with `aud` set
    /// to the audience that matched.
    pub(crate) fn check(
        self,
        issuer: &str,
        audience: &str,
        now: u64,
        leeway: u64,
    ) -> Result<Claims, TokenError> {
        let Self {
            mut claims,
            audiences,
            not_before,
        } = self;
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
            });
        }
        let not_before = not_before.unwrap_or(0).max(claims.iat);
        if not_before > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid { not_before, now });
        }
        if !audiences.iter().any(|candidate| candidate == audience) {
            return Err(TokenError::WrongAudience {
                expected: audience.to_owned(),
            });
        }
        if claims.iss != issuer {
            return Err(TokenError::WrongIssuer {
                expected: issuer.to_owned(),
            });
        }
        claims.aud = audience.to_owned();
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    const ISS: &str = "heist-oauth";
    const AUD: &str = "heist-mesh";

    fn decode(json: serde_json::Value) -> Result<TokenClaims, TokenError> {
        TokenClaims::decode(&b64::encode(json.to_string().as_bytes()))
    }

    fn valid(iat: u64, exp: u64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISS, "sub": "planner", "aud": AUD, "scope": "memory:read audit:write",
            "iat": iat, "exp": exp, "jti": "abc",
        })
    }

    fn check_at(json: serde_json::Value, now: u64) -> Result<Claims, TokenError> {
        decode(json)?.check(ISS, AUD, now, 30)
    }

    #[test]
    fn scopes_match_whole_words_only() {
        let claims = check_at(valid(100, 200), 150).unwrap();
        assert!(claims.has_scope("memory:read"));
        assert!(claims.has_scope("audit:write"));
        assert!(!claims.has_scope("memory"));
        assert!(!claims.has_scope("memory:read audit:write"));
        assert!(!claims.has_scope(""));
        assert_eq!(claims.scopes().count(), 2);
    }

    #[test]
    fn a_token_acts_as_its_subject_only_unless_it_may_act_for_any_agent() {
        let planner = check_at(valid(100, 200), 150).unwrap();
        assert!(planner.may_act_as("planner"));
        assert!(!planner.may_act_as("hacker"));
        assert!(!planner.may_act_as("Planner"), "names are compared exactly");
        assert!(!planner.may_act_as(""));
        let mut json = valid(100, 200);
        json["sub"] = "orchestrator".into();
        json["scope"] = format!("audit:write {ACT_FOR_ANY_SCOPE}").into();
        let orchestrator = check_at(json, 150).unwrap();
        assert!(orchestrator.may_act_as("hacker"));
        assert!(orchestrator.may_act_as("orchestrator"));
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        assert!(check_at(valid(100, 200), 199).is_ok());
        assert!(check_at(valid(100, 200), 229).is_ok());
        assert_eq!(
            check_at(valid(100, 200), 230),
            Err(TokenError::Expired { exp: 200, now: 230 })
        );
    }

    #[test]
    fn tokens_from_the_future_are_rejected_beyond_the_leeway() {
        assert!(check_at(valid(130, 300), 100).is_ok());
        assert_eq!(
            check_at(valid(131, 300), 100),
            Err(TokenError::NotYetValid {
                not_before: 131,
                now: 100
            })
        );
        let mut with_nbf = valid(100, 300);
        with_nbf["nbf"] = 200.into();
        assert_eq!(
            check_at(with_nbf, 100),
            Err(TokenError::NotYetValid {
                not_before: 200,
                now: 100
            })
        );
    }

    #[test]
    fn the_audience_may_be_an_array_containing_ours() {
        let mut json = valid(100, 200);
        json["aud"] = serde_json::json!(["other", AUD]);
        assert_eq!(check_at(json, 150).unwrap().aud, AUD);
        let mut json = valid(100, 200);
        json["aud"] = serde_json::json!(["other"]);
        assert!(matches!(
            check_at(json, 150),
            Err(TokenError::WrongAudience { .. })
        ));
    }

    #[test]
    fn a_wrong_issuer_is_rejected() {
        let mut json = valid(100, 200);
        json["iss"] = "evil".into();
        assert_eq!(
            check_at(json, 150),
            Err(TokenError::WrongIssuer {
                expected: ISS.to_owned()
            })
        );
    }

    #[test]
    fn missing_claims_are_named() {
        for name in ["iss", "sub", "aud", "iat", "exp", "jti"] {
            let mut json = valid(100, 200);
            json.as_object_mut().unwrap().remove(name);
            match decode(json) {
                Err(TokenError::InvalidField { field, .. }) => assert_eq!(field, name),
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name}: accepted"),
            }
        }
    }

    #[test]
    fn huge_times_do_not_overflow() {
        assert!(check_at(valid(0, u64::MAX), u64::MAX - 1).is_ok());
        assert!(check_at(valid(u64::MAX, u64::MAX), 0).is_err());
    }
}
