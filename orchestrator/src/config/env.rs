//! `${VAR}` and `${VAR:-default}` expansion of string values from the environment.
//!
//! `${VAR:-default}` takes the default when VAR is unset or empty (as in the shell); `$${` writes a
//! literal `${`. Expanded text is not expanded again.

/// Reads one environment variable; injectable so that tests need not touch the process's.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment (a value that is not UTF-8 counts as unset).
pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a string could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExpandError {
    /// `${VAR}` with VAR unset and no default.
    Unset(String),
    /// `${` without its `}`.
    Unterminated,
    /// `${...}` whose name is not a variable name.
    BadName(String),
}

impl ExpandError {
    /// The problem and its fix, for a message that already names the field.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Unset(variable) => format!("environment variable {variable} is not set"),
            Self::Unterminated => {
                "`${` is not closed; write ${VAR} or ${VAR:-default}, or $${ for a literal ${"
                    .to_owned()
            }
            Self::BadName(name) => format!(
                "`${{{name}}}` does not name an environment variable; \
                 use letters, digits and _ (not starting with a digit)"
            ),
        }
    }
}

/// `text` with every `${VAR}` / `${VAR:-default}` replaced from `env`.
pub(super) fn expand(text: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        expanded.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            expanded.push_str("${");
            rest = after;
        } else if let Some(body_and_rest) = tail.strip_prefix("${") {
            let (body, after) = body_and_rest
                .split_once('}')
                .ok_or(ExpandError::Unterminated)?;
            expanded.push_str(&lookup(body, env)?);
            rest = after;
        } else {
            expanded.push('$');
            rest = &tail[1..];
        }
    }
    expanded.push_str(rest);
    Ok(expanded)
}

/// The value of one `${body}`: `VAR` or `VAR:-default`.
fn lookup(body: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_variable_name(name) {
        return Err(ExpandError::BadName(body.to_owned()));
    }
    match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(ExpandError::Unset(name.to_owned())),
    }
}

/// Whether `name` is a portable environment variable name.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("vault.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn text_without_a_dollar_is_returned_unchanged() {
        assert_eq!(expand("plain text", &env), Ok("plain text".into()));
    }

    #[test]
    fn a_whole_value_and_an_embedded_variable_are_both_expanded() {
        assert_eq!(expand("${HOST}", &env), Ok("vault.local".into()));
        assert_eq!(
            expand("http://${HOST}:8001/", &env),
            Ok("http://vault.local:8001/".into())
        );
    }

    #[test]
    fn a_default_is_used_when_the_variable_is_unset_or_empty() {
        assert_eq!(expand("${NOPE:-fallback}", &env), Ok("fallback".into()));
        assert_eq!(expand("${EMPTY:-fallback}", &env), Ok("fallback".into()));
        assert_eq!(expand("${HOST:-fallback}", &env), Ok("vault.local".into()));
        assert_eq!(expand("${NOPE:-}", &env), Ok(String::new()));
    }

    #[test]
    fn an_unset_variable_without_default_is_an_error_naming_it() {
        assert_eq!(
            expand("key-${SECRET}", &env),
            Err(ExpandError::Unset("SECRET".into()))
        );
    }

    #[test]
    fn a_lone_dollar_stays_and_a_double_dollar_brace_is_a_literal() {
        assert_eq!(expand("costs $5", &env), Ok("costs $5".into()));
        assert_eq!(expand("$${HOST}", &env), Ok("${HOST}".into()));
        assert_eq!(expand("end$", &env), Ok("end$".into()));
    }

    #[test]
    fn an_unclosed_brace_and_a_bad_name_are_errors() {
        assert_eq!(expand("${HOST", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(
            expand("${}", &env),
            Err(ExpandError::BadName(String::new()))
        );
        assert!(ExpandError::Unterminated.describe().contains("not closed"));
    }

    #[test]
    fn expanded_values_are_not_expanded_again() {
        let env = |name: &str| (name == "A").then(|| "${B}".to_owned());
        assert_eq!(expand("${A}", &env), Ok("${B}".into()));
    }
}
