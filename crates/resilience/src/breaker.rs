//! A circuit breaker for one service: closed, open, half-open.
//!
//! Closed, calls go through and consecutive failures that mean the service is unwell are counted
//! (see [`is_health_failure`]); at the threshold the breaker opens. Open, every call is refused
//! at once with the time left, so a dead service costs a turn nothing. When the open period is
//! over the breaker is half-open: one probe call at a time may go through; its success closes the
//! breaker, its failure opens it again for a full period.
//!
//! The open period is an upper bound: a health signal ([`CircuitBreaker::service_serving`], the
//! service's gRPC health saying SERVING) closes an open breaker at once, so recovery follows the
//! service rather than a timer.
//!
//! A call takes a [`Permit`] from [`CircuitBreaker::try_acquire`] and hands its [`Outcome`] back
//! through [`Permit::record`]. A permit dropped unrecorded (the call was abandoned) frees the
//! probe slot; an outcome that arrives after the breaker changed state is ignored.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::broadcast;
use tonic::Status;

use super::{
    classify::is_health_failure,
    clock::{Clock, Sleep},
    events::{BreakerEvent, BreakerState, EventLog, TransitionReason, status_text},
    settings_error::SettingsError,
};

/// The longest open period a breaker accepts.
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (at least 1).
    failure_threshold: u32,
    /// How long it stays open before a probe (more than zero, at most a day).
    open_for: Duration,
}

impl Default for BreakerSettings {
    /// Opens after 5 consecutive failures, for 5 s.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

impl BreakerSettings {
    /// Settings from config values, refused if they cannot work.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Result<Self, SettingsError> {
        if failure_threshold == 0 {
            return Err(SettingsError::ZeroThreshold);
        }
        if open_for.is_zero() || open_for > MAX_OPEN_FOR {
            return Err(SettingsError::OpenFor(open_for));
        }
        Ok(Self {
            failure_threshold,
            open_for,
        })
    }

    /// Consecutive failures that open the breaker.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// How long the breaker stays open before a probe.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

/// What a call says about the service's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service answered: a success, or an error that is the caller's business
    /// (INVALID_ARGUMENT, NOT_FOUND, ...).
    Healthy,
    /// The service is unwell: unreachable, too slow, or the transport failed.
    Unhealthy {
        /// The failure, as text.
        cause: String,
    },
}

impl Outcome {
    /// The outcome of a finished call.
    pub fn of<T>(result: &Result<T, Status>) -> Self {
        match result {
            Err(status) if is_health_failure(status) => Self::Unhealthy {
                cause: status_text(status),
            },
            _ => Self::Healthy,
        }
    }
}

/// A call refused because the service's breaker is open (or its one probe is in flight).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct BreakerOpen {
    /// The service.
    pub service: String,
    /// How long until a probe may go through (zero while a probe is in flight).
    pub retry_in: Duration,
    /// Whether the breaker is half-open and another call is probing the service.
    pub probe_in_flight: bool,
}

impl BreakerOpen {
    /// `circuit open for memory: retry in 4.2s`.
    fn describe(&self) -> String {
        if self.probe_in_flight {
            format!(
                "circuit half-open for {}: a probe call is in flight",
                self.service
            )
        } else {
            format!(
                "circuit open for {}: retry in {:.1}s",
                self.service,
                self.retry_in.as_secs_f64()
            )
        }
    }
}

/// Where a breaker is, internally.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Counting consecutive failures.
    Closed { failures: u32 },
    /// Refusing calls until `until`.
    Open { until: Instant },
    /// Letting one probe through; `probing` while it runs.
    HalfOpen { probing: bool },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Self::Closed { .. } => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// The state machine, behind the breaker's lock.
#[derive(Debug)]
struct Machine {
    /// The current phase.
    phase: Phase,
    /// Bumped on every state change, so that late outcomes from an earlier state are ignored.
    generation: u64,
}

/// What the clones of one breaker share.
#[derive(Debug)]
struct Shared {
    /// The service this breaker guards.
    service: String,
    /// Threshold and open period.
    settings: BreakerSettings,
    /// Time, injected.
    clock: Arc<dyn Clock>,
    /// Where state changes go (shared with the registry's other breakers).
    log: Arc<EventLog>,
    /// The state machine.
    machine: Mutex<Machine>,
}

/// A circuit breaker for one service. Cheap to clone: clones share one state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    /// The state and its settings.
    shared: Arc<Shared>,
}

impl CircuitBreaker {
    /// A closed breaker for `service`, with its own history and subscribers.
    pub fn new(
        service: impl Into<String>,
        settings: BreakerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let log = Arc::new(EventLog::new(clock.now()));
        Self::with_log(service.into(), settings, clock, log)
    }

    /// A closed breaker for `service` that records its state changes in `log`.
    pub(super) fn with_log(
        service: String,
        settings: BreakerSettings,
        clock: Arc<dyn Clock>,
        log: Arc<EventLog>,
    ) -> Self {
        let machine = Machine {
            phase: Phase::Closed { failures: 0 },
            generation: 0,
        };
        Self {
            shared: Arc::new(Shared {
                service,
                settings,
                clock,
                log,
                machine: Mutex::new(machine),
            }),
        }
    }

    /// The service this breaker guards.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The current state (an open breaker whose period is over reports half-open).
    pub fn state(&self) -> BreakerState {
        self.machine().phase.state()
    }

    /// Lets a call through, or refuses it at once if the breaker is open or its probe slot taken.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let mut machine = self.machine();
        if let Some(refusal) = self.refusal(&machine) {
            return Err(refusal);
        }
        let probe = matches!(machine.phase, Phase::HalfOpen { .. });
        if probe {
            machine.phase = Phase::HalfOpen { probing: true };
        }
        Ok(Permit {
            breaker: self.clone(),
            generation: machine.generation,
            probe,
            recorded: false,
        })
    }

    /// The service's health says SERVING: an open or half-open breaker closes now, without
    /// waiting for the end of its open period; true when it did. A closed breaker is left as it
    /// is (its count of failures too).
    pub fn service_serving(&self) -> bool {
        let mut machine = self.machine();
        if matches!(machine.phase, Phase::Closed { .. }) {
            return false;
        }
        let now = self.shared.clock.now();
        let closed = Phase::Closed { failures: 0 };
        self.move_to(&mut machine, closed, TransitionReason::HealthServing, now);
        true
    }

    /// Whether a call would be let through now, without taking the probe slot.
    pub fn check(&self) -> Result<(), BreakerOpen> {
        match self.refusal(&self.machine()) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// This breaker's state changes, oldest first.
    pub fn history(&self) -> Vec<BreakerEvent> {
        self.shared.log.history(Some(self.service()))
    }

    /// A receiver of every state change from now on (of every breaker sharing this one's
    /// registry, if it has one).
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.shared.log.subscribe()
    }

    /// Waits on the breaker's clock.
    pub(super) fn sleep(&self, duration: Duration) -> Sleep {
        self.shared.clock.sleep(duration)
    }

    /// The state machine, locked, with an open period that is over turned into half-open.
    fn machine(&self) -> MutexGuard<'_, Machine> {
        let mut machine = self
            .shared
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Phase::Open { until } = machine.phase
            && self.shared.clock.now() >= until
        {
            let half_open = Phase::HalfOpen { probing: false };
            self.move_to(
                &mut machine,
                half_open,
                TransitionReason::OpenPeriodOver,
                until,
            );
        }
        machine
    }

    /// Why a call would be refused now, if it would.
    fn refusal(&self, machine: &Machine) -> Option<BreakerOpen> {
        let (retry_in, probe_in_flight) = match machine.phase {
            Phase::Closed { .. } | Phase::HalfOpen { probing: false } => return None,
            Phase::Open { until } => (
                until.saturating_duration_since(self.shared.clock.now()),
                false,
            ),
            Phase::HalfOpen { probing: true } => (Duration::ZERO, true),
        };
        Some(BreakerOpen {
            service: self.shared.service.clone(),
            retry_in,
            probe_in_flight,
        })
    }

    /// Counts the outcome of a call let through in `generation`.
    fn record(&self, generation: u64, outcome: Outcome) {
        let mut machine = self.machine();
        if machine.generation != generation {
            return;
        }
        let now = self.shared.clock.now();
        let settings = self.shared.settings;
        let open = Phase::Open {
            until: now.checked_add(settings.open_for).unwrap_or(now),
        };
        match (machine.phase, outcome) {
            (Phase::Closed { .. }, Outcome::Healthy) => {
                machine.phase = Phase::Closed { failures: 0 };
            }
            (Phase::Closed { failures }, Outcome::Unhealthy { cause }) => {
                let failures = failures.saturating_add(1);
                machine.phase = Phase::Closed { failures };
                if failures >= settings.failure_threshold {
                    let reason = TransitionReason::FailureThreshold {
                        failures,
                        last: cause,
                    };
                    self.move_to(&mut machine, open, reason, now);
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Healthy) => {
                let closed = Phase::Closed { failures: 0 };
                self.move_to(&mut machine, closed, TransitionReason::ProbeSucceeded, now);
            }
            (Phase::HalfOpen { .. }, Outcome::Unhealthy { cause }) => {
                let reason = TransitionReason::ProbeFailed { last: cause };
                self.move_to(&mut machine, open, reason, now);
            }
            // No permit is handed out while open, so no outcome can belong to this generation.
            (Phase::Open { .. }, _) => {}
        }
    }

    /// Frees the probe slot of `generation` if its probe was abandoned.
    fn release_probe(&self, generation: u64) {
        let mut machine = self.machine();
        if machine.generation == generation
            && let Phase::HalfOpen { probing: true } = machine.phase
        {
            machine.phase = Phase::HalfOpen { probing: false };
        }
    }

    /// Changes state, starts a new generation and records the change.
    fn move_to(&self, machine: &mut Machine, to: Phase, reason: TransitionReason, at: Instant) {
        let from = machine.phase.state();
        machine.phase = to;
        machine.generation = machine.generation.wrapping_add(1);
        let states = (from, to.state());
        self.shared
            .log
            .push(&self.shared.service, states, reason, at);
    }
}

/// Leave for one call to go through a breaker; hand its outcome back with [`Permit::record`].
#[must_use = "a permit is for recording the call's outcome"]
pub struct Permit {
    /// The breaker that let the call through.
    breaker: CircuitBreaker,
    /// The breaker's generation when the call was let through.
    generation: u64,
    /// Whether this call is the half-open breaker's probe.
    probe: bool,
    /// Whether the outcome was recorded.
    recorded: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("service", &self.breaker.service())
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit {
    /// Counts the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.generation, outcome);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::ManualClock;
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    fn breaker(threshold: u32) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        let settings = BreakerSettings::new(threshold, OPEN_FOR).unwrap();
        let breaker = CircuitBreaker::new("memory", settings, Arc::new(clock.clone()));
        (breaker, clock)
    }

    fn unavailable() -> Outcome {
        Outcome::of::<()>(&Err(Status::unavailable("connection refused")))
    }

    fn call(breaker: &CircuitBreaker, outcome: Outcome) {
        breaker.try_acquire().unwrap().record(outcome);
    }

    fn open(breaker: &CircuitBreaker) {
        for _ in 0..breaker.shared.settings.failure_threshold() {
            call(breaker, unavailable());
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn outcomes_follow_the_health_classes() {
        assert_eq!(Outcome::of(&Ok::<_, Status>(1)), Outcome::Healthy);
        assert_eq!(
            Outcome::of::<()>(&Err(Status::invalid_argument("bad"))),
            Outcome::Healthy
        );
        assert_eq!(
            Outcome::of::<()>(&Err(Status::deadline_exceeded("slow"))),
            Outcome::Unhealthy {
                cause: "DeadlineExceeded: slow".to_owned()
            }
        );
    }

    #[test]
    fn a_breaker_opens_after_the_threshold_of_consecutive_failures() {
        let (breaker, _clock) = breaker(3);
        call(&breaker, unavailable());
        call(&breaker, unavailable());
        assert_eq!(breaker.state(), BreakerState::Closed);
        call(&breaker, unavailable());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let (breaker, _clock) = breaker(3);
        for _ in 0..4 {
            call(&breaker, unavailable());
            call(&breaker, unavailable());
            call(&breaker, Outcome::Healthy);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.history().is_empty());
    }

    #[test]
    fn errors_that_do_not_mean_the_service_is_unwell_do_not_count() {
        let (breaker, _clock) = breaker(2);
        let invalid = Outcome::of::<()>(&Err(Status::invalid_argument("agent name is empty")));
        for _ in 0..10 {
            call(&breaker, invalid.clone());
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_open_breaker_refuses_at_once_with_the_time_left() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(Duration::from_millis(800));
        let refusal = breaker.try_acquire().unwrap_err();
        assert_eq!(
            refusal,
            BreakerOpen {
                service: "memory".to_owned(),
                retry_in: Duration::from_millis(4200),
                probe_in_flight: false,
            }
        );
        assert_eq!(
            refusal.to_string(),
            "circuit open for memory: retry in 4.2s"
        );
        assert_eq!(breaker.check(), Err(refusal));
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through_and_the_others_are_refused() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.check(), Ok(()));
        let probe = breaker.try_acquire().unwrap();
        let refusal = breaker.try_acquire().unwrap_err();
        assert!(refusal.probe_in_flight);
        assert_eq!(refusal.retry_in, Duration::ZERO);
        assert_eq!(
            refusal.to_string(),
            "circuit half-open for memory: a probe call is in flight"
        );
        assert!(breaker.check().is_err());
        drop(probe);
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR);
        call(&breaker, Outcome::Healthy);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.try_acquire().is_ok());
    }

    #[test]
    fn a_health_signal_closes_an_open_breaker_before_its_open_period_is_over() {
        let (breaker, clock) = breaker(2);
        open(&breaker);
        clock.advance(Duration::from_millis(200));
        assert!(breaker.try_acquire().is_err(), "still open, 4.8 s to go");
        assert!(breaker.service_serving());
        assert_eq!(breaker.state(), BreakerState::Closed);
        let permit = breaker.try_acquire().expect("calls go through at once");
        permit.record(Outcome::Healthy);
        let last = breaker.history().pop().unwrap();
        assert_eq!(last.reason, TransitionReason::HealthServing);
        assert_eq!(
            (last.from, last.to),
            (BreakerState::Open, BreakerState::Closed)
        );
        assert!(last.elapsed < OPEN_FOR);
        // A closed breaker is left alone, and a health signal does not hide
        // later failures: it opens again at the threshold.
        assert!(!breaker.service_serving());
        open(&breaker);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_health_signal_closes_a_half_open_breaker_and_ignores_its_late_probe() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR);
        let probe = breaker.try_acquire().unwrap();
        assert!(breaker.service_serving());
        probe.record(unavailable());
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "the probe was of the old state"
        );
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again_for_a_full_period() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR + Duration::from_secs(1));
        call(&breaker, unavailable());
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire().unwrap_err().retry_in, OPEN_FOR);
    }

    #[test]
    fn a_probe_abandoned_without_an_outcome_frees_the_slot() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR);
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.try_acquire().unwrap();
        probe.record(Outcome::Healthy);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_outcome_from_before_a_state_change_is_ignored() {
        let (breaker, clock) = breaker(1);
        let slow_success = breaker.try_acquire().unwrap();
        let slow_failure = breaker.try_acquire().unwrap();
        open(&breaker);
        slow_success.record(Outcome::Healthy);
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(OPEN_FOR);
        call(&breaker, Outcome::Healthy);
        slow_failure.record(unavailable());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn every_state_change_is_in_the_history_in_order_with_its_reason_and_time() {
        let (breaker, clock) = breaker(2);
        call(&breaker, unavailable());
        clock.advance(Duration::from_secs(1));
        call(&breaker, unavailable());
        clock.advance(Duration::from_secs(7));
        call(&breaker, unavailable());
        clock.advance(OPEN_FOR);
        call(&breaker, Outcome::Healthy);
        let history: Vec<String> = breaker.history().iter().map(ToString::to_string).collect();
        assert_eq!(
            history,
            [
                "memory: closed -> open (2 consecutive failures, last: Unavailable: connection refused)",
                "memory: open -> half-open (open period over, probing)",
                "memory: half-open -> open (probe failed: Unavailable: connection refused)",
                "memory: open -> half-open (open period over, probing)",
                "memory: half-open -> closed (probe succeeded)",
            ]
        );
        let times: Vec<u64> = breaker
            .history()
            .iter()
            .map(|event| event.elapsed.as_secs())
            .collect();
        assert_eq!(times, [1, 6, 8, 13, 13]);
    }

    #[test]
    fn subscribers_hear_every_state_change_in_order() {
        let (breaker, clock) = breaker(1);
        let mut changes = breaker.subscribe();
        open(&breaker);
        clock.advance(OPEN_FOR);
        call(&breaker, Outcome::Healthy);
        let mut heard = Vec::new();
        while let Ok(event) = changes.try_recv() {
            heard.push((event.from, event.to));
        }
        use BreakerState::{Closed, HalfOpen, Open};
        assert_eq!(
            heard,
            [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
        assert_eq!(breaker.history().len(), 3);
    }

    #[test]
    fn clones_share_one_state() {
        let (breaker, _clock) = breaker(1);
        let clone = breaker.clone();
        open(&clone);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.history(), clone.history());
    }

    #[test]
    fn the_default_settings_open_after_five_failures_for_five_seconds() {
        let settings = BreakerSettings::default();
        assert_eq!(settings.failure_threshold(), 5);
        assert_eq!(settings.open_for(), Duration::from_secs(5));
    }

    #[test]
    fn a_zero_failure_threshold_is_refused() {
        let error = BreakerSettings::new(0, OPEN_FOR).unwrap_err();
        assert_eq!(error, SettingsError::ZeroThreshold);
        assert_eq!(
            error.to_string(),
            "failure_threshold must be at least 1, got 0"
        );
    }

    #[test]
    fn an_open_period_of_zero_or_more_than_a_day_is_refused() {
        let error = BreakerSettings::new(5, Duration::ZERO).unwrap_err();
        assert_eq!(
            error.to_string(),
            "open_for must be more than zero and at most 1 day, got 0ns"
        );
        let error = BreakerSettings::new(5, Duration::MAX).unwrap_err();
        assert_eq!(error, SettingsError::OpenFor(Duration::MAX));
        assert!(BreakerSettings::new(5, MAX_OPEN_FOR).is_ok());
    }

    #[test]
    fn racing_threads_get_exactly_one_probe_through() {
        let (breaker, clock) = breaker(1);
        open(&breaker);
        clock.advance(OPEN_FOR);
        let barrier = std::sync::Barrier::new(8);
        let permits: Vec<Permit> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        breaker.try_acquire().ok()
                    })
                })
                .collect();
            racers
                .into_iter()
                .filter_map(|racer| racer.join().unwrap())
                .collect()
        });
        assert_eq!(permits.len(), 1);
    }
}
