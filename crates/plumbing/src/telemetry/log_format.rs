//! How log lines look: plain text (colour only on a terminal, `NO_COLOR`
//! respected) or one JSON object a line, and in both a guard that no field
//! can forge a line or flood the log.
//!
//! Call sites quote caller values with [`crate::quote`]; [`EscapingFields`]
//! is the last guard for the ones they miss: every field value and message of
//! a text line has its control characters escaped and is cut at
//! [`MAX_LOG_FIELD_CHARS`]. JSON lines are escaped by JSON itself, and
//! [`CappedJsonFields`] caps each span field (the fields spans take from
//! requests) at the same length.

use std::{fmt, io::IsTerminal as _};

use serde_json::{Map, Value};
use tracing::{
    field::{Field, Visit},
    span::Record,
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, FormattedFields, format::Writer},
};

use crate::quote::escape_for_log;

/// The most characters of one field (or message) a text log line holds.
pub const MAX_LOG_FIELD_CHARS: usize = 1024;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal and
    /// `NO_COLOR` is unset.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields, the current
    /// span and the list of spans with their fields, `session.id` included).
    Json,
}

/// True when log lines may be coloured: stderr is a terminal and `NO_COLOR`
/// is unset or empty (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    colour_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The rule behind [`colour_wanted`].
fn colour_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Formats the fields of text log lines with every value escaped and capped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapingFields;

impl<'writer> FormatFields<'writer> for EscapingFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes `name=value` pairs (the message bare), separated by spaces.
struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str, quoted: bool) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let value = escape_for_log(text, MAX_LOG_FIELD_CHARS, quoted);
        let name = field.name().trim_start_matches("r#");
        self.result = match (field.name(), quoted) {
            ("message", _) => write!(self.writer, "{separator}{value}"),
            (_, true) => write!(self.writer, "{separator}{name}=\"{value}\""),
            (_, false) => write!(self.writer, "{separator}{name}={value}"),
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let quoted = field.name() != "message";
        self.write(field, value, quoted);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error and its causes, `outer: inner: root`.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.write(field, &text, false);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"), false);
    }
}

/// Formats the span fields of JSON log lines as a JSON object whose text
/// values are cut at [`MAX_LOG_FIELD_CHARS`] (with the size marker).
#[derive(Debug, Clone, Copy, Default)]
pub struct CappedJsonFields;

impl<'writer> FormatFields<'writer> for CappedJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut collector = JsonCollector::default();
        fields.record(&mut collector);
        write!(writer, "{}", Value::Object(collector.values))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        // Fields recorded later join the object written when the span began.
        let mut collector = JsonCollector::default();
        if let Ok(Value::Object(values)) = serde_json::from_str(&current.fields) {
            collector.values = values;
        }
        fields.record(&mut collector);
        current.fields = Value::Object(collector.values).to_string();
        Ok(())
    }
}

/// Collects fields as JSON values, text cut at [`MAX_LOG_FIELD_CHARS`].
#[derive(Default)]
struct JsonCollector {
    values: Map<String, Value>,
}

impl JsonCollector {
    fn text(&mut self, field: &Field, text: &str) {
        let capped = match text.char_indices().nth(MAX_LOG_FIELD_CHARS) {
            Some((end, _)) => format!("{}…({} bytes)", &text[..end], text.len()),
            None => text.to_owned(),
        };
        self.values
            .insert(field.name().to_owned(), Value::String(capped));
    }
}

impl Visit for JsonCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.values.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.values.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.values.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.values.insert(field.name().to_owned(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::{
        ffi::OsStr,
        io::Write,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    fn log_with(body: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapingFields)
                .with_ansi(false)
                .with_writer(captured.clone()),
        );
        tracing::subscriber::with_default(subscriber, body);
        let bytes = captured.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("utf-8 log")
    }

    #[test]
    fn a_field_cannot_forge_a_line_or_write_an_escape_sequence() {
        let forged = "x\n2026-12-01T00:00:00Z  INFO token issued scope=oauth:admin\u{1b}[2J";
        let log = log_with(|| {
            let span = tracing::info_span!("issue_token", client.id = %forged);
            let _entered = span.enter();
            tracing::info!(name = forged, other = ?forged, "refused {}", forged);
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(!log.contains('\u{1b}'), "{log}");
        assert!(log.contains("client.id=x\\n2026"), "{log}");
    }

    #[test]
    fn a_huge_field_is_cut() {
        let huge = "a".repeat(1 << 20);
        let log = log_with(|| {
            let span = tracing::info_span!("issue_token", client.id = %huge);
            let _entered = span.enter();
            tracing::info!(name = huge.as_str(), "refused");
        });
        assert!(log.len() < 3 * MAX_LOG_FIELD_CHARS + 500, "{}", log.len());
        assert!(log.contains("…(1048576 bytes)"));
    }

    #[test]
    fn json_span_fields_are_capped_and_merge_when_recorded_later() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .fmt_fields(CappedJsonFields)
                .with_writer(captured.clone()),
        );
        let huge = "a".repeat(1 << 20);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "grpc.server",
                client.id = %huge,
                turn.id = 7,
                session.id = tracing::field::Empty
            );
            span.record("session.id", "s-1");
            let _entered = span.enter();
            tracing::info!("call served");
        });
        let bytes = captured.0.lock().expect("not poisoned").clone();
        let line: serde_json::Value = serde_json::from_slice(&bytes).expect("one JSON line");
        let span = &line["span"];
        assert_eq!(span["session.id"], "s-1", "{line}");
        assert_eq!(span["turn.id"], 7, "{line}");
        let client_id = span["client.id"].as_str().expect("text");
        assert!(client_id.ends_with("…(1048576 bytes)"), "{client_id:.100}");
        assert!(client_id.chars().count() <= MAX_LOG_FIELD_CHARS + 20);
    }

    #[test]
    fn plain_fields_look_as_they_did() {
        let log = log_with(|| tracing::info!(spans = 3, name = "audit", "export recovered"));
        assert!(
            log.trim_end()
                .ends_with("export recovered spans=3 name=\"audit\""),
            "{log}"
        );
    }
}
