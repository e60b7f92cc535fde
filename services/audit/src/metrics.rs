//! The Audit service's own Prometheus metrics, in the process's registry
//! (`heist_plumbing::metrics`): group commits by store, their batch sizes
//! and latency, rows inserted by table, and the open `WatchSession` streams.
//!
//! - `heist_audit_commits_total{store}`: transactions committed (`sqlite`, `postgres`);
//! - `heist_audit_commit_batch_size`: writes per committed transaction;
//! - `heist_audit_commit_duration_seconds`: from BEGIN to the end of COMMIT;
//! - `heist_audit_rows_total{table}`: rows inserted and committed (a repeated
//!   idempotency key inserts none; a refused write none);
//! - `heist_audit_watchers`: `WatchSession` streams open now.
//!
//! Every update is an atomic add on a pre-built label set: nothing to guard.

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// The store that committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Store {
    /// The SQLite writer thread.
    sqlite,
    /// The PostgreSQL writer task.
    postgres,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabel {
    store: Store,
}

/// A table rows are inserted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Table {
    /// `sessions`.
    sessions,
    /// `messages`.
    messages,
    /// `tool_usage`.
    tool_usage,
    /// `session_events`.
    session_events,
}

impl Table {
    const ALL: [Table; 4] = [
        Table::sessions,
        Table::messages,
        Table::tool_usage,
        Table::session_events,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TableLabel {
    table: Table,
}

/// Rows one write (or one batch) inserted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rows([u64; 4]);

impl Rows {
    /// One row into `table`.
    pub(crate) fn one(table: Table) -> Self {
        let mut rows = Rows::default();
        rows.0[table as usize] = 1;
        rows
    }

    /// These rows and `other`'s.
    pub(crate) fn plus(self, other: Rows) -> Self {
        let mut sum = self;
        for (mine, theirs) in sum.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
        sum
    }
}

struct AuditMetrics {
    commits: Family<StoreLabel, Counter>,
    batch_size: Histogram,
    commit_duration: Histogram,
    rows: Family<TableLabel, Counter>,
    watchers: Gauge,
}

static METRICS: LazyLock<AuditMetrics> = LazyLock::new(|| {
    use prometheus_client::metrics::histogram::exponential_buckets;
    let metrics = AuditMetrics {
        commits: Family::default(),
        // 1 to 512 writes (the SQLite writer's most).
        batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        // 0.1 ms to ~3 s.
        commit_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 15)),
        rows: Family::default(),
        watchers: Gauge::default(),
    };
    use heist_plumbing::metrics::register;
    register(
        "heist_audit_commits",
        "Audit group commits (transactions committed), by store",
        metrics.commits.clone(),
    );
    register(
        "heist_audit_commit_batch_size",
        "Audit writes per committed transaction",
        metrics.batch_size.clone(),
    );
    register(
        "heist_audit_commit_duration_seconds",
        "Audit transaction latency, from BEGIN to the end of COMMIT",
        metrics.commit_duration.clone(),
    );
    register(
        "heist_audit_rows",
        "Audit rows inserted and committed, by table",
        metrics.rows.clone(),
    );
    register(
        "heist_audit_watchers",
        "Open WatchSession streams",
        metrics.watchers.clone(),
    );
    // Every label known up front: a scrape shows each series from the start.
    for store in [Store::sqlite, Store::postgres] {
        let _ = metrics.commits.get_or_create(&StoreLabel { store });
    }
    for table in Table::ALL {
        let _ = metrics.rows.get_or_create(&TableLabel { table });
    }
    metrics
});

/// Registers the metrics (at zero) if they are not yet.
pub(crate) fn init() {
    LazyLock::force(&METRICS);
}

/// Counts one committed transaction of `batch_size` writes that took
/// `elapsed` and inserted `rows`.
pub(crate) fn committed(store: Store, batch_size: usize, elapsed: Duration, rows: Rows) {
    let metrics = &*METRICS;
    metrics.commits.get_or_create(&StoreLabel { store }).inc();
    metrics.batch_size.observe(batch_size as f64);
    metrics.commit_duration.observe(elapsed.as_secs_f64());
    for table in Table::ALL {
        let count = rows.0[table as usize];
        if count > 0 {
            metrics
                .rows
                .get_or_create(&TableLabel { table })
                .inc_by(count);
        }
    }
}

/// Counts one more open watcher.
pub(crate) fn watcher_opened() {
    METRICS.watchers.inc();
}

/// Counts one watcher fewer.
pub(crate) fn watcher_closed() {
    METRICS.watchers.dec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_per_table() {
        let rows = Rows::one(Table::messages)
            .plus(Rows::one(Table::tool_usage))
            .plus(Rows::one(Table::tool_usage));
        assert_eq!(rows.0, [0, 1, 2, 0]);
    }
}
