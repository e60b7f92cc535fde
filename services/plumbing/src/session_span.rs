//! Copies the session ID from baggage onto every span, so that one session
//! is one query (`session.id=...`) in Jaeger, whichever service made the span.

use opentelemetry::{Context, KeyValue, baggage::BaggageExt, trace::Span as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanProcessor},
};

/// The baggage key and span attribute that carry the session ID.
pub const SESSION_ID_KEY: &str = "session.id";

/// A span processor whose `on_start` sets `session.id` from the parent
/// context's baggage. The Rust SDK has no built-in baggage processor.
#[derive(Debug, Default)]
pub struct SessionIdProcessor;

impl SpanProcessor for SessionIdProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(session_id) = cx.baggage().get(SESSION_ID_KEY) {
            span.set_attribute(KeyValue::new(SESSION_ID_KEY, session_id.to_string()));
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}
