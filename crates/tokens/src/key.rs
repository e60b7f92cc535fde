//! Ed25519 keys: the private [`SigningKey`] of the issuer and the [`PublicKey`] of verifiers,
//! each named by its key ID (`kid`), the RFC 7638 JWK thumbprint of the public key.

use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};

use crate::b64;
use crate::error::{JwkError, KeyError};
use crate::ring::KeyRing;

/// Length of an Ed25519 private key seed and of a public key, in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// The private key that signs tokens. Its `Debug` output shows only the key ID.
#[derive(Clone)]
pub struct SigningKey {
    /// The Ed25519 key (zeroized on drop by `ed25519-dalek`).
    inner: ed25519_dalek::SigningKey,
    /// The matching public key and its ID.
    public: PublicKey,
}

impl SigningKey {
    /// Generates a new random key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; KEY_LEN];
        getrandom::fill(&mut seed).map_err(KeyError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// Loads the active key of the ring stored at `path` (see [`KeyRing`]), or generates one and stores it there (creating the
    /// parent directory; the file is created with mode 0600 and written atomically) so that
    /// tokens survive a restart. A file that exists but does not hold a key is an error
    /// ([`KeyError::Corrupt`]): it is never replaced. Processes sharing `path` (replicas)
    /// that start at once end up with one key: the first to create the file wins and the
    /// others load its key.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        KeyRing::load_or_generate(path, crate::unix_now()).map(|ring| ring.active().clone())
    }

    /// Builds the key from its 32-byte seed.
    pub(crate) fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let inner = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = PublicKey::from_verifying_key(inner.verifying_key());
        Self { inner, public }
    }

    /// The 32-byte seed, for the key ring file.
    pub(crate) fn seed(&self) -> [u8; KEY_LEN] {
        self.inner.to_bytes()
    }

    /// The key ID that tokens name in their `kid` header.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The public key that verifies this key's signatures.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`, returning the 64-byte Ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.inner.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key with its key ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The key ID (RFC 7638 thumbprint unless a JWK named it otherwise).
    kid: String,
    /// The key itself.
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Builds a public key from its 32 bytes; its key ID is its RFC 7638 thumbprint.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, JwkError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| JwkError::InvalidKey)?;
        if key.is_weak() {
            return Err(JwkError::InvalidKey);
        }
        Ok(Self::from_verifying_key(key))
    }

    /// Gives the key another key ID (a JWK may name its key freely).
    pub(crate) fn with_kid(mut self, kid: String) -> Self {
        self.kid = kid;
        self
    }

    fn from_verifying_key(key: ed25519_dalek::VerifyingKey) -> Self {
        Self {
            kid: thumbprint(key.as_bytes()),
            key,
        }
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.key.as_bytes()
    }

    /// True when `signature` is a valid (strict: canonical, no small-order key) Ed25519
    /// signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

/// The RFC 7638 JWK thumbprint of an Ed25519 public key: base64url of the SHA-256 of the
/// canonical JSON `{"crv":"Ed25519","kty":"OKP","x":"..."}` (members sorted, no spaces).
fn thumbprint(public_key: &[u8; KEY_LEN]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64::encode(public_key)
    );
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.1 / A.3: the key and its thumbprint.
        let x = b64::decode_array("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = PublicKey::from_bytes(&x).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn signing_key_seed_gives_the_rfc_8037_public_key() {
        let seed = b64::decode_array("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let key = SigningKey::from_seed(&seed);
        assert_eq!(
            b64::encode(key.public_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        assert_ne!(a.kid(), b.kid());
    }

    #[test]
    fn debug_output_shows_the_kid_and_no_key_material() {
        let key = SigningKey::from_seed(&[7; KEY_LEN]);
        let debug = format!("{key:?}");
        assert!(debug.contains(key.kid()), "{debug}");
        assert!(!debug.contains(&b64::encode(&[7; KEY_LEN])), "{debug}");
        assert!(!debug.contains("[7, 7"), "{debug}");
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let key = SigningKey::from_seed(&[1; KEY_LEN]);
        let signature = key.sign(b"message");
        assert!(key.public_key().verifies(b"message", &signature));
        assert!(!key.public_key().verifies(b"massage", &signature));
    }

    #[test]
    fn weak_and_invalid_public_keys_are_rejected() {
        // y = 1 is the identity point (small order); y = 2 is not on the curve.
        let mut identity = [0u8; KEY_LEN];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(JwkError::InvalidKey));
        let mut not_a_point = [0u8; KEY_LEN];
        not_a_point[0] = 2;
        assert_eq!(
            PublicKey::from_bytes(&not_a_point),
            Err(JwkError::InvalidKey)
        );
    }

    #[test]
    fn a_generated_key_is_persisted_and_reloaded_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/oauth.key");
        let first = SigningKey::load_or_generate(&path).unwrap();
        assert!(path.exists());
        let second = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.public_key(), second.public_key());
    }

    #[test]
    fn processes_creating_the_key_file_at_once_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared/oauth.key");
        let barrier = std::sync::Barrier::new(8);
        let kids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        SigningKey::load_or_generate(&path)
                            .unwrap()
                            .kid()
                            .to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.iter().all(|kid| *kid == kids[0]), "{kids:?}");
        let on_disk = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(on_disk.kid(), kids[0]);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn tokens_signed_before_a_restart_verify_after_it() {
        use crate::issue::TokenIssuer;
        use crate::verify::{KeySet, Verifier};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth.key");
        let lifetime = Duration::from_secs(60);
        let before = SigningKey::load_or_generate(&path).unwrap();
        let token = TokenIssuer::new(before, "iss", lifetime)
            .issue("planner", &["memory:read"], &["aud"], 1_000)
            .unwrap()
            .token;
        let after = SigningKey::load_or_generate(&path).unwrap();
        let keys: KeySet = [after.public_key().clone()].into_iter().collect();
        assert!(
            Verifier::new("iss", keys)
                .verify(&token, "aud", 1_010, 0)
                .is_ok()
        );
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth.key");
        std::fs::write(&path, "this is not a key\n").unwrap();
        let error = SigningKey::load_or_generate(&path).unwrap_err();
        assert!(matches!(error, KeyError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("oauth.key"), "{message}");
        assert!(message.contains("corrupt"), "{message}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "this is not a key\n"
        );
    }
}
