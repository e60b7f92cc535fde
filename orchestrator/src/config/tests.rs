//! Whole-file tests: the seed's layout, the built-in default, and each bad config's message.

use std::{path::Path, time::Duration};

use super::*;
use crate::llm::ToolCallMode;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_with_env("heist.yaml", text, &no_env)
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn yaml_line(text: &str) -> Option<usize> {
    match parse(text) {
        Err(ConfigError::Yaml { line, .. }) => line,
        other => panic!("not a YAML error: {other:?}"),
    }
}

/// Two agents and nothing else: every other section takes its default.
const MINIMAL: &str = "\
agents:
  - name: planner
    role: Planner
    system_prompt: Plan.
  - name: hacker
    role: Hacker
    system_prompt: Hack.
";

fn seed_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_agents_config.yaml")
}

#[test]
fn the_seeds_layout_loads_as_is() {
    let config = Config::load_with_env(&seed_fixture(), &no_env).unwrap();
    let names: Vec<&str> = config
        .agents
        .iter()
        .map(|agent| agent.name.as_str())
        .collect();
    assert_eq!(names, ["planner", "hacker", "safecracker", "mole"]);
    let hacker = config.agent("hacker").unwrap();
    assert_eq!(hacker.role, "Technical Security Expert");
    assert_eq!(hacker.tools, ["file_reader"]);
    assert_eq!(hacker.oauth_scopes, ["simulation:read", "file_reader:use"]);
    assert!(
        hacker
            .system_prompt
            .starts_with("You are a technical security expert")
    );
    assert_eq!(config.agent("mole").unwrap().tools, ["database_query"]);
    assert_eq!(config.oauth.endpoint.to_string(), "http://localhost:8001");
    assert_eq!(
        config.tool_services["calculator"].to_string(),
        "http://localhost:8002"
    );
    assert_eq!(
        config.tool_services["file_reader"].to_string(),
        "http://localhost:8003"
    );
    assert_eq!(
        config.tool_services["database_query"].to_string(),
        "http://localhost:8004"
    );
    assert_eq!(config.memory.to_string(), "http://localhost:8005");
    assert_eq!(config.audit.to_string(), DEFAULT_AUDIT_URL);
    assert_eq!(config.llm.backend_kind(), LlmBackendKind::OpenAi);
    assert_eq!(
        config.llm.base_url.as_deref(),
        Some("http://localhost:1234/v1")
    );
    assert_eq!(config.llm.model, "google/gemma-3n-e4b");
    assert_eq!(config.session.max_turns, 20);
    assert!(config.source.ends_with("seed_agents_config.yaml"));
}

#[test]
fn the_seeds_ignored_keys_are_noted() {
    let config = Config::load_with_env(&seed_fixture(), &no_env).unwrap();
    let notes = config.notes.join("\n");
    assert!(
        notes.contains("tool_services.*.endpoint is ignored"),
        "{notes}"
    );
    assert!(
        notes.contains("memory_service.compression_threshold is ignored"),
        "{notes}"
    );
    assert!(
        notes.contains("database is ignored: the Audit service owns the database"),
        "{notes}"
    );
}

#[test]
fn the_default_config_loads_with_the_seeds_four_agents_offline() {
    let config = Config::default_config();
    assert_eq!(config.source, DEFAULT_SOURCE);
    let names: Vec<&str> = config
        .agents
        .iter()
        .map(|agent| agent.name.as_str())
        .collect();
    assert_eq!(names, ["planner", "hacker", "safecracker", "mole"]);
    assert_eq!(config.session.turn_order, names);
    assert_eq!(config.llm.backend_kind(), LlmBackendKind::Offline);
    assert_eq!(config.llm.base_url, None);
    assert_eq!(config.oauth.endpoint.to_string(), DEFAULT_OAUTH_URL);
    assert_eq!(config.oauth.client_id, DEFAULT_CLIENT_ID);
    assert_eq!(config.memory.to_string(), DEFAULT_MEMORY_URL);
    assert_eq!(config.audit.to_string(), DEFAULT_AUDIT_URL);
    assert_eq!(config.tool_services.len(), KNOWN_TOOLS.len());
    assert!(config.notes.is_empty(), "{:?}", config.notes);
}

#[test]
fn the_default_config_holds_the_seeds_prompts_verbatim() {
    let config = Config::from_yaml_with_env(DEFAULT_SOURCE, DEFAULT_CONFIG_YAML, &no_env).unwrap();
    let seed = Config::load_with_env(&seed_fixture(), &no_env).unwrap();
    for (ours, theirs) in config.agents.iter().zip(&seed.agents) {
        assert_eq!(ours.system_prompt, theirs.system_prompt, "{}", ours.name);
        assert_eq!(ours.role, theirs.role);
        assert_eq!(ours.tools, theirs.tools);
        assert_eq!(ours.oauth_scopes, theirs.oauth_scopes);
    }
    assert!(
        config.agents[0]
            .system_prompt
            .ends_with("You rely on information from your team specialists.")
    );
}

#[test]
fn a_minimal_config_takes_every_default() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.oauth.endpoint.to_string(), DEFAULT_OAUTH_URL);
    assert_eq!(
        config.oauth.client_secret.expose(),
        "orchestrator-dev-secret"
    );
    assert_eq!(config.agents[1].client_secret.expose(), "hacker-dev-secret");
    assert!(config.tool_services.is_empty());
    assert_eq!(config.llm.tool_calls, ToolCallMode::Inline);
    assert_eq!(config.session.turn_order, ["planner", "hacker"]);
    assert!(config.session.warmup);
    assert_eq!(config.session.context_messages, 5);
    assert_eq!(config.session.seed, None);
    assert_eq!(config.timeouts.health, Duration::from_secs(2));
}

#[test]
fn extensions_are_read() {
    let text = format!(
        "{MINIMAL}\
oauth_service: {{ host: auth.local, port: 9001, client_id: conductor, client_secret: s3cret }}
audit_service: {{ base_url: 'http://10.0.0.2:9006' }}
llm: {{ backend: openai, base_url: 'http://localhost:11434/v1', tool_calls: native, timeout: 30s, retries: 0 }}
session: {{ max_turns: 7, warmup: false, seed: 42, context_messages: 2, memory_recent_count: 4, memory_max_chars: 300 }}
timeouts: {{ oauth: 500ms, tools: 1m }}
"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.oauth.endpoint.to_string(), "http://auth.local:9001");
    assert_eq!(config.oauth.client_id, "conductor");
    assert_eq!(config.oauth.client_secret.expose(), "s3cret");
    assert_eq!(config.audit.to_string(), "http://10.0.0.2:9006");
    assert_eq!(config.llm.backend, LlmBackend::OpenAi);
    assert_eq!(config.llm.tool_calls, ToolCallMode::Native);
    assert_eq!(config.llm.timeout, Duration::from_secs(30));
    assert_eq!(config.llm.retries, 0);
    assert_eq!(config.session.max_turns, 7);
    assert!(!config.session.warmup);
    assert_eq!(config.session.seed, Some(42));
    assert_eq!(config.session.context_messages, 2);
    assert_eq!(config.session.memory_recent_count, 4);
    assert_eq!(config.session.memory_max_chars, 300);
    assert_eq!(config.timeouts.oauth, Duration::from_millis(500));
    assert_eq!(config.timeouts.tools, Duration::from_secs(60));
}

#[test]
fn environment_variables_are_expanded_in_string_values() {
    let env = |name: &str| match name {
        "OAUTH_HOST" => Some("vault.local".to_owned()),
        "HACKER_SECRET" => Some("h4x".to_owned()),
        _ => None,
    };
    let text = MINIMAL.replace(
        "system_prompt: Hack.",
        "system_prompt: Hack.\n    client_secret: ${HACKER_SECRET}",
    ) + "oauth_service: { base_url: 'http://${OAUTH_HOST}:8001' }\n\
           timeouts: { audit: '${AUDIT_TIMEOUT:-7s}' }\n";
    let config = Config::from_yaml_with_env("heist.yaml", &text, &env).unwrap();
    assert_eq!(config.oauth.endpoint.to_string(), "http://vault.local:8001");
    assert_eq!(config.agents[1].client_secret.expose(), "h4x");
    assert_eq!(config.timeouts.audit, Duration::from_secs(7));
}

#[test]
fn an_unset_variable_without_default_names_the_field_and_the_variable() {
    let text = format!("{MINIMAL}llm: {{ api_key: '${{OPENAI_KEY}}' }}\n");
    assert_eq!(
        error_of(&text),
        "heist.yaml: llm.api_key: environment variable OPENAI_KEY is not set; \
         set it or give a default with ${OPENAI_KEY:-default}"
    );
}

#[test]
fn heist_variables_override_secrets_and_the_api_key() {
    let env = |name: &str| match name {
        "HEIST_SECRET_PLANNER" => Some("planner-prod".to_owned()),
        "HEIST_SECRET_ORCHESTRATOR" => Some("orchestrator-prod".to_owned()),
        "HEIST_LLM_API_KEY" => Some("sk-live".to_owned()),
        _ => None,
    };
    let text = format!("{MINIMAL}llm: {{ api_key: not-needed }}\n");
    let config = Config::from_yaml_with_env("heist.yaml", &text, &env).unwrap();
    assert_eq!(config.agents[0].client_secret.expose(), "planner-prod");
    assert_eq!(config.agents[1].client_secret.expose(), "hacker-dev-secret");
    assert_eq!(config.oauth.client_secret.expose(), "orchestrator-prod");
    assert_eq!(
        config.llm.api_key.as_ref().map(Secret::expose),
        Some("sk-live")
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = MINIMAL.replace(
        "system_prompt: Plan.",
        "system_prompt: Plan.\n    client_secret: planner-top-secret",
    ) + "oauth_service: { client_secret: orchestrator-top-secret }\nllm: { api_key: sk-top-secret }\n";
    let config = parse(&text).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("top-secret"), "{debug}");
    assert!(!debug.contains("dev-secret"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn host_port_and_base_url_must_agree() {
    let agreeing = format!(
        "{MINIMAL}memory_service: {{ host: localhost, port: 8005, base_url: 'http://localhost:8005' }}\n"
    );
    assert_eq!(
        parse(&agreeing).unwrap().memory.to_string(),
        "http://localhost:8005"
    );
    let disagreeing = format!(
        "{MINIMAL}memory_service: {{ host: localhost, port: 8006, base_url: 'http://localhost:8005' }}\n"
    );
    assert_eq!(
        error_of(&disagreeing),
        "heist.yaml: memory_service: base_url `http://localhost:8005` disagrees with port `8006`; \
         keep one of them or make them match"
    );
}

#[test]
fn a_service_section_without_address_keys_takes_the_default_address() {
    let text = format!("{MINIMAL}oauth_service: {{ client_id: conductor }}\naudit_service: {{}}\n");
    let config = parse(&text).unwrap();
    assert_eq!(config.oauth.endpoint.to_string(), DEFAULT_OAUTH_URL);
    assert_eq!(config.oauth.client_id, "conductor");
    assert_eq!(config.oauth.client_secret.expose(), "conductor-dev-secret");
    assert_eq!(config.audit.to_string(), DEFAULT_AUDIT_URL);
}

#[test]
fn a_tls_section_names_the_ca_and_the_certificate_shown() {
    let text = format!(
        "{MINIMAL}audit_service: {{ base_url: 'https://127.0.0.1:8006' }}\n\
         tls: {{ ca: certs/ca.pem, cert: certs/orchestrator.pem, key: certs/orchestrator-key.pem, reload: 5s }}\n"
    );
    let config = parse(&text).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.ca, std::path::PathBuf::from("certs/ca.pem"));
    assert_eq!(
        tls.identity,
        Some((
            "certs/orchestrator.pem".into(),
            "certs/orchestrator-key.pem".into()
        ))
    );
    assert_eq!(tls.reload, std::time::Duration::from_secs(5));
    assert_eq!(config.audit.to_string(), "https://127.0.0.1:8006");
    assert_eq!(parse(MINIMAL).unwrap().tls, None);
}

#[test]
fn the_metrics_section_names_an_address_and_refuses_anything_else() {
    let config = parse(&format!(
        "{MINIMAL}metrics: {{ listen: '127.0.0.1:9464' }}\n"
    ))
    .unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(parse(MINIMAL).unwrap().metrics_listen, None);
    for (section, expected) in [
        (
            "metrics: { listen: 'localhost' }",
            "metrics.listen: `localhost` is not HOST:PORT",
        ),
        ("metrics: { listen: '' }", "metrics.listen"),
        ("metrics: { port: 9464 }", "unknown field `port`"),
    ] {
        let error = error_of(&format!("{MINIMAL}{section}\n"));
        assert!(error.contains(expected), "{expected}\n{error}");
    }
}

#[test]
fn a_bad_tls_section_is_refused_naming_the_field() {
    let cases = [
        ("tls: { cert: a.pem, key: b.pem }", "missing field `ca`"),
        ("tls: { ca: '' }", "tls.ca"),
        (
            "tls: { ca: ca.pem, cert: a.pem }",
            "tls.key: tls.cert needs its key",
        ),
        (
            "tls: { ca: ca.pem, key: b.pem }",
            "tls.cert: tls.key needs its certificate",
        ),
        ("tls: { ca: ca.pem, reload: 0s }", "tls.reload"),
        ("tls: { ca: ca.pem, crt: a.pem }", "unknown field `crt`"),
        (
            "tool_services: { calculator: { base_url: 'https://127.0.0.1:8002' } }",
            "tool_services.calculator: https://127.0.0.1:8002 is https, but there is no tls section",
        ),
    ];
    for (section, expected) in cases {
        let error = error_of(&format!("{MINIMAL}{section}\n"));
        assert!(error.contains(expected), "{expected}\n{error}");
    }
}

#[test]
fn invalid_endpoints_are_refused_naming_the_section() {
    let cases = [
        (
            "oauth_service: { base_url: 'localhost:8001' }",
            "oauth_service: `localhost:8001` is not a URL",
        ),
        (
            "audit_service: { base_url: 'https://127.0.0.1:8006' }",
            "audit_service: https://127.0.0.1:8006 is https, but there is no tls section",
        ),
        (
            "memory_service: { host: localhost, port: 0 }",
            "memory_service: `http://localhost:0` has port 0",
        ),
        (
            "memory_service: { host: localhost }",
            "memory_service: give both host and port",
        ),
        (
            "tool_services: { calculator: {} }",
            "tool_services.calculator: no address",
        ),
        (
            "tool_services: { calculator: { port: 8002 } }",
            "tool_services.calculator: give both host and port",
        ),
    ];
    for (section, expected) in cases {
        let error = error_of(&format!("{MINIMAL}{section}\n"));
        assert!(error.contains(expected), "{expected}\n{error}");
    }
}

#[test]
fn an_unknown_key_is_located_and_the_expected_keys_listed() {
    let text = MINIMAL.replace(
        "    role: Hacker\n",
        "    role: Hacker\n    tols: [calculator]\n",
    );
    let error = error_of(&text);
    assert!(
        error.starts_with("heist.yaml: line 7, column 5: agents[1]: unknown field `tols`"),
        "{error}"
    );
    assert!(
        error.contains("expected one of `name`, `role`, `tools`"),
        "{error}"
    );
    assert!(
        error.ends_with("fix the key's spelling or remove it"),
        "{error}"
    );
    assert!(!error.contains(" at line "), "{error}");
}

#[test]
fn unknown_keys_are_refused_in_every_section() {
    let cases = [
        ("colour: red", 8, "unknown field `colour`"),
        (
            "oauth_service: { hots: x }",
            8,
            "oauth_service: unknown field `hots`",
        ),
        (
            "audit_service: { compression_threshold: 3 }",
            8,
            "unknown field `compression_threshold`",
        ),
        (
            "tool_services: { calculator: { host: h, port: 1, path: /x } }",
            8,
            "unknown field `path`",
        ),
        (
            "llm: { temprature: 1 }",
            8,
            "llm: unknown field `temprature`",
        ),
        ("session: { turns: 3 }", 8, "session: unknown field `turns`"),
        ("timeouts: { db: 1s }", 8, "timeouts: unknown field `db`"),
    ];
    for (section, line, expected) in cases {
        let text = format!("{MINIMAL}{section}\n");
        let error = error_of(&text);
        assert!(error.contains(expected), "{expected}\n{error}");
        assert_eq!(yaml_line(&text), Some(line), "{error}");
    }
}

#[test]
fn an_agent_without_a_required_field_is_refused() {
    for field in ["name", "role", "system_prompt"] {
        let text = MINIMAL
            .replace(&format!("    {field}: Hack.\n"), "")
            .replace(
                match field {
                    "name" => "  - name: hacker\n    role: Hacker\n",
                    "role" => "    role: Hacker\n",
                    _ => "    system_prompt: Hack.\n",
                },
                match field {
                    "name" => "  - role: Hacker\n",
                    _ => "",
                },
            );
        let error = error_of(&text);
        assert!(
            error.contains(&format!("agents[1]: missing field `{field}`; add it")),
            "{field}\n{error}"
        );
        assert!(yaml_line(&text).is_some(), "{error}");
    }
}

#[test]
fn a_wrong_type_is_located() {
    let text = format!("{MINIMAL}session: {{ max_turns: many }}\n");
    let error = error_of(&text);
    assert!(
        error.starts_with("heist.yaml: line 8, column 23: "),
        "{error}"
    );
    assert!(
        error.contains("session.max_turns: invalid type: string \"many\""),
        "{error}"
    );
    let text = format!("{MINIMAL}oauth_service: {{ port: 70000 }}\n");
    assert!(error_of(&text).contains("oauth_service.port: invalid value: integer `70000`"));
    let text = MINIMAL.replace("role: Hacker", "role: Hacker\n    tools: calculator");
    assert_eq!(yaml_line(&text), Some(7));
}

#[test]
fn broken_yaml_is_located() {
    let text = "agents:\n  - name: planner\n   role: [unclosed\n";
    assert!(yaml_line(text).is_some(), "{}", error_of(text));
    assert!(
        error_of(text).starts_with("heist.yaml: line "),
        "{}",
        error_of(text)
    );
}

#[test]
fn a_turn_order_naming_an_undefined_agent_is_refused() {
    let text = format!("{MINIMAL}session: {{ turn_order: [planner, ghost] }}\n");
    assert_eq!(
        error_of(&text),
        "heist.yaml: session.turn_order[1]: names 'ghost', which is not an agent; \
         define it under agents or remove it"
    );
}

#[test]
fn a_duplicate_agent_name_is_refused() {
    let text = MINIMAL.replace("name: hacker", "name: planner");
    assert!(error_of(&text).contains("agents[1].name: 'planner' is already the name of agents[0]"));
}

#[test]
fn a_tool_without_a_service_and_an_unknown_tool_are_refused() {
    let text = MINIMAL.replace(
        "role: Hacker",
        "role: Hacker\n    tools: ['file_reader:use']",
    );
    let error = error_of(&text);
    assert!(
        error.contains("agents[1].tools[0]: 'file_reader' has no entry under tool_services"),
        "{error}"
    );
    let text = MINIMAL.replace("role: Hacker", "role: Hacker\n    tools: [lockpick]");
    assert!(error_of(&text).contains("'lockpick' is not a known tool; known tools: calculator"));
    let text = format!("{MINIMAL}tool_services: {{ lockpick: {{ host: h, port: 1 }} }}\n");
    assert!(error_of(&text).contains("tool_services.lockpick: 'lockpick' is not a known tool"));
}

#[test]
fn one_agent_with_more_than_one_turn_is_refused() {
    let text = "agents:\n  - { name: planner, role: P, system_prompt: Plan. }\n";
    let error = error_of(text);
    assert!(
        error
            .contains("session.turn_order: only 'planner' takes turns but session.max_turns is 20"),
        "{error}"
    );
    assert!(parse(&format!("{text}session: {{ max_turns: 1 }}\n")).is_ok());
}

#[test]
fn zero_turns_are_refused() {
    let error = error_of(&format!("{MINIMAL}session: {{ max_turns: 0 }}\n"));
    assert_eq!(
        error,
        "heist.yaml: session.max_turns: 0 is out of range; use a value from 1 to 100000"
    );
}

#[test]
fn a_bad_duration_names_its_field() {
    let error = error_of(&format!("{MINIMAL}timeouts: {{ tools: 5 parsecs }}\n"));
    assert!(
        error.starts_with("heist.yaml: timeouts.tools: `5 parsecs` has unknown unit"),
        "{error}"
    );
    let text = format!("{MINIMAL}timeouts: {{ health: 3 }}\n");
    assert_eq!(
        parse(&text).unwrap().timeouts.health,
        Duration::from_secs(3)
    );
}

#[test]
fn an_empty_file_is_refused() {
    for text in ["", "\n  \n", "# only a comment\n", "---\n"] {
        let error = error_of(text);
        assert!(
            error.starts_with("heist.yaml: the config file is empty"),
            "{text:?}: {error}"
        );
    }
    let error = error_of("session: { max_turns: 3 }\n");
    assert!(error.contains("missing field `agents`"), "{error}");
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nope.yaml");
    let error = Config::load_with_env(&path, &no_env).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read the config file", path.display())),
        "{message}"
    );
}

#[test]
fn a_file_is_loaded_and_named_in_errors() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("crew.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(
        Config::load_with_env(&path, &no_env).unwrap().source,
        path.display().to_string()
    );
    std::fs::write(&path, format!("{MINIMAL}session: {{ max_turns: 0 }}\n")).unwrap();
    let message = Config::load_with_env(&path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("{}: session.max_turns", path.display())),
        "{message}"
    );
}

#[test]
fn command_line_llm_overrides_apply_to_a_loaded_config() {
    let mut config = Config::default_config();
    config
        .apply_llm_overrides(
            Some("http://localhost:1234/v1".into()),
            Some("qwen".into()),
            false,
            None,
        )
        .unwrap();
    assert_eq!(config.llm.backend_kind(), LlmBackendKind::OpenAi);
    assert_eq!(config.llm.model, "qwen");
    let error = config
        .apply_llm_overrides(None, Some(" ".into()), false, None)
        .unwrap_err();
    assert!(error.to_string().contains("--model: is empty"), "{error}");
}

#[test]
fn a_key_given_twice_is_refused() {
    let text = format!("{MINIMAL}session: {{ max_turns: 3 }}\nsession: {{ max_turns: 4 }}\n");
    let error = error_of(&text);
    assert!(error.contains("duplicate"), "{error}");
    let text = format!(
        "{MINIMAL}tool_services:\n  calculator: {{ host: a, port: 1 }}\n  calculator: {{ host: b, port: 2 }}\n"
    );
    let error = error_of(&text);
    assert!(error.contains("duplicate"), "{error}");
    assert_eq!(yaml_line(&text), Some(9), "{error}");
}

#[test]
fn an_unreadable_file_is_refused_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let error = Config::load_with_env(directory.path(), &no_env).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    let path = directory.path().join("latin1.yaml");
    std::fs::write(&path, b"agents: [\xff]\n").unwrap();
    let message = Config::load_with_env(&path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(message.contains("cannot read the config file"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn base_urls_give_every_replica_of_a_service() {
    let text = format!(
        "{MINIMAL}audit_service: {{ base_urls: ['http://10.0.0.1:8006', 'http://10.0.0.2:8006/'] }}\n\
         oauth_service: {{ base_urls: ['http://a:8001', 'http://b:8001'], base_url: 'http://b:8001', client_id: conductor }}\n\
         memory_service: {{ base_urls: ['${{MEMORY_A:-http://m1:8005}}', 'http://m2:8005'] }}\n\
         tool_services: {{ calculator: {{ base_urls: ['http://t1:8002', 'http://t2:8002'] }} }}\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.audit.to_string(),
        "http://10.0.0.1:8006, http://10.0.0.2:8006"
    );
    assert_eq!(config.oauth.endpoint.len(), 2);
    assert_eq!(config.oauth.client_id, "conductor");
    assert_eq!(config.memory.to_string(), "http://m1:8005, http://m2:8005");
    assert_eq!(
        config.tool_services["calculator"].to_string(),
        "http://t1:8002, http://t2:8002"
    );
}

#[test]
fn bad_base_urls_are_refused_naming_the_field_and_the_fix() {
    let cases = [
        (
            "audit_service: { base_urls: [] }",
            "heist.yaml: audit_service: base_urls is empty; list at least one http://HOST:PORT, \
             or give base_url instead",
        ),
        (
            "memory_service: { base_urls: ['http://m1:8005', 'm2:8005'] }",
            "heist.yaml: memory_service.base_urls[1]: `m2:8005` is not a URL; write \
             http://HOST:PORT, e.g. http://127.0.0.1:8001",
        ),
        (
            "tool_services: { calculator: { base_urls: ['http://t:1', 'http://t:0'] } }",
            "heist.yaml: tool_services.calculator.base_urls[1]: `http://t:0` has port 0; give the \
             port the service listens on",
        ),
        (
            "oauth_service: { base_urls: ['http://a:1', 'http://b:2', 'http://A:1/'] }",
            "heist.yaml: oauth_service: base_urls[2] `http://a:1` repeats base_urls[0]; give each \
             address once",
        ),
        (
            "audit_service: { base_urls: ['http://a:1', 'http://b:2'], base_url: 'http://c:3' }",
            "heist.yaml: audit_service: base_url `http://c:3` is not in base_urls; drop base_url \
             (base_urls names every address) or add it to the list",
        ),
        (
            "audit_service: { base_urls: ['http://a:1'], port: 1 }",
            "heist.yaml: audit_service: base_urls does not go with host or port; list every \
             address in base_urls and drop host and port",
        ),
        (
            "memory_service: { base_urls: ['${NOPE}'] }",
            "heist.yaml: memory_service.base_urls[0]: environment variable NOPE is not set",
        ),
    ];
    for (section, expected) in cases {
        let error = error_of(&format!("{MINIMAL}{section}\n"));
        assert!(error.starts_with(expected), "{section}:\n{error}");
    }
    let error = error_of(&format!(
        "{MINIMAL}audit_service: {{ base_urls: 'http://a:1' }}\n"
    ));
    assert!(error.contains("base_urls"), "{error}");
}
