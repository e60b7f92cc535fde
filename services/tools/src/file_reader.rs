//! The `file_reader` tool: returns one heist document from the documents
//! directory by its bare file name. The [`sandbox`] refuses everything else;
//! a name it does not find is looked up ([`lookup`]) among the documents it
//! lists: another extension or case, or the seed's name for a document.

mod lookup;
mod sandbox;

use std::collections::HashMap;

use serde_json::json;

use self::lookup::{Lookup, listing, lookup};
use self::sandbox::{Document, Sandbox};
use crate::config::{ConfigError, ToolsConfig, require_positive};
use crate::tool::{Parameter, Tool, ToolError, ToolOutput, required_argument};
use heist_plumbing::quote;

/// The file reader's only argument.
const PARAMETERS: &[Parameter] = &[Parameter {
    name: "filename",
    description: "The bare name of one document, e.g. `bank_layout.md` \
                  (another extension or case works when only one document fits).",
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
                "Reads one heist document by its file name, e.g. `vault_specs.md`. \
                 Available documents: {available}."
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
        let (served, document) = self.read(filename)?;
        let mut data = json!({
            "filename": served,
            "size_bytes": document.size,
            "content": document.content,
        });
        let text = if served == filename {
            document.content
        } else {
            data["requested"] = json!(filename);
            format!(
                "(no document is named '{}'; this is {served})\n{}",
                quote(filename),
                document.content
            )
        };
        Ok(ToolOutput { data, text })
    }
}

impl FileReader {
    /// Reads the document `filename` names: exactly, or else as [`lookup`]
    /// finds it among the listed documents. Returns the name served.
    ///
    /// Only a name the sandbox accepted and did not find is looked up, so
    /// every refusal (traversal, absolute paths, hidden files, links out) is
    /// the sandbox's, unchanged.
    fn read(&self, filename: &str) -> Result<(String, Document), ToolError> {
        match self.sandbox.read(filename) {
            Ok(document) => return Ok((filename.to_owned(), document)),
            Err(ToolError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let missing = format!("no document named '{}'", quote(filename));
        let documents = self
            .sandbox
            .list()
            .map_err(|e| ToolError::Internal(format!("listing the documents: {e}")))?;
        match lookup(filename, &documents) {
            Lookup::Found(name) => {
                let document = self.sandbox.read(&name)?;
                Ok((name, document))
            }
            Lookup::Ambiguous(names) => Err(ToolError::NotFound(format!(
                "{missing}; several documents fit, name one: {}",
                listing(&names)
            ))),
            Lookup::Missing(names) => Err(ToolError::NotFound(format!(
                "{missing}; documents (closest first): {}",
                listing(&names)
            ))),
        }
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

    fn not_found(result: Result<ToolOutput, ToolError>) -> String {
        match result {
            Err(ToolError::NotFound(message)) => message,
            other => panic!("expected not found, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_document_is_not_found_and_lists_the_documents_closest_first() {
        let message = not_found(call(&bundled(), "nuclear_codes.txt"));
        assert!(
            message
                .starts_with("no document named 'nuclear_codes.txt'; documents (closest first): "),
            "{message}"
        );
        for name in bundled().sandbox.list().unwrap() {
            assert!(message.contains(&name), "{message} lacks {name}");
        }
        let message = not_found(call(&bundled(), "vault_spec.pdf"));
        assert!(
            message.contains("(closest first): vault_specs.md, "),
            "{message}"
        );
    }

    #[test]
    fn the_seeds_document_names_resolve_to_ours_and_say_so() {
        let reader = bundled();
        for (seed, ours) in [
            ("bank_layout.txt", "bank_layout.md"),
            ("security_system.txt", "security_system.md"),
            ("timing_specs.txt", "time_lock.md"),
            ("vault_specs.txt", "vault_specs.md"),
            ("Vault_Specs.MD", "vault_specs.md"),
        ] {
            let output = call(&reader, seed).unwrap();
            assert_eq!(output.data["filename"], ours, "{seed}");
            assert_eq!(output.data["requested"], seed, "{seed}");
            assert!(
                output.text.starts_with(&format!(
                    "(no document is named '{seed}'; this is {ours})\n"
                )),
                "{seed}: {}",
                output.text
            );
            assert!(
                output
                    .text
                    .ends_with(output.data["content"].as_str().unwrap())
            );
        }
    }

    #[test]
    fn an_exact_name_is_served_as_it_is_without_a_note() {
        let output = call(&bundled(), "time_lock.md").unwrap();
        assert_eq!(output.text, output.data["content"].as_str().unwrap());
        assert!(output.data.get("requested").is_none());
    }

    /// A reader over a temporary directory holding `files`, plus `secret.md` beside it.
    fn reader_over(files: &[&str]) -> (tempfile::TempDir, FileReader) {
        let outer = tempfile::tempdir().unwrap();
        let docs = outer.path().join("docs");
        fs::create_dir(&docs).unwrap();
        for file in files {
            fs::write(docs.join(file), format!("text of {file}")).unwrap();
        }
        fs::write(outer.path().join("secret.md"), "outside").unwrap();
        let config = ToolsConfig {
            documents_dir: docs,
            ..ToolsConfig::default()
        };
        let reader = FileReader::new(&config).unwrap();
        (outer, reader)
    }

    #[test]
    fn a_stem_shared_by_several_documents_is_not_guessed() {
        let (_dir, reader) = reader_over(&["plan.md", "plan.txt"]);
        let message = not_found(call(&reader, "plan.pdf"));
        assert!(
            message.ends_with("several documents fit, name one: plan.md, plan.txt"),
            "{message}"
        );
        assert_eq!(
            call(&reader, "PLAN.TXT").unwrap().data["filename"],
            "plan.txt"
        );
    }

    #[test]
    fn the_forgiveness_opens_no_hole() {
        let (dir, reader) = reader_over(&["notes.md", ".env"]);
        let docs = dir.path().join("docs");
        std::os::unix::fs::symlink(dir.path().join("secret.md"), docs.join("escape.md")).unwrap();
        let denied = |name: &str| match call(&reader, name) {
            Err(ToolError::PermissionDenied(message)) => message,
            other => panic!("{name}: expected a denial, got {other:?}"),
        };
        assert!(denied("../secret.md").contains("path traversal"));
        assert!(denied("../secret.txt").contains("path traversal"));
        assert!(denied("../notes.txt").contains("path traversal"));
        let absolute = docs.join("notes.txt");
        assert!(denied(&absolute.to_string_lossy()).contains("absolute path"));
        assert!(denied(".env").contains("hidden file"));
        assert!(denied(".ENV").contains("hidden file"));
        assert!(denied(".env.txt").contains("hidden file"));
        assert!(denied("escape.md").contains("outside the documents directory"));
        // Variants of the hidden file and the escaping link find nothing.
        for name in ["env", "env.md", "escape.txt", "ESCAPE.MD", "secret.md"] {
            let message = not_found(call(&reader, name));
            assert!(message.ends_with("(closest first): notes.md"), "{message}");
        }
    }

    #[test]
    fn an_overlong_missing_name_is_quoted_short() {
        let name = format!("{}.md", "x".repeat(240));
        let message = not_found(call(&bundled(), &name));
        assert!(message.len() < name.len() + 250, "{}", message.len());
        assert!(message.contains("…(243 bytes)'"), "{message}");
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
