//! What every tool is: the [`Tool`] trait, its answer and its error, and the
//! argument helpers all tools share.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::caller::Caller;

/// What every tool is.
///
/// Calls are synchronous and may block (file I/O, SQLite); the gRPC layer runs
/// them on a blocking thread with a timeout.
pub trait Tool: Send + Sync {
    /// The tool's name, e.g. `calculator`.
    fn name(&self) -> &'static str;

    /// What the tool does, for the LLM (may name what it can see, e.g. files).
    fn description(&self) -> &str;

    /// The scope a token needs to call the tool, e.g. `calculator:use`.
    fn required_scope(&self) -> &'static str;

    /// The arguments the tool takes; all are required strings.
    fn parameters(&self) -> &'static [Parameter];

    /// The argument the seed's inline form `[TOOL:name:argument]` fills.
    fn primary_argument(&self) -> &'static str;

    /// Runs the tool on `args`.
    fn call(&self, args: &HashMap<String, String>) -> Result<ToolOutput, ToolError>;

    /// Runs the tool on `args` for `caller`: a tool that shares something
    /// between callers or runs long (e.g. `database_query`) uses who calls
    /// and until when; by default the caller is ignored.
    fn call_for(
        &self,
        args: &HashMap<String, String>,
        caller: &Caller,
    ) -> Result<ToolOutput, ToolError> {
        let _ = caller;
        self.call(args)
    }

    /// A JSON Schema of the arguments: an object of required string properties.
    fn parameters_schema(&self) -> Value {
        parameters_schema(self.parameters())
    }
}

/// One string argument of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The argument's name, e.g. `expression`.
    pub name: &'static str,
    /// What to put in it, for the LLM.
    pub description: &'static str,
}

/// A tool's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The answer as text, for the LLM.
    pub text: String,
    /// The answer as JSON, for programs.
    pub data: Value,
}

/// Why a tool refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The caller's input is malformed; `position` is a 0-based character
    /// index into the offending argument when one is known.
    #[error("{message}{}", at_position(*.position))]
    InvalidArgument {
        /// What is wrong, naming the argument.
        message: String,
        /// Where in the argument the problem is.
        position: Option<usize>,
    },
    /// The input is well formed but asks for something forbidden.
    #[error("{0}")]
    PermissionDenied(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The call ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The caller already holds its share of what the tool shares.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller went away before the answer was ready.
    #[error("{0}")]
    Cancelled(String),
    /// The tool itself failed; not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// An [`ToolError::InvalidArgument`] with no position.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
            position: None,
        }
    }
}

/// Formats the optional position suffix of an invalid-argument message.
fn at_position(position: Option<usize>) -> String {
    position.map_or_else(String::new, |p| format!(" (at position {p})"))
}

/// Builds the JSON Schema of a tool taking `parameters`, all required strings.
pub fn parameters_schema(parameters: &[Parameter]) -> Value {
    let properties: serde_json::Map<String, Value> = parameters
        .iter()
        .map(|p| {
            let schema = json!({ "type": "string", "description": p.description });
            (p.name.to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = parameters.iter().map(|p| p.name).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Returns the argument `name` of a tool taking `parameters`, after checking
/// that `args` holds no argument the tool does not know.
///
/// Missing or unknown arguments are [`ToolError::InvalidArgument`] naming them.
pub fn required_argument<'a>(
    args: &'a HashMap<String, String>,
    parameters: &[Parameter],
    name: &str,
) -> Result<&'a str, ToolError> {
    let known = || {
        parameters
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut unknown: Vec<&str> = args
        .keys()
        .map(String::as_str)
        .filter(|key| !parameters.iter().any(|p| p.name == *key))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(ToolError::invalid(format!(
            "unknown argument {}; this tool takes: {}",
            heist_plumbing::quote_list(&unknown),
            known()
        )));
    }
    args.get(name).map(String::as_str).ok_or_else(|| {
        ToolError::invalid(format!(
            "missing argument '{name}'; this tool takes: {}",
            known()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Parameter] = &[Parameter {
        name: "expression",
        description: "what to compute",
    }];

    fn args(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_present_argument_is_returned() {
        let a = args(&[("expression", "1+1")]);
        assert_eq!(required_argument(&a, PARAMS, "expression"), Ok("1+1"));
    }

    #[test]
    fn a_missing_argument_is_named_in_the_error() {
        let err = required_argument(&args(&[]), PARAMS, "expression").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing argument 'expression'; this tool takes: expression"
        );
    }

    #[test]
    fn an_unknown_argument_is_named_in_the_error() {
        let a = args(&[("expression", "1"), ("exprssion", "2")]);
        let err = required_argument(&a, PARAMS, "expression").unwrap_err();
        assert!(matches!(err, ToolError::InvalidArgument { .. }));
        assert!(err.to_string().contains("unknown argument 'exprssion'"));
    }

    #[test]
    fn the_schema_lists_every_parameter_as_a_required_string() {
        let schema = parameters_schema(PARAMS);
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["expression"]["type"], "string");
        assert_eq!(schema["required"], json!(["expression"]));
    }

    #[test]
    fn an_invalid_argument_with_a_position_says_where() {
        let err = ToolError::InvalidArgument {
            message: "unexpected character '$'".into(),
            position: Some(2),
        };
        assert_eq!(err.to_string(), "unexpected character '$' (at position 2)");
    }
}
