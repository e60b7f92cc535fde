//! The Tool service: calculator, file_reader and database_query behind scope checks.
//!
//! Layout:
//! - [`service`]: the gRPC handlers, and [`run`] to serve them behind the
//!   auth layer until shutdown.
//! - [`tool`]: the [`Tool`] trait every tool implements, its [`ToolOutput`]
//!   and [`ToolError`], and the argument helpers they share.
//! - [`config`]: [`ToolsConfig`] (directories, limits) and [`ConfigError`].
//! - [`registry`]: [`ToolSet`], the tools one process hosts, built from names.
//! - [`calculator`]: a recursive-descent arithmetic parser and evaluator.
//! - [`file_reader`]: heist documents read from a sandboxed directory
//!   (`documents/` beside this crate by default).
//! - [`database_query`]: a read-only SQLite intelligence database built
//!   from `intel/intel.sql`, with keyword questions mapped to canned queries.
//! - [`caller`]: who calls a tool and until when ([`Caller`]).
//! - [`clock`]: the clock behind the query time limit, replaceable in tests.
//! - `metrics`: the service's Prometheus metrics (calls, database query time).
//!
//! Calls are synchronous and may block: run them on a blocking thread.

pub mod calculator;
pub mod caller;
pub mod clock;
pub mod config;
pub mod database_query;
pub mod file_reader;
mod metrics;
pub mod registry;
pub mod service;
pub mod tool;

pub use calculator::Calculator;
pub use caller::Caller;
pub use clock::{Clock, SystemClock};
pub use config::{
    ConfigError, DEFAULT_DOCUMENTS_DIR, DOCUMENTS_DIR_ENV, IntelDbConfig, ToolsConfig,
};
pub use database_query::DatabaseQuery;
pub use file_reader::FileReader;
pub use registry::ToolSet;
pub use tool::{Parameter, Tool, ToolError, ToolOutput};

use std::{future::Future, time::Duration};

use heist_plumbing::{
    ServeOptions,
    auth::{Audience, AuthLayer, Authenticator},
    serve::ServeError,
};
use tokio::net::TcpListener;

pub use service::ToolService;

/// Serves `tools` on `listener`, behind the auth layer, until `shutdown`
/// resolves; SERVING once `authenticator` has OAuth's public keys. Only
/// tokens for the `tools` audience are accepted.
pub async fn run(
    listener: TcpListener,
    tools: ToolSet,
    call_timeout: Duration,
    authenticator: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError> {
    metrics::init();
    // Scopes differ per tool, so CallTool checks them itself; every method
    // needs a valid token.
    let service = ToolService::new(tools, call_timeout).into_server();
    // Tool arguments (paths, queries, expressions) may be long.
    let options = options.with_large_messages(&["CallTool"]);
    let auth = AuthLayer::new(authenticator, Audience::Tools, &[]);
    heist_plumbing::serve_protected(listener, service, auth, shutdown, options).await
}
