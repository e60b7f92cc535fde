//! The signing key file on disk: its bounded, private, atomically written text (the key
//! ring format itself is in `ring`).
//!
//! A new file is written to a temporary file in the same directory (mode 0600 from its
//! creation on), flushed to disk and hard-linked to the final name, which fails if that name
//! exists: a reader never sees a half-written key, and of several processes creating the
//! file at once (replicas sharing one key file) exactly one wins; the others read its key.
//! The parent directory is created (mode 0700) when missing. A rotation replaces the file
//! by writing a temporary file and renaming it over the old one, so readers see either the
//! old ring or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::error::KeyError;

/// Files longer than this cannot be key files (a ring line is under 70 characters).
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Reads the text stored at `path`; `Ok(None)` when there is no file.
pub(crate) fn read(path: &Path) -> Result<Option<String>, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    text(bytes).map(Some).map_err(|reason| KeyError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The contents of a key file as text, or what is wrong with them.
fn text(bytes: Vec<u8>) -> Result<String, &'static str> {
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err("too long for a key file");
    }
    String::from_utf8(bytes).map_err(|_| "not text")
}

/// What [`write_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The file now holds the seed given.
    Created,
    /// Another process created the file first; it was left as it is.
    AlreadyExists,
}

/// Stores `contents` at `path` atomically unless a file is there already (never replacing
/// one), creating the parent directory if needed.
pub(crate) fn write_new(path: &Path, contents: &str) -> Result<Written, KeyError> {
    write_atomically(path, contents.as_bytes(), |temp, path| {
        fs::hard_link(temp, path)
    })
    .map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the file at `path` (or creates it) with `contents` atomically: readers see
/// the old contents or the new ones, never a mix.
pub(crate) fn replace(path: &Path, contents: &str) -> Result<(), KeyError> {
    write_atomically(path, contents.as_bytes(), |temp, path| {
        fs::rename(temp, path)
    })
    .map(drop)
    .map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a private temporary file next to `path`, flushes it and gives it
/// the name `path` with `install` (hard link: never replacing; rename: replacing).
fn write_atomically(
    path: &Path,
    contents: &[u8],
    install: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<Written> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let temp = temp_path(path)?;
    let linked = write_private_file(&temp, contents).and_then(|()| install(&temp, path));
    // The temporary name is ours and useless now, whatever happened.
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Written::AlreadyExists);
        }
        Err(error) => return Err(error),
    }
    // Best effort: persist the link itself; some file systems cannot sync a directory.
    let _ = File::open(dir).and_then(|dir| dir.sync_all());
    Ok(Written::Created)
}

/// A fresh name next to `path` for the temporary file.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the key path has no file name")
    })?;
    let suffix = getrandom::u64().map_err(io::Error::other)?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{suffix:016x}.tmp"));
    Ok(path.with_file_name(temp_name))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("absent.key")).unwrap().is_none());
    }

    #[test]
    fn a_written_seed_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/signing.key");
        assert_eq!(write_new(&path, "nine\n").unwrap(), Written::Created);
        assert_eq!(read(&path).unwrap().as_deref(), Some("nine\n"));
        // Only the key file is left: no temporary file.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        assert_eq!(write_new(&path, "one").unwrap(), Written::Created);
        assert_eq!(write_new(&path, "two").unwrap(), Written::AlreadyExists);
        assert_eq!(read(&path).unwrap().as_deref(), Some("one"));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the loser's temporary file is removed");
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        write_new(&path, "nine\n").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o077, 0);
    }

    #[test]
    fn contents_that_are_not_bounded_text_are_described() {
        assert_eq!(text(b"\xff\xfe".to_vec()), Err("not text"));
        assert_eq!(
            text(vec![b'A'; MAX_FILE_LEN as usize + 1]),
            Err("too long for a key file")
        );
        assert_eq!(text(b"ok\n".to_vec()).as_deref(), Ok("ok\n"));
    }

    #[test]
    fn replacing_swaps_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        replace(&path, "first\n").unwrap();
        replace(&path, "second\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("second\n"));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_directory_in_place_of_the_key_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = read(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Read { .. }), "{error}");
    }

    #[test]
    fn a_path_without_file_name_cannot_be_written() {
        let error = write_new(Path::new("/"), "one").unwrap_err();
        assert!(matches!(error, KeyError::Write { .. }), "{error}");
    }
}
