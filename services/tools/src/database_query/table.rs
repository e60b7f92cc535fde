//! Renders rows as an aligned text table for the LLM.

use serde_json::Value;

/// The widest cell shown, in characters; longer text is cut with `…`.
const MAX_CELL_CHARS: usize = 80;

/// Renders `columns` and `rows` as an aligned table with a row count below;
/// `truncated` says that more rows exist than are shown.
pub(crate) fn render(columns: &[String], rows: &[Vec<Value>], truncated: bool) -> String {
    let cells: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, name)| {
            cells
                .iter()
                .filter_map(|row| row.get(index))
                .map(|(text, _)| text.chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut lines = Vec::with_capacity(rows.len() + 3);
    let header: Vec<(String, bool)> = columns.iter().map(|c| (c.clone(), false)).collect();
    lines.push(line(&header, &widths));
    lines.push(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    lines.extend(cells.iter().map(|row| line(row, &widths)));
    let count = rows.len();
    lines.push(match (truncated, count) {
        (true, _) => format!("({count} rows shown; result truncated, more rows exist)"),
        (false, 1) => "(1 row)".to_owned(),
        (false, _) => format!("({count} rows)"),
    });
    lines.join("\n")
}

/// One row of cells padded to `widths`; numbers align right, text left.
fn line(cells: &[(String, bool)], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|((text, numeric), &width)| {
            if *numeric {
                format!("{text:>width$}")
            } else {
                format!("{text:<width$}")
            }
        })
        .collect();
    padded.join(" | ").trim_end().to_owned()
}

/// A value as table text, on one line and at most [`MAX_CELL_CHARS`] long,
/// and whether it is a number.
fn cell(value: &Value) -> (String, bool) {
    let (text, numeric) = match value {
        Value::Null => ("NULL".to_owned(), false),
        Value::Number(n) => (n.to_string(), true),
        Value::String(s) => (s.split_whitespace().collect::<Vec<_>>().join(" "), false),
        other => (other.to_string(), false),
    };
    if text.chars().count() > MAX_CELL_CHARS {
        let cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
        (format!("{cut}…"), numeric)
    } else {
        (text, numeric)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn columns_are_aligned_and_rows_counted() {
        let text = render(
            &columns(&["name", "level"]),
            &[
                vec![json!("Frank Delgado"), json!(5)],
                vec![json!("Marcus Reed"), json!(4)],
            ],
            false,
        );
        assert_eq!(
            text,
            "name          | level\n\
             --------------+------\n\
             Frank Delgado |     5\n\
             Marcus Reed   |     4\n\
             (2 rows)"
        );
    }

    #[test]
    fn nulls_newlines_and_long_text_stay_on_one_readable_line() {
        let long = "x".repeat(100);
        let text = render(
            &columns(&["note"]),
            &[
                vec![Value::Null],
                vec![json!("two\nlines")],
                vec![json!(long)],
            ],
            false,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "NULL");
        assert_eq!(lines[3], "two lines");
        assert_eq!(lines[4].chars().count(), 80);
        assert!(lines[4].ends_with('…'));
    }

    #[test]
    fn a_single_row_and_an_empty_result_read_naturally() {
        let one = render(&columns(&["n"]), &[vec![json!(1)]], false);
        assert!(one.ends_with("(1 row)"));
        let none = render(&columns(&["n"]), &[], false);
        assert_eq!(none, "n\n-\n(0 rows)");
    }

    #[test]
    fn a_truncated_result_says_so() {
        let text = render(&columns(&["n"]), &[vec![json!(1)], vec![json!(2)]], true);
        assert!(text.ends_with("(2 rows shown; result truncated, more rows exist)"));
    }
}
