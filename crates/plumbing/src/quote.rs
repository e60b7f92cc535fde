//! The one way a caller's value is quoted back: in a `Status` message, an
//! error text or a log line.
//!
//! A caller's value (a name, an id, a key, a path, an expression) may be
//! megabytes long and may hold newlines or terminal escape sequences.
//! [`quote`] wraps it so that, when formatted, it is
//! - **escaped**: control characters, Unicode format characters (bidi
//!   overrides, zero-width characters, line and paragraph separators) and
//!   backslashes are written as Rust escapes (`\n`, `\u{1b}`, `\\`), so a
//!   quoted value can never start a new log line or move a terminal's cursor;
//! - **capped**: at most [`MAX_QUOTED_CHARS`] characters of the value are
//!   written, followed by a marker with the value's full size, e.g.
//!   `aaaa…(1048576 bytes)`.
//!
//! `{}` writes the escaped text alone; `{:?}` writes it between double quotes
//! (and escapes `"` as well), like `str`'s own `Debug`. [`quote_list`] does the
//! same for a list of values, naming at most [`MAX_QUOTED_ITEMS`] of them.
//! [`cap_message`] is the last guard for a whole message.

use std::fmt::{self, Write as _};

/// How many characters of a caller's value are quoted back at most.
pub const MAX_QUOTED_CHARS: usize = 64;

/// How many values of a list are quoted back at most.
pub const MAX_QUOTED_ITEMS: usize = 8;

/// The longest whole message (status message or log field) in bytes: a
/// status message travels as the `grpc-message` HTTP/2 header, percent-encoded
/// (up to three bytes per byte), and clients refuse header blocks over 16 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A caller's value, formatted escaped and capped (see the module doc).
#[derive(Clone, Copy)]
pub struct Quoted<'a> {
    value: &'a str,
    max_chars: usize,
}

/// Wraps a caller's value for formatting: escaped and capped at
/// [`MAX_QUOTED_CHARS`] characters.
pub fn quote(value: &str) -> Quoted<'_> {
    Quoted {
        value,
        max_chars: MAX_QUOTED_CHARS,
    }
}

impl Quoted<'_> {
    /// The same value capped at `max_chars` characters instead, for a text
    /// that holds a caller's value among others (e.g. an SQL engine's message
    /// quoting the caller's identifiers).
    #[must_use]
    pub fn at_most(self, max_chars: usize) -> Self {
        Self { max_chars, ..self }
    }
}

/// Quotes `value` into an owned string (the `{}` form).
pub fn quoted(value: &str) -> String {
    quote(value).to_string()
}

/// True for a character that must not be written raw: control characters
/// (C0, DEL, C1) and the Unicode format characters that reorder or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

/// What [`write_escaped`] escapes beyond control and format characters.
#[derive(Clone, Copy)]
struct Escape {
    /// Also `\\`, so the escaped text reads back unambiguously.
    backslash: bool,
    /// Also `"`, for text written between double quotes.
    quote: bool,
}

/// Writes `value` escaped, at most `max_chars` characters of it, then the
/// size marker if it was cut.
fn write_escaped(
    out: &mut impl fmt::Write,
    value: &str,
    max_chars: usize,
    escape: Escape,
) -> fmt::Result {
    for (written, c) in value.chars().enumerate() {
        if written == max_chars {
            return write!(out, "…({} bytes)", value.len());
        }
        match c {
            '\\' if escape.backslash => out.write_str("\\\\")?,
            '"' if escape.quote => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(
            f,
            self.value,
            self.max_chars,
            Escape {
                backslash: true,
                quote: false,
            },
        )
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_escaped(
            f,
            self.value,
            self.max_chars,
            Escape {
                backslash: true,
                quote: true,
            },
        )?;
        f.write_char('"')
    }
}

/// A list of caller's values, formatted as `'a', 'b', … and 39998 more`.
#[derive(Clone, Copy)]
pub struct QuotedList<'a, S>(&'a [S]);

/// Wraps a list of caller's values: each quoted between single quotes,
/// comma-separated, at most [`MAX_QUOTED_ITEMS`] of them named.
pub fn quote_list<S: AsRef<str>>(values: &[S]) -> QuotedList<'_, S> {
    QuotedList(values)
}

impl<S: AsRef<str>> fmt::Display for QuotedList<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, value) in self.0.iter().take(MAX_QUOTED_ITEMS).enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "'{}'", quote(value.as_ref()))?;
        }
        if self.0.len() > MAX_QUOTED_ITEMS {
            write!(f, ", … and {} more", self.0.len() - MAX_QUOTED_ITEMS)?;
        }
        Ok(())
    }
}

impl<S: AsRef<str>> fmt::Debug for QuotedList<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Cuts a whole message to at most [`MAX_MESSAGE_BYTES`] bytes (on a
/// character boundary, with a marker saying how long it was). Text that
/// already fits is returned unchanged.
pub fn cap_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let marker = format!("…(message cut; {} bytes)", message.len());
    let mut end = MAX_MESSAGE_BYTES - marker.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = message;
    cut.truncate(end);
    cut.push_str(&marker);
    cut
}

/// Escapes control and format characters in a whole text (a log message, a
/// field value) and caps it at `max_chars` characters: the guard the log
/// formatter applies to every field. Backslashes are left as they are (the
/// text may be a `Debug` form, escaped already); `quotes` also escapes `"`.
pub fn escape_for_log(text: &str, max_chars: usize, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_add(32)));
    let escape = Escape {
        backslash: false,
        quote: quotes,
    };
    // Writing into a String cannot fail.
    let _ = write_escaped(&mut out, text, max_chars, escape);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_plain_value_is_written_as_it_is() {
        assert_eq!(quote("vault_specs.md").to_string(), "vault_specs.md");
        assert_eq!(format!("{:?}", quote("héist")), "\"héist\"");
    }

    #[test]
    fn control_and_format_characters_are_escaped() {
        let value = "a\nb\rc\td\u{1b}[31me\u{7f}f\u{202e}g\u{2028}h\\i\0";
        let text = quote(value).to_string();
        assert_eq!(
            text,
            "a\\nb\\rc\\td\\u{1b}[31me\\u{7f}f\\u{202e}g\\u{2028}h\\\\i\\u{0}"
        );
        assert!(!text.chars().any(needs_escape));
        assert_eq!(format!("{:?}", quote("say \"hi\"")), r#""say \"hi\"""#);
    }

    #[test]
    fn a_long_value_is_cut_with_its_size() {
        let value = "a".repeat(1 << 20);
        let text = quote(&value).to_string();
        assert_eq!(text, format!("{}…(1048576 bytes)", "a".repeat(64)));
        let exactly = "b".repeat(MAX_QUOTED_CHARS);
        assert_eq!(quote(&exactly).to_string(), exactly);
    }

    #[test]
    fn a_text_may_be_given_a_longer_cap() {
        let message = format!("no such column: {}", "c".repeat(500));
        let text = quote(&message).at_most(200).to_string();
        assert_eq!(text.chars().count(), 200 + "…(516 bytes)".chars().count());
        assert!(text.starts_with("no such column: ccc"));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let value = "é".repeat(100);
        let text = quote(&value).to_string();
        assert!(text.starts_with(&"é".repeat(64)));
        assert!(text.ends_with("…(200 bytes)"));
    }

    #[test]
    fn a_long_list_names_a_few_and_counts_the_rest() {
        let names: Vec<String> = (0..40_000).map(|n| format!("arg{n}")).collect();
        let text = quote_list(&names).to_string();
        assert!(text.starts_with("'arg0', 'arg1'"), "{text}");
        assert!(text.ends_with(", … and 39992 more"), "{text}");
        assert!(text.len() < 200);
        assert_eq!(quote_list(&["a\nb"]).to_string(), "'a\\nb'");
    }

    #[test]
    fn a_whole_message_is_capped_on_a_character_boundary() {
        assert_eq!(cap_message("short".into()), "short");
        let long = "é".repeat(10_000);
        let cut = cap_message(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.ends_with("…(message cut; 20000 bytes)"), "{cut}");
    }

    #[test]
    fn escape_for_log_escapes_and_caps_any_text() {
        assert_eq!(escape_for_log("a\nb\\n", 10, false), "a\\nb\\n");
        assert_eq!(escape_for_log("say \"x\"", 10, true), "say \\\"x\\\"");
        assert_eq!(escape_for_log("abcdef", 3, false), "abc…(6 bytes)");
    }
}
