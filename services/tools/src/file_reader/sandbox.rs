//! The documents directory as a sandbox: a name goes in, the text of a
//! regular UTF-8 file inside the directory comes out, or a precise refusal.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use heist_plumbing::quote;

use crate::tool::ToolError;

/// The longest file name accepted, in bytes (the usual file-system limit).
const MAX_NAME_BYTES: usize = 255;

/// A directory whose plain files may be read by name, and nothing else.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    /// The directory, canonicalized: every file read must resolve under it.
    root: PathBuf,
    /// The largest file returned, in bytes.
    max_bytes: u64,
}

/// A document read from the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Its text.
    pub(crate) content: String,
    /// Its size in bytes.
    pub(crate) size: u64,
}

impl Sandbox {
    /// A sandbox over `dir`, which must be an existing directory.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Self { root, max_bytes })
    }

    /// The names of the readable files in the directory, sorted.
    pub(crate) fn list(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(&self.root)?
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| self.resolve(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads the file called `name`.
    pub(crate) fn read(&self, name: &str) -> Result<Document, ToolError> {
        let quoted = quote(name);
        let path = self.resolve(name)?;
        let file = fs::File::open(&path).map_err(|e| io_error(name, &e))?;
        let mut bytes = Vec::new();
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(name, &e))?;
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return Err(self.too_large(name, size));
        }
        let content = String::from_utf8(bytes).map_err(|e| {
            ToolError::invalid(format!(
                "'{quoted}' is not a UTF-8 text file (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(Document { content, size })
    }

    /// Checks `name` and returns the canonical path of the regular file it
    /// names inside the directory.
    fn resolve(&self, name: &str) -> Result<PathBuf, ToolError> {
        let quoted = quote(name);
        check_name(name)?;
        let path = self.root.join(name);
        let canonical = path.canonicalize().map_err(|e| io_error(name, &e))?;
        if !canonical.starts_with(&self.root) {
            return Err(ToolError::PermissionDenied(format!(
                "'{quoted}' is a link that leads outside the documents directory"
            )));
        }
        let metadata = fs::metadata(&canonical).map_err(|e| io_error(name, &e))?;
        if metadata.is_dir() {
            return Err(ToolError::invalid(format!(
                "'{quoted}' is a directory, not a document"
            )));
        }
        if !metadata.is_file() {
            return Err(ToolError::invalid(format!(
                "'{quoted}' is not a regular file"
            )));
        }
        if metadata.len() > self.max_bytes {
            return Err(self.too_large(name, metadata.len()));
        }
        Ok(canonical)
    }

    fn too_large(&self, name: &str, size: u64) -> ToolError {
        let quoted = quote(name);
        ToolError::invalid(format!(
            "'{quoted}' is {size} bytes, over the limit of {} bytes",
            self.max_bytes
        ))
    }
}

/// Checks that `name` is a plain, visible file name: no path, no pattern.
fn check_name(name: &str) -> Result<(), ToolError> {
    let quoted = quote(name);
    let refuse = |why: &str| Err(ToolError::invalid(format!("filename {why}")));
    let deny = |why: &str| Err(ToolError::PermissionDenied(format!("filename {why}")));
    if name.trim().is_empty() {
        return refuse("is empty; name one document");
    }
    if name.contains('\0') {
        return refuse("contains a NUL character");
    }
    if name.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse(&format!("is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.starts_with(['/', '\\']) {
        return deny(&format!(
            "'{quoted}' is an absolute path; give a bare file name"
        ));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return deny(&format!(
            "'{quoted}' tries to leave the documents directory (path traversal)"
        ));
    }
    if name.contains(['/', '\\']) {
        return refuse(&format!(
            "'{quoted}' contains a path separator; give a bare file name"
        ));
    }
    if name.contains(['*', '?', '[', ']']) {
        return refuse(&format!(
            "'{quoted}' is a pattern; wildcards are not supported, name one document"
        ));
    }
    if name.starts_with('.') {
        return deny(&format!("'{quoted}' is a hidden file"));
    }
    Ok(())
}

/// Maps an I/O failure on `name` to the caller's view of it.
fn io_error(name: &str, error: &io::Error) -> ToolError {
    let quoted = quote(name);
    match error.kind() {
        io::ErrorKind::NotFound => ToolError::NotFound(format!("no document named '{quoted}'")),
        io::ErrorKind::PermissionDenied => {
            ToolError::PermissionDenied(format!("'{quoted}' may not be read"))
        }
        _ => ToolError::Internal(format!("reading '{quoted}': {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A temporary documents directory with `notes.md`, plus a secret next to it.
    struct Fixture {
        outer: tempfile::TempDir,
        sandbox: Sandbox,
    }

    impl Fixture {
        fn new() -> Self {
            let outer = tempfile::tempdir().unwrap();
            let docs = outer.path().join("docs");
            fs::create_dir(&docs).unwrap();
            fs::write(
                docs.join("notes.md"),
                "# Notes\nThe vault opens at 08:30.\n",
            )
            .unwrap();
            fs::write(outer.path().join("secret.txt"), "outside").unwrap();
            let sandbox = Sandbox::open(&docs, 64).unwrap();
            Self { outer, sandbox }
        }

        fn docs(&self) -> PathBuf {
            self.outer.path().join("docs")
        }

        fn read(&self, name: &str) -> Result<Document, ToolError> {
            self.sandbox.read(name)
        }
    }

    fn assert_invalid(result: Result<Document, ToolError>, needle: &str) {
        match result {
            Err(ToolError::InvalidArgument { message, .. }) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    fn assert_denied(result: Result<Document, ToolError>, needle: &str) {
        match result {
            Err(ToolError::PermissionDenied(message)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a permission denial, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_file_is_read_whole() {
        let fixture = Fixture::new();
        let document = fixture.read("notes.md").unwrap();
        assert_eq!(document.content, "# Notes\nThe vault opens at 08:30.\n");
        assert_eq!(document.size, 34);
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let fixture = Fixture::new();
        assert_eq!(
            fixture.read("plans.md"),
            Err(ToolError::NotFound("no document named 'plans.md'".into()))
        );
    }

    #[test]
    fn an_empty_or_wildcard_name_lists_nothing() {
        let fixture = Fixture::new();
        assert_invalid(fixture.read(""), "is empty");
        assert_invalid(fixture.read("  "), "is empty");
        assert_invalid(fixture.read("*"), "wildcards are not supported");
        assert_invalid(fixture.read("*.md"), "wildcards are not supported");
    }

    #[test]
    fn path_traversal_is_denied() {
        let fixture = Fixture::new();
        assert_denied(fixture.read(".."), "path traversal");
        assert_denied(fixture.read("../secret.txt"), "path traversal");
        assert_denied(fixture.read("..\\secret.txt"), "path traversal");
    }

    #[test]
    fn an_absolute_path_is_denied() {
        let fixture = Fixture::new();
        let absolute = fixture.docs().join("notes.md");
        assert_denied(fixture.read(&absolute.to_string_lossy()), "absolute path");
        assert_denied(fixture.read("\\etc\\passwd"), "absolute path");
    }

    #[test]
    fn a_path_separator_is_refused() {
        let fixture = Fixture::new();
        assert_invalid(fixture.read("sub/notes.md"), "path separator");
        assert_invalid(fixture.read("sub\\notes.md"), "path separator");
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        let fixture = Fixture::new();
        assert_invalid(fixture.read("notes.md\0.txt"), "NUL");
        assert_invalid(fixture.read("notes\n.md"), "control character");
    }

    #[test]
    fn an_overlong_name_is_refused() {
        let fixture = Fixture::new();
        assert_invalid(fixture.read(&"a".repeat(300)), "longer than 255 bytes");
    }

    #[test]
    fn a_hidden_file_is_denied() {
        let fixture = Fixture::new();
        fs::write(fixture.docs().join(".env"), "KEY=1").unwrap();
        assert_denied(fixture.read(".env"), "hidden file");
        assert_denied(fixture.read("."), "hidden file");
    }

    #[test]
    fn a_symlink_leading_outside_is_denied() {
        let fixture = Fixture::new();
        symlink(
            fixture.outer.path().join("secret.txt"),
            fixture.docs().join("escape.txt"),
        )
        .unwrap();
        symlink("/etc/passwd", fixture.docs().join("passwd")).unwrap();
        assert_denied(
            fixture.read("escape.txt"),
            "outside the documents directory",
        );
        assert_denied(fixture.read("passwd"), "outside the documents directory");
    }

    #[test]
    fn a_symlink_to_a_file_inside_is_followed() {
        let fixture = Fixture::new();
        symlink("notes.md", fixture.docs().join("latest.md")).unwrap();
        assert!(
            fixture
                .read("latest.md")
                .unwrap()
                .content
                .starts_with("# Notes")
        );
    }

    #[test]
    fn a_dangling_symlink_is_not_found() {
        let fixture = Fixture::new();
        symlink("gone.md", fixture.docs().join("dangling.md")).unwrap();
        assert!(matches!(
            fixture.read("dangling.md"),
            Err(ToolError::NotFound(_))
        ));
    }

    #[test]
    fn a_directory_is_refused() {
        let fixture = Fixture::new();
        fs::create_dir(fixture.docs().join("archive")).unwrap();
        assert_invalid(fixture.read("archive"), "is a directory");
    }

    #[test]
    fn a_special_file_is_refused_without_opening_it() {
        let fixture = Fixture::new();
        let _socket = std::os::unix::net::UnixListener::bind(fixture.docs().join("sock")).unwrap();
        assert_invalid(fixture.read("sock"), "not a regular file");
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused() {
        let fixture = Fixture::new();
        fs::write(fixture.docs().join("big.txt"), "x".repeat(65)).unwrap();
        assert_invalid(
            fixture.read("big.txt"),
            "65 bytes, over the limit of 64 bytes",
        );
    }

    #[test]
    fn a_file_of_exactly_the_size_limit_is_read() {
        let fixture = Fixture::new();
        fs::write(fixture.docs().join("full.txt"), "x".repeat(64)).unwrap();
        assert_eq!(fixture.read("full.txt").unwrap().size, 64);
    }

    #[test]
    fn non_utf8_content_is_refused() {
        let fixture = Fixture::new();
        fs::write(fixture.docs().join("blob.bin"), [b'o', b'k', 0xff, 0xfe]).unwrap();
        assert_invalid(fixture.read("blob.bin"), "not a UTF-8 text file");
    }

    #[test]
    fn the_listing_holds_only_readable_documents() {
        let fixture = Fixture::new();
        let docs = fixture.docs();
        fs::write(docs.join(".hidden"), "x").unwrap();
        fs::create_dir(docs.join("archive")).unwrap();
        symlink(
            fixture.outer.path().join("secret.txt"),
            docs.join("escape.txt"),
        )
        .unwrap();
        fs::write(docs.join("guards.txt"), "x").unwrap();
        assert_eq!(
            fixture.sandbox.list().unwrap(),
            vec!["guards.txt".to_owned(), "notes.md".to_owned()]
        );
    }

    #[test]
    fn a_missing_directory_cannot_be_opened() {
        let outer = tempfile::tempdir().unwrap();
        assert!(Sandbox::open(&outer.path().join("nope"), 64).is_err());
    }
}
