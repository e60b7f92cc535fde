//! An exporter wrapper that says when export fails and when it recovers.
//!
//! The SDK's batch processor drops a failed batch silently (its own error
//! log needs the SDK's `internal-logs` feature), and its shutdown reports
//! success even when the last flush went nowhere. This wrapper logs the
//! first failure of a streak at WARN, the rest at DEBUG, and the recovery at
//! INFO, so a collector that is down costs one log line, not one per batch.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};

/// What an export outcome is worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// The first failure after a success (or at start).
    Failing,
    /// Another failure of the same streak.
    StillFailing,
    /// A success after failures.
    Recovered,
    /// A success after a success.
    Quiet,
}

/// Wraps `E`, logging export failures and recoveries.
#[derive(Debug)]
pub(super) struct ReportingExporter<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E> ReportingExporter<E> {
    /// Wraps `inner`.
    pub(super) fn new(inner: E) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Notes an outcome; says what to log about it.
    fn note(&self, failed: bool) -> Report {
        let was_failing = self.failing.swap(failed, Ordering::Relaxed);
        match (was_failing, failed) {
            (false, true) => Report::Failing,
            (true, true) => Report::StillFailing,
            (true, false) => Report::Recovered,
            (false, false) => Report::Quiet,
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let outcome = self.inner.export(batch).await;
        match (self.note(outcome.is_err()), &outcome) {
            (Report::Failing, Err(error)) => {
                tracing::warn!(%error, spans, "span export failed; retrying with later batches");
            }
            (Report::StillFailing, Err(error)) => {
                tracing::debug!(%error, spans, "span export failed again");
            }
            (Report::Recovered, _) => tracing::info!(spans, "span export recovered"),
            _ => {}
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_of_a_streak_and_the_recovery_are_worth_saying() {
        let exporter = ReportingExporter::new(());
        let reports: Vec<Report> = [false, true, true, true, false, false, true]
            .into_iter()
            .map(|failed| exporter.note(failed))
            .collect();
        assert_eq!(
            reports,
            [
                Report::Quiet,
                Report::Failing,
                Report::StillFailing,
                Report::StillFailing,
                Report::Recovered,
                Report::Quiet,
                Report::Failing,
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_export_is_passed_on_to_the_processor() {
        #[derive(Debug)]
        struct Down;
        impl SpanExporter for Down {
            async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "connection refused".into(),
                ))
            }
        }
        let exporter = ReportingExporter::new(Down);
        assert!(exporter.export(Vec::new()).await.is_err());
        assert!(exporter.export(Vec::new()).await.is_err());
        assert_eq!(exporter.note(false), Report::Recovered);
    }
}
