//! [`Fields`]: reads raw values into checked ones, expanding `${VAR}` and turning every problem
//! into a [`ConfigError`] that names the file and the field.

use std::{fmt::Display, ops::RangeInclusive, time::Duration};

use heist_plumbing::cli::parse_duration;

use super::{
    ConfigError, Secret,
    endpoints::{Endpoints, EndpointsError},
    env::{EnvLookup, ExpandError, expand},
    raw::AddressParts,
};

/// The file being read and the environment it is expanded from.
pub(super) struct Fields<'a> {
    /// The file's name, first in every message.
    file: &'a str,
    /// The environment.
    env: EnvLookup<'a>,
}

impl<'a> Fields<'a> {
    /// Reads fields of `file` with `env`.
    pub(super) fn new(file: &'a str, env: EnvLookup<'a>) -> Self {
        Self { file, env }
    }

    /// The file's name.
    pub(super) fn file(&self) -> &str {
        self.file
    }

    /// One environment variable, for the `HEIST_*` overrides.
    pub(super) fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// An [`ConfigError::Invalid`] for `field`.
    pub(super) fn invalid(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// `value` with `${VAR}` expanded.
    pub(super) fn text(&self, field: &str, value: &str) -> Result<String, ConfigError> {
        expand(value, self.env).map_err(|error| match error {
            ExpandError::Unset(variable) => ConfigError::UnsetVariable {
                file: self.file.to_owned(),
                field: field.to_owned(),
                variable,
            },
            other => self.invalid(field, other.describe()),
        })
    }

    /// `value` expanded and trimmed; empty is an error.
    pub(super) fn required_text(&self, field: &str, value: &str) -> Result<String, ConfigError> {
        let text = self.text(field, value)?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(self.invalid(field, "is empty; give it a value"));
        }
        Ok(trimmed.to_owned())
    }

    /// Each value of a list through [`Fields::required_text`], named `field[i]`.
    pub(super) fn texts(&self, field: &str, values: &[String]) -> Result<Vec<String>, ConfigError> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| self.required_text(&format!("{field}[{index}]"), value))
            .collect()
    }

    /// An optional value through [`Fields::required_text`].
    pub(super) fn optional_text(
        &self,
        field: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, ConfigError> {
        value
            .map(|value| self.required_text(field, value))
            .transpose()
    }

    /// An OAuth client ID (an agent's name): letters, digits, `-` and `_`.
    pub(super) fn client_name(&self, field: &str, value: &str) -> Result<String, ConfigError> {
        let name = self.required_text(field, value)?;
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Ok(name)
        } else {
            Err(self.invalid(
                field,
                format!(
                    "'{name}' may hold only letters, digits, '-' and '_' (it is an OAuth client ID)"
                ),
            ))
        }
    }

    /// A secret: the environment variable `variable` when set and not empty, else the file's
    /// value (expanded, not trimmed, not empty), else `default`.
    pub(super) fn secret(
        &self,
        field: &str,
        variable: &str,
        value: Option<&str>,
        default: &str,
    ) -> Result<Secret, ConfigError> {
        if let Some(secret) = self.env_var(variable).filter(|secret| !secret.is_empty()) {
            return Ok(Secret::new(secret));
        }
        let Some(value) = value else {
            return Ok(Secret::new(default));
        };
        let secret = self.text(field, value)?;
        if secret.is_empty() {
            return Err(self.invalid(
                field,
                format!("is empty; give the secret, or set {variable}, or remove the key for the development default"),
            ));
        }
        Ok(Secret::new(secret))
    }

    /// A duration such as `500ms`, `5s` or `2m`, more than zero; `default` when absent.
    pub(super) fn duration(
        &self,
        field: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = self.optional_text(field, value)? else {
            return Ok(default);
        };
        let duration = parse_duration(&text).map_err(|message| self.invalid(field, message))?;
        if duration.is_zero() {
            return Err(self.invalid(
                field,
                format!("`{text}` is zero; give a deadline such as 5s"),
            ));
        }
        Ok(duration)
    }

    /// `value` (or `default` when absent), which must lie in `range`.
    pub(super) fn in_range<T>(
        &self,
        field: &str,
        value: Option<T>,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: PartialOrd + Display + Copy,
    {
        let value = value.unwrap_or(default);
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                field,
                format!(
                    "{value} is out of range; use a value from {} to {}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    /// The endpoints a service section gives (`host`, `base_url` and each of `base_urls`
    /// expanded); a bad item of `base_urls` is named by its index.
    pub(super) fn endpoint(
        &self,
        field: &str,
        address: AddressParts<'_>,
    ) -> Result<Endpoints, ConfigError> {
        let host = self.optional_text(&format!("{field}.host"), address.host)?;
        let base_url = self.optional_text(&format!("{field}.base_url"), address.base_url)?;
        let base_urls = match address.base_urls {
            Some(urls) => Some(
                urls.iter()
                    .enumerate()
                    .map(|(index, url)| self.text(&format!("{field}.base_urls[{index}]"), url))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Endpoints::from_parts(
            host.as_deref(),
            address.port,
            base_url.as_deref(),
            base_urls.as_deref(),
        )
        .map_err(|error| match error {
            EndpointsError::Bad { index, source } => {
                self.invalid(format!("{field}.base_urls[{index}]"), source.to_string())
            }
            other => self.invalid(field, other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "vault".to_owned())
    }

    fn fields() -> Fields<'static> {
        Fields::new("test.yaml", &env)
    }

    #[test]
    fn text_is_expanded_and_an_unset_variable_names_the_field() {
        assert_eq!(fields().text("a.b", "${HOST}").unwrap(), "vault");
        let error = fields().text("a.b", "${MISSING}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "test.yaml: a.b: environment variable MISSING is not set; \
             set it or give a default with ${MISSING:-default}"
        );
    }

    #[test]
    fn required_text_refuses_blank_values() {
        let error = fields().required_text("agents[0].role", "  ").unwrap_err();
        assert_eq!(
            error.to_string(),
            "test.yaml: agents[0].role: is empty; give it a value"
        );
    }

    #[test]
    fn list_items_are_named_by_index() {
        let values = vec!["a".to_owned(), String::new()];
        let error = fields().texts("session.turn_order", &values).unwrap_err();
        assert!(
            error.to_string().contains("session.turn_order[1]"),
            "{error}"
        );
    }

    #[test]
    fn durations_parse_default_and_refuse_zero_and_garbage() {
        let fields = fields();
        let default = Duration::from_secs(5);
        assert_eq!(fields.duration("t", None, default).unwrap(), default);
        assert_eq!(
            fields.duration("t", Some("500ms"), default).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            fields.duration("t", Some("2m"), default).unwrap(),
            Duration::from_secs(120)
        );
        let error = fields
            .duration("timeouts.oauth", Some("soon"), default)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("test.yaml: timeouts.oauth: `soon`"),
            "{error}"
        );
        assert!(error.to_string().contains("500ms"), "{error}");
        let error = fields.duration("t", Some("0s"), default).unwrap_err();
        assert!(error.to_string().contains("zero"), "{error}");
    }

    #[test]
    fn values_out_of_range_say_the_range() {
        let fields = fields();
        assert_eq!(fields.in_range("n", None, 20, 1..=100).unwrap(), 20);
        assert_eq!(fields.in_range("n", Some(100), 20, 1..=100).unwrap(), 100);
        let error = fields
            .in_range("session.max_turns", Some(0), 20, 1..=100)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "test.yaml: session.max_turns: 0 is out of range; use a value from 1 to 100"
        );
    }

    #[test]
    fn an_endpoint_host_is_expanded_and_a_bad_address_names_the_section() {
        let address = AddressParts {
            host: Some("${HOST}"),
            port: Some(8005),
            base_url: None,
            base_urls: None,
        };
        let endpoint = fields().endpoint("memory_service", address).unwrap();
        assert_eq!(endpoint.to_string(), "http://vault:8005");
        let address = AddressParts {
            host: None,
            port: Some(0),
            base_url: Some("http://vault:0"),
            base_urls: None,
        };
        let error = fields().endpoint("memory_service", address).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("test.yaml: memory_service: `http://vault:0` has port 0"),
            "{error}"
        );
    }

    #[test]
    fn client_names_allow_only_id_characters() {
        assert_eq!(
            fields().client_name("n", "safe-cracker_2").unwrap(),
            "safe-cracker_2"
        );
        let error = fields()
            .client_name("agents[0].name", "bad name")
            .unwrap_err();
        assert!(
            error.to_string().contains("only letters, digits"),
            "{error}"
        );
    }

    #[test]
    fn a_secret_comes_from_the_override_then_the_file_then_the_default() {
        let env = |name: &str| match name {
            "HEIST_SECRET_A" => Some("from-env".to_owned()),
            "HEIST_SECRET_EMPTY" => Some(String::new()),
            _ => None,
        };
        let fields = Fields::new("t.yaml", &env);
        let secret = |variable, value| fields.secret("s", variable, value, "dev").unwrap();
        assert_eq!(secret("HEIST_SECRET_A", Some("file")).expose(), "from-env");
        assert_eq!(secret("HEIST_SECRET_EMPTY", Some("file")).expose(), "file");
        assert_eq!(secret("HEIST_SECRET_B", Some("file")).expose(), "file");
        assert_eq!(secret("HEIST_SECRET_B", None).expose(), "dev");
    }

    #[test]
    fn an_override_spares_the_file_value_from_expansion() {
        let env = |name: &str| (name == "HEIST_SECRET_A").then(|| "from-env".to_owned());
        let fields = Fields::new("t.yaml", &env);
        let secret = fields.secret("s", "HEIST_SECRET_A", Some("${UNSET}"), "dev");
        assert_eq!(secret.unwrap().expose(), "from-env");
        let error = fields.secret(
            "agents[0].client_secret",
            "HEIST_SECRET_B",
            Some("${UNSET}"),
            "dev",
        );
        assert!(error.unwrap_err().to_string().contains("UNSET is not set"));
        let error = fields.secret("agents[0].client_secret", "HEIST_SECRET_B", Some(""), "dev");
        assert!(error.unwrap_err().to_string().contains("is empty"));
    }
}
