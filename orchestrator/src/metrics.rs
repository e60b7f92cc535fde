//! The orchestrator's own Prometheus metrics (beside the per-RPC client
//! metrics every channel records): turns by agent and outcome, the state of
//! every circuit breaker, the audit spool's and the memory outboxes' depth,
//! and each LLM call's latency and tokens by agent and model. Served at
//! `--metrics-listen` / `metrics.listen` while a run lasts. Labels are the
//! config's agents, models and breaker names: bounded.

use std::{sync::OnceLock, time::Duration};

use heist_plumbing::metrics::register;
use heist_resilience::{BreakerState, Breakers};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TurnLabels {
    agent: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BreakerLabels {
    breaker: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LlmLabels {
    agent: String,
    model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenLabels {
    agent: String,
    model: String,
    direction: &'static str,
}

struct Metrics {
    turns: Family<TurnLabels, Counter>,
    breaker_state: Family<BreakerLabels, Gauge>,
    spool_depth: Gauge,
    outbox_depth: Gauge,
    llm_duration: Family<LlmLabels, Histogram, fn() -> Histogram>,
    llm_tokens: Family<TokenLabels, Counter>,
}

fn llm_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_1, 2.0, 20,
    ))
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Metrics {
            turns: Family::default(),
            breaker_state: Family::default(),
            spool_depth: Gauge::default(),
            outbox_depth: Gauge::default(),
            llm_duration: Family::new_with_constructor(llm_buckets),
            llm_tokens: Family::default(),
        };
        register(
            "heist_orchestrator_turns",
            "Turns taken, by agent and outcome (ok or failed)",
            metrics.turns.clone(),
        );
        register(
            "heist_orchestrator_breaker_state",
            "Each circuit breaker's state: 0 closed, 1 half-open, 2 open",
            metrics.breaker_state.clone(),
        );
        register(
            "heist_orchestrator_spool_depth",
            "Audit writes waiting in the spool for Audit to come back",
            metrics.spool_depth.clone(),
        );
        register(
            "heist_orchestrator_memory_outbox_depth",
            "Memory writes waiting in the sessions' outboxes",
            metrics.outbox_depth.clone(),
        );
        register(
            "heist_orchestrator_llm_duration_seconds",
            "LLM call latency, by agent and model",
            metrics.llm_duration.clone(),
        );
        register(
            "heist_orchestrator_llm_tokens",
            "LLM tokens as the server reports them, by agent, model and direction (input or output)",
            metrics.llm_tokens.clone(),
        );
        metrics
    })
}

/// Counts one turn of `agent`.
pub fn turn(agent: &str, failed: bool) {
    let outcome = if failed { "failed" } else { "ok" };
    metrics()
        .turns
        .get_or_create(&TurnLabels {
            agent: agent.to_owned(),
            outcome,
        })
        .inc();
}

/// Records one LLM call of `agent` to `model`.
pub fn llm_call(
    agent: &str,
    model: &str,
    elapsed: Duration,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
) {
    let metrics = metrics();
    metrics
        .llm_duration
        .get_or_create(&LlmLabels {
            agent: agent.to_owned(),
            model: model.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
    for (direction, tokens) in [("input", input_tokens), ("output", output_tokens)] {
        if let Some(tokens) = tokens {
            metrics
                .llm_tokens
                .get_or_create(&TokenLabels {
                    agent: agent.to_owned(),
                    model: model.to_owned(),
                    direction,
                })
                .inc_by(tokens);
        }
    }
}

/// The spool now holds `depth` writes.
pub fn spool_depth(depth: usize) {
    metrics()
        .spool_depth
        .set(i64::try_from(depth).unwrap_or(i64::MAX));
}

/// A session's outbox went from `before` to `after` writes.
pub fn outbox_changed(before: usize, after: usize) {
    let delta =
        i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
    if delta != 0 {
        metrics().outbox_depth.inc_by(delta);
    }
}

/// Keeps the breaker gauges in step with `breakers` (every second, while
/// metrics are served).
pub fn watch_breakers(breakers: &Breakers) {
    if !heist_plumbing::metrics::enabled() {
        return;
    }
    let breakers = breakers.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            for (name, state) in breakers.states() {
                let value = match state {
                    BreakerState::Closed => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open => 2,
                };
                metrics()
                    .breaker_state
                    .get_or_create(&BreakerLabels { breaker: name })
                    .set(value);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn turns_llm_calls_and_depths_are_counted_with_their_labels() {
        turn("metrics-test-agent", false);
        turn("metrics-test-agent", true);
        turn("metrics-test-agent", true);
        llm_call(
            "metrics-test-agent",
            "model-x",
            Duration::from_millis(3),
            Some(120),
            Some(30),
        );
        llm_call(
            "metrics-test-agent",
            "model-x",
            Duration::from_millis(5),
            Some(80),
            None,
        );
        outbox_changed(0, 3);
        outbox_changed(3, 1);
        let text = heist_plumbing::metrics::encode();
        let turns = r#"heist_orchestrator_turns_total{agent="metrics-test-agent","#;
        assert_eq!(
            sample(&text, &format!(r#"{turns}outcome="ok"}}"#)),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!(r#"{turns}outcome="failed"}}"#)),
            Some(2.0)
        );
        let tokens =
            r#"heist_orchestrator_llm_tokens_total{agent="metrics-test-agent",model="model-x","#;
        assert_eq!(
            sample(&text, &format!(r#"{tokens}direction="input"}}"#)),
            Some(200.0)
        );
        assert_eq!(
            sample(&text, &format!(r#"{tokens}direction="output"}}"#)),
            Some(30.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"heist_orchestrator_llm_duration_seconds_count{agent="metrics-test-agent",model="model-x"}"#
            ),
            Some(2.0)
        );
        assert!(sample(&text, "heist_orchestrator_memory_outbox_depth ").is_some());
    }
}
