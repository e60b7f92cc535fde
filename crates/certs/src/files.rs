//! Writing certificate and key files atomically: a temporary file in the same
//! directory, flushed, then renamed over the old one, so that a server reloading
//! on change reads the old file or the new one, never half of one.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::CertError;

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Everyone (mode 0644): a certificate.
    Public,
    /// The owner only (mode 0600): a private key.
    Private,
}

/// Writes `contents` to `dir/name` atomically, creating `dir` if needed.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &str,
    access: Access,
) -> Result<(), CertError> {
    let path = dir.join(name);
    let error = |cause| CertError::Write {
        path: path.clone(),
        cause,
    };
    fs::create_dir_all(dir).map_err(|cause| CertError::Write {
        path: dir.to_owned(),
        cause,
    })?;
    // tempfile creates the file with mode 0600, so a key is never readable by
    // others, not even for a moment.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(error)?;
    temp.write_all(contents.as_bytes()).map_err(error)?;
    #[cfg(unix)]
    if access == Access::Public {
        use std::os::unix::fs::PermissionsExt as _;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(error)?;
    }
    temp.as_file().sync_all().map_err(error)?;
    temp.persist(&path)
        .map_err(|persist| error(persist.error))?;
    // Best effort: make the rename itself durable; not every file system can
    // sync a directory.
    let _ = fs::File::open(dir).and_then(|dir| dir.sync_all());
    Ok(())
}

/// Checks that `name` can name a leaf's files in a certificate directory
/// (`<name>.pem`, `<name>-key.pem`): ASCII letters, digits, `-`, `_` and `.`
/// (not leading), and not `ca`, the CA's own files.
pub fn check_name(name: &str) -> Result<(), CertError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.starts_with('.') {
        "it starts with a dot"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        "use only ASCII letters, digits, '-', '_' and '.'"
    } else if name == crate::ca::CA_STEM {
        "`ca` names the CA's own files (ca.pem, ca-key.pem)"
    } else {
        return Ok(());
    };
    Err(CertError::invalid("name", name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_replaces_the_old_one_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("run/certs");
        write_atomically(&nested, "a.pem", "one", Access::Public).unwrap();
        write_atomically(&nested, "a.pem", "two", Access::Public).unwrap();
        assert_eq!(fs::read_to_string(nested.join("a.pem")).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(&nested).unwrap().collect();
        assert_eq!(names.len(), 1, "only a.pem is left");
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private_and_certificates_public() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "k.pem", "key", Access::Private).unwrap();
        write_atomically(dir.path(), "c.pem", "cert", Access::Public).unwrap();
        let mode = |name| {
            fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("k.pem"), 0o600);
        assert_eq!(mode("c.pem"), 0o644);
    }

    #[test]
    fn names_that_could_escape_the_directory_or_clobber_the_ca_are_refused() {
        for bad in ["", "../oauth", "a/b", ".hidden", "ca", "ümlaut"] {
            let error = check_name(bad).unwrap_err();
            assert!(
                matches!(error, CertError::InvalidInput { field: "name", .. }),
                "{bad}: {error}"
            );
        }
        for good in ["oauth", "database_query", "tools-2", "a.b"] {
            check_name(good).unwrap();
        }
    }
}
