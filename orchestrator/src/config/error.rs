//! [`ConfigError`]: what can be wrong with a config, each message naming the file, the place and
//! the fix.

/// Why a config could not be loaded. `Display` is the whole message, ready for the user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the config file: {cause}; check the path and its permissions")]
    Read {
        /// The file as named by the caller.
        file: String,
        /// Why reading failed.
        #[source]
        cause: std::io::Error,
    },
    /// The file holds nothing but blanks and comments.
    #[error(
        "{file}: the config file is empty; define at least `agents` \
         (the built-in orchestrator/heist.yaml is a complete example)"
    )]
    Empty {
        /// The file.
        file: String,
    },
    /// Broken YAML, an unknown key, a missing field or a wrong type, located by the parser.
    #[error("{file}: {}{message}", location(*.line, *.column))]
    Yaml {
        /// The file.
        file: String,
        /// The line of the problem (1-based), when the parser knows it.
        line: Option<usize>,
        /// The column of the problem (1-based), when the parser knows it.
        column: Option<usize>,
        /// What is wrong and how to fix it, starting with the field's path when known.
        message: String,
    },
    /// A `${VAR}` names an environment variable that is not set and gives no default.
    #[error(
        "{file}: {field}: environment variable {variable} is not set; \
         set it or give a default with ${{{variable}:-default}}"
    )]
    UnsetVariable {
        /// The file.
        file: String,
        /// The field holding the `${VAR}`, e.g. `agents[1].client_secret`.
        field: String,
        /// The variable's name.
        variable: String,
    },
    /// A value that parses but is not acceptable (unknown agent, bad URL, out of range, ...).
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The field's path, e.g. `session.turn_order[2]`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// `line L, column C: ` when the parser gave a location, else nothing.
fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_error_shows_its_line_and_column_after_the_file() {
        let error = ConfigError::Yaml {
            file: "heist.yaml".into(),
            line: Some(12),
            column: Some(5),
            message: "agents[1]: unknown field `tols`".into(),
        };
        assert_eq!(
            error.to_string(),
            "heist.yaml: line 12, column 5: agents[1]: unknown field `tols`"
        );
    }

    #[test]
    fn a_yaml_error_without_location_shows_only_the_file() {
        let error = ConfigError::Yaml {
            file: "heist.yaml".into(),
            line: None,
            column: None,
            message: "missing field `agents`".into(),
        };
        assert_eq!(error.to_string(), "heist.yaml: missing field `agents`");
    }

    #[test]
    fn an_unset_variable_names_the_field_and_shows_how_to_give_a_default() {
        let error = ConfigError::UnsetVariable {
            file: "heist.yaml".into(),
            field: "llm.api_key".into(),
            variable: "KEY".into(),
        };
        assert_eq!(
            error.to_string(),
            "heist.yaml: llm.api_key: environment variable KEY is not set; \
             set it or give a default with ${KEY:-default}"
        );
    }
}
