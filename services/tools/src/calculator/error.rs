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

impl CalcError {
    /// A `kind` error at `position`.
    pub(crate) fn new(kind: CalcErrorKind, position: usize) -> Self {
        Self { kind, position }
    }
}
