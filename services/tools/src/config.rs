//! The tools' settings and the errors of building tools from them.

use std::path::PathBuf;
use std::time::Duration;

/// The default documents directory, resolved at run time against the working
/// directory: the documents shipped in the repository, for a binary started
/// from the checkout's root (as `scripts/start_services.sh` and `cargo run` do).
/// Anywhere else, give the directory (`--documents-dir` or [`DOCUMENTS_DIR_ENV`]).
pub const DEFAULT_DOCUMENTS_DIR: &str = "services/tools/documents";

/// The environment variable that names the documents directory.
pub const DOCUMENTS_DIR_ENV: &str = "HEIST_DOCUMENTS_DIR";

/// The documents shipped with this crate, where it was built: for this
/// crate's own tests only, never compiled into a binary.
#[cfg(test)]
pub(crate) fn bundled_documents_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/documents"))
}

/// The default settings with the bundled documents: for this crate's tests.
#[cfg(test)]
pub(crate) fn with_bundled_documents() -> ToolsConfig {
    ToolsConfig {
        documents_dir: bundled_documents_dir(),
        ..ToolsConfig::default()
    }
}

/// Where the intelligence database is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntelDbConfig {
    /// Built into this file (replaced if it exists), then opened read-only.
    File(PathBuf),
    /// Built into a fresh temporary directory removed when the tool is dropped.
    Temporary,
}

/// The settings of every tool; [`ToolsConfig::default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsConfig {
    /// The directory `file_reader` serves documents from.
    pub documents_dir: PathBuf,
    /// The largest document `file_reader` returns, in bytes (default 64 KiB).
    pub max_file_bytes: u64,
    /// Where `database_query` builds its database (default: a temporary file).
    pub intel_db: IntelDbConfig,
    /// The most rows `database_query` returns (default 200).
    pub max_rows: usize,
    /// How long one `database_query` query may run (default 2 s).
    pub query_time_limit: Duration,
    /// How many read-only connections run `database_query` queries at once (default 8).
    pub query_connections: usize,
    /// How many of them one client (a token's `sub`) may hold at once (default 2).
    pub query_per_client: usize,
    /// How long a query waits for a connection before RESOURCE_EXHAUSTED (default 500 ms).
    pub query_queue_wait: Duration,
    /// The longest `calculator` expression, in characters (default 1000).
    pub max_expression_len: usize,
    /// The deepest `calculator` nesting (default 64).
    pub max_depth: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            documents_dir: PathBuf::from(DEFAULT_DOCUMENTS_DIR),
            max_file_bytes: 64 * 1024,
            intel_db: IntelDbConfig::Temporary,
            max_rows: 200,
            query_time_limit: Duration::from_secs(2),
            query_connections: 8,
            query_per_client: 2,
            query_queue_wait: Duration::from_millis(500),
            max_expression_len: 1000,
            max_depth: 64,
        }
    }
}

/// Why tools could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The tool list names no tool.
    #[error("no tools listed; known tools: {known}")]
    NoTools {
        /// The known tool names, comma separated.
        known: String,
    },
    /// The tool list names a tool that does not exist.
    #[error("unknown tool '{name}'; known tools: {known}")]
    UnknownTool {
        /// The name as given.
        name: String,
        /// The known tool names, comma separated.
        known: String,
    },
    /// The tool list names a tool twice.
    #[error("tool '{0}' is listed twice")]
    DuplicateTool(String),
    /// A limit is zero or otherwise unusable.
    #[error("invalid setting {name}: {reason}")]
    InvalidLimit {
        /// The setting's name, e.g. `max_rows`.
        name: &'static str,
        /// Why it is unusable.
        reason: String,
    },
    /// The documents directory cannot be read.
    #[error("documents directory {}: {source}", .path.display())]
    DocumentsDir {
        /// The directory as configured.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The intelligence database could not be built or opened.
    #[error("intelligence database {}: {reason}", .path.display())]
    IntelDb {
        /// Where it was being built.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Returns an [`ConfigError::InvalidLimit`] naming `name` unless `value` is positive.
pub(crate) fn require_positive(name: &'static str, value: u128) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::InvalidLimit {
            name,
            reason: "must be greater than zero".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_limits() {
        let config = ToolsConfig::default();
        assert_eq!(config.max_file_bytes, 65_536);
        assert_eq!(config.max_rows, 200);
        assert_eq!(config.query_time_limit, Duration::from_secs(2));
        assert_eq!(config.query_connections, 8);
        assert_eq!(config.query_per_client, 2);
        assert_eq!(config.query_queue_wait, Duration::from_millis(500));
        assert_eq!(config.max_expression_len, 1000);
        assert_eq!(config.max_depth, 64);
        assert!(config.documents_dir.ends_with("documents"));
        assert!(config.documents_dir.is_relative(), "resolved at run time");
    }

    #[test]
    fn a_zero_limit_is_refused_by_name() {
        let err = require_positive("max_rows", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting max_rows: must be greater than zero"
        );
        assert!(require_positive("max_rows", 1).is_ok());
    }
}
