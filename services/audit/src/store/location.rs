//! Where the store lives: a SQLite file or a PostgreSQL database, parsed from
//! `--store` (`sqlite:PATH`, `postgres://...` or `postgresql://...`).

use std::fmt;
use std::path::PathBuf;

/// The backend and address of an [`AuditStore`](super::AuditStore).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file, created with its schema if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database by URL (`postgres://user:password@host:port/db`);
    /// its schema is created or migrated on start.
    Postgres(String),
}

impl StoreLocation {
    /// Parses `sqlite:PATH` or a `postgres://` / `postgresql://` URL; a
    /// malformed URL is refused with the reason (never echoing the URL, which
    /// may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a file path, e.g. sqlite:heist_audit.db".into());
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<tokio_postgres::Config>().map_err(|error| {
                // The driver's own text is generic; its source says what is wrong.
                match std::error::Error::source(&error) {
                    Some(source) => format!("malformed PostgreSQL URL: {error}: {source}"),
                    None => format!("malformed PostgreSQL URL: {error}"),
                }
            })?;
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        Err(
            "the store must be sqlite:PATH or a postgres://user:password@host:port/database URL"
                .into(),
        )
    }
}

/// Shows the backend and where it is, without a password.
impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreLocation::Postgres(url) => {
                write!(f, "postgres://{}", super::postgres::describe_url(url))
            }
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_and_postgres_locations_parse() {
        assert_eq!(
            StoreLocation::parse("sqlite:run/audit.db"),
            Ok(StoreLocation::Sqlite("run/audit.db".into()))
        );
        let url = "postgres://heist:secret@127.0.0.1:5432/heist";
        assert_eq!(
            StoreLocation::parse(url),
            Ok(StoreLocation::Postgres(url.into()))
        );
        assert!(StoreLocation::parse("postgresql://h/db").is_ok());
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for text in ["", "audit.db", "mysql://h/db", "sqlite:"] {
            let error = StoreLocation::parse(text).unwrap_err();
            assert!(error.contains("sqlite:"), "{text}: {error}");
        }
        let error = StoreLocation::parse("postgres://h:notaport/db").unwrap_err();
        assert!(error.starts_with("malformed PostgreSQL URL: "), "{error}");
    }

    #[test]
    fn a_location_shows_no_password() {
        let location =
            StoreLocation::parse("postgres://heist:secret@127.0.0.1:5432/heist").unwrap();
        let shown = location.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:5432"), "{shown}");
    }
}
