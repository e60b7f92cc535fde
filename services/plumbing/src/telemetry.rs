//! Tracing and OpenTelemetry set-up, done once per process.
//!
//! [`init`] installs a `tracing` subscriber (human-readable log lines filtered
//! by `RUST_LOG`/`--log`) and, beside it, an OpenTelemetry layer that turns
//! this workspace's spans into OTel spans. Spans are exported over OTLP/gRPC
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set; otherwise nothing is exported and nothing waits on a collector.
//! Dependency spans (h2, hyper, tonic, tower) never reach the OTel layer, so
//! the exporter does not trace itself. Call [`Telemetry::shutdown`] before
//! exit to flush the last spans.

use std::time::Duration;

use opentelemetry::{global, propagation::TextMapCompositePropagator, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{SdkTracerProvider, SpanExporter},
};
use tracing::Level;
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::session_span::SessionIdProcessor;

/// The environment variables that switch OTLP export on.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long [`Telemetry::shutdown`] waits for the exporter at most.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

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

/// True when an OTLP endpoint is configured in the environment.
pub fn otlp_endpoint_configured() -> bool {
    OTLP_ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|value| !value.trim().is_empty()))
}

/// Sets up telemetry for a process named `service_name` (e.g. `heist-audit`),
/// exporting over OTLP/gRPC when the environment asks for it. Call it inside
/// the multi-thread tokio runtime.
pub fn init(service_name: &str, log_filter: &str) -> Result<Telemetry, TelemetryError> {
    let exporter = if otlp_endpoint_configured() {
        Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?,
        )
    } else {
        None
    };
    init_with_exporter(service_name, log_filter, exporter)
}

/// Like [`init`], with the exporter given (tests pass an in-memory one).
/// With no exporter, no OpenTelemetry spans are made at all (and so no
/// trace context is propagated): logs only.
pub fn init_with_exporter<E: SpanExporter + 'static>(
    service_name: &str,
    log_filter: &str,
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
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    global::set_tracer_provider(provider.clone());

    // Without an exporter, OTel spans would be built only to be dropped:
    // leave the layer out, so untraced runs pay nothing for tracing.
    let otel_layer = exporting.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|meta| {
                meta.target().starts_with("heist") && *meta.level() <= Level::INFO
            }))
    });
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(Telemetry {
        provider,
        exporting,
    })
}
