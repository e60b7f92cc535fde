//! The `calculator` tool: evaluates arithmetic with a real parser, never `eval`.
//!
//! Numbers (`3`, `0.5`, `1e3`), `+ - * / % ^` (`^` is right-associative and
//! binds tighter than a sign, so `-2^2 = -4`), parentheses, signs, the
//! functions `min`, `max`, `round(x[, digits])`, `sqrt`, `abs`, `floor`,
//! `ceil` and the constants `pi` and `e`. The pipeline is
//! [`lexer`] → [`parser`] → [`eval`]; every failure is a [`CalcError`] at a
//! 0-based character position.

mod error;
mod eval;
mod lexer;
mod parser;

use std::collections::HashMap;

use serde_json::{Value, json};

pub use self::error::{CalcError, CalcErrorKind};
use crate::config::{ConfigError, ToolsConfig, require_positive};
use crate::tool::{Parameter, Tool, ToolError, ToolOutput, required_argument};

/// The calculator's only argument.
const PARAMETERS: &[Parameter] = &[Parameter {
    name: "expression",
    description: "An arithmetic expression, e.g. `2 * (3 + 4)` or `round(sqrt(2), 3)`.",
}];

/// Integers up to this magnitude are exact in `f64` and print without a fraction.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// How long and how deep an expression may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most characters.
    pub max_len: usize,
    /// The most nested parentheses, calls and exponents.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let config = ToolsConfig::default();
        Self {
            max_len: config.max_expression_len,
            max_depth: config.max_depth,
        }
    }
}

/// Evaluates `expression` within `limits`.
pub fn evaluate(expression: &str, limits: Limits) -> Result<f64, CalcError> {
    let len = expression.chars().count();
    if len > limits.max_len {
        let kind = CalcErrorKind::TooLong {
            len,
            max: limits.max_len,
        };
        return Err(CalcError::new(kind, limits.max_len));
    }
    let chars: Vec<char> = expression.chars().collect();
    let tokens = lexer::tokenize(&chars)?;
    if tokens.is_empty() {
        return Err(CalcError::new(CalcErrorKind::Empty, 0));
    }
    let tree = parser::parse(&tokens, len, limits.max_depth)?;
    let value = eval::evaluate(&tree)?;
    // Fold -0 into 0: nobody wants to read "-0".
    Ok(if value == 0.0 { 0.0 } else { value })
}

/// Formats `value` for people: integers without `.0`, very large or very
/// small magnitudes in scientific notation.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e16).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// `value` as JSON: an integer when it is one (exactly), a float otherwise.
fn json_number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() <= MAX_EXACT_INTEGER {
        // Exact: `value` is an integer within the i64 range.
        #[allow(clippy::cast_possible_truncation)]
        let integer = value as i64;
        json!(integer)
    } else {
        json!(value)
    }
}

/// The `calculator` tool.
#[derive(Debug, Clone)]
pub struct Calculator {
    limits: Limits,
    /// The description, naming what the language allows (as its errors do).
    description: String,
}

impl Calculator {
    /// A calculator with the expression limits of `config`.
    pub fn new(config: &ToolsConfig) -> Result<Self, ConfigError> {
        require_positive("max_expression_len", config.max_expression_len as u128)?;
        require_positive("max_depth", config.max_depth as u128)?;
        Ok(Self {
            limits: Limits {
                max_len: config.max_expression_len,
                max_depth: config.max_depth,
            },
            description: format!(
                "Evaluates an arithmetic expression, e.g. `45 * 3 + 20`. Allowed: {}.",
                error::ALLOWED
            ),
        })
    }
}

impl Tool for Calculator {
    fn name(&self) -> &'static str {
        "calculator"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn required_scope(&self) -> &'static str {
        "calculator:use"
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn primary_argument(&self) -> &'static str {
        "expression"
    }

    fn call(&self, args: &HashMap<String, String>) -> Result<ToolOutput, ToolError> {
        let expression = required_argument(args, PARAMETERS, "expression")?;
        let result = evaluate(expression, self.limits).map_err(|e| ToolError::InvalidArgument {
            message: format!("expression: {}", e.explain(expression)),
            position: Some(e.position),
        })?;
        Ok(ToolOutput {
            text: format!("{} = {}", expression.trim(), format_number(result)),
            data: json!({ "expression": expression, "result": json_number(result) }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calculator() -> Calculator {
        Calculator::new(&ToolsConfig::default()).unwrap()
    }

    fn call(expression: &str) -> Result<ToolOutput, ToolError> {
        let args = HashMap::from([("expression".to_owned(), expression.to_owned())]);
        calculator().call(&args)
    }

    fn invalid_at(expression: &str) -> (String, Option<usize>) {
        match call(expression) {
            Err(ToolError::InvalidArgument { message, position }) => (message, position),
            other => panic!("expected an invalid argument for {expression:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_answer_shows_the_expression_and_an_integer_result() {
        let output = call(" 2 * (3 + 4) ").unwrap();
        assert_eq!(output.text, "2 * (3 + 4) = 14");
        assert_eq!(
            output.data,
            json!({ "expression": " 2 * (3 + 4) ", "result": 14 })
        );
    }

    #[test]
    fn fractional_results_keep_their_digits() {
        let output = call("1 / 4").unwrap();
        assert_eq!(output.text, "1 / 4 = 0.25");
        assert_eq!(output.data["result"], json!(0.25));
    }

    #[test]
    fn numbers_print_readably_at_every_magnitude() {
        assert_eq!(format_number(14.0), "14");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(1e300), "1e300");
        assert_eq!(format_number(1.5e-9), "1.5e-9");
        assert_eq!(format_number(0.0), "0");
    }

    #[test]
    fn negative_zero_is_reported_as_zero() {
        assert_eq!(call("-0").unwrap().text, "-0 = 0");
    }

    #[test]
    fn an_empty_expression_is_refused() {
        let (message, position) = invalid_at("   ");
        assert_eq!(message, "expression: expression is empty");
        assert_eq!(position, Some(0));
    }

    #[test]
    fn a_too_long_expression_is_refused() {
        let (message, position) = invalid_at(&"1+".repeat(600));
        assert_eq!(
            message,
            "expression: expression is 1200 characters long, over the limit of 1000"
        );
        assert_eq!(position, Some(1000));
    }

    #[test]
    fn each_kind_of_bad_expression_is_refused_with_its_position() {
        let cases = [
            ("2 $ 3", "unexpected character '$'", 2),
            ("2 +", "unexpected end of expression", 3),
            ("(2 + 3", "'(' is never closed", 0),
            ("2 + 3)", "')' has no matching '('", 5),
            ("2 * * 3", "unexpected '*'", 4),
            ("foo(1)", "unknown function 'foo'", 0),
            ("sqrt(1, 2)", "sqrt takes 1 argument, got 2", 0),
            ("1 / 0", "division by zero", 2),
            ("1 % 0", "modulo by zero", 2),
            ("1e308*10", "result overflows (too large to represent)", 5),
            ("sqrt(-1)", "result is undefined", 0),
        ];
        for (expression, expected, at) in cases {
            let (message, position) = invalid_at(expression);
            assert!(
                message.contains(expected),
                "{expression:?}: {message:?} lacks {expected:?}"
            );
            assert_eq!(position, Some(at), "{expression:?}");
        }
    }

    #[test]
    fn a_bad_expression_shows_where_and_what_is_allowed() {
        let err = call("3 x 4").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("expression: unexpected name 'x'"),
            "{text}"
        );
        assert!(text.contains("here: \"3 ⟦x⟧ 4\""), "{text}");
        assert!(text.contains("allowed: numbers"), "{text}");
        assert!(text.ends_with("(at position 2)"), "{text}");
    }

    #[test]
    fn a_missing_expression_argument_is_refused_by_name() {
        let err = calculator().call(&HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing argument 'expression'"));
    }

    #[test]
    fn a_depth_bomb_is_refused_without_overflowing_the_stack() {
        let limits = Limits {
            max_len: 1_000_000,
            max_depth: 64,
        };
        let bomb = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = evaluate(&bomb, limits).unwrap_err();
        assert_eq!(err, CalcError::new(CalcErrorKind::TooDeep { max: 64 }, 64));
        let open_only = "(".repeat(100_000);
        assert!(evaluate(&open_only, limits).is_err());
    }

    #[test]
    fn a_long_flat_chain_evaluates_without_deep_recursion() {
        let limits = Limits {
            max_len: 1_000_000,
            max_depth: 64,
        };
        let chain = vec!["1"; 100_000].join("+");
        assert_eq!(evaluate(&chain, limits), Ok(100_000.0));
        let signs = format!("{}1", "-".repeat(100_001));
        assert_eq!(evaluate(&signs, limits), Ok(-1.0));
    }

    #[test]
    fn zero_limits_are_a_config_error() {
        let config = ToolsConfig {
            max_depth: 0,
            ..ToolsConfig::default()
        };
        assert!(matches!(
            Calculator::new(&config),
            Err(ConfigError::InvalidLimit {
                name: "max_depth",
                ..
            })
        ));
    }

    #[test]
    fn the_tool_describes_itself() {
        let calculator = calculator();
        assert_eq!(calculator.name(), "calculator");
        assert!(calculator.description().contains(error::ALLOWED));
        assert_eq!(calculator.required_scope(), "calculator:use");
        assert_eq!(calculator.primary_argument(), "expression");
        assert_eq!(
            calculator.parameters_schema()["required"],
            json!(["expression"])
        );
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests: no input panics, and generated expressions evaluate
    //! exactly like a reference evaluation of the tree they came from.

    use proptest::prelude::*;

    use super::{Limits, evaluate};

    /// A generated expression tree (independent of the parser's).
    #[derive(Debug, Clone)]
    enum Gen {
        Number(f64),
        Neg(Box<Gen>),
        Binary(char, Box<Gen>, Box<Gen>),
        Call(&'static str, Vec<Gen>),
    }

    impl Gen {
        /// The tree as fully parenthesised text.
        fn render(&self) -> String {
            match self {
                Self::Number(n) => format!("{n}"),
                Self::Neg(inner) => format!("-({})", inner.render()),
                Self::Binary(op, l, r) => format!("({}) {op} ({})", l.render(), r.render()),
                Self::Call(name, args) => {
                    let args: Vec<String> = args.iter().map(Self::render).collect();
                    format!("{name}({})", args.join(", "))
                }
            }
        }

        /// The reference value; `None` where the calculator must refuse.
        fn reference(&self) -> Option<f64> {
            let checked = |v: f64| v.is_finite().then_some(v);
            match self {
                Self::Number(n) => Some(*n),
                Self::Neg(inner) => Some(-inner.reference()?),
                Self::Binary(op, l, r) => {
                    let (l, r) = (l.reference()?, r.reference()?);
                    match op {
                        '+' => checked(l + r),
                        '-' => checked(l - r),
                        '*' => checked(l * r),
                        '/' if r != 0.0 => checked(l / r),
                        '%' if r != 0.0 => checked(l % r),
                        '^' if !(l == 0.0 && r < 0.0) => checked(l.powf(r)),
                        _ => None,
                    }
                }
                Self::Call(name, args) => {
                    let values: Vec<f64> =
                        args.iter().map(Self::reference).collect::<Option<_>>()?;
                    let x = values[0];
                    match *name {
                        "min" => Some(values.iter().copied().fold(f64::INFINITY, f64::min)),
                        "max" => Some(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                        "abs" => Some(x.abs()),
                        "floor" => Some(x.floor()),
                        "ceil" => Some(x.ceil()),
                        "round" => Some(x.round()),
                        "sqrt" if x >= 0.0 => Some(x.sqrt()),
                        _ => None,
                    }
                }
            }
        }
    }

    fn tree() -> impl Strategy<Value = Gen> {
        let leaf = prop_oneof![
            (0u32..1000).prop_map(|n| Gen::Number(f64::from(n))),
            (0u32..10_000).prop_map(|n| Gen::Number(f64::from(n) / 100.0)),
            Just(Gen::Number(0.0)),
            Just(Gen::Number(1e300)),
        ];
        leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|g| Gen::Neg(Box::new(g))),
                (
                    prop::sample::select(vec!['+', '-', '*', '/', '%', '^']),
                    inner.clone(),
                    inner.clone()
                )
                    .prop_map(|(op, l, r)| Gen::Binary(
                        op,
                        Box::new(l),
                        Box::new(r)
                    )),
                (
                    prop::sample::select(vec!["abs", "floor", "ceil", "round", "sqrt"]),
                    inner.clone()
                )
                    .prop_map(|(name, arg)| Gen::Call(name, vec![arg])),
                (
                    prop::sample::select(vec!["min", "max"]),
                    prop::collection::vec(inner, 1..4)
                )
                    .prop_map(|(name, args)| Gen::Call(name, args)),
            ]
        })
    }

    fn roomy() -> Limits {
        Limits {
            max_len: 100_000,
            max_depth: 64,
        }
    }

    proptest! {
        #[test]
        fn random_strings_never_panic(input in ".{0,200}") {
            let _ = evaluate(&input, Limits::default());
        }

        #[test]
        fn random_calculator_alphabet_strings_never_panic(
            input in "[0-9.eE+\\-*/%^(), pisqrtminaxroundbcelf]{0,120}"
        ) {
            let _ = evaluate(&input, Limits::default());
        }

        #[test]
        fn generated_expressions_match_the_reference_evaluation(tree in tree()) {
            let text = tree.render();
            match (tree.reference(), evaluate(&text, roomy())) {
                (Some(expected), Ok(actual)) => {
                    let expected = if expected == 0.0 { 0.0 } else { expected };
                    prop_assert_eq!(expected.to_bits(), actual.to_bits(), "{} = {}", text, actual);
                }
                (None, Err(_)) => {}
                (expected, actual) => {
                    prop_assert!(false, "{}: reference {:?}, calculator {:?}", text, expected, actual);
                }
            }
        }
    }
}
