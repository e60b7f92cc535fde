//! The Memory service's own Prometheus metrics, in the process's registry
//! (`heist_plumbing::metrics`):
//!
//! - `heist_memory_entries`: turns the in-process stores hold now;
//! - `heist_memory_bytes`: bytes of message text they hold now;
//! - `heist_memory_evictions_total{cause}`: turns dropped, by why
//!   (`per_stream_limit`, `total_limit`, `ttl`, `cleared` by ClearMemory).
//!
//! Only the in-process store ([`MemoryStore`](crate::MemoryStore)) is
//! counted. On Redis the turns and evictions belong to the shared Redis, not
//! to this replica (each replica would report the same totals, which a sum
//! across replicas would multiply): `GetStats` reads them there.
//!
//! Every update is an atomic add on a pre-built label set: nothing to guard.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

/// Why turns left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Cause {
    /// The oldest turns of a stream beyond its per-stream bound.
    per_stream_limit,
    /// Least recently written sessions over a total bound (turns, bytes, sessions).
    total_limit,
    /// Sessions not written for the TTL.
    ttl,
    /// Deleted by `ClearMemory`.
    cleared,
}

impl Cause {
    const ALL: [Cause; 4] = [
        Cause::per_stream_limit,
        Cause::total_limit,
        Cause::ttl,
        Cause::cleared,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabel {
    cause: Cause,
}

struct MemoryMetrics {
    entries: Gauge,
    bytes: Gauge,
    evictions: Family<CauseLabel, Counter>,
}

static METRICS: LazyLock<MemoryMetrics> = LazyLock::new(|| {
    use heist_plumbing::metrics::register;
    let metrics = MemoryMetrics {
        entries: Gauge::default(),
        bytes: Gauge::default(),
        evictions: Family::default(),
    };
    register(
        "heist_memory_entries",
        "Turns the in-process memory store holds now",
        metrics.entries.clone(),
    );
    register(
        "heist_memory_bytes",
        "Bytes of message text the in-process memory store holds now",
        metrics.bytes.clone(),
    );
    register(
        "heist_memory_evictions",
        "Turns dropped from the in-process memory store, by cause",
        metrics.evictions.clone(),
    );
    for cause in Cause::ALL {
        let _ = metrics.evictions.get_or_create(&CauseLabel { cause });
    }
    metrics
});

/// Registers the metrics (at zero) if they are not yet.
pub(crate) fn init() {
    LazyLock::force(&METRICS);
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Counts one turn of `bytes` stored.
pub(crate) fn stored(bytes: usize) {
    METRICS.entries.inc();
    METRICS.bytes.inc_by(gauge_value(bytes));
}

/// Takes `memories` turns of `bytes` off the gauges (dropped, or their
/// store gone).
pub(crate) fn removed(memories: usize, bytes: usize) {
    METRICS.entries.dec_by(gauge_value(memories));
    METRICS.bytes.dec_by(gauge_value(bytes));
}

/// Counts `memories` turns dropped for `cause`.
pub(crate) fn evicted(cause: Cause, memories: usize) {
    if memories > 0 {
        METRICS
            .evictions
            .get_or_create(&CauseLabel { cause })
            .inc_by(u64::try_from(memories).unwrap_or(u64::MAX));
    }
}
