//! The file backend: an append-only file (fsynced per revocation) read whole
//! at start and kept in memory, so a restart forgets none. It belongs to one
//! OAuth process: replicas that must share revocations use an engine.
//!
//! File format: one `jti exp` line per revocation (`exp` in seconds since
//! the Unix epoch). Entries past their expiry are dropped at load and from
//! answers; a malformed line is skipped with a warning, never fatal.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use super::RevocationError;

/// The revoked IDs of one process, kept in a file; a cheap handle.
#[derive(Debug, Clone)]
pub struct FileRevocations {
    inner: Arc<Mutex<Inner>>,
    path: Option<PathBuf>,
}

#[derive(Debug)]
struct Inner {
    revoked: HashMap<String, u64>,
    file: Option<File>,
}

impl FileRevocations {
    /// A list kept in memory only (tests).
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                revoked: HashMap::new(),
                file: None,
            })),
            path: None,
        }
    }

    /// Loads `path` (created if missing), dropping entries expired at `now`.
    pub fn open(path: &Path, now: u64) -> Result<Self, RevocationError> {
        let failed = |source| RevocationError::File {
            path: path.to_owned(),
            source,
        };
        let mut revoked = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (number, line) in text.lines().enumerate() {
                    match parse_line(line) {
                        Some((jti, exp)) if exp > now => {
                            revoked.insert(jti.to_owned(), exp);
                        }
                        Some(_) => {}
                        None if line.trim().is_empty() => {}
                        None => tracing::warn!(
                            file = %path.display(),
                            line = number + 1,
                            "skipping malformed revocation line"
                        ),
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(error)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(failed)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                revoked,
                file: Some(file),
            })),
            path: Some(path.to_owned()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Revokes `jti` until `exp`; false when it was revoked already (and not
    /// expired at `now`). The revocation is on disk before this returns
    /// (blocking: fsync).
    pub fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<bool, RevocationError> {
        let mut inner = self.lock();
        if inner.revoked.get(jti).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        if let Some(file) = &mut inner.file {
            writeln!(file, "{jti} {exp}")
                .and_then(|()| file.sync_data())
                .map_err(|source| RevocationError::File {
                    path: self.path.clone().unwrap_or_default(),
                    source,
                })?;
        }
        inner.revoked.insert(jti.to_owned(), exp);
        Ok(true)
    }

    /// True when `jti` is revoked and not expired at `now`.
    pub fn contains(&self, jti: &str, now: u64) -> bool {
        self.lock().revoked.get(jti).is_some_and(|exp| *exp > now)
    }

    /// The revoked IDs not expired at `now`, with their expiry, sorted by ID.
    pub fn active(&self, now: u64) -> Vec<(String, u64)> {
        let mut inner = self.lock();
        inner.revoked.retain(|_, exp| *exp > now);
        let mut list: Vec<_> = inner
            .revoked
            .iter()
            .map(|(jti, exp)| (jti.clone(), *exp))
            .collect();
        list.sort();
        list
    }

    /// `file PATH`, or `memory` for a list kept in memory only.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("file {}", path.display()),
            None => "memory".to_owned(),
        }
    }
}

fn parse_line(line: &str) -> Option<(&str, u64)> {
    let (jti, exp) = line.trim().split_once(' ')?;
    if jti.is_empty() {
        return None;
    }
    Some((jti, exp.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_survive_a_reopen_until_they_expire() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("revoked.log");
        let list = FileRevocations::open(&path, 100).unwrap();
        assert!(list.revoke("a", 500, 100).unwrap());
        assert!(list.revoke("b", 150, 100).unwrap());
        assert!(!list.revoke("a", 500, 100).unwrap(), "a repeat is not new");
        drop(list);
        let reopened = FileRevocations::open(&path, 200).unwrap();
        assert!(reopened.contains("a", 200));
        assert!(!reopened.contains("b", 200), "expired at load");
        assert_eq!(reopened.active(200), vec![("a".to_owned(), 500)]);
        assert!(reopened.active(600).is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("revoked.log");
        std::fs::write(&path, "good 900\ngarbage\n 12\nbad notanumber\n\n").unwrap();
        let list = FileRevocations::open(&path, 1).unwrap();
        assert!(list.contains("good", 1));
        assert_eq!(list.active(1).len(), 1);
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_an_error_naming_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let error = FileRevocations::open(dir.path(), 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }
}
