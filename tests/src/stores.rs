//! The Audit store backends the Audit tests run on: one test body, one
//! instance per backend ([`each_store!`](crate::each_store)).

use std::path::Path;

/// A backend of the Audit store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// A SQLite file in the test's directory.
    Sqlite,
    /// A fresh database on this test binary's shared PostgreSQL server.
    Postgres,
}

impl StoreBackend {
    /// A store configuration on a fresh database of this backend: the file
    /// `dir/audit.db`, or a new database on the shared PostgreSQL server.
    ///
    /// Panics when PostgreSQL cannot start: the tests fail, never skip.
    pub fn fresh_config(self, dir: &Path) -> heist_audit::StoreConfig {
        match self {
            StoreBackend::Sqlite => heist_audit::StoreConfig::new(dir.join("audit.db")),
            StoreBackend::Postgres => heist_audit::StoreConfig::postgres(fresh_postgres_url()),
        }
    }
}

/// The URL of a new empty database on the shared test PostgreSQL server.
///
/// Panics when PostgreSQL cannot start: the tests fail, never skip.
pub fn fresh_postgres_url() -> String {
    heist_engines::PostgresServer::shared()
        .and_then(|server| server.fresh_database())
        .unwrap_or_else(|error| panic!("the test PostgreSQL server must start: {error}"))
}

/// Instantiates an async test once per store backend: `name::sqlite` and
/// `name::postgres` run the same body with `$backend` a [`StoreBackend`].
///
/// ```ignore
/// each_store! {
///     async fn a_session_is_stored(backend) {
///         let audit = start_audit(backend).await;
///     }
/// }
/// ```
#[macro_export]
macro_rules! each_store {
    ($(#[doc = $doc:literal])* async fn $name:ident($backend:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::stores::StoreBackend) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::stores::StoreBackend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                run($crate::stores::StoreBackend::Postgres).await;
            }
        }
    };
}
