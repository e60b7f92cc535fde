//! Percentiles and medians of the figures a run collects.

use std::time::Duration;

/// The p50, p95 and p99 of a set of durations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) p50: Duration,
    pub(crate) p95: Duration,
    pub(crate) p99: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (zero when empty).
    pub(crate) fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self {
            p50: rank(&sorted, 50.0),
            p95: rank(&sorted, 95.0),
            p99: rank(&sorted, 99.0),
        }
    }

    /// The element-wise median of several runs' percentiles.
    pub(crate) fn median(runs: &[Self]) -> Self {
        Self {
            p50: median_duration(runs.iter().map(|run| run.p50)),
            p95: median_duration(runs.iter().map(|run| run.p95)),
            p99: median_duration(runs.iter().map(|run| run.p99)),
        }
    }
}

/// The nearest-rank `percentile` of sorted `values`: the smallest value with
/// at least `percentile`% of the values at or below it.
fn rank(sorted: &[Duration], percentile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let wanted = (percentile / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[wanted.clamp(1, sorted.len()) - 1]
}

/// The median of some durations (the upper one of an even count).
pub(crate) fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    let mut values: Vec<Duration> = values.collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// The median of some numbers (the upper one of an even count).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds, for printing.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
