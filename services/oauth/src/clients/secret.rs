//! Client secrets as Argon2 password hashes (PHC strings): hashing, verification in constant
//! time, and a `Debug` that never shows them.

use std::fmt;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};

use super::work_memory::WorkMemory;

/// Argon2id cost for the hashes this service makes (development `secret:` entries and
/// [`hash_secret`]): 8 MiB, one pass, one lane. That verifies in about 4 ms in a release build
/// (about 90 ms unoptimised), so a token request stays fast. It is below the OWASP setting for
/// human passwords on purpose: client secrets are long random strings, which no hash cost makes
/// easier or harder to guess; the hash only keeps them out of the file.
const M_COST_KIB: u32 = 8 * 1024;
/// Passes over memory; see [`M_COST_KIB`].
const T_COST: u32 = 1;
/// Lanes; see [`M_COST_KIB`].
const P_COST: u32 = 1;

/// The most costly `secret_hash` accepted from the file (256 MiB, 16 passes, 8 lanes): a
/// typo in a hand-made hash must not make every token request allocate gigabytes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
/// See [`MAX_M_COST_KIB`].
const MAX_T_COST: u32 = 16;
/// See [`MAX_M_COST_KIB`].
const MAX_P_COST: u32 = 8;

/// Secrets longer than this are refused without hashing.
pub(crate) const MAX_SECRET_LEN: usize = 1024;

/// A client secret's Argon2 hash. `Debug` shows only that it is redacted.
#[derive(Clone)]
pub(crate) struct SecretHash {
    hash: PasswordHash,
}

impl SecretHash {
    /// Parses a PHC string, accepting only Argon2 hashes of bounded cost.
    pub(crate) fn parse(phc: &str) -> Result<Self, String> {
        let hash = PasswordHash::new(phc).map_err(|error| format!("not a PHC string ({error})"))?;
        Algorithm::try_from(hash.algorithm.as_str())
            .map_err(|_| "not an Argon2 hash (argon2id, argon2i or argon2d)".to_owned())?;
        let params =
            Params::try_from(&hash).map_err(|error| format!("bad Argon2 parameters ({error})"))?;
        if params.m_cost() > MAX_M_COST_KIB
            || params.t_cost() > MAX_T_COST
            || params.p_cost() > MAX_P_COST
        {
            return Err(format!(
                "Argon2 parameters too costly (at most m={MAX_M_COST_KIB}, t={MAX_T_COST}, p={MAX_P_COST})"
            ));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err("the PHC string has no salt or no hash".to_owned());
        }
        Ok(Self { hash })
    }

    /// Hashes `secret` with this service's parameters and a random salt.
    pub(crate) fn hash(secret: &str) -> Result<Self, String> {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|error| error.to_string())?;
        Self::salted(
            Algorithm::Argon2id,
            Version::V0x13,
            params,
            secret.as_bytes(),
        )
        .map_err(|error| format!("cannot hash the secret ({error})"))
    }

    /// A hash of a random-salted dummy secret with the same algorithm and cost as `self`, so
    /// that checking a secret against it takes as long as against `self`.
    pub(crate) fn dummy_like(&self) -> Result<Self, String> {
        let (algorithm, version, params) = self.settings()?;
        Self::salted(algorithm, version, params, b"no client has this secret")
            .map_err(|error| format!("cannot hash the dummy secret ({error})"))
    }

    /// True when `secret` matches. The comparison of the hash outputs is constant-time.
    pub(crate) fn verify(&self, secret: &str) -> bool {
        if secret.len() > MAX_SECRET_LEN {
            return false;
        }
        let (Some(salt), Some(expected)) = (&self.hash.salt, &self.hash.hash) else {
            return false;
        };
        let computed = self.settings().and_then(|(algorithm, version, params)| {
            output(algorithm, version, params, secret.as_bytes(), salt)
        });
        // `Output`'s equality is constant-time.
        computed.is_ok_and(|computed| computed == *expected)
    }

    /// The algorithm, version and parameters (output length included) of the hash.
    fn settings(&self) -> Result<(Algorithm, Version, Params), String> {
        let algorithm =
            Algorithm::try_from(self.hash.algorithm.as_str()).map_err(|error| error.to_string())?;
        let version = match self.hash.version {
            Some(version) => Version::try_from(version).map_err(|error| error.to_string())?,
            None => Version::default(),
        };
        let params = Params::try_from(&self.hash).map_err(|error| error.to_string())?;
        Ok((algorithm, version, params))
    }

    /// The hash of `secret` with a random salt.
    fn salted(
        algorithm: Algorithm,
        version: Version,
        params: Params,
        secret: &[u8],
    ) -> Result<Self, String> {
        let salt = argon2::password_hash::try_generate_salt().map_err(|error| error.to_string())?;
        let encoded = ParamsString::try_from(&params).map_err(|error| error.to_string())?;
        let hash = output(algorithm, version, params, secret, &salt)?;
        Ok(Self {
            hash: PasswordHash {
                algorithm: algorithm.ident(),
                version: Some(version.into()),
                params: encoded,
                salt: Some(Salt::new(&salt).map_err(|error| error.to_string())?),
                hash: Some(hash),
            },
        })
    }

    /// The PHC string (for [`hash_secret`]).
    pub(crate) fn to_phc(&self) -> String {
        self.hash.to_string()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

/// Argon2 of `secret` and `salt`, computed in the process's reused working memory.
fn output(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    secret: &[u8],
    salt: &[u8],
) -> Result<Output, String> {
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..length)
        .ok_or_else(|| format!("an output of {length} bytes is too long"))?;
    WorkMemory::shared()
        .with_blocks(blocks, |memory| {
            argon2.hash_password_into_with_memory(secret, salt, out, memory)
        })
        .map_err(|error| error.to_string())?;
    Output::new(out).map_err(|error| error.to_string())
}

/// Hashes a client secret into the PHC string that a `secret_hash:` entry of the client file
/// takes (Argon2id, this service's cost, a random salt).
pub fn hash_secret(secret: &str) -> Result<String, super::RegistryError> {
    SecretHash::hash(secret)
        .map(|hash| hash.to_phc())
        .map_err(super::RegistryError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_secret_verifies_and_others_do_not() {
        let hash = SecretHash::hash("planner-dev-secret").unwrap();
        assert!(hash.verify("planner-dev-secret"));
        assert!(!hash.verify("planner-dev-secreT"));
        assert!(!hash.verify(""));
    }

    #[test]
    fn hashes_use_argon2id_with_the_documented_cost() {
        let phc = hash_secret("s").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(SecretHash::parse(&phc).unwrap().verify("s"));
    }

    #[test]
    fn the_same_secret_hashes_differently_each_time() {
        assert_ne!(hash_secret("s").unwrap(), hash_secret("s").unwrap());
    }

    #[test]
    fn the_dummy_has_the_same_cost_and_matches_nothing_useful() {
        let phc = "$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3mGgYqvkbCkQyRd8yY0TVKBCUpbVqsZ1W2AZfvuSs3s";
        let real = SecretHash::parse(phc).unwrap();
        let dummy = real.dummy_like().unwrap();
        assert!(dummy.to_phc().starts_with("$argon2id$v=19$m=4096,t=2,p=1$"));
        assert!(!dummy.verify("s"));
    }

    #[test]
    fn hashes_that_are_not_bounded_argon2_phc_strings_are_refused() {
        let cases = [
            ("plain text", "not a PHC string"),
            (
                "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
                "not an Argon2 hash",
            ),
            (
                "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3mGgYqvkbCkQyRd8yY0TVKBCUpbVqsZ1W2AZfvuSs3s",
                "too costly",
            ),
            ("$argon2id$v=19$m=4096,t=1,p=1", "no salt"),
        ];
        for (phc, expected) in cases {
            let error = SecretHash::parse(phc).unwrap_err();
            assert!(error.contains(expected), "{phc}: {error}");
        }
    }

    #[test]
    fn overlong_secrets_are_refused_without_hashing() {
        let long = "x".repeat(MAX_SECRET_LEN + 1);
        let hash = SecretHash::hash(&long).unwrap();
        assert!(!hash.verify(&long));
    }

    #[test]
    fn a_hash_made_by_the_argon2_library_verifies_here_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"mole-dev-secret")
            .unwrap();
        let parsed = SecretHash::parse(&theirs.to_string()).unwrap();
        assert!(parsed.verify("mole-dev-secret"));
        assert!(!parsed.verify("mole-dev-secreT"));
        let ours = SecretHash::hash("mole-dev-secret").unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"mole-dev-secret", &ours.hash)
                .is_ok()
        );
    }

    #[test]
    fn a_hash_with_its_own_output_length_and_version_verifies() {
        // Settings other than ours (argon2i, version 0x10, a 16-byte output), hashed by the
        // library, checked by ours.
        use argon2::password_hash::CustomizedPasswordHasher as _;
        let params = Params::new(1024, 2, 1, Some(16)).unwrap();
        let theirs = Argon2::default()
            .hash_password_customized(
                b"s3cret",
                b"somesaltsomesalt",
                Some("argon2i"),
                Some(0x10),
                params,
            )
            .unwrap();
        let parsed = SecretHash::parse(&theirs.to_string()).unwrap();
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3creT"));
    }

    #[test]
    fn debug_output_shows_no_hash() {
        let hash = SecretHash::hash("planner-dev-secret").unwrap();
        let debug = format!("{hash:?}");
        assert_eq!(debug, "SecretHash(<redacted>)");
    }
}
