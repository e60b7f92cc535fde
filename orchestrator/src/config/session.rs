//! The `session` and `timeouts` sections: [`SessionSettings`] (who speaks, for how long, with
//! how much context) and [`Timeouts`] (each service call's deadline).

use std::{collections::HashMap, time::Duration};

use super::{
    AgentConfig, ConfigError,
    fields::Fields,
    raw::{RawResilience, RawSession, RawTimeouts},
};

/// The most turns a session may have.
pub const MAX_TURNS_LIMIT: u64 = 100_000;

/// The conversation's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Turns before the session ends, 1 to 100 000 (default 20).
    pub max_turns: u64,
    /// The agents who take turns, each once, all defined (default: every agent in file order).
    /// The first speaks first; no agent speaks twice in a row.
    pub turn_order: Vec<String>,
    /// Conversation messages given to each agent (default 5).
    pub context_messages: usize,
    /// Memory turns returned verbatim, 1 to 100 (default 3).
    pub memory_recent_count: u32,
    /// Longest memory summary in characters, 1 to 65 536 (default 1000).
    pub memory_max_chars: u32,
    /// Whether turn 0 is the seed's framing message (default true).
    pub warmup: bool,
    /// Seed of the turn order and the offline backend (default: random per run).
    pub seed: Option<u64>,
}

/// Per-call deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Token requests (default 5 s).
    pub oauth: Duration,
    /// Tool calls (default 10 s).
    pub tools: Duration,
    /// Memory calls (default 2 s).
    pub memory: Duration,
    /// Audit calls (default 5 s).
    pub audit: Duration,
    /// Health checks (default 2 s).
    pub health: Duration,
}

/// Reads the `session` section against the defined agents.
pub(super) fn build_session(
    fields: &Fields<'_>,
    raw: &RawSession,
    agents: &[AgentConfig],
) -> Result<SessionSettings, ConfigError> {
    let max_turns = fields.in_range("session.max_turns", raw.max_turns, 20, 1..=MAX_TURNS_LIMIT)?;
    let turn_order = match &raw.turn_order {
        Some(names) => checked_turn_order(fields, names, agents)?,
        None => agents.iter().map(|agent| agent.name.clone()).collect(),
    };
    if let [only] = turn_order.as_slice()
        && max_turns > 1
    {
        return Err(fields.invalid(
            "session.turn_order",
            format!(
                "only '{only}' takes turns but session.max_turns is {max_turns}, and no agent \
                 speaks twice in a row; add a second agent or set max_turns: 1"
            ),
        ));
    }
    Ok(SessionSettings {
        max_turns,
        turn_order,
        context_messages: fields.in_range(
            "session.context_messages",
            raw.context_messages,
            5,
            0..=1000,
        )?,
        memory_recent_count: fields.in_range(
            "session.memory_recent_count",
            raw.memory_recent_count,
            3,
            1..=100,
        )?,
        memory_max_chars: fields.in_range(
            "session.memory_max_chars",
            raw.memory_max_chars,
            1000,
            1..=65_536,
        )?,
        warmup: raw.warmup.unwrap_or(true),
        seed: raw.seed,
    })
}

/// The `turn_order` as written: not empty, each name a defined agent, listed once.
fn checked_turn_order(
    fields: &Fields<'_>,
    written: &[String],
    agents: &[AgentConfig],
) -> Result<Vec<String>, ConfigError> {
    if written.is_empty() {
        return Err(fields.invalid(
            "session.turn_order",
            "is empty; list the agents who take turns, or remove it to use every agent in file order",
        ));
    }
    let names = fields.texts("session.turn_order", written)?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, name) in names.iter().enumerate() {
        let field = format!("session.turn_order[{index}]");
        if !agents.iter().any(|agent| agent.name == *name) {
            return Err(fields.invalid(
                field,
                format!(
                    "names '{name}', which is not an agent; define it under agents or remove it"
                ),
            ));
        }
        if let Some(first) = seen.insert(name, index) {
            return Err(fields.invalid(
                field,
                format!("'{name}' is already listed at session.turn_order[{first}]; list each agent once"),
            ));
        }
    }
    Ok(names)
}

/// Retries, circuit breakers and the audit spool (the `resilience` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResilienceSettings {
    /// Attempts per call, the first included (default 4).
    pub max_attempts: u32,
    /// Consecutive failures that open a service's breaker (default 5).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before one probe (default 5 s).
    pub open_for: Duration,
    /// Turns whose audit writes may wait in the spool before the
    /// conversation pauses until Audit is back (default 3).
    pub max_spooled_turns: u32,
}

/// Reads the `resilience` section.
pub(super) fn build_resilience(
    fields: &Fields<'_>,
    raw: &RawResilience,
) -> Result<ResilienceSettings, ConfigError> {
    let max_attempts = raw.max_attempts.unwrap_or(4);
    if !(1..=10).contains(&max_attempts) {
        return Err(fields.invalid(
            "resilience.max_attempts",
            format!("{max_attempts} is out of range; use 1 (no retry) to 10"),
        ));
    }
    let failure_threshold = raw.failure_threshold.unwrap_or(5);
    if failure_threshold == 0 {
        return Err(fields.invalid(
            "resilience.failure_threshold",
            "must be at least 1".to_owned(),
        ));
    }
    let open_for = fields.duration(
        "resilience.open_for",
        raw.open_for.as_deref(),
        Duration::from_secs(5),
    )?;
    if open_for.is_zero() || open_for > Duration::from_secs(86_400) {
        return Err(fields.invalid(
            "resilience.open_for",
            "must be more than 0 and at most 24h".to_owned(),
        ));
    }
    Ok(ResilienceSettings {
        max_attempts,
        failure_threshold,
        open_for,
        max_spooled_turns: raw.max_spooled_turns.unwrap_or(3),
    })
}

/// Reads the `timeouts` section.
pub(super) fn build_timeouts(
    fields: &Fields<'_>,
    raw: &RawTimeouts,
) -> Result<Timeouts, ConfigError> {
    let deadline = |field: &str, value: &Option<String>, seconds: u64| {
        fields.duration(field, value.as_deref(), Duration::from_secs(seconds))
    };
    Ok(Timeouts {
        oauth: deadline("timeouts.oauth", &raw.oauth, 5)?,
        tools: deadline("timeouts.tools", &raw.tools, 10)?,
        memory: deadline("timeouts.memory", &raw.memory, 2)?,
        audit: deadline("timeouts.audit", &raw.audit, 5)?,
        health: deadline("timeouts.health", &raw.health, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn agents(names: &[&str]) -> Vec<AgentConfig> {
        names
            .iter()
            .map(|name| AgentConfig {
                name: (*name).to_owned(),
                role: "Role".to_owned(),
                tools: vec![],
                oauth_scopes: vec![],
                system_prompt: "Prompt".to_owned(),
                is_saboteur: false,
                client_secret: Secret::new("s"),
            })
            .collect()
    }

    fn session(raw: &RawSession, names: &[&str]) -> Result<SessionSettings, ConfigError> {
        build_session(&Fields::new("t.yaml", &|_| None), raw, &agents(names))
    }

    fn order(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|name| (*name).to_owned()).collect())
    }

    #[test]
    fn defaults_take_every_agent_in_file_order() {
        let settings = session(&RawSession::default(), &["planner", "hacker"]).unwrap();
        assert_eq!(
            settings,
            SessionSettings {
                max_turns: 20,
                turn_order: vec!["planner".into(), "hacker".into()],
                context_messages: 5,
                memory_recent_count: 3,
                memory_max_chars: 1000,
                warmup: true,
                seed: None,
            }
        );
    }

    #[test]
    fn a_turn_order_naming_an_undefined_agent_is_refused() {
        let raw = RawSession {
            turn_order: order(&["planner", "hacker", "ghost"]),
            ..RawSession::default()
        };
        let error = session(&raw, &["planner", "hacker"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "t.yaml: session.turn_order[2]: names 'ghost', which is not an agent; \
             define it under agents or remove it"
        );
    }

    #[test]
    fn a_turn_order_listing_an_agent_twice_is_refused() {
        let raw = RawSession {
            turn_order: order(&["planner", "hacker", "planner"]),
            ..RawSession::default()
        };
        let error = session(&raw, &["planner", "hacker"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "session.turn_order[2]: 'planner' is already listed at session.turn_order[0]"
            ),
            "{error}"
        );
    }

    #[test]
    fn an_empty_turn_order_is_refused() {
        let raw = RawSession {
            turn_order: order(&[]),
            ..RawSession::default()
        };
        let error = session(&raw, &["planner", "hacker"])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("t.yaml: session.turn_order: is empty"),
            "{error}"
        );
    }

    #[test]
    fn one_agent_may_take_a_single_turn_but_not_more() {
        let single = RawSession {
            max_turns: Some(1),
            ..RawSession::default()
        };
        assert!(session(&single, &["planner"]).is_ok());
        let error = session(&RawSession::default(), &["planner"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("only 'planner' takes turns but session.max_turns is 20"),
            "{error}"
        );
        let raw = RawSession {
            turn_order: order(&["planner"]),
            ..RawSession::default()
        };
        assert!(session(&raw, &["planner", "hacker"]).is_err());
    }

    #[test]
    fn max_turns_must_lie_between_one_and_the_limit() {
        for turns in [0, 100_001] {
            let raw = RawSession {
                max_turns: Some(turns),
                ..RawSession::default()
            };
            let error = session(&raw, &["a", "b"]).unwrap_err().to_string();
            assert!(
                error.contains(&format!("session.max_turns: {turns} is out of range")),
                "{error}"
            );
        }
    }

    #[test]
    fn memory_limits_follow_the_memory_service() {
        let raw = RawSession {
            memory_recent_count: Some(0),
            ..RawSession::default()
        };
        assert!(
            session(&raw, &["a", "b"])
                .unwrap_err()
                .to_string()
                .contains("memory_recent_count")
        );
        let raw = RawSession {
            memory_max_chars: Some(70_000),
            ..RawSession::default()
        };
        assert!(
            session(&raw, &["a", "b"])
                .unwrap_err()
                .to_string()
                .contains("memory_max_chars")
        );
    }

    #[test]
    fn timeouts_default_and_parse_durations() {
        let fields = Fields::new("t.yaml", &|_| None);
        let timeouts = build_timeouts(&fields, &RawTimeouts::default()).unwrap();
        assert_eq!(timeouts.oauth, Duration::from_secs(5));
        assert_eq!(timeouts.tools, Duration::from_secs(10));
        assert_eq!(timeouts.memory, Duration::from_secs(2));
        assert_eq!(timeouts.audit, Duration::from_secs(5));
        assert_eq!(timeouts.health, Duration::from_secs(2));
        let raw = RawTimeouts {
            memory: Some("500ms".into()),
            tools: Some("2m".into()),
            ..RawTimeouts::default()
        };
        let timeouts = build_timeouts(&fields, &raw).unwrap();
        assert_eq!(timeouts.memory, Duration::from_millis(500));
        assert_eq!(timeouts.tools, Duration::from_secs(120));
        let raw = RawTimeouts {
            audit: Some("later".into()),
            ..RawTimeouts::default()
        };
        let error = build_timeouts(&fields, &raw).unwrap_err().to_string();
        assert!(
            error.starts_with("t.yaml: timeouts.audit: `later` is not a duration"),
            "{error}"
        );
    }
}
