//! The set of tools one process hosts, built from a list of names.

use std::sync::Arc;

use crate::calculator::Calculator;
use crate::config::{ConfigError, ToolsConfig};
use crate::database_query::DatabaseQuery;
use crate::file_reader::FileReader;
use crate::tool::Tool;

/// Builds one tool from the configuration.
type Builder = fn(&ToolsConfig) -> Result<Arc<dyn Tool>, ConfigError>;

/// Every tool this crate knows, by name.
const KNOWN: &[(&str, Builder)] = &[
    ("calculator", |config| {
        Ok(Arc::new(Calculator::new(config)?))
    }),
    ("file_reader", |config| {
        Ok(Arc::new(FileReader::new(config)?))
    }),
    ("database_query", |config| {
        Ok(Arc::new(DatabaseQuery::new(config)?))
    }),
];

/// The tools a process hosts, in the order they were listed.
///
/// Tools are behind `Arc` so that a caller can move one onto a blocking thread.
#[derive(Clone)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| t.name()))
            .finish()
    }
}

impl ToolSet {
    /// The names of every tool this crate can host.
    pub fn known_names() -> impl Iterator<Item = &'static str> {
        KNOWN.iter().map(|(name, _)| *name)
    }

    /// Builds the tools named in `names`, comma separated (spaces allowed),
    /// e.g. `"calculator, file_reader"`.
    ///
    /// An empty list, an unknown or repeated name, or a tool that cannot be
    /// built from `config` is a [`ConfigError`].
    pub fn from_names(names: &str, config: &ToolsConfig) -> Result<Self, ConfigError> {
        let known = || Self::known_names().collect::<Vec<_>>().join(", ");
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some((_, build)) = KNOWN.iter().find(|(known, _)| *known == name) else {
                return Err(ConfigError::UnknownTool {
                    name: name.to_owned(),
                    known: known(),
                });
            };
            if tools.iter().any(|tool| tool.name() == name) {
                return Err(ConfigError::DuplicateTool(name.to_owned()));
            }
            tools.push(build(config)?);
        }
        if tools.is_empty() {
            return Err(ConfigError::NoTools { known: known() });
        }
        Ok(Self { tools })
    }

    /// The tool called `name`, if this set hosts it.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|tool| tool.name() == name)
    }

    /// The tools, in the order they were listed.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_tools_are_built_in_order() {
        let set = ToolSet::from_names(
            " database_query, calculator ,file_reader",
            &crate::config::with_bundled_documents(),
        )
        .unwrap();
        let names: Vec<&str> = set.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["database_query", "calculator", "file_reader"]);
        assert_eq!(set.get("calculator").unwrap().name(), "calculator");
        assert!(set.get("hacker").is_none());
    }

    #[test]
    fn an_unknown_name_lists_the_known_tools() {
        let err = ToolSet::from_names("calculator,lockpick", &ToolsConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown tool 'lockpick'; known tools: calculator, file_reader, database_query"
        );
    }

    #[test]
    fn an_empty_list_is_refused() {
        let err = ToolSet::from_names(" , ", &ToolsConfig::default()).unwrap_err();
        assert!(matches!(err, ConfigError::NoTools { .. }));
    }

    #[test]
    fn a_repeated_name_is_refused() {
        let err =
            ToolSet::from_names("calculator,calculator", &ToolsConfig::default()).unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateTool(name) if name == "calculator"));
    }

    #[test]
    fn a_tool_that_cannot_be_built_fails_the_set() {
        let config = ToolsConfig {
            documents_dir: "/definitely/not/here".into(),
            ..ToolsConfig::default()
        };
        let err = ToolSet::from_names("file_reader", &config).unwrap_err();
        assert!(matches!(err, ConfigError::DocumentsDir { .. }));
    }

    #[test]
    fn every_tool_has_a_scope_schema_and_primary_argument() {
        let set = ToolSet::from_names(
            "calculator,file_reader,database_query",
            &crate::config::with_bundled_documents(),
        )
        .unwrap();
        for tool in set.iter() {
            assert_eq!(tool.required_scope(), format!("{}:use", tool.name()));
            let schema = tool.parameters_schema();
            assert_eq!(schema["required"][0], tool.primary_argument());
            assert!(!tool.description().is_empty());
        }
    }
}
