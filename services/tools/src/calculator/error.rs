//! What can be wrong with an expression, and where.

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalcErrorKind {
    /// Nothing but whitespace.
    #[error("expression is empty")]
    Empty,
    /// More characters than allowed.
    #[error("expression is {len} characters long, over the limit of {max}")]
    TooLong {
        /// The expression's length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses, calls or exponents nested deeper than allowed.
    #[error("expression is nested more than {max} levels deep")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A character that is no part of the language.
    #[error("unexpected character '{}'", .0.escape_debug())]
    UnexpectedChar(char),
    /// A token where it cannot stand, e.g. `2 3` or `2 + * 3`.
    #[error("unexpected {0}")]
    UnexpectedToken(String),
    /// The expression stops where more was needed, e.g. `2 +`.
    #[error("unexpected end of expression")]
    UnexpectedEnd,
    /// A `(` that is never closed; the position is the `(`.
    #[error("'(' is never closed")]
    UnclosedParen,
    /// A `)` with no matching `(`.
    #[error("')' has no matching '('")]
    UnmatchedParen,
    /// A malformed number such as `.` or `1e`.
    #[error("invalid number '{}'", heist_plumbing::quote(.0))]
    InvalidNumber(String),
    /// A number literal too large for a 64-bit float, e.g. `1e999`.
    #[error("number '{}' is too large", heist_plumbing::quote(.0))]
    NumberTooLarge(String),
    /// A call to a function that does not exist.
    #[error("unknown function '{}'; known functions: {known}", heist_plumbing::quote(.0), known = super::parser::Function::KNOWN)]
    UnknownFunction(String),
    /// A name that is neither a constant nor a called function.
    #[error("unknown name '{}'; known constants: pi, e (functions need parentheses)", heist_plumbing::quote(.0))]
    UnknownName(String),
    /// A function called with the wrong number of arguments.
    #[error("{function} takes {expected}, got {got}")]
    WrongArity {
        /// The function's name.
        function: &'static str,
        /// How many arguments it takes, in words.
        expected: &'static str,
        /// How many it got.
        got: usize,
    },
    /// `x / 0`.
    #[error("division by zero")]
    DivisionByZero,
    /// `x % 0`.
    #[error("modulo by zero")]
    ModuloByZero,
    /// A result too large for a 64-bit float.
    #[error("result overflows (too large to represent)")]
    Overflow,
    /// A result that is not a number, e.g. `sqrt(-1)`.
    #[error("result is undefined: {0}")]
    Undefined(&'static str),
    /// `round(x, digits)` with unusable digits.
    #[error("round digits must be a whole number from -15 to 15, got {0}")]
    BadDigits(f64),
}

/// An evaluation failure at a 0-based character position of the expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} at position {position}")]
pub struct CalcError {
    /// What is wrong.
    pub kind: CalcErrorKind,
    /// Where, as a 0-based character index.
    pub position: usize,
}

/// What the language allows, for the errors of an expression that does not parse.
pub(crate) const ALLOWED: &str = "numbers (3, 0.5, 1e3), + - * / % ^, parentheses, \
                                  min, max, round(x, digits), sqrt, abs, floor, ceil, pi, e";

/// How many characters of the expression are shown on each side of the error.
const CONTEXT_CHARS: usize = 30;

impl CalcError {
    /// A `kind` error at `position`.
    pub(crate) fn new(kind: CalcErrorKind, position: usize) -> Self {
        Self { kind, position }
    }

    /// Whether the expression does not parse (rather than parses and cannot
    /// be computed, or is too big).
    fn is_syntax(&self) -> bool {
        matches!(
            self.kind,
            CalcErrorKind::UnexpectedChar(_)
                | CalcErrorKind::UnexpectedToken(_)
                | CalcErrorKind::UnexpectedEnd
                | CalcErrorKind::UnclosedParen
                | CalcErrorKind::UnmatchedParen
                | CalcErrorKind::InvalidNumber(_)
                | CalcErrorKind::UnknownFunction(_)
                | CalcErrorKind::UnknownName(_)
        )
    }

    /// What is wrong, where in `expression` (the character at the position
    /// marked `⟦ ⟧`, at most [`CONTEXT_CHARS`] on each side), and, when it
    /// does not parse, what is allowed.
    pub(crate) fn explain(&self, expression: &str) -> String {
        if matches!(
            self.kind,
            CalcErrorKind::Empty | CalcErrorKind::TooLong { .. }
        ) {
            return self.kind.to_string();
        }
        let chars: Vec<char> = expression.chars().collect();
        let at = self.position.min(chars.len());
        let start = at.saturating_sub(CONTEXT_CHARS);
        let end = (at + 1 + CONTEXT_CHARS).min(chars.len());
        let before: String = chars[start..at].iter().collect();
        let marked: String = chars.get(at).map(char::to_string).unwrap_or_default();
        let after: String = chars[(at + 1).min(end)..end].iter().collect();
        let lead = if start > 0 { "…" } else { "" };
        let tail = if end < chars.len() { "…" } else { "" };
        let mut text = format!(
            "{}, here: \"{lead}{before}⟦{marked}⟧{after}{tail}\"",
            self.kind
        );
        if self.is_syntax() {
            text.push_str("; allowed: ");
            text.push_str(ALLOWED);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_marks_where_and_says_what_is_allowed() {
        let error = CalcError::new(CalcErrorKind::UnexpectedChar('$'), 2);
        assert_eq!(
            error.explain("2 $ 3"),
            format!("unexpected character '$', here: \"2 ⟦$⟧ 3\"; allowed: {ALLOWED}")
        );
    }

    #[test]
    fn an_error_at_the_end_marks_the_end() {
        let error = CalcError::new(CalcErrorKind::UnexpectedEnd, 3);
        assert!(
            error
                .explain("2 +")
                .starts_with("unexpected end of expression, here: \"2 +⟦⟧\"")
        );
    }

    #[test]
    fn a_computation_error_marks_where_without_the_grammar() {
        let error = CalcError::new(CalcErrorKind::DivisionByZero, 2);
        assert_eq!(
            error.explain("1 / 0"),
            "division by zero, here: \"1 ⟦/⟧ 0\""
        );
    }

    #[test]
    fn a_long_expression_is_shown_only_around_the_error() {
        let expression = format!("{}$${}", "1+".repeat(500), "+1".repeat(500));
        let error = CalcError::new(CalcErrorKind::UnexpectedChar('$'), 1000);
        let text = error.explain(&expression);
        assert!(text.contains("here: \"…1+1+"), "{text}");
        assert!(text.contains("⟦$⟧$+1"), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }
}
