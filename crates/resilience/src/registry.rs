//! The breakers of every service the orchestrator calls, keyed by service name, sharing one
//! history and one subscription.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::broadcast;

use super::{
    breaker::{BreakerSettings, CircuitBreaker},
    clock::{Clock, TokioClock},
    events::{BreakerEvent, BreakerState, EventLog},
};

/// The OAuth service's breaker name.
pub const OAUTH: &str = "oauth";
/// The Audit service's breaker name.
pub const AUDIT: &str = "audit";
/// The Memory service's breaker name.
pub const MEMORY: &str = "memory";

/// The breaker name of the tool service hosting `tool`: `tool:calculator`.
pub fn tool_service(tool: &str) -> String {
    format!("tool:{tool}")
}

/// The breaker name of one replica of a service with several: `audit@127.0.0.1:8006`.
pub fn replica(service: &str, address: &str) -> String {
    format!("{service}@{address}")
}

/// The service a breaker name belongs to: `audit` for `audit` and for `audit@127.0.0.1:8006`.
pub fn service_of(breaker: &str) -> &str {
    breaker
        .split_once('@')
        .map_or(breaker, |(service, _)| service)
}

/// What the clones of a registry share.
#[derive(Debug)]
struct Shared {
    /// The settings every breaker is made with.
    settings: BreakerSettings,
    /// Time, injected.
    clock: Arc<dyn Clock>,
    /// The state changes of every breaker, in order.
    log: Arc<EventLog>,
    /// The breakers made so far.
    breakers: Mutex<BTreeMap<String, CircuitBreaker>>,
}

/// One circuit breaker per service, made on first use. Cheap to clone: clones share the breakers.
#[derive(Debug, Clone)]
pub struct Breakers {
    /// The breakers and what they are made with.
    shared: Arc<Shared>,
}

impl Breakers {
    /// A registry whose breakers use `settings` and tokio's clock.
    pub fn new(settings: BreakerSettings) -> Self {
        Self::with_clock(settings, Arc::new(TokioClock))
    }

    /// A registry whose breakers use `settings` and `clock`.
    pub fn with_clock(settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let log = Arc::new(EventLog::new(clock.now()));
        Self {
            shared: Arc::new(Shared {
                settings,
                clock,
                log,
                breakers: Mutex::default(),
            }),
        }
    }

    /// The breaker of `service` (e.g. [`MEMORY`], or [`tool_service`]`("calculator")`).
    pub fn get(&self, service: &str) -> CircuitBreaker {
        let mut breakers = self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        breakers
            .entry(service.to_owned())
            .or_insert_with(|| {
                CircuitBreaker::with_log(
                    service.to_owned(),
                    self.shared.settings,
                    self.shared.clock.clone(),
                    self.shared.log.clone(),
                )
            })
            .clone()
    }

    /// Every breaker's current state, by service name.
    pub fn states(&self) -> BTreeMap<String, BreakerState> {
        let breakers = self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        breakers
            .into_iter()
            .map(|(service, breaker)| (service, breaker.state()))
            .collect()
    }

    /// Every breaker's state changes, in the order they happened (for the run's summary).
    pub fn history(&self) -> Vec<BreakerEvent> {
        self.shared.log.history(None)
    }

    /// A receiver of every breaker's state changes from now on (to log them, record them in
    /// Audit, ...).
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.shared.log.subscribe()
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn a_replica_breaker_names_its_service_and_address() {
        let name = replica(AUDIT, "127.0.0.1:8006");
        assert_eq!(name, "audit@127.0.0.1:8006");
        assert_eq!(service_of(&name), AUDIT);
        assert_eq!(service_of("tool:calculator@[::1]:8002"), "tool:calculator");
        assert_eq!(service_of(MEMORY), MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Status;

    use super::super::{breaker::Outcome, clock::ManualClock};
    use super::*;

    fn registry() -> (Breakers, ManualClock) {
        let clock = ManualClock::new();
        let settings = BreakerSettings::new(1, Duration::from_secs(5)).unwrap();
        (
            Breakers::with_clock(settings, Arc::new(clock.clone())),
            clock,
        )
    }

    fn fail(breaker: &CircuitBreaker) {
        let outcome = Outcome::of::<()>(&Err(Status::unavailable("down")));
        breaker.try_acquire().unwrap().record(outcome);
    }

    #[test]
    fn each_service_has_one_breaker_shared_by_every_clone_of_the_registry() {
        let (breakers, _clock) = registry();
        let copy = breakers.clone();
        fail(&breakers.get(MEMORY));
        assert_eq!(copy.get(MEMORY).state(), BreakerState::Open);
        assert_eq!(copy.get(AUDIT).state(), BreakerState::Closed);
        assert_eq!(
            breakers.states().into_iter().collect::<Vec<_>>(),
            [
                (AUDIT.to_owned(), BreakerState::Closed),
                (MEMORY.to_owned(), BreakerState::Open),
            ]
        );
    }

    #[test]
    fn tool_services_are_named_after_their_tool() {
        assert_eq!(tool_service("calculator"), "tool:calculator");
    }

    #[test]
    fn the_history_and_one_subscription_cover_every_service_in_order() {
        let (breakers, clock) = registry();
        let mut changes = breakers.subscribe();
        fail(&breakers.get(OAUTH));
        clock.advance(Duration::from_secs(1));
        fail(&breakers.get(&tool_service("calculator")));
        clock.advance(Duration::from_secs(4));
        let oauth = breakers.get(OAUTH);
        assert_eq!(oauth.state(), BreakerState::HalfOpen);
        let order = |events: Vec<BreakerEvent>| {
            events
                .into_iter()
                .map(|event| format!("{} {}", event.service, event.to))
                .collect::<Vec<_>>()
        };
        let expected = ["oauth open", "tool:calculator open", "oauth half-open"];
        assert_eq!(order(breakers.history()), expected);
        let heard = std::iter::from_fn(|| changes.try_recv().ok()).collect();
        assert_eq!(order(heard), expected);
        assert_eq!(order(oauth.history()), ["oauth open", "oauth half-open"]);
    }
}
