//! The key ring: the signing key of the issuer and the older keys it still publishes.
//!
//! One file holds the ring, one key a line, oldest first:
//! `<activated at, seconds since the Unix epoch> <base64url 32-byte Ed25519 seed>`. The last
//! line is the active key, the one that signs. A key stops signing when the next one is
//! activated and is published until every token it signed has expired: it is retired at the
//! next key's activation time plus `keep` (the token lifetime plus the verifiers' leeway),
//! then dropped. Lines starting with `#` and blank lines are ignored. A file holding only a
//! seed (the single key file of earlier versions) is a ring of one key activated at 0.
//!
//! A rotation writes the whole new ring to a temporary file and renames it over the old one;
//! run one rotation at a time (two at once may keep only one of the two new keys).

use std::path::Path;
use std::time::Duration;

use crate::b64;
use crate::error::KeyError;
use crate::key::{PublicKey, SigningKey};
use crate::key_file;

/// The first line of every ring written, for the operator reading the file.
const HEADER: &str = "# heist key ring: one key a line, oldest first: <activated at, unix seconds> \
                      <base64url Ed25519 seed>; the last key signs";

/// One key of the ring and when it became the active key.
#[derive(Clone, Debug)]
struct RingKey {
    /// Seconds since the Unix epoch at which this key started signing.
    activated: u64,
    /// The key.
    key: SigningKey,
}

/// The signing keys of an issuer, oldest first; never empty (the last one signs).
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// Loads the ring stored at `path`, or generates a ring of one key activated at `now`
    /// and stores it there (mode 0600, atomically; the parent directory is created).
    /// A file that exists but is not a ring is an error ([`KeyError::Corrupt`]) and is never
    /// replaced. Replicas creating the file at once end up with one ring: the first wins.
    pub fn load_or_generate(path: &Path, now: u64) -> Result<Self, KeyError> {
        if let Some(ring) = Self::read(path)? {
            return Ok(ring);
        }
        let ring = Self::generate(now)?;
        match key_file::write_new(path, &ring.format())? {
            key_file::Written::Created => Ok(ring),
            key_file::Written::AlreadyExists => Self::read(path)?.ok_or_else(|| KeyError::Read {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the key file vanished while it was being created",
                ),
            }),
        }
    }

    /// Reads the ring stored at `path`; `Ok(None)` when there is no file.
    pub fn read(path: &Path) -> Result<Option<Self>, KeyError> {
        let Some(text) = key_file::read(path)? else {
            return Ok(None);
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|reason| KeyError::Corrupt {
                path: path.to_owned(),
                reason,
            })
    }

    /// Makes a new key the active one at `now` and stores the ring at `path` (created if
    /// missing), dropping the keys retired before `now` (see [`KeyRing::published`]).
    /// Returns the new ring.
    pub fn rotate(path: &Path, now: u64, keep: Duration) -> Result<Self, KeyError> {
        let Some(mut ring) = Self::read(path)? else {
            return Self::load_or_generate(path, now);
        };
        let retired: Vec<bool> = ring.retirements(keep).map(|at| at < now).collect();
        let mut flags = retired.into_iter();
        ring.keys.retain(|_| !flags.next().unwrap_or(false));
        let activated = ring.active_since().max(now);
        ring.keys.push(RingKey {
            activated,
            key: SigningKey::generate()?,
        });
        key_file::replace(path, &ring.format())?;
        Ok(ring)
    }

    /// A ring of one new key activated at `now`.
    fn generate(now: u64) -> Result<Self, KeyError> {
        Ok(Self {
            keys: vec![RingKey {
                activated: now,
                key: SigningKey::generate()?,
            }],
        })
    }

    /// The key that signs: the last one activated.
    pub fn active(&self) -> &SigningKey {
        &self.last().key
    }

    /// When the active key was activated (seconds since the Unix epoch).
    pub fn active_since(&self) -> u64 {
        self.last().activated
    }

    /// The number of keys in the ring (the active one and the older ones kept).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least its active key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys to publish at `now`, the active key first, then the older keys, newest
    /// first, that are not yet retired: a key is retired `keep` after the next key's
    /// activation (every token it signed has expired by then).
    pub fn published(&self, now: u64, keep: Duration) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = self
            .keys
            .iter()
            .zip(self.retirements(keep))
            .filter(|(_, retired_at)| now <= *retired_at)
            .map(|(key, _)| key.key.public_key().clone())
            .collect();
        keys.reverse();
        keys
    }

    /// The retirement time of each key, in ring order (`u64::MAX` for the active key).
    fn retirements(&self, keep: Duration) -> impl Iterator<Item = u64> + '_ {
        let next_activations = self.keys.iter().skip(1).map(|next| next.activated);
        next_activations
            .map(move |at| at.saturating_add(keep.as_secs()))
            .chain(std::iter::once(u64::MAX))
    }

    fn last(&self) -> &RingKey {
        // `parse` and the constructors never build an empty ring.
        self.keys.last().expect("a key ring is never empty")
    }

    /// Parses the text of a ring file, or says which line is wrong and why.
    fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<RingKey> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |reason: &str| format!("line {}: {reason}", number + 1);
            let (activated, seed) = match line.split_once(char::is_whitespace) {
                Some((activated, seed)) => (
                    activated
                        .parse::<u64>()
                        .map_err(|_| at("the activation time is not a whole number of seconds"))?,
                    seed.trim(),
                ),
                // The single key file of earlier versions: a seed alone.
                None => (0, line),
            };
            let seed = b64::decode_array(seed)
                .ok_or_else(|| at("not a base64url-encoded 32-byte Ed25519 seed"))?;
            if keys.last().is_some_and(|last| last.activated > activated) {
                return Err(at("activated before the key above it"));
            }
            keys.push(RingKey {
                activated,
                key: SigningKey::from_seed(&seed),
            });
        }
        if keys.is_empty() {
            return Err("empty".to_owned());
        }
        Ok(Self { keys })
    }

    /// The text of the ring file.
    fn format(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for key in &self.keys {
            text.push_str(&format!(
                "{} {}\n",
                key.activated,
                b64::encode(&key.key.seed())
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Duration = Duration::from_secs(100);

    fn kids(keys: &[PublicKey]) -> Vec<String> {
        keys.iter().map(|key| key.kid().to_owned()).collect()
    }

    #[test]
    fn a_single_key_file_of_earlier_versions_is_a_ring_of_one() {
        let seed = b64::encode(&[7; 32]);
        let ring = KeyRing::parse(&format!("{seed}\n")).unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.active().kid(), SigningKey::from_seed(&[7; 32]).kid());
        assert_eq!(ring.active_since(), 0);
    }

    #[test]
    fn a_ring_reads_back_what_it_wrote() {
        let ring = KeyRing::generate(1_000).unwrap();
        let again = KeyRing::parse(&ring.format()).unwrap();
        assert_eq!(again.active().kid(), ring.active().kid());
        assert_eq!(again.active_since(), 1_000);
    }

    #[test]
    fn malformed_rings_name_the_line_and_the_fault() {
        let seed = b64::encode(&[7; 32]);
        let cases = [
            (String::new(), "empty".to_owned()),
            ("# only a comment\n".to_owned(), "empty".to_owned()),
            (
                "12 not-a-seed\n".to_owned(),
                "line 1: not a base64url-encoded 32-byte Ed25519 seed".to_owned(),
            ),
            (
                format!("# c\nsoon {seed}\n"),
                "line 2: the activation time is not a whole number of seconds".to_owned(),
            ),
            (
                format!("20 {seed}\n10 {seed}\n"),
                "line 2: activated before the key above it".to_owned(),
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(KeyRing::parse(&text).unwrap_err(), reason, "{text:?}");
        }
    }

    #[test]
    fn older_keys_are_published_until_their_retirement_then_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        let first = KeyRing::load_or_generate(&path, 1_000).unwrap();
        let second = KeyRing::rotate(&path, 2_000, KEEP).unwrap();
        let third = KeyRing::rotate(&path, 2_050, KEEP).unwrap();
        let (k1, k2, k3) = (
            first.active().kid().to_owned(),
            second.active().kid().to_owned(),
            third.active().kid().to_owned(),
        );
        assert_eq!(third.len(), 3);
        // The first key is retired at 2_000 + 100, the second at 2_050 + 100.
        assert_eq!(
            kids(&third.published(2_100, KEEP)),
            [k3.clone(), k2.clone(), k1.clone()]
        );
        assert_eq!(
            kids(&third.published(2_101, KEEP)),
            [k3.clone(), k2.clone()]
        );
        assert_eq!(
            kids(&third.published(2_151, KEEP)),
            std::slice::from_ref(&k3)
        );
        // A rotation after a retirement drops the retired key from the file.
        let fourth = KeyRing::rotate(&path, 2_120, KEEP).unwrap();
        let on_disk = KeyRing::read(&path).unwrap().unwrap();
        assert_eq!(on_disk.len(), 3);
        assert_eq!(on_disk.active().kid(), fourth.active().kid());
        assert!(!kids(&on_disk.published(2_120, KEEP)).contains(&k1));
    }

    #[cfg(unix)]
    #[test]
    fn a_rotated_ring_stays_private_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        KeyRing::rotate(&path, 10, KEEP).unwrap();
        KeyRing::rotate(&path, 20, KEEP).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupt_ring_is_never_rotated_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        std::fs::write(&path, "garbage\n").unwrap();
        let error = KeyRing::rotate(&path, 10, KEEP).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage\n");
    }
}
