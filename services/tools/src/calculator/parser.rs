//! A recursive-descent parser from tokens to an expression tree.
//!
//! Grammar, loosest first:
//!
//! ```text
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := ("+" | "-")* power                 -- so -2^2 = -(2^2)
//! power   := primary ("^" unary)?               -- right-associative
//! primary := number | constant | function "(" sum ("," sum)* ")" | "(" sum ")"
//! ```
//!
//! Chains of `+ -` and `* / %` are stored flat and signs are folded in a loop,
//! so the tree is only as deep as the parentheses, calls and exponents, which
//! are counted against the depth limit as they are entered: no input can
//! overflow the stack, here or in the evaluator.

use std::f64::consts::{E, PI};

use super::error::{CalcError, CalcErrorKind};
use super::lexer::{Token, TokenKind};

/// A binary operator of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%` (remainder with the sign of the dividend)
    Rem,
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    /// `min(a, b, ...)`
    Min,
    /// `max(a, b, ...)`
    Max,
    /// `round(x)` or `round(x, digits)`
    Round,
    /// `sqrt(x)`
    Sqrt,
    /// `abs(x)`
    Abs,
    /// `floor(x)`
    Floor,
    /// `ceil(x)`
    Ceil,
}

impl Function {
    /// Every function's name, for error messages.
    pub(crate) const KNOWN: &'static str = "min, max, round, sqrt, abs, floor, ceil";

    /// The function called `name` (case-insensitive), if any.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "min" => Self::Min,
            "max" => Self::Max,
            "round" => Self::Round,
            "sqrt" => Self::Sqrt,
            "abs" => Self::Abs,
            "floor" => Self::Floor,
            "ceil" => Self::Ceil,
            _ => return None,
        })
    }

    /// The function's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
            Self::Round => "round",
            Self::Sqrt => "sqrt",
            Self::Abs => "abs",
            Self::Floor => "floor",
            Self::Ceil => "ceil",
        }
    }

    /// Whether `count` arguments suit the function; if not, what does, in words.
    fn check_arity(self, count: usize) -> Result<(), &'static str> {
        let (ok, expected) = match self {
            Self::Min | Self::Max => (count >= 1, "at least 1 argument"),
            Self::Round => ((1..=2).contains(&count), "1 or 2 arguments"),
            Self::Sqrt | Self::Abs | Self::Floor | Self::Ceil => (count == 1, "1 argument"),
        };
        if ok { Ok(()) } else { Err(expected) }
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A number or a constant.
    Number(f64),
    /// `-x`
    Negate(Box<Expr>),
    /// `first op1 x1 op2 x2 ...`, left-associative; each operator keeps its position.
    Chain {
        /// The leftmost operand.
        first: Box<Expr>,
        /// The operators, their positions and right operands, left to right.
        rest: Vec<(BinaryOp, usize, Expr)>,
    },
    /// `base ^ exponent`
    Power {
        /// The base.
        base: Box<Expr>,
        /// The exponent.
        exponent: Box<Expr>,
        /// The position of `^`.
        position: usize,
    },
    /// `function(args...)`
    Call {
        /// The function.
        function: Function,
        /// The position of the function's name.
        position: usize,
        /// The arguments.
        args: Vec<Expr>,
    },
}

/// Parses `tokens` (of an expression `end` characters long) into a tree no
/// more than `max_depth` levels of nesting deep.
pub(crate) fn parse(tokens: &[Token], end: usize, max_depth: usize) -> Result<Expr, CalcError> {
    let mut parser = Parser {
        tokens,
        next: 0,
        end,
        depth: 0,
        max_depth,
    };
    let expr = parser.sum()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) if token.kind == TokenKind::RParen => Err(CalcError::new(
            CalcErrorKind::UnmatchedParen,
            token.position,
        )),
        Some(token) => Err(unexpected(token)),
    }
}

/// An "unexpected token" error at `token`.
fn unexpected(token: &Token) -> CalcError {
    CalcError::new(
        CalcErrorKind::UnexpectedToken(token.kind.describe()),
        token.position,
    )
}

/// The parser's state: the tokens, the next one to read and the nesting depth.
struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
    end: usize,
    depth: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    /// Consumes the next token if `pick` maps its kind to something.
    fn eat<T>(&mut self, pick: impl Fn(&TokenKind) -> Option<T>) -> Option<(T, usize)> {
        let token = self.peek()?;
        let picked = pick(&token.kind)?;
        let position = token.position;
        self.next += 1;
        Some((picked, position))
    }

    /// Consumes the next token if it is `kind`.
    fn eat_kind(&mut self, kind: &TokenKind) -> Option<usize> {
        self.eat(|k| (k == kind).then_some(())).map(|(_, p)| p)
    }

    /// Enters one level of nesting that starts at `position`.
    fn enter(&mut self, position: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(CalcError::new(
                CalcErrorKind::TooDeep {
                    max: self.max_depth,
                },
                position,
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Parses a left-associative chain of `operand`s joined by operators `pick` accepts.
    fn chain(
        &mut self,
        operand: fn(&mut Self) -> Result<Expr, CalcError>,
        pick: fn(&TokenKind) -> Option<BinaryOp>,
    ) -> Result<Expr, CalcError> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some((op, position)) = self.eat(pick) {
            rest.push((op, position, operand(self)?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Chain {
                first: Box::new(first),
                rest,
            }
        })
    }

    fn sum(&mut self) -> Result<Expr, CalcError> {
        self.chain(Self::product, |kind| match kind {
            TokenKind::Plus => Some(BinaryOp::Add),
            TokenKind::Minus => Some(BinaryOp::Sub),
            _ => None,
        })
    }

    fn product(&mut self) -> Result<Expr, CalcError> {
        self.chain(Self::unary, |kind| match kind {
            TokenKind::Star => Some(BinaryOp::Mul),
            TokenKind::Slash => Some(BinaryOp::Div),
            TokenKind::Percent => Some(BinaryOp::Rem),
            _ => None,
        })
    }

    fn unary(&mut self) -> Result<Expr, CalcError> {
        let mut negative = false;
        while let Some((is_minus, _)) = self.eat(|kind| match kind {
            TokenKind::Plus => Some(false),
            TokenKind::Minus => Some(true),
            _ => None,
        }) {
            negative ^= is_minus;
        }
        let operand = self.power()?;
        Ok(if negative {
            Expr::Negate(Box::new(operand))
        } else {
            operand
        })
    }

    fn power(&mut self) -> Result<Expr, CalcError> {
        let base = self.primary()?;
        let Some(position) = self.eat_kind(&TokenKind::Caret) else {
            return Ok(base);
        };
        self.enter(position)?;
        let exponent = self.unary()?;
        self.leave();
        Ok(Expr::Power {
            base: Box::new(base),
            exponent: Box::new(exponent),
            position,
        })
    }

    fn primary(&mut self) -> Result<Expr, CalcError> {
        let Some(token) = self.peek().cloned() else {
            return Err(CalcError::new(CalcErrorKind::UnexpectedEnd, self.end));
        };
        match token.kind {
            TokenKind::Number(value) => {
                self.next += 1;
                Ok(Expr::Number(value))
            }
            TokenKind::LParen => {
                self.next += 1;
                self.enter(token.position)?;
                let inner = self.sum()?;
                self.close(token.position)?;
                self.leave();
                Ok(inner)
            }
            TokenKind::Ident(name) => {
                self.next += 1;
                self.named(&name, token.position)
            }
            _ => Err(unexpected(&token)),
        }
    }

    /// Parses what follows the name `name` at `position`: a call or a constant.
    fn named(&mut self, name: &str, position: usize) -> Result<Expr, CalcError> {
        let Some(open) = self.eat_kind(&TokenKind::LParen) else {
            return match name.to_ascii_lowercase().as_str() {
                "pi" => Ok(Expr::Number(PI)),
                "e" => Ok(Expr::Number(E)),
                _ => Err(CalcError::new(
                    CalcErrorKind::UnknownName(name.to_owned()),
                    position,
                )),
            };
        };
        let function = Function::from_name(name).ok_or_else(|| {
            CalcError::new(CalcErrorKind::UnknownFunction(name.to_owned()), position)
        })?;
        self.enter(open)?;
        let mut args = Vec::new();
        if self.eat_kind(&TokenKind::RParen).is_none() {
            args.push(self.sum()?);
            while self.eat_kind(&TokenKind::Comma).is_some() {
                args.push(self.sum()?);
            }
            self.close(open)?;
        }
        self.leave();
        function.check_arity(args.len()).map_err(|expected| {
            let kind = CalcErrorKind::WrongArity {
                function: function.name(),
                expected,
                got: args.len(),
            };
            CalcError::new(kind, position)
        })?;
        Ok(Expr::Call {
            function,
            position,
            args,
        })
    }

    /// Consumes the `)` closing the `(` at `open`.
    fn close(&mut self, open: usize) -> Result<(), CalcError> {
        if self.eat_kind(&TokenKind::RParen).is_some() {
            return Ok(());
        }
        Err(match self.peek() {
            None => CalcError::new(CalcErrorKind::UnclosedParen, open),
            Some(token) => unexpected(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse_str(input: &str, max_depth: usize) -> Result<Expr, CalcError> {
        let chars: Vec<char> = input.chars().collect();
        parse(&tokenize(&chars)?, chars.len(), max_depth)
    }

    fn error(input: &str) -> CalcError {
        parse_str(input, 64).unwrap_err()
    }

    fn n(value: f64) -> Box<Expr> {
        Box::new(Expr::Number(value))
    }

    #[test]
    fn unary_minus_binds_looser_than_power() {
        assert_eq!(
            parse_str("-2^2", 64).unwrap(),
            Expr::Negate(Box::new(Expr::Power {
                base: n(2.0),
                exponent: n(2.0),
                position: 2
            }))
        );
    }

    #[test]
    fn power_is_right_associative() {
        assert_eq!(
            parse_str("2^3^2", 64).unwrap(),
            Expr::Power {
                base: n(2.0),
                exponent: Box::new(Expr::Power {
                    base: n(3.0),
                    exponent: n(2.0),
                    position: 3
                }),
                position: 1
            }
        );
    }

    #[test]
    fn double_negation_folds_away() {
        assert_eq!(parse_str("--+3", 64).unwrap(), Expr::Number(3.0));
    }

    #[test]
    fn a_trailing_operator_is_an_unexpected_end() {
        assert_eq!(
            error("2 +"),
            CalcError::new(CalcErrorKind::UnexpectedEnd, 3)
        );
    }

    #[test]
    fn an_unclosed_parenthesis_points_at_the_open_one() {
        assert_eq!(
            error("1 + (2 * 3"),
            CalcError::new(CalcErrorKind::UnclosedParen, 4)
        );
    }

    #[test]
    fn an_extra_closing_parenthesis_is_unmatched() {
        assert_eq!(
            error("(1 + 2))"),
            CalcError::new(CalcErrorKind::UnmatchedParen, 7)
        );
    }

    #[test]
    fn empty_parentheses_are_an_unexpected_token() {
        assert_eq!(
            error("()"),
            CalcError::new(CalcErrorKind::UnexpectedToken("')'".into()), 1)
        );
    }

    #[test]
    fn two_numbers_in_a_row_are_an_unexpected_token() {
        assert_eq!(
            error("2 3"),
            CalcError::new(CalcErrorKind::UnexpectedToken("number 3".into()), 2)
        );
    }

    #[test]
    fn an_unknown_function_is_named() {
        assert_eq!(
            error("1 + foo(2)"),
            CalcError::new(CalcErrorKind::UnknownFunction("foo".into()), 4)
        );
    }

    #[test]
    fn an_unknown_constant_is_named() {
        assert_eq!(
            error("tau * 2"),
            CalcError::new(CalcErrorKind::UnknownName("tau".into()), 0)
        );
    }

    #[test]
    fn wrong_arity_says_what_the_function_takes() {
        let sqrt = CalcErrorKind::WrongArity {
            function: "sqrt",
            expected: "1 argument",
            got: 2,
        };
        assert_eq!(error("sqrt(1, 2)"), CalcError::new(sqrt, 0));
        let max = CalcErrorKind::WrongArity {
            function: "max",
            expected: "at least 1 argument",
            got: 0,
        };
        assert_eq!(error("max()"), CalcError::new(max, 0));
        let round = CalcErrorKind::WrongArity {
            function: "round",
            expected: "1 or 2 arguments",
            got: 3,
        };
        assert_eq!(error("round(1,2,3)"), CalcError::new(round, 0));
    }

    #[test]
    fn a_missing_comma_between_arguments_is_an_unexpected_token() {
        assert_eq!(
            error("max(1 2)"),
            CalcError::new(CalcErrorKind::UnexpectedToken("number 2".into()), 6)
        );
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_at_the_first_level_too_deep() {
        let too_deep = CalcError::new(CalcErrorKind::TooDeep { max: 3 }, 3);
        assert_eq!(parse_str("((((1))))", 3), Err(too_deep));
        assert!(parse_str("(((1)))", 3).is_ok());
    }

    #[test]
    fn exponent_chains_and_calls_count_towards_the_depth() {
        let err = parse_str("2^2^2^2", 2).unwrap_err();
        assert_eq!(err, CalcError::new(CalcErrorKind::TooDeep { max: 2 }, 5));
        let err = parse_str("abs(abs(1))", 1).unwrap_err();
        assert_eq!(err, CalcError::new(CalcErrorKind::TooDeep { max: 1 }, 7));
    }
}
