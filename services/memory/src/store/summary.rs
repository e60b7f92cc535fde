//! The summary of older turns: one line per turn (`Turn N: first sentence`), the newest
//! lines kept when the budget is short, never longer than the budget in characters.

/// The longest snippet of a message in a summary line, in characters, before the ellipsis.
const SNIPPET_CHARS: usize = 100;
/// The most characters of a message read for its snippet, so a message of blanks costs little.
const SCAN_CHARS: usize = 8 * SNIPPET_CHARS;
/// The fewest characters of a line worth showing when the line must be cut to fit.
const MIN_CUT_LINE_CHARS: usize = 20;
/// Marks text that was cut short.
const ELLIPSIS: char = '…';

/// The most older turns [`summarize`] can look at for `max_chars`: the lines that can fit
/// (a line takes at least 9 characters, `Turn 0: x`, plus a line break) and the one after
/// them that does not. A backend that reads turns from elsewhere reads only these.
pub(super) fn turns_read(max_chars: usize) -> usize {
    max_chars.div_ceil(10) + 2
}

/// The most bytes of a message its summary line depends on: the snippet scans at most
/// 2 x [`SCAN_CHARS`] + 1 characters, of at most 4 bytes each. A backend may read only
/// this prefix of an older turn (cut back to a character boundary).
pub(super) const PREFIX_BYTES: usize = 4 * (2 * SCAN_CHARS + 1) + 4;

/// Summarises older turns, given newest first, within `max_chars` characters.
///
/// `older_count` is how many older turns there are; `older` yields them newest first, at
/// least the first [`turns_read`]`(max_chars)` of them (it may stop there), each message
/// whole or its first [`PREFIX_BYTES`].
///
/// The answer lists one line per turn, oldest first. When not every line fits, the newest
/// lines are kept and the answer starts with `(N earlier turns omitted)`; when not even one
/// line fits, the newest is cut short; when not even that is worth showing, the note alone
/// is shown, cut to the budget. The cost is bounded by the lines that fit, not by the turns.
pub(super) fn summarize<'a>(
    older_count: usize,
    older: impl Iterator<Item = (i64, &'a str)>,
    max_chars: usize,
) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0;
    for (index, (turn_id, message)) in older.enumerate() {
        let line = line(turn_id, message);
        let with_line = used + usize::from(!kept.is_empty()) + char_len(&line);
        let left = older_count - (index + 1);
        if with_line + note_cost(left) > max_chars {
            if kept.is_empty() {
                return cut_newest(&line, older_count, max_chars);
            }
            break;
        }
        used = with_line;
        kept.push(line);
    }
    let omitted = older_count - kept.len();
    let mut out = if omitted > 0 {
        note(omitted)
    } else {
        String::new()
    };
    for line in kept.iter().rev() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// The answer when not even the newest line fits whole: that line cut short, after the note
/// on the others when there is room for both; else the note alone, or the line alone.
fn cut_newest(line: &str, older_count: usize, max_chars: usize) -> String {
    let others = older_count - 1;
    let room_for_line = max_chars.checked_sub(note_cost(others));
    match room_for_line {
        Some(room) if room >= MIN_CUT_LINE_CHARS => {
            let mut out = if others > 0 {
                note(others) + "\n"
            } else {
                String::new()
            };
            out.push_str(&cut(line, room));
            out
        }
        _ if others > 0 => cut(&note(older_count), max_chars),
        _ => cut(line, max_chars),
    }
}

/// The note that `omitted` older turns are left out.
fn note(omitted: usize) -> String {
    let noun = if omitted == 1 { "turn" } else { "turns" };
    format!("({omitted} earlier {noun} omitted)")
}

/// The characters the note for `omitted` turns takes, with its line break; 0 for none.
fn note_cost(omitted: usize) -> usize {
    if omitted == 0 {
        0
    } else {
        char_len(&note(omitted)) + 1
    }
}

/// One summary line: `Turn N: ` and the message's snippet.
fn line(turn_id: i64, message: &str) -> String {
    let snippet = snippet(message);
    if snippet.is_empty() {
        format!("Turn {turn_id}: (blank)")
    } else {
        format!("Turn {turn_id}: {snippet}")
    }
}

/// The message's first sentence, or its first [`SNIPPET_CHARS`] characters cut at a word
/// boundary, on one line with runs of whitespace made one space; ends with `…` when cut.
fn snippet(message: &str) -> String {
    let mut out = String::new();
    let mut out_chars = 0;
    let mut last_space = None;
    let mut pending_space = false;
    let mut scanned = 0;
    let mut chars = message.char_indices().take(SCAN_CHARS).peekable();
    while let Some((at, c)) = chars.next() {
        scanned = at + c.len_utf8();
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if out_chars + usize::from(pending_space) + 1 > SNIPPET_CHARS {
            // Mid-word, back up to the last space unless that loses over half the snippet.
            if !pending_space
                && let Some((byte, chars_before)) = last_space
                && chars_before >= SNIPPET_CHARS / 2
            {
                out.truncate(byte);
            }
            return mark_cut(out);
        }
        if pending_space {
            last_space = Some((out.len(), out_chars));
            out.push(' ');
            out_chars += 1;
            pending_space = false;
        }
        out.push(c);
        out_chars += 1;
        if ends_sentence(c, chars.peek().map(|&(_, next)| next)) {
            break;
        }
    }
    if has_more(message.get(scanned..).unwrap_or_default()) {
        return mark_cut(out);
    }
    out
}

/// Whether `c`, followed by `next`, ends a sentence.
fn ends_sentence(c: char, next: Option<char>) -> bool {
    match c {
        '.' | '!' | '?' => next.is_none_or(char::is_whitespace),
        '。' | '！' | '？' => true,
        _ => false,
    }
}

/// Whether `rest` holds more than whitespace; reads at most [`SCAN_CHARS`] characters and
/// assumes more beyond them.
fn has_more(rest: &str) -> bool {
    let mut chars = rest.chars();
    chars.by_ref().take(SCAN_CHARS).any(|c| !c.is_whitespace()) || chars.next().is_some()
}

/// Appends the ellipsis to a cut snippet, after a space when a sentence ended.
fn mark_cut(mut snippet: String) -> String {
    if snippet
        .chars()
        .next_back()
        .is_some_and(|c| ends_sentence(c, None))
    {
        snippet.push(' ');
    }
    snippet.push(ELLIPSIS);
    snippet
}

/// `text` cut to at most `max_chars` characters, ending with `…` when cut.
fn cut(text: &str, max_chars: usize) -> String {
    if char_len(text) <= max_chars {
        return text.to_owned();
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return String::new();
    };
    let mut out: String = text.chars().take(keep).collect();
    out.push(ELLIPSIS);
    out
}

/// The length of `text` in characters.
fn char_len(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summarises `(turn, message)` pairs given oldest first, as a stream holds them.
    fn summarize_oldest_first(turns: &[(i64, &str)], max_chars: usize) -> String {
        summarize(turns.len(), turns.iter().rev().copied(), max_chars)
    }

    #[test]
    fn a_snippet_is_the_first_sentence_marked_when_more_follows() {
        assert_eq!(
            snippet("We go at midnight. Bring the drill."),
            "We go at midnight. …"
        );
        assert_eq!(snippet("We go at midnight."), "We go at midnight.");
    }

    #[test]
    fn a_snippet_keeps_a_decimal_point_inside_a_sentence() {
        assert_eq!(snippet("Pi is 3.14 roughly"), "Pi is 3.14 roughly");
    }

    #[test]
    fn a_snippet_collapses_whitespace_onto_one_line() {
        assert_eq!(snippet("  a\n\n b\t c  "), "a b c");
    }

    #[test]
    fn a_long_sentence_is_cut_at_a_word_boundary_near_100_characters() {
        let got = snippet(&"word ".repeat(40));
        assert_eq!(got, format!("{}…", "word ".repeat(20).trim_end()));
        let got = snippet(&"words ".repeat(40));
        assert_eq!(got, format!("{}…", "words ".repeat(16).trim_end()));
    }

    #[test]
    fn a_long_word_is_cut_inside_without_splitting_a_character() {
        let got = snippet(&"€".repeat(300));
        assert_eq!(got, "€".repeat(SNIPPET_CHARS) + "…");
    }

    #[test]
    fn a_sentence_in_chinese_ends_at_its_full_stop() {
        assert_eq!(snippet("我们午夜出发。带上钻头。"), "我们午夜出发。 …");
    }

    #[test]
    fn a_blank_message_gives_a_blank_marker() {
        assert_eq!(line(4, " \n "), "Turn 4: (blank)");
    }

    #[test]
    fn every_line_fits_when_the_budget_allows() {
        let summary = summarize_oldest_first(&[(1, "Alpha."), (2, "Beta.")], 2000);
        assert_eq!(summary, "Turn 1: Alpha.\nTurn 2: Beta.");
    }

    #[test]
    fn no_older_turns_give_an_empty_summary() {
        assert_eq!(summarize_oldest_first(&[], 2000), "");
    }

    #[test]
    fn a_short_budget_keeps_the_newest_lines_after_a_note() {
        let turns = [
            (1, "Alpha climbs through the vent."),
            (2, "Beta cuts the alarm wire."),
            (3, "Gamma opens the vault door."),
        ];
        let two_kept = "(1 earlier turn omitted)\n\
                        Turn 2: Beta cuts the alarm wire.\n\
                        Turn 3: Gamma opens the vault door.";
        assert_eq!(summarize_oldest_first(&turns, char_len(two_kept)), two_kept);
        assert_eq!(
            summarize_oldest_first(&turns, char_len(two_kept) - 1),
            "(2 earlier turns omitted)\nTurn 3: Gamma opens the vault door."
        );
    }

    #[test]
    fn a_budget_below_one_line_cuts_the_newest_line() {
        let turns = [(1, "Alpha."), (2, "Beta is a rather long sentence here.")];
        let summary = summarize_oldest_first(&turns, 50);
        assert_eq!(
            summary,
            "(1 earlier turn omitted)\nTurn 2: Beta is a rather…"
        );
        assert_eq!(char_len(&summary), 50);
    }

    #[test]
    fn a_tiny_budget_cuts_the_note_and_never_exceeds_it() {
        let turns = [(1, "Alpha."), (2, "Beta.")];
        assert_eq!(summarize_oldest_first(&turns, 8), "(2 earl…");
        assert_eq!(summarize_oldest_first(&turns, 1), "…");
    }

    #[test]
    fn a_tiny_budget_with_one_older_turn_cuts_that_line() {
        assert_eq!(summarize_oldest_first(&[(1, "Alpha.")], 6), "Turn …");
    }

    #[test]
    fn cutting_never_splits_a_multibyte_character() {
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("ééééé", 5), "ééééé");
        assert_eq!(cut("ééééé", 0), "");
    }
}
