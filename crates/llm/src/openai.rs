//! The OpenAI-compatible HTTP backend: LM Studio, Ollama, vLLM, llama.cpp server.

use std::fmt;
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Url};

use super::backend::{BoxFuture, LlmBackend};
use super::error::LlmError;
use super::http_retry::{Backoff, HttpAnswer, send_with_retries};
use super::openai_wire::{
    ChatRequest, Sampling, error_excerpt, read_completion, read_model_ids, says_model_missing,
};
use super::types::{Completion, CompletionRequest};

/// How to reach an OpenAI-compatible server.
#[derive(Clone, PartialEq)]
pub struct OpenAiSettings {
    /// The API root, e.g. `http://localhost:1234/v1` (plain HTTP: these servers are local).
    pub base_url: String,
    /// The model to ask for.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Sampling temperature, 0 to 2.
    pub temperature: f32,
    /// Most tokens per answer.
    pub max_tokens: u32,
    /// Limit on each request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Extra attempts after a connection error, a 5xx or a 429.
    pub retries: u32,
}

impl OpenAiSettings {
    /// Settings for `model` at `base_url` with the seed's defaults: temperature 0.7, 500 tokens,
    /// no key, a 60 s timeout, 2 retries.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            temperature: 0.7,
            max_tokens: 500,
            timeout: Duration::from_secs(60),
            retries: 2,
        }
    }
}

impl fmt::Debug for OpenAiSettings {
    /// Like a derived `Debug`, with the API key redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// A backend that asks an OpenAI-compatible server for chat completions.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    settings: OpenAiSettings,
    backoff: Backoff,
    /// The checked settings' client, or why the settings are unusable (reported by every call).
    ready: Result<Ready, LlmError>,
}

/// What a backend with valid settings sends with.
#[derive(Debug, Clone)]
struct Ready {
    /// `base_url` without its trailing slashes.
    base: String,
    client: Client,
}

impl OpenAiBackend {
    /// A backend for these settings; sends nothing. Unusable settings are reported by every
    /// [`complete`](LlmBackend::complete) and [`probe`](Self::probe) call (see [`Self::try_new`]).
    pub fn new(settings: OpenAiSettings) -> Self {
        let ready = validate(&settings).and_then(|base| {
            let client = Client::builder()
                .timeout(settings.timeout)
                .build()
                .map_err(|error| LlmError::Request {
                    url: base.clone(),
                    reason: format!("cannot build the HTTP client: {error}"),
                })?;
            Ok(Ready { base, client })
        });
        Self {
            settings,
            backoff: Backoff::default(),
            ready,
        }
    }

    /// Like [`Self::new`], but fails at once on unusable settings.
    pub fn try_new(settings: OpenAiSettings) -> Result<Self, LlmError> {
        let backend = Self::new(settings);
        backend.ready()?;
        Ok(backend)
    }

    /// The same backend with other waits between retries (default: 200 ms doubling up to 5 s).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Lists the models the server serves (`GET {base_url}/models`), for the health report.
    pub async fn probe(&self) -> Result<Vec<String>, LlmError> {
        let ready = self.ready()?;
        let url = ready.url("models");
        let answer = self.send(&url, || ready.client.get(&url)).await?;
        if !answer.status.is_success() {
            return Err(http_error(&url, &answer));
        }
        read_model_ids(&answer.body)
    }

    async fn chat(&self, request: CompletionRequest<'_>) -> Result<Completion, LlmError> {
        let ready = self.ready()?;
        let url = ready.url("chat/completions");
        let sampling = Sampling {
            model: &self.settings.model,
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
        };
        let body = ChatRequest::new(sampling, request.messages, request.tools, request.mode);
        let answer = self
            .send(&url, || ready.client.post(&url).json(&body))
            .await?;
        if answer.status.is_success() {
            return read_completion(
                &answer.body,
                request.mode,
                request.tools,
                &self.settings.model,
            );
        }
        if says_model_missing(answer.status.as_u16(), &answer.body, &self.settings.model) {
            return Err(LlmError::ModelNotFound {
                model: self.settings.model.clone(),
                available: self.probe().await.unwrap_or_default(),
            });
        }
        Err(http_error(&url, &answer))
    }

    /// Sends with the bearer key (if any) and the retry policy.
    async fn send(
        &self,
        url: &str,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<HttpAnswer, LlmError> {
        let build = || {
            let builder = request();
            match &self.settings.api_key {
                Some(key) => builder.bearer_auth(key),
                None => builder,
            }
        };
        let settings = &self.settings;
        send_with_retries(build, url, settings.timeout, settings.retries, self.backoff).await
    }

    fn ready(&self) -> Result<&Ready, LlmError> {
        self.ready.as_ref().map_err(Clone::clone)
    }
}

impl Ready {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

impl LlmBackend for OpenAiBackend {
    fn complete<'a>(
        &'a self,
        request: CompletionRequest<'a>,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(self.chat(request))
    }

    fn describe(&self) -> String {
        let base = self.settings.base_url.trim().trim_end_matches('/');
        format!("openai-compatible {base} model {}", self.settings.model)
    }

    fn is_offline(&self) -> bool {
        false
    }

    fn model(&self) -> &str {
        &self.settings.model
    }

    fn provider_name(&self) -> &'static str {
        "openai"
    }
}

fn http_error(url: &str, answer: &HttpAnswer) -> LlmError {
    LlmError::Http {
        url: url.to_owned(),
        status: answer.status.as_u16(),
        body: error_excerpt(&answer.body),
    }
}

/// Checks every setting and returns the base URL without trailing slashes.
fn validate(settings: &OpenAiSettings) -> Result<String, LlmError> {
    let invalid = |field, reason: &str| LlmError::InvalidSettings {
        field,
        reason: reason.to_owned(),
    };
    let base = settings.base_url.trim().trim_end_matches('/');
    let url = Url::parse(base).map_err(|error| LlmError::InvalidSettings {
        field: "base_url",
        reason: format!("`{base}` is not a URL: {error}"),
    })?;
    if url.scheme() != "http" {
        return Err(LlmError::InvalidSettings {
            field: "base_url",
            reason: format!(
                "`{base}` uses `{}`; only plain http:// is supported (LLM servers run locally)",
                url.scheme()
            ),
        });
    }
    if settings.model.trim().is_empty() {
        return Err(invalid("model", "must not be empty"));
    }
    if !(0.0..=2.0).contains(&settings.temperature) {
        return Err(invalid("temperature", "must be between 0 and 2"));
    }
    if settings.max_tokens == 0 {
        return Err(invalid("max_tokens", "must be at least 1"));
    }
    if settings.timeout.is_zero() {
        return Err(invalid("timeout", "must be longer than zero"));
    }
    Ok(base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OpenAiSettings {
        OpenAiSettings::new("http://localhost:1234/v1/", "gemma-3")
    }

    fn rejected_field(settings: OpenAiSettings) -> &'static str {
        match OpenAiBackend::try_new(settings) {
            Err(LlmError::InvalidSettings { field, .. }) => field,
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn the_description_names_the_server_and_model() {
        let backend = OpenAiBackend::try_new(settings()).unwrap();
        assert_eq!(
            backend.describe(),
            "openai-compatible http://localhost:1234/v1 model gemma-3"
        );
        assert!(!backend.is_offline());
    }

    #[test]
    fn a_base_url_that_is_not_a_url_is_rejected() {
        assert_eq!(
            rejected_field(OpenAiSettings::new("localhost:1234", "m")),
            "base_url"
        );
        assert_eq!(rejected_field(OpenAiSettings::new("", "m")), "base_url");
    }

    #[test]
    fn an_https_base_url_is_rejected_with_the_reason() {
        let error = OpenAiBackend::try_new(OpenAiSettings::new("https://api.example.com/v1", "m"));
        let message = error.map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("only plain http://"), "{message}");
    }

    #[test]
    fn an_empty_model_is_rejected() {
        assert_eq!(
            rejected_field(OpenAiSettings::new("http://h/v1", " ")),
            "model"
        );
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        let temperature = OpenAiSettings {
            temperature: f32::NAN,
            ..settings()
        };
        assert_eq!(rejected_field(temperature), "temperature");
        let max_tokens = OpenAiSettings {
            max_tokens: 0,
            ..settings()
        };
        assert_eq!(rejected_field(max_tokens), "max_tokens");
        let timeout = OpenAiSettings {
            timeout: Duration::ZERO,
            ..settings()
        };
        assert_eq!(rejected_field(timeout), "timeout");
    }

    #[tokio::test]
    async fn unusable_settings_are_reported_by_every_call() {
        let backend = OpenAiBackend::new(OpenAiSettings::new("ftp://h/v1", "m"));
        let error = backend.probe().await.unwrap_err();
        assert!(matches!(
            error,
            LlmError::InvalidSettings {
                field: "base_url",
                ..
            }
        ));
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let settings = OpenAiSettings {
            api_key: Some("sk-secret".to_owned()),
            ..settings()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("sk-secret"));
        assert!(debug.contains("<redacted>"));
    }
}
