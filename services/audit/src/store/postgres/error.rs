//! PostgreSQL's failures sorted into the store's errors: the server or the
//! connection being away is `Unavailable` (the caller may retry), a full disk
//! is `Full`, anything else is our bug (`Internal`).

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::config::Host;

use crate::store::error::StoreError;

/// Sorts one driver error.
pub(crate) fn pg(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return match code {
            "53100" => StoreError::Full,
            // Connection exceptions, server shutting down, insufficient
            // resources, system errors, and lost serialisation races.
            _ if ["08", "57", "53", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01" =>
            {
                StoreError::unavailable(format!("PostgreSQL: {}", db.message()))
            }
            _ => StoreError::internal(format!("PostgreSQL {code}: {}", db.message())),
        };
    }
    if error.is_closed() || io_cause(&error).is_some() {
        return StoreError::unavailable(format!(
            "lost the connection to PostgreSQL: {}",
            cause(&error)
        ));
    }
    StoreError::internal(format!("PostgreSQL: {error}"))
}

/// Sorts a failure to get a pooled connection.
pub(crate) fn pool(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => {
            if error.as_db_error().is_some() {
                pg(error)
            } else {
                StoreError::unavailable(format!("cannot reach PostgreSQL: {}", cause(&error)))
            }
        }
        PoolError::Timeout(TimeoutType::Wait) => {
            StoreError::unavailable("no PostgreSQL connection became free in time")
        }
        PoolError::Timeout(TimeoutType::Create) => {
            StoreError::unavailable("connecting to PostgreSQL timed out")
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            StoreError::unavailable("checking a PostgreSQL connection timed out")
        }
        PoolError::Closed => StoreError::unavailable("the PostgreSQL pool is closed"),
        other => StoreError::internal(format!("PostgreSQL pool: {other}")),
    }
}

/// The start-up failure: `cannot connect to PostgreSQL at HOST:PORT: CAUSE`.
pub(crate) fn cannot_connect(target: &str, error: &PoolError) -> StoreError {
    let reason = match error {
        PoolError::Backend(error) => cause(error),
        PoolError::Timeout(_) => "timed out".to_owned(),
        other => other.to_string(),
    };
    StoreError::unavailable(format!(
        "cannot connect to PostgreSQL at {target}: {reason}"
    ))
}

/// The deepest cause, in words: an I/O error by its kind ("connection
/// refused"), a server error by its message ("password authentication
/// failed for user \"heist\"").
pub(crate) fn cause(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_owned();
    }
    if let Some(io) = io_cause(error) {
        // "connection refused" rather than "Connection refused (os error 111)".
        let kind = io.kind().to_string();
        return if io.kind() == std::io::ErrorKind::Other || kind == "uncategorized error" {
            io.to_string()
        } else {
            kind
        };
    }
    let mut deepest: &dyn std::error::Error = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

fn io_cause(error: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = error.source();
    }
    None
}

/// `HOST:PORT` of the first host of `config` (never the password).
pub(crate) fn target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// `HOST:PORT/DATABASE` of a URL, for logs and `Debug` (never the password).
pub(crate) fn describe_url(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => format!(
            "{}/{}",
            target(&config),
            config.get_dbname().unwrap_or_default()
        ),
        Err(_) => "(malformed URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_described_by_host_port_and_database_never_the_password() {
        assert_eq!(
            describe_url("postgres://heist:secret@db.internal:6543/audit"),
            "db.internal:6543/audit"
        );
        assert_eq!(
            describe_url("postgres://heist@localhost/audit"),
            "localhost:5432/audit"
        );
        assert_eq!(describe_url("postgres://h:nope/db"), "(malformed URL)");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_named_in_words() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://heist:secret@127.0.0.1:{port}/heist");
        let error = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(cause(&error), "connection refused");
        let store_error = pg(error);
        assert_eq!(store_error.kind(), crate::store::ErrorKind::Unavailable);
        assert!(
            store_error.to_string().contains("connection refused"),
            "{store_error}"
        );
    }
}
