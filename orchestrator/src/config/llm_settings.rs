//! The `llm` section: [`LlmSettings`], which backend answers (the offline one unless a base URL
//! is set) and how; and the command line's overrides of it.

use std::time::Duration;

use super::{ConfigError, Secret, endpoint::check_base_url, fields::Fields, raw::RawLlm};
use crate::llm::ToolCallMode;

/// The model asked for when the file does not say (the seed's).
pub const DEFAULT_MODEL: &str = "google/gemma-3n-e4b";
/// The environment variable that overrides `llm.api_key`.
pub const API_KEY_VARIABLE: &str = "HEIST_LLM_API_KEY";

/// The backend the file asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmBackend {
    /// OpenAI-compatible when `base_url` is set, else offline.
    #[default]
    Auto,
    /// The built-in offline backend, whatever `base_url` says.
    Offline,
    /// The OpenAI-compatible API at `base_url` (which must be set).
    OpenAi,
}

/// The backend that will answer, [`LlmBackend::Auto`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmBackendKind {
    /// The built-in offline backend.
    Offline,
    /// The OpenAI-compatible API at `base_url`.
    OpenAi,
}

/// The language model's settings, checked: when [`LlmSettings::backend_kind`] is
/// [`LlmBackendKind::OpenAi`], `base_url` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// The backend asked for.
    pub backend: LlmBackend,
    /// The OpenAI-compatible API root without trailing `/`, e.g. `http://localhost:1234/v1`.
    pub base_url: Option<String>,
    /// The model's name.
    pub model: String,
    /// The API key, sent as a bearer token when set (`HEIST_LLM_API_KEY` overrides the file).
    pub api_key: Option<Secret>,
    /// Sampling temperature, 0 to 2 (default 0.7).
    pub temperature: f32,
    /// Most tokens per answer (default 500).
    pub max_tokens: u32,
    /// How tool calls travel (default inline, the seed's `[TOOL:name:argument]`).
    pub tool_calls: ToolCallMode,
    /// Deadline of one request (default 60 s).
    pub timeout: Duration,
    /// Extra attempts after a failed request (default 2).
    pub retries: u32,
}

impl LlmSettings {
    /// The backend that will answer.
    pub fn backend_kind(&self) -> LlmBackendKind {
        match (self.backend, &self.base_url) {
            (LlmBackend::OpenAi, _) | (LlmBackend::Auto, Some(_)) => LlmBackendKind::OpenAi,
            (LlmBackend::Offline, _) | (LlmBackend::Auto, None) => LlmBackendKind::Offline,
        }
    }
}

/// Reads the `llm` section.
pub(super) fn build_llm(
    fields: &Fields<'_>,
    raw: &RawLlm,
    notes: &mut Vec<String>,
) -> Result<LlmSettings, ConfigError> {
    let base_url = match fields.optional_text("llm.base_url", raw.base_url.as_deref())? {
        Some(url) => Some(
            check_base_url(&url)
                .map_err(|error| fields.invalid("llm.base_url", error.to_string()))?,
        ),
        None => None,
    };
    let backend = match fields.optional_text("llm.backend", raw.backend.as_deref())? {
        Some(text) => parse_backend(fields, "llm.backend", &text)?,
        None => LlmBackend::Auto,
    };
    if backend == LlmBackend::OpenAi && base_url.is_none() {
        return Err(fields.invalid(
            "llm.backend",
            "is openai but llm.base_url is not set; set llm.base_url (LM Studio: \
             http://localhost:1234/v1, Ollama: http://localhost:11434/v1) or use backend: auto",
        ));
    }
    if backend == LlmBackend::Offline && base_url.is_some() {
        notes.push("llm.base_url is ignored: llm.backend is offline".into());
    }
    let api_key = match fields
        .env_var(API_KEY_VARIABLE)
        .filter(|key| !key.is_empty())
    {
        Some(key) => Some(Secret::new(key)),
        None => fields
            .optional_text("llm.api_key", raw.api_key.as_deref())?
            .map(Secret::new),
    };
    Ok(LlmSettings {
        backend,
        base_url,
        model: fields
            .optional_text("llm.model", raw.model.as_deref())?
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        api_key,
        temperature: fields.in_range("llm.temperature", raw.temperature, 0.7, 0.0..=2.0)?,
        max_tokens: fields.in_range("llm.max_tokens", raw.max_tokens, 500, 1..=1_000_000)?,
        tool_calls: match fields.optional_text("llm.tool_calls", raw.tool_calls.as_deref())? {
            Some(text) => parse_tool_calls(fields, "llm.tool_calls", &text)?,
            None => ToolCallMode::Inline,
        },
        timeout: fields.duration(
            "llm.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        retries: fields.in_range("llm.retries", raw.retries, 2, 0..=10)?,
    })
}

/// Applies the command line's `--llm-url`, `--model`, `--offline` and `--tool-calls` (errors name
/// the flag, under the file name `command line`).
pub(super) fn apply_overrides(
    llm: &mut LlmSettings,
    llm_url: Option<&str>,
    model: Option<&str>,
    offline: bool,
    tool_calls: Option<&str>,
) -> Result<(), ConfigError> {
    let no_env = |_: &str| None;
    let fields = Fields::new("command line", &no_env);
    if let Some(url) = llm_url {
        let url =
            check_base_url(url).map_err(|error| fields.invalid("--llm-url", error.to_string()))?;
        llm.base_url = Some(url);
        llm.backend = LlmBackend::OpenAi;
    }
    if let Some(model) = model {
        llm.model = fields.required_text("--model", model)?;
    }
    if offline {
        llm.backend = LlmBackend::Offline;
    }
    if let Some(text) = tool_calls {
        llm.tool_calls = parse_tool_calls(&fields, "--tool-calls", text)?;
    }
    Ok(())
}

/// `auto`, `offline` or `openai`.
fn parse_backend(fields: &Fields<'_>, field: &str, text: &str) -> Result<LlmBackend, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(LlmBackend::Auto),
        "offline" => Ok(LlmBackend::Offline),
        "openai" => Ok(LlmBackend::OpenAi),
        _ => Err(fields.invalid(
            field,
            format!("'{text}' is not a backend; use auto, offline or openai"),
        )),
    }
}

/// `inline` or `native`.
fn parse_tool_calls(
    fields: &Fields<'_>,
    field: &str,
    text: &str,
) -> Result<ToolCallMode, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "inline" => Ok(ToolCallMode::Inline),
        "native" => Ok(ToolCallMode::Native),
        _ => Err(fields.invalid(
            field,
            format!("'{text}' is not a tool-call style; use inline or native"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_with(
        raw: &RawLlm,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(LlmSettings, Vec<String>), ConfigError> {
        let mut notes = Vec::new();
        let llm = build_llm(&Fields::new("t.yaml", env), raw, &mut notes)?;
        Ok((llm, notes))
    }

    fn build(raw: &RawLlm) -> Result<(LlmSettings, Vec<String>), ConfigError> {
        build_with(raw, &|_| None)
    }

    #[test]
    fn no_base_url_means_the_offline_backend_with_the_seeds_defaults() {
        let (llm, notes) = build(&RawLlm::default()).unwrap();
        assert_eq!(llm.backend_kind(), LlmBackendKind::Offline);
        assert_eq!(llm.model, DEFAULT_MODEL);
        assert_eq!(llm.api_key, None);
        assert!((llm.temperature - 0.7).abs() < f32::EPSILON);
        assert_eq!(llm.max_tokens, 500);
        assert_eq!(llm.tool_calls, ToolCallMode::Inline);
        assert_eq!(llm.timeout, Duration::from_secs(60));
        assert_eq!(llm.retries, 2);
        assert!(notes.is_empty());
    }

    #[test]
    fn a_base_url_switches_auto_to_openai_and_loses_its_trailing_slash() {
        let raw = RawLlm {
            base_url: Some("http://localhost:11434/v1/".into()),
            tool_calls: Some("native".into()),
            timeout: Some("90s".into()),
            ..RawLlm::default()
        };
        let (llm, _) = build(&raw).unwrap();
        assert_eq!(llm.backend_kind(), LlmBackendKind::OpenAi);
        assert_eq!(llm.base_url.as_deref(), Some("http://localhost:11434/v1"));
        assert_eq!(llm.tool_calls, ToolCallMode::Native);
        assert_eq!(llm.timeout, Duration::from_secs(90));
    }

    #[test]
    fn offline_wins_over_a_base_url_with_a_note() {
        let raw = RawLlm {
            backend: Some("offline".into()),
            base_url: Some("http://localhost:1234/v1".into()),
            ..RawLlm::default()
        };
        let (llm, notes) = build(&raw).unwrap();
        assert_eq!(llm.backend_kind(), LlmBackendKind::Offline);
        assert_eq!(notes, ["llm.base_url is ignored: llm.backend is offline"]);
    }

    #[test]
    fn openai_without_a_base_url_is_refused_saying_where_lm_studio_listens() {
        let raw = RawLlm {
            backend: Some("openai".into()),
            ..RawLlm::default()
        };
        let error = build(&raw).unwrap_err().to_string();
        assert!(
            error.starts_with("t.yaml: llm.backend: is openai but llm.base_url is not set"),
            "{error}"
        );
        assert!(error.contains("http://localhost:1234/v1"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let cases = [
            (
                RawLlm {
                    backend: Some("gpt".into()),
                    ..RawLlm::default()
                },
                "llm.backend: 'gpt' is not a backend",
            ),
            (
                RawLlm {
                    tool_calls: Some("json".into()),
                    ..RawLlm::default()
                },
                "llm.tool_calls: 'json'",
            ),
            (
                RawLlm {
                    temperature: Some(3.5),
                    ..RawLlm::default()
                },
                "llm.temperature: 3.5 is out of range",
            ),
            (
                RawLlm {
                    max_tokens: Some(0),
                    ..RawLlm::default()
                },
                "llm.max_tokens: 0 is out of range",
            ),
            (
                RawLlm {
                    retries: Some(11),
                    ..RawLlm::default()
                },
                "llm.retries: 11 is out of range",
            ),
            (
                RawLlm {
                    timeout: Some("1 fortnight".into()),
                    ..RawLlm::default()
                },
                "llm.timeout:",
            ),
            (
                RawLlm {
                    base_url: Some("ftp://x:1".into()),
                    ..RawLlm::default()
                },
                "llm.base_url: `ftp://x:1` uses the scheme `ftp`",
            ),
        ];
        for (raw, expected) in cases {
            let error = build(&raw).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn the_api_key_comes_from_the_environment_first() {
        let raw = RawLlm {
            api_key: Some("not-needed".into()),
            ..RawLlm::default()
        };
        let (llm, _) = build(&raw).unwrap();
        assert_eq!(llm.api_key.as_ref().map(Secret::expose), Some("not-needed"));
        let env = |name: &str| (name == API_KEY_VARIABLE).then(|| "sk-env".to_owned());
        let (llm, _) = build_with(&raw, &env).unwrap();
        assert_eq!(llm.api_key.as_ref().map(Secret::expose), Some("sk-env"));
        assert!(!format!("{llm:?}").contains("sk-env"));
    }

    #[test]
    fn command_line_overrides_switch_the_backend_and_check_their_values() {
        let (mut llm, _) = build(&RawLlm::default()).unwrap();
        apply_overrides(
            &mut llm,
            Some("http://localhost:1234/v1"),
            Some("qwen"),
            false,
            Some("native"),
        )
        .unwrap();
        assert_eq!(llm.backend_kind(), LlmBackendKind::OpenAi);
        assert_eq!(llm.model, "qwen");
        assert_eq!(llm.tool_calls, ToolCallMode::Native);
        apply_overrides(&mut llm, None, None, true, None).unwrap();
        assert_eq!(llm.backend_kind(), LlmBackendKind::Offline);
        let error =
            apply_overrides(&mut llm, Some("localhost:1234"), None, false, None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("command line: --llm-url: `localhost:1234` is not a URL"),
            "{error}"
        );
        let error = apply_overrides(&mut llm, None, None, false, Some("smoke")).unwrap_err();
        assert!(
            error.to_string().contains("--tool-calls: 'smoke'"),
            "{error}"
        );
    }
}
