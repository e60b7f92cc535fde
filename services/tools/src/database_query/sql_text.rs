//! A lexical look at SQL text, before SQLite sees it: the first keyword and
//! the number of statements, skipping comments and quoted text.

/// What the scanner is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain SQL.
    Code,
    /// A quoted string or identifier, closed by this character (doubled to escape).
    Quoted(char),
    /// `[identifier]`
    Bracketed,
    /// `-- comment` to the end of the line.
    LineComment,
    /// `/* comment */`
    BlockComment,
}

/// The first word of `sql`, uppercased, after whitespace and comments.
pub(crate) fn first_keyword(sql: &str) -> Option<String> {
    let start = code_chars(sql).find(|(_, c)| !c.is_whitespace())?.0;
    let word: String = sql[start..]
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// How many non-empty statements `sql` holds (`;`-separated outside quotes and comments).
pub(crate) fn statement_count(sql: &str) -> usize {
    let mut count = 0;
    let mut current_has_code = false;
    for (_, c) in code_chars(sql) {
        if c == ';' {
            current_has_code = false;
        } else if !c.is_whitespace() && !current_has_code {
            current_has_code = true;
            count += 1;
        }
    }
    count
}

/// The characters of `sql` that are code, with their byte offsets: comments
/// are dropped, and quoted text is reported as one placeholder `'` per
/// quoted run (so it counts as code but never as `;`).
fn code_chars(sql: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut state = State::Code;
    let mut chars = sql.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some((offset, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            match state {
                State::Code => match (c, next) {
                    ('-', Some('-')) => state = State::LineComment,
                    ('/', Some('*')) => {
                        chars.next();
                        state = State::BlockComment;
                    }
                    ('\'' | '"' | '`', _) => {
                        state = State::Quoted(c);
                        return Some((offset, '\''));
                    }
                    ('[', _) => {
                        state = State::Bracketed;
                        return Some((offset, '\''));
                    }
                    _ => return Some((offset, c)),
                },
                State::Quoted(close) if c == close => {
                    if next == Some(close) {
                        chars.next();
                    } else {
                        state = State::Code;
                    }
                }
                State::Bracketed if c == ']' => state = State::Code,
                State::LineComment if c == '\n' => state = State::Code,
                State::BlockComment if c == '*' && next == Some('/') => {
                    chars.next();
                    state = State::Code;
                }
                _ => {}
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_keyword_skips_whitespace_and_comments() {
        assert_eq!(first_keyword("  select 1"), Some("SELECT".into()));
        assert_eq!(
            first_keyword("-- note\n/* more */ WITH x AS (SELECT 1) SELECT * FROM x"),
            Some("WITH".into())
        );
        assert_eq!(first_keyword("guard schedule"), Some("GUARD".into()));
        assert_eq!(first_keyword("-- only a comment"), None);
        assert_eq!(first_keyword("(SELECT 1)"), None);
    }

    #[test]
    fn one_statement_with_a_trailing_semicolon_counts_once() {
        assert_eq!(statement_count("SELECT 1;"), 1);
        assert_eq!(statement_count("SELECT 1 ; ; -- done"), 1);
    }

    #[test]
    fn two_statements_count_twice() {
        assert_eq!(statement_count("SELECT 1; DROP TABLE guards"), 2);
        assert_eq!(statement_count("SELECT 1;/* x */SELECT 2;"), 2);
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_split() {
        assert_eq!(statement_count("SELECT ';' , \"a;b\", [c;d], `e;f`"), 1);
        assert_eq!(statement_count("SELECT 'it''s; fine'"), 1);
        assert_eq!(statement_count("SELECT 1 -- ; DROP TABLE guards"), 1);
        assert_eq!(statement_count("SELECT 1 /* ; DROP */"), 1);
    }

    #[test]
    fn unterminated_quotes_and_comments_do_not_panic() {
        assert_eq!(statement_count("SELECT 'open; DROP"), 1);
        assert_eq!(statement_count("SELECT 1 /* open; DROP"), 1);
        assert_eq!(first_keyword("/* never closed"), None);
    }
}
