//! The Tool service's own Prometheus metrics, in the process's registry
//! (`heist_plumbing::metrics`):
//!
//! - `heist_tools_calls_total{tool,outcome}`: `CallTool` calls by tool (a
//!   known tool's name, else `unknown`) and [`Outcome`];
//! - `heist_tools_database_query_duration_seconds`: how long a query takes
//!   on the intelligence database, waiting for a connection included.
//!
//! Every update is an atomic add on a label set of static strings: nothing
//! to guard.

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use tonic::Code;

use crate::ToolSet;

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    /// Answered.
    ok,
    /// Refused: the caller's request (arguments, scope, agent, unknown tool,
    /// a limit such as the per-client connections).
    refused,
    /// Stopped at the service's time limit or the caller's deadline, or the
    /// caller went away.
    timed_out,
    /// Our fault: the tool failed.
    failed,
}

impl Outcome {
    /// The outcome of a call that ended with `code`.
    pub(crate) fn of(code: Code) -> Self {
        match code {
            Code::Ok => Outcome::ok,
            Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange => Outcome::refused,
            Code::DeadlineExceeded | Code::Cancelled => Outcome::timed_out,
            _ => Outcome::failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    tool: &'static str,
    outcome: Outcome,
}

/// What a call's `tool` label says for `name`: a known tool's name, else
/// `unknown` (so a caller cannot grow the label set).
pub(crate) fn tool_label(name: &str) -> &'static str {
    ToolSet::known_names()
        .find(|known| *known == name)
        .unwrap_or("unknown")
}

struct ToolMetrics {
    calls: Family<CallLabels, Counter>,
    database_query: Histogram,
}

static METRICS: LazyLock<ToolMetrics> = LazyLock::new(|| {
    use heist_plumbing::metrics::register;
    use prometheus_client::metrics::histogram::exponential_buckets;
    let metrics = ToolMetrics {
        calls: Family::default(),
        // 0.1 ms to ~3 s (the default query time limit is 2 s).
        database_query: Histogram::new(exponential_buckets(0.000_1, 2.0, 15)),
    };
    register(
        "heist_tools_calls",
        "Tool calls, by tool and outcome (ok, refused, timed_out, failed)",
        metrics.calls.clone(),
    );
    register(
        "heist_tools_database_query_duration_seconds",
        "Time a database_query query takes, waiting for a connection included",
        metrics.database_query.clone(),
    );
    metrics
});

/// Registers the metrics if they are not yet.
pub(crate) fn init() {
    LazyLock::force(&METRICS);
}

/// Counts one call that ended with `code`; `tool` is its [`tool_label`].
pub(crate) fn called(tool: &'static str, code: Code) {
    METRICS
        .calls
        .get_or_create(&CallLabels {
            tool,
            outcome: Outcome::of(code),
        })
        .inc();
}

/// Records one database query that took `elapsed`.
pub(crate) fn database_query_took(elapsed: Duration) {
    METRICS.database_query.observe(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_tools_name_their_label() {
        assert_eq!(tool_label("calculator"), "calculator");
        assert_eq!(tool_label("database_query"), "database_query");
        assert_eq!(tool_label("vault_opener"), "unknown");
    }

    #[test]
    fn every_code_falls_in_one_outcome() {
        assert_eq!(Outcome::of(Code::Ok), Outcome::ok);
        assert_eq!(Outcome::of(Code::PermissionDenied), Outcome::refused);
        assert_eq!(Outcome::of(Code::DeadlineExceeded), Outcome::timed_out);
        assert_eq!(Outcome::of(Code::Internal), Outcome::failed);
    }
}
