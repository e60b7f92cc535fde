//! Tracing and OpenTelemetry set-up, done once per process.
//!
//! [`init`] installs a `tracing` subscriber (log lines on stderr filtered by
//! `RUST_LOG`/`--log`: text, coloured only on a terminal without `NO_COLOR`,
//! or one JSON object a line with `--log-format json`; every text field
//! escaped and capped, see [`EscapingFields`]) and, beside it, an OpenTelemetry layer that turns
//! this workspace's spans into OTel spans. Spans are exported over OTLP/gRPC
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set; otherwise nothing is exported and nothing waits on a collector.
//! Dependency spans (h2, hyper, tonic, tower) never reach the OTel layer, so
//! the exporter does not trace itself. Call [`Telemetry::shutdown`] before
//! exit to flush the last spans. A failed export is logged once per streak
//! (a collector that is down is worth one warning, not one per batch) and
//! retried briefly, so a dead collector never slows a run by more than a
//! few hundred milliseconds.
//!
//! Span design (one trace per session): the orchestrator's session span (`invoke_workflow`) is
//! the root; each turn, LLM call, tool call and client call is under it; each
//! service's server span is parented on the calling client span (see
//! [`crate::propagation`]), and the service's own spans under that. Work that
//! serves many sessions at once (Audit's group commit) is its own trace,
//! linked to every request span it commits. Start-up work outside any session
//! (token, tool discovery, key fetches, revocation polls) makes small traces
//! of its own, without `session.id`.

use std::time::Duration;

use opentelemetry::{
    KeyValue, global,
    propagation::TextMapCompositePropagator,
    trace::{Status, TracerProvider as _},
};
use opentelemetry_otlp::{RetryPolicy, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{SdkTracerProvider, SpanExporter},
};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::session_span::{SessionIdLayer, SessionIdProcessor};
use reporting::ReportingExporter;

pub use log_format::{
    CappedJsonFields, EscapingFields, LogFormat, MAX_LOG_FIELD_CHARS, colour_wanted,
};

mod log_format;
mod reporting;

/// The environment variables that switch OTLP export on.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long [`Telemetry::shutdown`] waits for the exporter at most.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// How a failed export is retried: twice, soon. A collector that blips
/// during a run loses nothing, and one that is down when a process exits
/// delays the exit by a few hundred milliseconds, not the second or so of
/// the SDK's recommended policy (3 retries, 100 ms doubling).
fn export_retry_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(2)
        .with_initial_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(200))
        .with_max_jitter(Duration::from_millis(50))
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is installed already.
    #[error("telemetry is initialised already: {0}")]
    AlreadyInitialised(#[from] tracing_subscriber::util::TryInitError),
}

/// The process's telemetry; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
#[must_use = "call shutdown() before exit, or the last spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// True when spans are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// The tracer provider, e.g. to force a flush in a test.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Flushes pending spans and stops the exporter. Runs on a blocking
    /// thread, since the exporter may block; a missing collector is logged,
    /// not fatal.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let outcome =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "span flush failed"),
            Err(error) => tracing::warn!(%error, "span flush panicked"),
        }
    }
}

/// Marks `span` as failed: span status ERROR with `message`, and an
/// `exception` event (`exception.type`, `exception.message`), as the
/// OpenTelemetry conventions ask. `message` is exported: never put a secret,
/// a token or a prompt in it. Does nothing when nothing is exported.
pub fn record_error(span: &tracing::Span, exception_type: &str, message: &str) {
    span.set_status(Status::error(message.to_owned()));
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", exception_type.to_owned()),
            KeyValue::new("exception.message", message.to_owned()),
        ],
    );
}

/// Sets an attribute on the exported span only: unlike a `tracing` field it
/// never appears in a log line, so it suits large or sensitive values that a
/// user opted in to export (e.g. captured GenAI message content). Does
/// nothing when nothing is exported.
pub fn set_exported_attribute(span: &tracing::Span, key: &'static str, value: String) {
    span.set_attribute(key, value);
}

/// True when an OTLP endpoint is configured in the environment.
pub fn otlp_endpoint_configured() -> bool {
    endpoint_configured(|var| std::env::var(var).ok())
}

/// True when `lookup` (an environment) gives one of [`OTLP_ENDPOINT_VARS`]
/// a non-blank value: set but empty counts as unset.
fn endpoint_configured(lookup: impl Fn(&str) -> Option<String>) -> bool {
    OTLP_ENDPOINT_VARS
        .iter()
        .any(|var| lookup(var).is_some_and(|value| !value.trim().is_empty()))
}

/// Which spans the OpenTelemetry and session layers see: this workspace's
/// (`heist*` targets), at INFO or above; never h2, hyper, tonic or tower, so
/// the exporter does not trace itself.
///
/// A static filter on purpose: `tracing` caches its answer per call site and
/// learns its maximum level (INFO), so the TRACE and DEBUG events of h2 and
/// hyper are rejected by one integer comparison. A closure filter would be
/// asked again at every event of every request (a fifth of the mesh's CPU
/// under load, measured with `perf`).
fn heist_info() -> Targets {
    Targets::new().with_target("heist", Level::INFO)
}

/// Sets up telemetry for a process named `service_name` (e.g. `heist-audit`),
/// exporting over OTLP/gRPC when the environment asks for it. Call it inside
/// the multi-thread tokio runtime.
pub fn init(
    service_name: &str,
    log_filter: &str,
    log_format: LogFormat,
) -> Result<Telemetry, TelemetryError> {
    let exporter = if otlp_endpoint_configured() {
        Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_retry_policy(export_retry_policy())
                .build()?,
        )
    } else {
        None
    };
    init_with_exporter(service_name, log_filter, log_format, exporter)
}

/// Like [`init`], with the exporter given (tests pass an in-memory one).
/// With no exporter, no OpenTelemetry spans are made at all (and so no
/// trace context is propagated): logs only.
pub fn init_with_exporter<E: SpanExporter + 'static>(
    service_name: &str,
    log_filter: &str,
    log_format: LogFormat,
    exporter: Option<E>,
) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(log_filter).map_err(|source| TelemetryError::Filter {
        filter: log_filter.to_owned(),
        source,
    })?;
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let exporting = exporter.is_some();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .with_span_processor(SessionIdProcessor);
    if let Some(exporter) = exporter {
        builder = builder.with_batch_exporter(ReportingExporter::new(exporter));
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    global::set_tracer_provider(provider.clone());

    // Without an exporter, OTel spans would be built only to be dropped:
    // leave the layer out, so untraced runs pay nothing for tracing.
    let otel_layer = exporting.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(heist_info())
    });
    // Log lines name their session even when nothing is exported: this layer
    // keeps each span's `session.id` for the client layer to send on.
    let session_layer = SessionIdLayer.with_filter(heist_info());
    // One of the two log layers, by format; the filter goes to that one.
    let (text_layer, json_layer) = match log_format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(EscapingFields)
                    .with_ansi(colour_wanted())
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .fmt_fields(CappedJsonFields)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(session_layer)
        .with(text_layer)
        .with(json_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(Telemetry {
        provider,
        exporting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |var| {
            pairs
                .iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn export_is_on_only_when_an_endpoint_variable_has_a_value() {
        assert!(!endpoint_configured(env(&[])), "unset");
        assert!(
            !endpoint_configured(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")])),
            "blank"
        );
        assert!(
            !endpoint_configured(env(&[("OTEL_SERVICE_NAME", "heist-audit")])),
            "other OTel variables do not switch export on"
        );
        assert!(endpoint_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(endpoint_configured(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
    }

    #[test]
    fn only_this_workspaces_info_spans_are_traced() {
        let filter = heist_info();
        assert!(filter.would_enable("heist_audit::store::writer", &Level::INFO));
        assert!(filter.would_enable("heist_orchestrator", &Level::WARN));
        assert!(!filter.would_enable("heist_audit", &Level::DEBUG));
        for target in [
            "h2::codec",
            "tonic::transport",
            "hyper::proto",
            "tower::buffer",
        ] {
            assert!(!filter.would_enable(target, &Level::INFO), "{target}");
        }
    }

    #[test]
    fn the_filter_tells_tracing_its_maximum_level() {
        use tracing_subscriber::layer::Filter;
        let hint = Filter::<tracing_subscriber::Registry>::max_level_hint(&heist_info());
        assert_eq!(hint, Some(tracing::level_filters::LevelFilter::INFO));
    }
}
