//! The signing keys of a running OAuth process: the key ring file, re-read so that a
//! rotation (`heist-oauth rotate-key`, by any process) takes effect without a restart and
//! replicas on one ring file agree on the active key.
//!
//! The ring is re-read every `reload` interval and on each `GetPublicKeys`; a ring that has
//! become unreadable or corrupt keeps the keys last read (logged as a warning).

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use heist_tokens::{KeyError, KeyRing, TokenIssuer, unix_now};

/// The process's current token issuer, rebuilt from the ring file; a cheap-to-clone handle.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The ring file.
    path: PathBuf,
    /// The issuer (`iss`) tokens carry.
    issuer: String,
    /// How long tokens live.
    lifetime: Duration,
    /// How long after a key stops signing it is still published: the token lifetime plus
    /// the verifiers' leeway.
    keep: Duration,
    /// The issuer built from the ring last read.
    current: RwLock<Arc<TokenIssuer>>,
}

impl SigningKeys {
    /// Loads the ring at `path` (generated if missing; blocking), for tokens of `issuer`
    /// living `lifetime`, older keys published `leeway` past their last token's expiry.
    pub fn load(
        path: PathBuf,
        issuer: String,
        lifetime: Duration,
        leeway: Duration,
    ) -> Result<Self, KeyError> {
        let ring = KeyRing::load_or_generate(&path, unix_now())?;
        let keep = lifetime.saturating_add(leeway);
        let current = TokenIssuer::from_ring(&ring, unix_now(), keep, issuer.clone(), lifetime);
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                issuer,
                lifetime,
                keep,
                current: RwLock::new(Arc::new(current)),
            }),
        })
    }

    /// The issuer signing with the active key and publishing the keys not yet retired.
    pub fn current(&self) -> Arc<TokenIssuer> {
        match self.inner.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the ring file (blocking; small) and rebuilds the issuer. Returns the new
    /// issuer when the published keys changed (a rotation, a retirement), `None` when they
    /// did not or the ring cannot be read (the keys last read stay in use).
    pub fn reload(&self) -> Option<Arc<TokenIssuer>> {
        let ring = match KeyRing::read(&self.inner.path) {
            Ok(Some(ring)) => ring,
            Ok(None) => {
                tracing::warn!(file = %self.inner.path.display(), "key ring file missing; keeping the keys in use");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot re-read the key ring; keeping the keys in use");
                return None;
            }
        };
        let next = Arc::new(TokenIssuer::from_ring(
            &ring,
            unix_now(),
            self.inner.keep,
            self.inner.issuer.clone(),
            self.inner.lifetime,
        ));
        let mut current = match self.inner.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if kids(&current) == kids(&next) {
            return None;
        }
        tracing::info!(
            kid = next.key().kid(),
            published = next.jwks().len(),
            "signing keys changed"
        );
        *current = next.clone();
        Some(next)
    }
}

/// The key IDs `issuer` publishes, active first.
fn kids(issuer: &TokenIssuer) -> Vec<String> {
    issuer.jwks().into_iter().map(|jwk| jwk.kid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(path: PathBuf) -> SigningKeys {
        SigningKeys::load(
            path,
            "heist-oauth".into(),
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    #[test]
    fn a_rotation_by_another_process_is_picked_up_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        let keys = keys(path.clone());
        let before = keys.current().key().kid().to_owned();
        assert!(keys.reload().is_none(), "nothing changed yet");
        let ring = KeyRing::rotate(&path, unix_now(), Duration::from_secs(90)).unwrap();
        let after = keys.reload().expect("the rotation is seen");
        assert_eq!(after.key().kid(), ring.active().kid());
        assert_eq!(keys.current().key().kid(), ring.active().kid());
        let published = kids(&keys.current());
        assert_eq!(published, [ring.active().kid().to_owned(), before]);
    }

    #[test]
    fn a_ring_corrupted_at_run_time_keeps_the_keys_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.key");
        let keys = keys(path.clone());
        let kid = keys.current().key().kid().to_owned();
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(keys.reload().is_none());
        assert_eq!(keys.current().key().kid(), kid);
    }
}
