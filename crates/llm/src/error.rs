//! Every way an LLM completion can fail, with messages a person can act on.

use std::time::Duration;

/// Why a backend could not produce a completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// A setting is unusable (checked before any request is sent).
    #[error("invalid LLM setting `{field}`: {reason}")]
    InvalidSettings {
        /// The setting's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server did not answer within the request timeout.
    #[error("LLM server at {url} did not answer within {after:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server could not be reached, even after retrying.
    #[error("cannot connect to LLM server at {url} after {attempts} attempt(s): {reason}")]
    Connect {
        /// The URL requested.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last connection error.
        reason: String,
    },
    /// The server answered with an error status (after any retries).
    #[error("LLM server at {url} answered HTTP {status}: {body}")]
    Http {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// An excerpt of the error body.
        body: String,
    },
    /// The server does not serve the configured model.
    #[error("model `{model}` not found on the LLM server; {}", describe_available(.available))]
    ModelNotFound {
        /// The model asked for.
        model: String,
        /// The models the server lists (empty if it would not say).
        available: Vec<String>,
    },
    /// The server answered 2xx with something that is not a chat completion.
    #[error("unexpected answer from the LLM server: {0}")]
    BadResponse(String),
    /// Any other transport failure (the request could not be sent or its body not read).
    #[error("request to LLM server at {url} failed: {reason}")]
    Request {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

fn describe_available(available: &[String]) -> String {
    if available.is_empty() {
        "the server did not list its models".to_owned()
    } else {
        format!("available models: {}", available.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_not_found_lists_the_available_models() {
        let error = LlmError::ModelNotFound {
            model: "llama-9".to_owned(),
            available: vec!["gemma-3".to_owned(), "qwen-2".to_owned()],
        };
        assert_eq!(
            error.to_string(),
            "model `llama-9` not found on the LLM server; available models: gemma-3, qwen-2"
        );
    }

    #[test]
    fn model_not_found_without_a_listing_says_so() {
        let error = LlmError::ModelNotFound {
            model: "llama-9".to_owned(),
            available: Vec::new(),
        };
        assert!(
            error
                .to_string()
                .ends_with("the server did not list its models")
        );
    }
}
