//! The session ID on every span and every log line, so that one session is
//! one query (`session.id=...`) in Jaeger and one `grep` in the logs,
//! whichever service wrote them.
//!
//! Two carriers, one for each half of the telemetry:
//! - [`SessionIdProcessor`] (OpenTelemetry): copies baggage `session.id` onto
//!   every exported span as it starts. The Rust SDK has no such built-in.
//! - [`SessionIdLayer`] (`tracing`): remembers the `session.id` field of the
//!   spans that record one (the orchestrator's `invoke_workflow` span, each server
//!   span), so that [`current_session_id`] finds the session of the code
//!   running now even when nothing is exported and OpenTelemetry keeps no
//!   context. The client layer then still sends it as baggage, and the
//!   server span downstream records it, so its log lines name the session.

use std::sync::Arc;

use opentelemetry::{Context, KeyValue, baggage::BaggageExt, trace::Span as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanProcessor},
};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Registry, layer::Context as LayerContext, registry::LookupSpan};

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

/// The session ID a span recorded, kept in the span's extensions.
#[derive(Debug, Clone)]
struct SessionTag(Arc<str>);

/// A `tracing` layer that keeps the `session.id` field of each span that
/// records one (when it is created or later through `Span::record`), for
/// [`current_session_id`]. Spans without the field cost one lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionIdLayer;

/// Reads the `session.id` field out of a span's values.
#[derive(Default)]
struct SessionVisitor(Option<String>);

impl Visit for SessionVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == SESSION_ID_KEY {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == SESSION_ID_KEY {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

fn remember<S>(id: &Id, session_id: Option<String>, ctx: &LayerContext<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(session_id) = session_id.filter(|value| !value.is_empty()) else {
        return;
    };
    if let Some(span) = ctx.span(id) {
        span.extensions_mut()
            .replace(SessionTag(Arc::from(session_id)));
    }
}

impl<S> tracing_subscriber::Layer<S> for SessionIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().fields().field(SESSION_ID_KEY).is_none() {
            return;
        }
        let mut visitor = SessionVisitor::default();
        attrs.record(&mut visitor);
        remember(id, visitor.0, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let mut visitor = SessionVisitor::default();
        values.record(&mut visitor);
        remember(id, visitor.0, &ctx);
    }
}

/// The session ID of the current span or of its nearest ancestor that
/// recorded one, as kept by [`SessionIdLayer`]; `None` outside a session or
/// when the subscriber is not a `tracing_subscriber` registry.
pub fn current_session_id() -> Option<String> {
    session_id_in(&tracing::Span::current())
}

/// The session ID of `span` or of its nearest ancestor that recorded one
/// (see [`current_session_id`]).
pub fn session_id_in(span: &tracing::Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<SessionTag>()
                .map(|tag| tag.0.to_string())
        })
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn with_layer(test: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(SessionIdLayer);
        tracing::subscriber::with_default(subscriber, test);
    }

    #[test]
    fn a_child_span_finds_the_session_its_ancestor_recorded_later() {
        with_layer(|| {
            let session = tracing::info_span!("session", session.id = tracing::field::Empty);
            session.record(SESSION_ID_KEY, "heist_20261124_101500_beef");
            let _session = session.enter();
            let _turn = tracing::info_span!("turn", turn.id = 3).entered();
            let _call = tracing::info_span!("tool.call").entered();
            assert_eq!(
                current_session_id().as_deref(),
                Some("heist_20261124_101500_beef")
            );
        });
    }

    #[test]
    fn the_nearest_session_wins_and_display_values_are_read_plainly() {
        with_layer(|| {
            let _outer = tracing::info_span!("outer", session.id = "heist_outer").entered();
            let inner_id = String::from("heist_inner");
            let _inner = tracing::info_span!("inner", session.id = %inner_id).entered();
            assert_eq!(current_session_id().as_deref(), Some("heist_inner"));
        });
    }

    #[test]
    fn outside_a_session_there_is_no_session_id() {
        with_layer(|| {
            assert_eq!(current_session_id(), None, "no span at all");
            let _span =
                tracing::info_span!("startup", session.id = tracing::field::Empty).entered();
            assert_eq!(current_session_id(), None, "an empty field is no session");
        });
        assert_eq!(current_session_id(), None, "no registry");
    }
}
