//! File-system steps that keep the spool durable across a crash: creating its
//! file so that the directory entry survives, and replacing it atomically
//! (copy, fsync, rename, fsync the directory).

use std::{
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use super::error::SpoolError;

/// Opens the spool file for reading and writing, creating it and its
/// directory when missing (and fsyncing the directories that gained an entry).
pub(super) fn open_or_create(path: &Path) -> Result<File, SpoolError> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::create_dir_all(dir)
            .map_err(|cause| SpoolError::io("create the directory of", path, cause))?;
        sync_dir(parent_dir(dir))?;
    }
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => {
            sync_dir(dir)?;
            Ok(file)
        }
        Err(cause) if cause.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|cause| SpoolError::io("open", path, cause)),
        Err(cause) => Err(SpoolError::io("create", path, cause)),
    }
}

/// A fsynced copy of the spool, written beside it, not yet in its place.
pub(super) struct Copy {
    temp: PathBuf,
    /// The copy, open for reading and writing.
    pub(super) file: File,
    /// Its length in bytes.
    pub(super) len: u64,
}

/// Writes `frames` to a temporary file beside `path` and fsyncs it. On
/// failure the temporary file is removed.
pub(super) fn write_copy(
    path: &Path,
    frames: impl IntoIterator<Item = Result<Vec<u8>, SpoolError>>,
) -> Result<Copy, SpoolError> {
    let temp = temp_path(path);
    let written = write_frames(&temp, frames);
    if written.is_err() {
        // Best effort: a leftover copy is overwritten by the next compaction.
        let _ = fs::remove_file(&temp);
    }
    let (file, len) = written?;
    Ok(Copy { temp, file, len })
}

fn write_frames(
    temp: &Path,
    frames: impl IntoIterator<Item = Result<Vec<u8>, SpoolError>>,
) -> Result<(File, u64), SpoolError> {
    let io = |cause| SpoolError::io("write the compacted copy of", temp, cause);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(io)?;
    let mut writer = BufWriter::new(file);
    let mut len = 0;
    for frame in frames {
        let frame = frame?;
        writer.write_all(&frame).map_err(io)?;
        len += frame.len() as u64;
    }
    let file = writer
        .into_inner()
        .map_err(|error| io(error.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok((file, len))
}

/// Renames the copy over `path`, atomically; the caller then fsyncs the
/// directory with [`sync_parent`] to make the rename durable.
pub(super) fn install(copy: Copy, path: &Path) -> Result<(File, u64), SpoolError> {
    match fs::rename(&copy.temp, path) {
        Ok(()) => Ok((copy.file, copy.len)),
        Err(cause) => {
            let _ = fs::remove_file(&copy.temp);
            Err(SpoolError::io("replace", path, cause))
        }
    }
}

/// Fsyncs the directory holding `path`, making a rename into it durable.
pub(super) fn sync_parent(path: &Path) -> Result<(), SpoolError> {
    sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `spool.bin` -> `spool.bin.compact`, in the same directory.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("spool"));
    name.push(".compact");
    path.with_file_name(name)
}

/// Makes the directory's entries (a new or renamed file) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|cause| SpoolError::io("fsync the directory of", dir, cause))
}

/// Directories cannot be opened as files here; renames are durable enough.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SpoolError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_file_and_its_missing_directories_are_created() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("a/b/spool.bin");
        open_or_create(&path).unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_an_io_error_naming_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let error = open_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, SpoolError::Io { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string())
        );
    }

    #[test]
    fn a_failed_copy_leaves_no_temporary_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("spool.bin");
        let frames = vec![Ok(vec![1, 2]), Err(SpoolError::Full { max: 0 })];
        assert!(write_copy(&path, frames).is_err());
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn an_installed_copy_replaces_the_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("spool.bin");
        fs::write(&path, b"old contents").unwrap();
        let copy = write_copy(&path, vec![Ok(b"new".to_vec())]).unwrap();
        let (_, len) = install(copy, &path).unwrap();
        sync_parent(&path).unwrap();
        assert_eq!(len, 3);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!temp_path(&path).exists());
    }
}
