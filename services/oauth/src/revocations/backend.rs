//! Where the revocation list lives: the `--revocations` value, parsed.

use std::{fmt, path::PathBuf, str::FromStr};

use super::RevocationError;

/// Where the revocation list lives. Its `Display` and `Debug` forms never
/// show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum RevocationBackend {
    /// An append-only file, private to one OAuth process.
    File(PathBuf),
    /// A PostgreSQL database (`postgres://USER:PASSWORD@HOST:PORT/DB`),
    /// table `revoked_tokens`, shared by every replica using it.
    Postgres(String),
    /// A Redis server (`redis://:PASSWORD@HOST:PORT/DB`), one sorted set
    /// ([`REDIS_KEY`](super::redis::REDIS_KEY)), shared by every replica using it.
    Redis(String),
}

impl FromStr for RevocationBackend {
    type Err = RevocationError;

    /// `postgres://...` or `postgresql://...`, `redis://...`, else a file path.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| RevocationError::BadLocation {
            value: redact(value),
            reason: reason.to_owned(),
        };
        if value.trim().is_empty() {
            return Err(bad("give a file path, a postgres:// or a redis:// URL"));
        }
        let Some((scheme, _)) = value.split_once("://") else {
            return Ok(Self::File(PathBuf::from(value)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres(value.to_owned())),
            "redis" => Ok(Self::Redis(value.to_owned())),
            "rediss" => Err(bad(
                "TLS to Redis (rediss://) is not supported; use redis://",
            )),
            "file" => Err(bad("give the file as a plain path, without file://")),
            _ => Err(bad(
                "unknown scheme; use a file path, a postgres:// or a redis:// URL",
            )),
        }
    }
}

impl fmt::Display for RevocationBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Postgres(url) => write!(f, "postgres {}", endpoint(url)),
            Self::Redis(url) => write!(f, "redis {}", endpoint(url)),
        }
    }
}

impl fmt::Debug for RevocationBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevocationBackend({self})")
    }
}

/// `HOST:PORT/DB` of a URL: no scheme, no user, no password, no query.
fn endpoint(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    }
}

/// `url` with the password of its user part replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at]
        .split_once(':')
        .map_or(&rest[..at], |(user, _)| user);
    format!("{scheme}://{user}:***@{}", &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_an_engine_and_anything_else_is_a_file() {
        assert_eq!(
            "revoked.log".parse::<RevocationBackend>().unwrap(),
            RevocationBackend::File("revoked.log".into())
        );
        assert!(matches!(
            "postgres://heist:pw@127.0.0.1:5432/heist".parse(),
            Ok(RevocationBackend::Postgres(_))
        ));
        assert!(matches!(
            "postgresql://heist:pw@db/heist".parse(),
            Ok(RevocationBackend::Postgres(_))
        ));
        assert!(matches!(
            "redis://:pw@127.0.0.1:6379/0".parse(),
            Ok(RevocationBackend::Redis(_))
        ));
    }

    #[test]
    fn unknown_schemes_and_empty_values_are_refused_without_their_password() {
        for (value, words) in [
            ("postgress://heist:secret@db/heist", "unknown scheme"),
            ("rediss://:secret@cache:6380", "not supported"),
            ("file:///tmp/x", "plain path"),
            ("  ", "give a file path"),
        ] {
            let error = value.parse::<RevocationBackend>().unwrap_err().to_string();
            assert!(error.contains(words), "{value}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn the_display_form_names_the_endpoint_and_hides_the_password() {
        let backend: RevocationBackend =
            "postgres://heist:secret@127.0.0.1:5432/heist?sslmode=disable"
                .parse()
                .unwrap();
        assert_eq!(backend.to_string(), "postgres 127.0.0.1:5432/heist");
        assert!(!format!("{backend:?}").contains("secret"));
        let backend: RevocationBackend = "redis://:secret@127.0.0.1:6379/".parse().unwrap();
        assert_eq!(backend.to_string(), "redis 127.0.0.1:6379/");
        assert_eq!(redact("redis://:p@w@host:1/"), "redis://:***@host:1/");
        assert_eq!(redact("redis://host:1/"), "redis://host:1/");
    }
}
