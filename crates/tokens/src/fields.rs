//! Typed access to the members of a token's header or claims, with errors that name the part
//! and the member but never repeat its value.

use serde_json::{Map, Value};

use crate::b64;
use crate::error::{TokenError, TokenPart};

/// The JSON object of one token part.
pub(crate) struct Fields {
    part: TokenPart,
    map: Map<String, Value>,
}

impl Fields {
    /// Decodes a base64url part holding a JSON object.
    pub(crate) fn decode(part: TokenPart, encoded: &str) -> Result<Self, TokenError> {
        let bytes = b64::decode(encoded).ok_or(TokenError::InvalidBase64(part))?;
        let map = serde_json::from_slice(&bytes).map_err(|_| TokenError::InvalidJson(part))?;
        Ok(Self { part, map })
    }

    /// True when the member is present (whatever its value).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A required string member.
    pub(crate) fn string(&self, name: &'static str) -> Result<String, TokenError> {
        self.optional_string(name)?
            .ok_or_else(|| self.invalid(name, "a string"))
    }

    /// An optional string member (absent or `null` is `None`).
    pub(crate) fn optional_string(&self, name: &'static str) -> Result<Option<String>, TokenError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(self.invalid(name, "a string")),
        }
    }

    /// A required NumericDate member (whole seconds since the Unix epoch).
    pub(crate) fn seconds(&self, name: &'static str) -> Result<u64, TokenError> {
        self.optional_seconds(name)?
            .ok_or_else(|| self.invalid(name, SECONDS))
    }

    /// An optional NumericDate member.
    pub(crate) fn optional_seconds(&self, name: &'static str) -> Result<Option<u64>, TokenError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(name, SECONDS)),
        }
    }

    /// A member that is a string or an array of strings (like `aud`).
    pub(crate) fn strings(&self, name: &'static str) -> Result<Vec<String>, TokenError> {
        const EXPECTED: &str = "a string or an array of strings";
        match self.map.get(name) {
            Some(Value::String(value)) => Ok(vec![value.clone()]),
            Some(Value::Array(values)) => values
                .iter()
                .map(|value| value.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.invalid(name, EXPECTED)),
            _ => Err(self.invalid(name, EXPECTED)),
        }
    }

    fn invalid(&self, field: &'static str, expected: &'static str) -> TokenError {
        TokenError::InvalidField {
            part: self.part,
            field,
            expected,
        }
    }
}

const SECONDS: &str = "a non-negative integer";

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        Fields::decode(TokenPart::Claims, &b64::encode(json.as_bytes())).unwrap()
    }

    fn invalid(field: &'static str, expected: &'static str) -> TokenError {
        TokenError::InvalidField {
            part: TokenPart::Claims,
            field,
            expected,
        }
    }

    #[test]
    fn parts_that_are_not_base64url_or_json_objects_are_rejected() {
        let part = TokenPart::Header;
        assert_eq!(
            Fields::decode(part, "***").err(),
            Some(TokenError::InvalidBase64(part))
        );
        for json in ["[1]", "\"x\"", "{", "null"] {
            let encoded = b64::encode(json.as_bytes());
            assert_eq!(
                Fields::decode(part, &encoded).err(),
                Some(TokenError::InvalidJson(part)),
                "{json}"
            );
        }
    }

    #[test]
    fn strings_must_be_strings() {
        let fields = fields(r#"{"a":"x","b":1,"c":null}"#);
        assert_eq!(fields.string("a"), Ok("x".to_owned()));
        assert_eq!(fields.string("b"), Err(invalid("b", "a string")));
        assert_eq!(fields.string("c"), Err(invalid("c", "a string")));
        assert_eq!(fields.optional_string("missing"), Ok(None));
    }

    #[test]
    fn seconds_must_be_non_negative_integers() {
        let fields = fields(r#"{"a":5,"b":-1,"c":1.5,"d":"5"}"#);
        assert_eq!(fields.seconds("a"), Ok(5));
        for name in ["b", "c", "d", "missing"] {
            assert_eq!(fields.seconds(name), Err(invalid(name, SECONDS)));
        }
        assert_eq!(fields.optional_seconds("missing"), Ok(None));
    }

    #[test]
    fn audiences_may_be_a_string_or_an_array_of_strings() {
        let fields = fields(r#"{"a":"x","b":["x","y"],"c":["x",1],"d":3}"#);
        assert_eq!(fields.strings("a"), Ok(vec!["x".to_owned()]));
        assert_eq!(
            fields.strings("b"),
            Ok(vec!["x".to_owned(), "y".to_owned()])
        );
        assert!(fields.strings("c").is_err());
        assert!(fields.strings("d").is_err());
        assert!(fields.strings("missing").is_err());
    }

    #[test]
    fn errors_never_repeat_the_value() {
        let fields = fields(r#"{"sub":{"secret":"hunter2"}}"#);
        let message = fields.string("sub").unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }
}
