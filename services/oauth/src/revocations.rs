//! The revocation list: token IDs revoked before they expire, kept in an
//! append-only file (fsynced per revocation) so a restart forgets none.
//!
//! File format: one `jti exp` line per revocation (`exp` in seconds since
//! the Unix epoch). Entries past their expiry are dropped at load and from
//! answers; a malformed line is skipped with a warning, never fatal.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

/// The revoked, not yet expired, token IDs.
#[derive(Debug)]
pub struct Revocations {
    revoked: HashMap<String, u64>,
    file: Option<(PathBuf, File)>,
}

impl Revocations {
    /// A list kept in memory only (tests).
    pub fn in_memory() -> Self {
        Self {
            revoked: HashMap::new(),
            file: None,
        }
    }

    /// Loads `path` (created if missing), dropping entries expired at `now`.
    pub fn open(path: &Path, now: u64) -> io::Result<Self> {
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
            Err(error) => return Err(error),
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            revoked,
            file: Some((path.to_owned(), file)),
        })
    }

    /// Revokes `jti` until `exp`; false when it was revoked already. The
    /// revocation is on disk before this returns.
    pub fn revoke(&mut self, jti: &str, exp: u64) -> io::Result<bool> {
        if self.revoked.contains_key(jti) {
            return Ok(false);
        }
        if let Some((_, file)) = &mut self.file {
            writeln!(file, "{jti} {exp}")?;
            file.sync_data()?;
        }
        self.revoked.insert(jti.to_owned(), exp);
        Ok(true)
    }

    /// True when `jti` is revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// The revoked IDs not expired at `now`, with their expiry.
    pub fn active(&mut self, now: u64) -> Vec<(String, u64)> {
        self.revoked.retain(|_, exp| *exp > now);
        let mut list: Vec<_> = self
            .revoked
            .iter()
            .map(|(jti, exp)| (jti.clone(), *exp))
            .collect();
        list.sort();
        list
    }

    /// Where the list is kept, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
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
        let mut list = Revocations::open(&path, 100).unwrap();
        assert!(list.revoke("a", 500).unwrap());
        assert!(list.revoke("b", 150).unwrap());
        assert!(!list.revoke("a", 500).unwrap(), "a repeat is not new");
        drop(list);
        let mut reopened = Revocations::open(&path, 200).unwrap();
        assert!(reopened.contains("a"));
        assert!(!reopened.contains("b"), "expired at load");
        assert_eq!(reopened.active(200), vec![("a".to_owned(), 500)]);
        assert!(reopened.active(600).is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("revoked.log");
        std::fs::write(&path, "good 900\ngarbage\n 12\nbad notanumber\n\n").unwrap();
        let list = Revocations::open(&path, 1).unwrap();
        assert!(list.contains("good"));
        assert_eq!(list.revoked.len(), 1);
    }
}
