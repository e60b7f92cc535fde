//! The record of a breaker's state changes: a bounded history, a broadcast to subscribers, and
//! a log line (which the tracing layer also turns into an event on the current span).

use std::{
    collections::VecDeque,
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::broadcast;
use tonic::Status;

/// How many state changes the history keeps (the oldest are dropped first).
const HISTORY_LIMIT: usize = 1024;

/// How many state changes a slow subscriber may lag behind before it misses some.
const CHANNEL_CAPACITY: usize = 256;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are rejected at once until the open period is over.
    Open,
    /// One probe call at a time may go through to test the service.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionReason {
    /// Closed to open: too many consecutive failures.
    FailureThreshold {
        /// How many failures in a row.
        failures: u32,
        /// The last failure, as text.
        last: String,
    },
    /// Open to half-open: the open period is over.
    OpenPeriodOver,
    /// Half-open to closed: the probe call succeeded.
    ProbeSucceeded,
    /// Half-open to open: the probe call failed.
    ProbeFailed {
        /// The probe's failure, as text.
        last: String,
    },
    /// Open (or half-open) to closed: the service's health check says it
    /// is SERVING again, before the open period is over.
    HealthServing,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailureThreshold { failures, last } => {
                write!(f, "{failures} consecutive failures, last: {last}")
            }
            Self::OpenPeriodOver => f.write_str("open period over, probing"),
            Self::ProbeSucceeded => f.write_str("probe succeeded"),
            Self::ProbeFailed { last } => write!(f, "probe failed: {last}"),
            Self::HealthServing => f.write_str("health check says SERVING"),
        }
    }
}

/// One state change of one service's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The service, e.g. `memory` or `tool:calculator`.
    pub service: String,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// When, on the wall clock.
    pub at: SystemTime,
    /// When, on the breaker's (monotonic, injected) clock, since its event log began.
    pub elapsed: Duration,
}

impl fmt::Display for BreakerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} ({})",
            self.service, self.from, self.to, self.reason
        )
    }
}

/// A failed call's status as short text: `Unavailable: connection refused`.
pub(super) fn status_text(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// Where the breakers of one registry (or one lone breaker) record their state changes, so
/// that one history and one subscription cover them all, in the order they happened.
#[derive(Debug)]
pub(super) struct EventLog {
    /// The instant `elapsed` counts from.
    origin: Instant,
    /// The wall-clock time at `origin`.
    origin_wall: SystemTime,
    /// The latest state changes, oldest first.
    history: Mutex<VecDeque<BreakerEvent>>,
    /// Sends each state change to the subscribers.
    sender: broadcast::Sender<BreakerEvent>,
}

impl EventLog {
    /// An empty log whose `elapsed` counts from `origin`.
    pub(super) fn new(origin: Instant) -> Self {
        Self {
            origin,
            origin_wall: SystemTime::now(),
            history: Mutex::new(VecDeque::new()),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }

    /// Records, sends and logs a state change of `service` that happened at `at`.
    pub(super) fn push(
        &self,
        service: &str,
        (from, to): (BreakerState, BreakerState),
        reason: TransitionReason,
        at: Instant,
    ) {
        let elapsed = at.saturating_duration_since(self.origin);
        let event = BreakerEvent {
            service: service.to_owned(),
            from,
            to,
            reason,
            at: self
                .origin_wall
                .checked_add(elapsed)
                .unwrap_or(self.origin_wall),
            elapsed,
        };
        if to == BreakerState::Open {
            tracing::warn!(service, %from, %to, reason = %event.reason, "circuit breaker state changed");
        } else {
            tracing::info!(service, %from, %to, reason = %event.reason, "circuit breaker state changed");
        }
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.len() == HISTORY_LIMIT {
            history.pop_front();
        }
        history.push_back(event.clone());
        // Sent under the lock, so subscribers see the history's order; no subscriber is fine.
        let _ = self.sender.send(event);
    }

    /// The recorded state changes, oldest first, of `service` only if given.
    pub(super) fn history(&self, service: Option<&str>) -> Vec<BreakerEvent> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history
            .iter()
            .filter(|event| service.is_none_or(|service| event.service == service))
            .cloned()
            .collect()
    }

    /// A receiver of every state change from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(service: &str) -> BreakerEvent {
        BreakerEvent {
            service: service.to_owned(),
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: TransitionReason::FailureThreshold {
                failures: 5,
                last: "Unavailable: connection refused".to_owned(),
            },
            at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn an_event_reads_as_one_line() {
        assert_eq!(
            event("memory").to_string(),
            "memory: closed -> open (5 consecutive failures, last: Unavailable: connection refused)"
        );
    }

    #[test]
    fn a_status_reads_as_its_code_and_message() {
        assert_eq!(
            status_text(&Status::unavailable("connection refused")),
            "Unavailable: connection refused"
        );
        assert_eq!(status_text(&Status::cancelled("")), "Cancelled");
    }

    #[test]
    fn the_history_keeps_only_the_latest_changes() {
        let origin = Instant::now();
        let log = EventLog::new(origin);
        let states = (BreakerState::Closed, BreakerState::Open);
        for n in 0..HISTORY_LIMIT + 3 {
            let at = origin + Duration::from_millis(n as u64);
            log.push("audit", states, TransitionReason::OpenPeriodOver, at);
        }
        let history = log.history(None);
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].elapsed, Duration::from_millis(3));
    }

    #[test]
    fn the_wall_time_of_an_event_follows_the_injected_clock() {
        let origin = Instant::now();
        let log = EventLog::new(origin);
        let states = (BreakerState::Open, BreakerState::HalfOpen);
        let later = origin + Duration::from_secs(5);
        log.push("oauth", states, TransitionReason::OpenPeriodOver, later);
        let event = &log.history(Some("oauth"))[0];
        assert_eq!(event.elapsed, Duration::from_secs(5));
        assert_eq!(
            event.at.duration_since(log.origin_wall).ok(),
            Some(Duration::from_secs(5))
        );
    }
}
