//! The orchestrator's configuration: a YAML file (the seed's `agents_config.yaml` layout, plus
//! optional extensions) read, expanded from the environment and checked into a [`Config`]
//! before anything starts. A bad file gives one [`ConfigError`] naming the file, the line or
//! field, and the fix.
//!
//! Layout: `raw` is the file's shape (serde, unknown keys refused); `fields` expands `${VAR}`
//! and turns bad values into errors; `agents`, `services`, `llm_settings` and `session` check
//! their sections; `endpoint`, `secret` and `env` are the small types and helpers they share.

mod agents;
mod endpoint;
mod endpoints;
mod env;
mod error;
mod fields;
mod llm_settings;
mod raw;
mod secret;
mod services;
mod session;
#[cfg(test)]
mod tests;
mod tls;

use std::{collections::BTreeMap, path::Path};

pub use agents::{AgentConfig, KNOWN_TOOLS};
pub use endpoint::{Endpoint, EndpointError};
pub use endpoints::{Endpoints, EndpointsError};
pub use env::EnvLookup;
pub use error::ConfigError;
pub use llm_settings::{API_KEY_VARIABLE, DEFAULT_MODEL, LlmBackend, LlmBackendKind, LlmSettings};
pub use secret::Secret;
pub use services::{
    DEFAULT_AUDIT_URL, DEFAULT_CLIENT_ID, DEFAULT_MEMORY_URL, DEFAULT_OAUTH_URL, OAuthSettings,
};
pub use session::{MAX_TURNS_LIMIT, ResilienceSettings, SessionSettings, Timeouts};
pub use tls::TlsSettings;

/// The built-in configuration (`orchestrator/heist.yaml`): the seed's four agents, the services
/// on 127.0.0.1:8001-8006, the offline LLM backend.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../heist.yaml");

/// The [`Config::source`] of the built-in configuration.
pub const DEFAULT_SOURCE: &str = "<built-in default>";

/// A checked configuration: every agent defined once with known, hosted tools; every address a
/// valid `http://host:port`; every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The agents, in file order.
    pub agents: Vec<AgentConfig>,
    /// The OAuth service and the orchestrator's own credentials.
    pub oauth: OAuthSettings,
    /// Tool name (`calculator`, ...) to the Tool service hosting it (every replica).
    pub tool_services: BTreeMap<String, Endpoints>,
    /// The language model.
    pub llm: LlmSettings,
    /// The Memory service (every replica).
    pub memory: Endpoints,
    /// The Audit service (every replica).
    pub audit: Endpoints,
    /// The conversation's shape.
    pub session: SessionSettings,
    /// Per-call deadlines.
    pub timeouts: Timeouts,
    /// Retries, circuit breakers and the audit spool.
    pub resilience: ResilienceSettings,
    /// TLS on every call (`None`: plaintext).
    pub tls: Option<TlsSettings>,
    /// Where to serve Prometheus metrics while a run lasts (`None`: nowhere).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the configuration came from: the file's path or [`DEFAULT_SOURCE`].
    pub source: String,
    /// Keys of the seed's layout that were accepted but mean nothing here, one line each, for
    /// the caller to log.
    pub notes: Vec<String>,
}

impl Config {
    /// Reads and checks the file at `path`, expanding `${VAR}` from the process's environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, &env::process_env)
    }

    /// Reads and checks the file at `path`, expanding `${VAR}` from `env`.
    pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            file: file.clone(),
            cause,
        })?;
        Self::from_yaml_with_env(&file, &text, env)
    }

    /// Checks the YAML `text` (named `source_name` in errors) with the process's environment.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with_env(source_name, text, &env::process_env)
    }

    /// Checks the YAML `text` (named `source_name` in errors), expanding `${VAR}` and reading the
    /// `HEIST_SECRET_<NAME>` and `HEIST_LLM_API_KEY` overrides from `env`.
    pub fn from_yaml_with_env(
        source_name: &str,
        text: &str,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        if is_blank(text) {
            return Err(ConfigError::Empty {
                file: source_name.to_owned(),
            });
        }
        let raw: raw::RawConfig =
            serde_norway::from_str(text).map_err(|error| yaml_error(source_name, &error))?;
        let fields = fields::Fields::new(source_name, env);
        let mut notes = Vec::new();
        let services = services::build_services(&fields, &raw, &mut notes)?;
        let agents = agents::build_agents(
            &fields,
            &raw.agents,
            &services.tool_services,
            &services.oauth.client_id,
        )?;
        let llm = llm_settings::build_llm(&fields, &raw.llm, &mut notes)?;
        let session = session::build_session(&fields, &raw.session, &agents)?;
        let timeouts = session::build_timeouts(&fields, &raw.timeouts)?;
        let resilience = session::build_resilience(&fields, &raw.resilience)?;
        let tls = tls::build_tls(&fields, raw.tls.as_ref(), services.entries())?;
        let metrics_listen = match raw
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.listen.as_deref())
        {
            Some(text) => {
                let text = fields.required_text("metrics.listen", text)?;
                Some(text.parse().map_err(|_| {
                    fields.invalid(
                        "metrics.listen",
                        format!(
                            "`{text}` is not HOST:PORT with an IP address, e.g. 127.0.0.1:9464"
                        ),
                    )
                })?)
            }
            None => None,
        };
        Ok(Self {
            agents,
            oauth: services.oauth,
            tool_services: services.tool_services,
            llm,
            memory: services.memory,
            audit: services.audit,
            session,
            timeouts,
            resilience,
            tls,
            metrics_listen,
            source: fields.file().to_owned(),
            notes,
        })
    }

    /// The built-in configuration ([`DEFAULT_CONFIG_YAML`]) with the `HEIST_SECRET_<NAME>` and
    /// `HEIST_LLM_API_KEY` overrides from the process's environment.
    ///
    /// # Panics
    ///
    /// Never in a released build: the built-in file holds no `${VAR}`, an override can only
    /// set a non-empty secret, and the file's validity is checked by this module's tests.
    pub fn default_config() -> Self {
        match Self::from_yaml_with_env(DEFAULT_SOURCE, DEFAULT_CONFIG_YAML, &env::process_env) {
            Ok(config) => config,
            Err(error) => unreachable!("the built-in heist.yaml is invalid: {error}"),
        }
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|agent| agent.name == name)
    }

    /// Applies the command line's LLM flags: `--llm-url` (switches to the OpenAI-compatible
    /// backend), `--model`, `--offline` (wins over the URL) and `--tool-calls`
    /// (`inline` or `native`). Errors name the flag.
    pub fn apply_llm_overrides(
        &mut self,
        llm_url: Option<String>,
        model: Option<String>,
        offline: bool,
        tool_calls: Option<&str>,
    ) -> Result<(), ConfigError> {
        llm_settings::apply_overrides(
            &mut self.llm,
            llm_url.as_deref(),
            model.as_deref(),
            offline,
            tool_calls,
        )
    }
}

/// Whether `text` holds nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---"
    })
}

/// A parser error with its location moved to the front and a hint for the common mistakes.
fn yaml_error(file: &str, error: &serde_norway::Error) -> ConfigError {
    let location = error.location();
    let line = location.as_ref().map(serde_norway::Location::line);
    let column = location.as_ref().map(serde_norway::Location::column);
    let mut message = error.to_string();
    if let (Some(line), Some(column)) = (line, column) {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    if message.contains("unknown field") {
        message.push_str("; fix the key's spelling or remove it");
    } else if message.contains("missing field") {
        message.push_str("; add it");
    }
    ConfigError::Yaml {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}
