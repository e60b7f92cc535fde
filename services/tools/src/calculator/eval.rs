//! Evaluates an expression tree over `f64`, refusing every non-finite step.

use super::error::{CalcError, CalcErrorKind};
use super::parser::{BinaryOp, Expr, Function};

/// The widest `round` digits: beyond it `f64` has no digits left to round.
const MAX_ROUND_DIGITS: f64 = 15.0;

/// Evaluates `expr`. Every intermediate result must be a finite number.
pub(crate) fn evaluate(expr: &Expr) -> Result<f64, CalcError> {
    match expr {
        Expr::Number(value) => Ok(*value),
        Expr::Negate(inner) => Ok(-evaluate(inner)?),
        Expr::Chain { first, rest } => {
            let mut acc = evaluate(first)?;
            for (op, position, operand) in rest {
                acc = binary(*op, acc, evaluate(operand)?, *position)?;
            }
            Ok(acc)
        }
        Expr::Power {
            base,
            exponent,
            position,
        } => {
            let (base, exponent) = (evaluate(base)?, evaluate(exponent)?);
            if base == 0.0 && exponent < 0.0 {
                return Err(CalcError::new(CalcErrorKind::DivisionByZero, *position));
            }
            finite(
                base.powf(exponent),
                *position,
                "a negative number to a fractional power",
            )
        }
        Expr::Call {
            function,
            position,
            args,
        } => {
            let values = args.iter().map(evaluate).collect::<Result<Vec<_>, _>>()?;
            call(*function, &values, *position)
        }
    }
}

/// Applies `op` to `left` and `right`; `position` is the operator's.
fn binary(op: BinaryOp, left: f64, right: f64, position: usize) -> Result<f64, CalcError> {
    let value = match op {
        BinaryOp::Add => left + right,
        BinaryOp::Sub => left - right,
        BinaryOp::Mul => left * right,
        BinaryOp::Div if right == 0.0 => {
            return Err(CalcError::new(CalcErrorKind::DivisionByZero, position));
        }
        BinaryOp::Div => left / right,
        BinaryOp::Rem if right == 0.0 => {
            return Err(CalcError::new(CalcErrorKind::ModuloByZero, position));
        }
        BinaryOp::Rem => left % right,
    };
    finite(value, position, "an operation with no numeric result")
}

/// Applies `function` to `args` (whose count the parser checked).
fn call(function: Function, args: &[f64], position: usize) -> Result<f64, CalcError> {
    let first = args.first().copied().unwrap_or(f64::NAN);
    let value = match function {
        Function::Min => args.iter().copied().fold(f64::INFINITY, f64::min),
        Function::Max => args.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Function::Sqrt if first < 0.0 => {
            let kind = CalcErrorKind::Undefined("the square root of a negative number");
            return Err(CalcError::new(kind, position));
        }
        Function::Sqrt => first.sqrt(),
        Function::Abs => first.abs(),
        Function::Floor => first.floor(),
        Function::Ceil => first.ceil(),
        Function::Round => round(first, args.get(1).copied().unwrap_or(0.0), position)?,
    };
    finite(value, position, "a function with no numeric result")
}

/// Rounds `value` half away from zero to `digits` decimal places
/// (negative digits round to tens, hundreds...).
fn round(value: f64, digits: f64, position: usize) -> Result<f64, CalcError> {
    if digits.fract() != 0.0 || digits.abs() > MAX_ROUND_DIGITS {
        return Err(CalcError::new(CalcErrorKind::BadDigits(digits), position));
    }
    let factor = 10f64.powf(digits);
    let scaled = value * factor;
    if !scaled.is_finite() {
        // So large that it has no fractional digits to round.
        return Ok(value);
    }
    Ok(scaled.round() / factor)
}

/// `value` if it is a finite number; otherwise an overflow or an undefined
/// result (described as `undefined`) at `position`.
fn finite(value: f64, position: usize, undefined: &'static str) -> Result<f64, CalcError> {
    if value.is_nan() {
        Err(CalcError::new(
            CalcErrorKind::Undefined(undefined),
            position,
        ))
    } else if value.is_infinite() {
        Err(CalcError::new(CalcErrorKind::Overflow, position))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::super::parser::parse;
    use super::*;

    fn eval(input: &str) -> Result<f64, CalcError> {
        let chars: Vec<char> = input.chars().collect();
        evaluate(&parse(&tokenize(&chars)?, chars.len(), 64)?)
    }

    #[test]
    fn precedence_follows_the_usual_rules() {
        assert_eq!(eval("2 * (3 + 4)"), Ok(14.0));
        assert_eq!(eval("2 + 3 * 4"), Ok(14.0));
        assert_eq!(eval("10 - 4 - 3"), Ok(3.0));
        assert_eq!(eval("100 / 10 / 5"), Ok(2.0));
        assert_eq!(eval("7 % 4 * 2"), Ok(6.0));
        assert_eq!(eval("-2^2"), Ok(-4.0));
        assert_eq!(eval("(-2)^2"), Ok(4.0));
        assert_eq!(eval("2^3^2"), Ok(512.0));
        assert_eq!(eval("2^-1"), Ok(0.5));
        assert_eq!(eval("+5 - -5"), Ok(10.0));
    }

    #[test]
    fn functions_and_constants_evaluate() {
        assert_eq!(eval("min(3, 1, 2)"), Ok(1.0));
        assert_eq!(eval("max(3, 1, 2)"), Ok(3.0));
        assert_eq!(eval("sqrt(16)"), Ok(4.0));
        assert_eq!(eval("abs(-2.5)"), Ok(2.5));
        assert_eq!(eval("floor(-2.5)"), Ok(-3.0));
        assert_eq!(eval("ceil(2.1)"), Ok(3.0));
        assert_eq!(eval("round(2.5)"), Ok(3.0));
        assert_eq!(eval("round(1.23456, 3)"), Ok(1.235));
        assert_eq!(eval("round(1234, -2)"), Ok(1200.0));
        assert_eq!(eval("round(1e300, 15)"), Ok(1e300));
        assert_eq!(eval("PI"), Ok(std::f64::consts::PI));
        assert_eq!(eval("e"), Ok(std::f64::consts::E));
    }

    #[test]
    fn division_and_modulo_by_zero_are_refused_at_the_operator() {
        assert_eq!(
            eval("1 / (2 - 2)"),
            Err(CalcError::new(CalcErrorKind::DivisionByZero, 2))
        );
        assert_eq!(
            eval("5 % 0"),
            Err(CalcError::new(CalcErrorKind::ModuloByZero, 2))
        );
        assert_eq!(
            eval("0 ^ -1"),
            Err(CalcError::new(CalcErrorKind::DivisionByZero, 2))
        );
    }

    #[test]
    fn an_overflowing_result_is_refused() {
        assert_eq!(
            eval("1e308 * 10"),
            Err(CalcError::new(CalcErrorKind::Overflow, 6))
        );
        assert_eq!(
            eval("10 ^ 400"),
            Err(CalcError::new(CalcErrorKind::Overflow, 3))
        );
    }

    #[test]
    fn an_undefined_result_is_refused() {
        let sqrt = CalcErrorKind::Undefined("the square root of a negative number");
        assert_eq!(eval("sqrt(-1)"), Err(CalcError::new(sqrt, 0)));
        let power = CalcErrorKind::Undefined("a negative number to a fractional power");
        assert_eq!(eval("(-8) ^ 0.5"), Err(CalcError::new(power, 5)));
    }

    #[test]
    fn round_refuses_fractional_or_huge_digits() {
        assert_eq!(
            eval("round(1, 0.5)"),
            Err(CalcError::new(CalcErrorKind::BadDigits(0.5), 0))
        );
        assert_eq!(
            eval("round(1, 16)"),
            Err(CalcError::new(CalcErrorKind::BadDigits(16.0), 0))
        );
    }
}
