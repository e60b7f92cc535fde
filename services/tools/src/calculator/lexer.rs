//! Splits an expression into tokens, each with its character position.

use super::error::{CalcError, CalcErrorKind};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A number literal such as `3`, `0.5` or `1e3`.
    Number(f64),
    /// A name: a function or a constant.
    Ident(String),
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `^`
    Caret,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
}

impl TokenKind {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        let symbol = match self {
            Self::Number(n) => return format!("number {n}"),
            Self::Ident(name) => return format!("name '{name}'"),
            Self::Plus => '+',
            Self::Minus => '-',
            Self::Star => '*',
            Self::Slash => '/',
            Self::Percent => '%',
            Self::Caret => '^',
            Self::LParen => '(',
            Self::RParen => ')',
            Self::Comma => ',',
        };
        format!("'{symbol}'")
    }
}

/// A token and the 0-based character position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// What it is.
    pub(crate) kind: TokenKind,
    /// Where it starts.
    pub(crate) position: usize,
}

/// Splits `chars` into tokens, skipping whitespace.
pub(crate) fn tokenize(chars: &[char]) -> Result<Vec<Token>, CalcError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_digit() || c == '.' => {
                let (value, end) = number(chars, start)?;
                i = end;
                TokenKind::Number(value)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                i = scan(chars, start, |c| c.is_ascii_alphanumeric() || c == '_');
                TokenKind::Ident(chars[start..i].iter().collect())
            }
            _ => {
                i += 1;
                match c {
                    '+' => TokenKind::Plus,
                    '-' => TokenKind::Minus,
                    '*' => TokenKind::Star,
                    '/' => TokenKind::Slash,
                    '%' => TokenKind::Percent,
                    '^' => TokenKind::Caret,
                    '(' => TokenKind::LParen,
                    ')' => TokenKind::RParen,
                    ',' => TokenKind::Comma,
                    other => {
                        return Err(CalcError::new(CalcErrorKind::UnexpectedChar(other), start));
                    }
                }
            }
        };
        tokens.push(Token {
            kind,
            position: start,
        });
    }
    Ok(tokens)
}

/// Returns the index of the first character at or after `from` that fails `accept`.
fn scan(chars: &[char], from: usize, accept: impl Fn(char) -> bool) -> usize {
    chars[from..]
        .iter()
        .position(|&c| !accept(c))
        .map_or(chars.len(), |offset| from + offset)
}

/// Reads the number starting at `start`: digits, an optional fraction and an
/// optional exponent (`e`/`E`, an optional sign, digits). Returns its value
/// and the index just past it.
fn number(chars: &[char], start: usize) -> Result<(f64, usize), CalcError> {
    let digit = |c: char| c.is_ascii_digit();
    let mut end = scan(chars, start, digit);
    if chars.get(end) == Some(&'.') {
        end = scan(chars, end + 1, digit);
    }
    let mantissa_has_digit = chars[start..end].iter().any(|c| c.is_ascii_digit());
    if mantissa_has_digit && matches!(chars.get(end), Some('e' | 'E')) {
        let mut exponent = end + 1;
        if matches!(chars.get(exponent), Some('+' | '-')) {
            exponent += 1;
        }
        if chars.get(exponent).is_some_and(|c| c.is_ascii_digit()) {
            end = scan(chars, exponent, digit);
        }
    }
    let text: String = chars[start..end].iter().collect();
    let invalid = || CalcError::new(CalcErrorKind::InvalidNumber(text.clone()), start);
    if !mantissa_has_digit {
        return Err(invalid());
    }
    let value: f64 = text.parse().map_err(|_| invalid())?;
    if value.is_infinite() {
        return Err(CalcError::new(CalcErrorKind::NumberTooLarge(text), start));
    }
    Ok((value, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind> {
        let chars: Vec<char> = input.chars().collect();
        tokenize(&chars)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn error(input: &str) -> CalcError {
        let chars: Vec<char> = input.chars().collect();
        tokenize(&chars).unwrap_err()
    }

    #[test]
    fn numbers_with_fractions_and_exponents_are_read_whole() {
        assert_eq!(
            kinds("1 2.5 .5 3. 1e3 2E-2 4e+1"),
            [1.0, 2.5, 0.5, 3.0, 1000.0, 0.02, 40.0].map(TokenKind::Number)
        );
    }

    #[test]
    fn an_e_without_exponent_digits_is_a_separate_name() {
        assert_eq!(
            kinds("2e"),
            vec![TokenKind::Number(2.0), TokenKind::Ident("e".into())]
        );
    }

    #[test]
    fn tokens_remember_their_character_positions() {
        let chars: Vec<char> = "  1 + (pi)".chars().collect();
        let positions: Vec<usize> = tokenize(&chars)
            .unwrap()
            .iter()
            .map(|t| t.position)
            .collect();
        assert_eq!(positions, vec![2, 4, 6, 7, 9]);
    }

    #[test]
    fn an_unexpected_character_is_reported_where_it_stands() {
        assert_eq!(
            error("2 $ 3"),
            CalcError::new(CalcErrorKind::UnexpectedChar('$'), 2)
        );
        assert_eq!(
            error("1 + é"),
            CalcError::new(CalcErrorKind::UnexpectedChar('é'), 4)
        );
    }

    #[test]
    fn a_lone_dot_is_an_invalid_number() {
        assert_eq!(
            error("1 + ."),
            CalcError::new(CalcErrorKind::InvalidNumber(".".into()), 4)
        );
    }

    #[test]
    fn a_literal_beyond_f64_is_too_large() {
        assert_eq!(
            error("1e999"),
            CalcError::new(CalcErrorKind::NumberTooLarge("1e999".into()), 0)
        );
    }
}
