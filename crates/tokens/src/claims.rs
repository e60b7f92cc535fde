//! The claims of an access token and the checks on them (time, audience, issuer).

use serde::{Deserialize, Serialize};

use crate::error::{TokenError, TokenPart, excerpt};
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
    /// The audiences the token is for (RFC 7519 `aud`): a JSON string when there is one, an
    /// array when there are several; both are read.
    #[serde(with = "one_or_many")]
    pub aud: Vec<String>,
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

    /// True when `audience` is one of the token's audiences (compared exactly).
    pub fn is_for(&self, audience: &str) -> bool {
        self.aud.iter().any(|candidate| candidate == audience)
    }

    /// Checks that the token is for `audience`; else [`TokenError::WrongAudience`] naming the
    /// token's audiences and the one required.
    pub fn require_audience(&self, audience: &str) -> Result<(), TokenError> {
        if self.is_for(audience) {
            Ok(())
        } else {
            Err(TokenError::WrongAudience {
                expected: audience.to_owned(),
                found: self.aud.iter().map(|found| excerpt(found)).collect(),
            })
        }
    }

    /// True when the holder may act as `agent`: the token was issued to that
    /// agent (`sub` equals it), or it grants [`ACT_FOR_ANY_SCOPE`].
    pub fn may_act_as(&self, agent: &str) -> bool {
        self.sub == agent || self.has_scope(ACT_FOR_ANY_SCOPE)
    }
}

/// What the checks need: the claims as they are in a token, where `nbf` may be present.
pub(crate) struct TokenClaims {
    claims: Claims,
    not_before: Option<u64>,
}

impl TokenClaims {
    /// Reads the claims from the token's (base64url) payload.
    pub(crate) fn decode(encoded: &str) -> Result<Self, TokenError> {
        let fields = Fields::decode(TokenPart::Claims, encoded)?;
        Ok(Self {
            claims: Claims {
                iss: fields.string("iss")?,
                sub: fields.string("sub")?,
                aud: fields.strings("aud")?,
                scope: fields.optional_string("scope")?.unwrap_or_default(),
                iat: fields.seconds("iat")?,
                exp: fields.seconds("exp")?,
                jti: fields.string("jti")?,
            },
            not_before: fields.optional_seconds("nbf")?,
        })
    }

    /// Checks expiry, `nbf`/`iat` and issuer (not the audience: see
    /// [`Claims::require_audience`]); the claims on success.
    pub(crate) fn check(self, issuer: &str, now: u64, leeway: u64) -> Result<Claims, TokenError> {
        let Self { claims, not_before } = self;
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
        if claims.iss != issuer {
            return Err(TokenError::WrongIssuer {
                expected: issuer.to_owned(),
            });
        }
        Ok(claims)
    }
}

/// `aud` as RFC 7519 writes it: one audience as a string, several as an array.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub(super) fn serialize<S: Serializer>(
        aud: &[String],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    const ISS: &str = "heist-oauth";
    const AUD: &str = "memory";

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
        let claims = decode(json)?.check(ISS, now, 30)?;
        claims.require_audience(AUD)?;
        Ok(claims)
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
        assert_eq!(check_at(json, 150).unwrap().aud, ["other", AUD]);
        let mut json = valid(100, 200);
        json["aud"] = serde_json::json!(["other"]);
        assert_eq!(
            check_at(json, 150),
            Err(TokenError::WrongAudience {
                expected: AUD.to_owned(),
                found: vec!["other".to_owned()],
            })
        );
    }

    #[test]
    fn a_token_without_the_audience_is_refused_naming_its_audiences_and_the_one_required() {
        let mut json = valid(100, 200);
        json["aud"] = "tools".into();
        let error = check_at(json, 150).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("token is for audience \"tools\", not \"{AUD}\"")
        );
        let mut json = valid(100, 200);
        json["aud"] = serde_json::json!(["tools", "audit"]);
        assert_eq!(
            check_at(json, 150).unwrap_err().to_string(),
            format!("token is for audiences \"tools\", \"audit\", not \"{AUD}\"")
        );
        let mut json = valid(100, 200);
        json["aud"] = serde_json::json!([]);
        assert_eq!(
            check_at(json, 150).unwrap_err().to_string(),
            format!("token is for no audience, not \"{AUD}\"")
        );
    }

    #[test]
    fn one_audience_is_written_as_a_string_and_several_as_an_array() {
        let mut claims = check_at(valid(100, 200), 150).unwrap();
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], serde_json::json!(AUD));
        assert_eq!(serde_json::from_value::<Claims>(json).unwrap(), claims);
        claims.aud = vec!["tools".into(), "audit".into()];
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], serde_json::json!(["tools", "audit"]));
        assert_eq!(serde_json::from_value::<Claims>(json).unwrap(), claims);
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
