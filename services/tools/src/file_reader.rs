//! The `file_reader` tool: returns one heist document from the documents
//! directory by its bare file name. The [`sandbox`] refuses everything else.

mod sandbox;

use std::collections::HashMap;

use serde_json::json;

use self::sandbox::Sandbox;
use crate::config::{ConfigError, ToolsConfig, require_positive};
use crate::tool::{Parameter, Tool, ToolError, ToolOutput, required_argument};

/// The file reader's only argument.
const PARAMETERS: &[Parameter] = &[Parameter {
    name: "filename",
    description: "The bare name of one document, e.g. `bank_layout.md`.",
}];

/// The `file_reader` tool.
#[derive(Debug, Clone)]
pub struct FileReader {
    sandbox: Sandbox,
    /// The description, naming the documents present at construction.
    description: String,
}

impl FileReader {
    /// A reader over `config.documents_dir`, which must exist.
    pub fn new(config: &ToolsConfig) -> Result<Self, ConfigError> {
        require_positive("max_file_bytes", u128::from(config.max_file_bytes))?;
        let dir_error = |source| ConfigError::DocumentsDir {
            path: config.documents_dir.clone(),
            source,
        };
        let sandbox =
            Sandbox::open(&config.documents_dir, config.max_file_bytes).map_err(dir_error)?;
        let names = sandbox.list().map_err(dir_error)?;
        let available = if names.is_empty() {
            "none yet".to_owned()
        } else {
            names.join(", ")
        };
        Ok(Self {
            sandbox,
            description: format!(
                "Reads one heist document by its file name. Available documents: {available}."
            ),
        })
    }
}

impl Tool for FileReader {
    fn name(&self) -> &'static str {
        "file_reader"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn required_scope(&self) -> &'static str {
        "file_reader:use"
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn primary_argument(&self) -> &'static str {
        "filename"
    }

    fn call(&self, args: &HashMap<String, String>) -> Result<ToolOutput, ToolError> {
        let filename = required_argument(args, PARAMETERS, "filename")?;
        let document = self.sandbox.read(filename)?;
        Ok(ToolOutput {
            data: json!({
                "filename": filename,
                "size_bytes": document.size,
                "content": document.content,
            }),
            text: document.content,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn call(reader: &FileReader, filename: &str) -> Result<ToolOutput, ToolError> {
        reader.call(&HashMap::from([(
            "filename".to_owned(),
            filename.to_owned(),
        )]))
    }

    fn bundled() -> FileReader {
        FileReader::new(&crate::config::with_bundled_documents()).unwrap()
    }

    #[test]
    fn a_bundled_document_is_returned_as_text_and_data() {
        let output = call(&bundled(), "vault_specs.md").unwrap();
        assert!(output.text.contains("First National Heist Bank"));
        assert_eq!(output.data["filename"], "vault_specs.md");
        assert_eq!(output.data["content"], output.text.as_str());
        assert_eq!(output.data["size_bytes"], output.text.len());
    }

    #[test]
    fn every_bundled_document_is_readable_and_between_1_and_4_kib() {
        let reader = bundled();
        let names = reader.sandbox.list().unwrap();
        assert!(names.len() >= 6, "{names:?}");
        for name in names {
            let size = call(&reader, &name).unwrap().text.len();
            assert!((1024..=4096).contains(&size), "{name} is {size} bytes");
        }
    }

    #[test]
    fn the_description_names_the_documents_present() {
        let description = bundled().description().to_owned();
        for name in [
            "bank_layout.md",
            "guard_rotation.txt",
            "alarm_codes_memo.txt",
        ] {
            assert!(description.contains(name), "{description}");
        }
    }

    #[test]
    fn an_empty_directory_is_described_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let config = ToolsConfig {
            documents_dir: dir.path().to_owned(),
            ..ToolsConfig::default()
        };
        let reader = FileReader::new(&config).unwrap();
        assert!(
            reader
                .description()
                .ends_with("Available documents: none yet.")
        );
    }

    #[test]
    fn a_missing_document_is_not_found() {
        assert_eq!(
            call(&bundled(), "nuclear_codes.txt"),
            Err(ToolError::NotFound(
                "no document named 'nuclear_codes.txt'".into()
            ))
        );
    }

    #[test]
    fn traversal_out_of_the_bundled_directory_is_denied() {
        assert!(matches!(
            call(&bundled(), "../Cargo.toml"),
            Err(ToolError::PermissionDenied(_))
        ));
    }

    #[test]
    fn a_missing_filename_argument_is_refused_by_name() {
        let err = bundled().call(&HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing argument 'filename'"));
    }

    #[test]
    fn a_missing_documents_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = ToolsConfig {
            documents_dir: dir.path().join("absent"),
            ..ToolsConfig::default()
        };
        assert!(matches!(
            FileReader::new(&config),
            Err(ConfigError::DocumentsDir { .. })
        ));
    }

    #[test]
    fn a_file_as_documents_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.txt");
        fs::write(&file, "x").unwrap();
        let config = ToolsConfig {
            documents_dir: file,
            ..ToolsConfig::default()
        };
        assert!(matches!(
            FileReader::new(&config),
            Err(ConfigError::DocumentsDir { .. })
        ));
    }

    #[test]
    fn a_zero_size_limit_is_a_config_error() {
        let config = ToolsConfig {
            max_file_bytes: 0,
            ..ToolsConfig::default()
        };
        assert!(matches!(
            FileReader::new(&config),
            Err(ConfigError::InvalidLimit {
                name: "max_file_bytes",
                ..
            })
        ));
    }
}
