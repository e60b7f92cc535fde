//! The client file (`clients.yaml`) as written: its YAML shape and the reading of it.
//!
//! ```yaml
//! clients:
//!   - client_id: planner
//!     secret_hash: "$argon2id$v=19$m=8192,t=1,p=1$..."   # or, for development only:
//!     # secret: planner-dev-secret
//!     allowed_scopes: [calculator:use, memory:read]
//!     allowed_audiences: [tools, memory]   # optional; every audience when left out
//!     description: Plans the heist.
//! ```

use std::path::Path;

use serde::Deserialize;

use super::RegistryError;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientsFile {
    /// The clients, in file order.
    pub(crate) clients: Vec<ClientEntry>,
}

/// One client as written. Exactly one of `secret_hash` and `secret` must be set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientEntry {
    /// The client ID.
    pub(crate) client_id: String,
    /// The secret's Argon2 PHC string.
    #[serde(default)]
    pub(crate) secret_hash: Option<String>,
    /// The secret in plain text: development only, hashed at load.
    #[serde(default)]
    pub(crate) secret: Option<String>,
    /// The scopes the client may be granted.
    #[serde(default)]
    pub(crate) allowed_scopes: Vec<String>,
    /// The audiences (RFC 8707 resources) the client may have tokens for; every one when
    /// left out.
    #[serde(default)]
    pub(crate) allowed_audiences: Option<Vec<String>>,
    /// What the client is, for people.
    #[serde(default)]
    pub(crate) description: String,
}

impl ClientsFile {
    /// Parses the YAML text of the file at `path` (named in errors).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, RegistryError> {
        serde_norway::from_str(text).map_err(|error| {
            let location = error.location();
            RegistryError::Yaml {
                path: path.to_owned(),
                line: location.as_ref().map(serde_norway::Location::line),
                column: location.as_ref().map(serde_norway::Location::column),
                message: error.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientsFile, RegistryError> {
        ClientsFile::parse(Path::new("test.yaml"), text)
    }

    #[test]
    fn a_minimal_entry_parses_with_defaults() {
        let file = parse("clients:\n  - client_id: planner\n    secret: s\n").unwrap();
        let entry = &file.clients[0];
        assert_eq!(entry.client_id, "planner");
        assert_eq!(entry.secret.as_deref(), Some("s"));
        assert!(entry.secret_hash.is_none());
        assert!(entry.allowed_scopes.is_empty());
        assert!(entry.description.is_empty());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file_and_line() {
        let text = "clients:\n  - client_id: planner\n    secret: s\n    alowed_scopes: [x]\n";
        let error = parse(text).err().unwrap();
        let RegistryError::Yaml { line, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(*line, Some(4));
        let message = error.to_string();
        assert!(message.starts_with("test.yaml: "), "{message}");
        assert!(
            message.contains("unknown field `alowed_scopes`"),
            "{message}"
        );
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn an_unknown_top_level_key_is_named() {
        let message = parse("clients: []\nclient: {}\n")
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("unknown field `client`"), "{message}");
    }

    #[test]
    fn wrong_types_and_broken_yaml_are_located() {
        let error = parse("clients:\n  - client_id: [1]\n").err().unwrap();
        assert!(
            matches!(error, RegistryError::Yaml { line: Some(2), .. }),
            "{error}"
        );
        let error = parse("clients: [\n").err().unwrap();
        assert!(
            matches!(error, RegistryError::Yaml { line: Some(2), .. }),
            "{error}"
        );
        let error = parse("").err().unwrap();
        assert!(
            error.to_string().contains("missing field `clients`"),
            "{error}"
        );
    }
}
