//! The `agents` list: [`AgentConfig`], the tool names an agent may use, and the checks that
//! agent names are usable and unique and that every tool has a service.

use std::collections::{BTreeMap, HashMap};

use super::{ConfigError, Endpoints, Secret, fields::Fields, raw::RawAgent};

/// The tools a config may name (the Tool service hosts these).
pub const KNOWN_TOOLS: [&str; 3] = ["calculator", "file_reader", "database_query"];

/// One agent, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Its name, also its OAuth client ID, e.g. `planner`.
    pub name: String,
    /// Its role, e.g. `Strategic Heist Planner`.
    pub role: String,
    /// The tools it may call, by name (`file_reader`, never `file_reader:use`), each with an
    /// entry in `tool_services`.
    pub tools: Vec<String>,
    /// The scopes it asks OAuth for, e.g. `file_reader:use`.
    pub oauth_scopes: Vec<String>,
    /// Its system prompt.
    pub system_prompt: String,
    /// Whether it secretly works against the crew.
    pub is_saboteur: bool,
    /// Its OAuth client secret (`HEIST_SECRET_<NAME>`, else the file, else `<name>-dev-secret`).
    pub client_secret: Secret,
}

/// Checks the agents: each complete, named uniquely (and not like the orchestrator's own
/// client), with known tools that `tool_services` hosts.
pub(super) fn build_agents(
    fields: &Fields<'_>,
    raw: &[RawAgent],
    tool_services: &BTreeMap<String, Endpoints>,
    orchestrator_client_id: &str,
) -> Result<Vec<AgentConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(fields.invalid(
            "agents",
            "is empty; define at least two agents (name, role, system_prompt)",
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut agents = Vec::with_capacity(raw.len());
    for (index, agent) in raw.iter().enumerate() {
        let path = format!("agents[{index}]");
        let name_field = format!("{path}.name");
        let name = fields.client_name(&name_field, &agent.name)?;
        if let Some(first) = seen.insert(name.clone(), index) {
            return Err(fields.invalid(
                name_field,
                format!("'{name}' is already the name of agents[{first}]; agent names must be unique, rename one"),
            ));
        }
        if name == orchestrator_client_id {
            return Err(fields.invalid(
                name_field,
                format!(
                    "'{name}' is the orchestrator's own OAuth client ID; rename the agent \
                     or set oauth_service.client_id to something else"
                ),
            ));
        }
        let tools = agent_tools(fields, &path, &agent.tools, tool_services)?;
        let oauth_scopes = fields.texts(&format!("{path}.oauth_scopes"), &agent.oauth_scopes)?;
        check_scopes(fields, &path, &oauth_scopes)?;
        agents.push(AgentConfig {
            role: fields.required_text(&format!("{path}.role"), &agent.role)?,
            system_prompt: fields
                .required_text(&format!("{path}.system_prompt"), &agent.system_prompt)?,
            client_secret: fields.secret(
                &format!("{path}.client_secret"),
                &secret_variable(&name),
                agent.client_secret.as_deref(),
                &format!("{name}-dev-secret"),
            )?,
            name,
            tools,
            oauth_scopes,
            is_saboteur: agent.is_saboteur,
        });
    }
    Ok(agents)
}

/// The environment variable that overrides the secret of client `name`:
/// `HEIST_SECRET_<NAME>`, uppercased, `-` as `_`.
pub(super) fn secret_variable(name: &str) -> String {
    format!(
        "HEIST_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Checks that `name` is a known tool and gives its name (the seed writes `file_reader:use`).
pub(super) fn tool_name(
    fields: &Fields<'_>,
    field: &str,
    written: &str,
) -> Result<String, ConfigError> {
    let name = match written.split_once(':') {
        None => written,
        Some((name, "use")) => name,
        Some((name, _)) => {
            return Err(fields.invalid(
                field,
                format!("'{written}' is not a tool; write the tool's name ({name}) or its scope {name}:use"),
            ));
        }
    };
    if !KNOWN_TOOLS.contains(&name) {
        return Err(fields.invalid(
            field,
            format!(
                "'{name}' is not a known tool; known tools: {}",
                KNOWN_TOOLS.join(", ")
            ),
        ));
    }
    Ok(name.to_owned())
}

/// An agent's tools by name, each hosted by a `tool_services` entry, without repeats.
fn agent_tools(
    fields: &Fields<'_>,
    path: &str,
    written: &[String],
    tool_services: &BTreeMap<String, Endpoints>,
) -> Result<Vec<String>, ConfigError> {
    let mut tools: Vec<String> = Vec::with_capacity(written.len());
    for (index, text) in fields
        .texts(&format!("{path}.tools"), written)?
        .iter()
        .enumerate()
    {
        let field = format!("{path}.tools[{index}]");
        let tool = tool_name(fields, &field, text)?;
        if !tool_services.contains_key(&tool) {
            return Err(fields.invalid(
                field,
                format!(
                    "'{tool}' has no entry under tool_services; add tool_services.{tool} \
                     with host and port (or base_url), or remove the tool"
                ),
            ));
        }
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    Ok(tools)
}

/// Scopes travel space-separated in a token request: none may hold a space.
fn check_scopes(fields: &Fields<'_>, path: &str, scopes: &[String]) -> Result<(), ConfigError> {
    match scopes
        .iter()
        .position(|scope| scope.contains(char::is_whitespace))
    {
        Some(index) => Err(fields.invalid(
            format!("{path}.oauth_scopes[{index}]"),
            format!(
                "'{}' holds a space; list each scope as its own item",
                scopes[index]
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn agent(name: &str, tools: &[&str]) -> RawAgent {
        RawAgent {
            name: name.to_owned(),
            role: "Role".to_owned(),
            tools: tools.iter().map(|tool| (*tool).to_owned()).collect(),
            oauth_scopes: vec![],
            system_prompt: "Prompt.\n".to_owned(),
            is_saboteur: false,
            client_secret: None,
        }
    }

    fn services(names: &[&str]) -> BTreeMap<String, Endpoints> {
        names
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    crate::config::Endpoint::parse("http://127.0.0.1:8002")
                        .unwrap()
                        .into(),
                )
            })
            .collect()
    }

    fn build(raw: &[RawAgent], tools: &[&str]) -> Result<Vec<AgentConfig>, ConfigError> {
        build_agents(
            &Fields::new("t.yaml", &no_env),
            raw,
            &services(tools),
            "orchestrator",
        )
    }

    #[test]
    fn scope_like_tool_names_are_normalised_and_repeats_dropped() {
        let agents = build(
            &[agent(
                "hacker",
                &["file_reader:use", "file_reader", "calculator"],
            )],
            &["file_reader", "calculator"],
        )
        .unwrap();
        assert_eq!(agents[0].tools, ["file_reader", "calculator"]);
        assert_eq!(agents[0].system_prompt, "Prompt.");
        assert_eq!(agents[0].client_secret.expose(), "hacker-dev-secret");
    }

    #[test]
    fn an_unknown_tool_is_refused_listing_the_known_ones() {
        let error = build(&[agent("hacker", &["lockpick"])], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "t.yaml: agents[0].tools[0]: 'lockpick' is not a known tool; \
             known tools: calculator, file_reader, database_query"
        );
        let error = build(&[agent("hacker", &["calculator:admin"])], &["calculator"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("write the tool's name (calculator)"),
            "{error}"
        );
    }

    #[test]
    fn a_tool_without_a_service_is_refused_naming_the_missing_entry() {
        let error = build(&[agent("mole", &["database_query:use"])], &["calculator"])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "t.yaml: agents[0].tools[0]: 'database_query' has no entry under tool_services"
            ),
            "{error}"
        );
        assert!(
            error.contains("add tool_services.database_query"),
            "{error}"
        );
    }

    #[test]
    fn a_duplicate_agent_name_is_refused_naming_both_entries() {
        let error = build(
            &[
                agent("planner", &[]),
                agent("hacker", &[]),
                agent("planner", &[]),
            ],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "t.yaml: agents[2].name: 'planner' is already the name of agents[0]; \
             agent names must be unique, rename one"
        );
    }

    #[test]
    fn an_agent_may_not_take_the_orchestrators_client_id() {
        let error = build(&[agent("orchestrator", &[])], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("orchestrator's own OAuth client ID"),
            "{error}"
        );
    }

    #[test]
    fn no_agents_and_blank_fields_are_refused() {
        let error = build(&[], &[]).unwrap_err().to_string();
        assert!(error.starts_with("t.yaml: agents: is empty"), "{error}");
        let mut blank = agent("planner", &[]);
        blank.role = " ".to_owned();
        let error = build(&[blank], &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("t.yaml: agents[0].role: is empty"),
            "{error}"
        );
    }

    #[test]
    fn a_scope_with_a_space_is_refused() {
        let mut spaced = agent("planner", &[]);
        spaced.oauth_scopes = vec!["a:use b:use".to_owned()];
        let error = build(&[spaced], &[]).unwrap_err().to_string();
        assert!(error.contains("agents[0].oauth_scopes[0]"), "{error}");
    }

    #[test]
    fn the_secret_variable_is_the_uppercased_name() {
        assert_eq!(secret_variable("safe-cracker"), "HEIST_SECRET_SAFE_CRACKER");
        assert_eq!(secret_variable("mole"), "HEIST_SECRET_MOLE");
    }
}
