//! Closing open circuit breakers as soon as their service is back.
//!
//! A service with several replicas has a breaker per replica, and each is
//! watched on its own replica's health: the one that comes back closes its
//! own breaker, whatever its twins do.
//!
//! An open breaker waits `resilience.open_for` before it lets a probe
//! through, which made a 0.2 s Audit restart cost the conversation the whole
//! open period. While a breaker is open, a watcher follows its service's
//! standard gRPC health (`grpc.health.v1.Health/Watch` on `""`, reconnecting
//! with a short backoff while the service is down) and closes the breaker
//! the moment the service says SERVING. `open_for` stays the upper bound:
//! a service without a health endpoint is still probed when it is over.
//!
//! Only a breaker opened because its service was unreachable is watched.
//! One opened because calls ran out of time (DEADLINE_EXCEEDED, CANCELLED)
//! guards a service that is up but too slow: its health says SERVING all
//! along, and closing on it would cost the deadline again and again; that
//! breaker keeps its full open period.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::{
    sync::broadcast,
    task::{AbortHandle, JoinHandle, JoinSet},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    mesh::{MeshChannel, NamedEndpoint},
    resilience::{BreakerEvent, BreakerState, Breakers, CircuitBreaker, TransitionReason},
};

/// The first pause before watching a service's health again (it was down).
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts to watch a service's health.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// The watcher of every breaker of an orchestrator; stops (with every watch
/// it started) when the last clone is dropped.
#[derive(Clone)]
pub struct HealthWatcher {
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HealthWatcher {
    /// Watches the health of each replica of `endpoints` while its breaker
    /// (in `breakers`: one per replica) is open. Needs a tokio runtime.
    pub fn spawn(breakers: &Breakers, endpoints: &[NamedEndpoint]) -> Self {
        let targets: BTreeMap<String, MeshChannel> = endpoints
            .iter()
            .flat_map(|endpoint| &endpoint.replicas)
            .map(|replica| (replica.breaker.clone(), replica.channel.clone()))
            .collect();
        let events = breakers.subscribe();
        let breakers = breakers.clone();
        let task = tokio::spawn(watch_breakers(breakers, targets, events));
        Self {
            _task: Arc::new(AbortOnDrop(task)),
        }
    }
}

/// On every breaker that opens, watches its service's health until the
/// breaker is closed (by the watch or by a probe). The watches end with
/// this task (the set aborts them when dropped).
async fn watch_breakers(
    breakers: Breakers,
    targets: BTreeMap<String, MeshChannel>,
    mut events: broadcast::Receiver<BreakerEvent>,
) {
    let mut watches = JoinSet::new();
    let mut watching: BTreeMap<String, AbortHandle> = BTreeMap::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        while watches.try_join_next().is_some() {}
        if event.to != BreakerState::Open || opened_for_slowness(&event.reason) {
            continue;
        }
        let Some(channel) = targets.get(&event.service) else {
            continue;
        };
        if watching
            .get(&event.service)
            .is_some_and(|watch| !watch.is_finished())
        {
            continue;
        }
        let breaker = breakers.get(&event.service);
        let watch = watches.spawn(close_when_serving(breaker, channel.clone()));
        watching.insert(event.service, watch);
    }
}

/// Whether the breaker opened because calls ran out of time (the service
/// may be up, only slow), not because the service was unreachable.
fn opened_for_slowness(reason: &TransitionReason) -> bool {
    let last = match reason {
        TransitionReason::FailureThreshold { last, .. }
        | TransitionReason::ProbeFailed { last } => last,
        _ => return false,
    };
    ["DeadlineExceeded", "Cancelled"]
        .iter()
        .any(|code| last.starts_with(code))
}

/// Follows the health of the service behind `channel` until it says
/// SERVING (then closes `breaker`) or until `breaker` is closed otherwise.
async fn close_when_serving(breaker: CircuitBreaker, channel: MeshChannel) {
    let mut pause = FIRST_PAUSE;
    while breaker.state() != BreakerState::Closed {
        if serving(&channel).await {
            if breaker.service_serving() {
                tracing::info!(
                    breaker = breaker.service(),
                    "service SERVING again: circuit closed before its open period ended"
                );
            }
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Watches the service's health until it says SERVING (true), or until the
/// watch fails or ends (false: the service is down or going down).
async fn serving(channel: &MeshChannel) -> bool {
    let mut client = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let Ok(answer) = client.watch(request).await else {
        return false;
    };
    let mut statuses = answer.into_inner();
    while let Ok(Some(status)) = statuses.message().await {
        if status.status() == ServingStatus::Serving {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_breakers_opened_for_an_unreachable_service_are_watched() {
        let threshold = |last: &str| TransitionReason::FailureThreshold {
            failures: 5,
            last: last.to_owned(),
        };
        assert!(!opened_for_slowness(&threshold(
            "Unavailable: tcp connect error"
        )));
        assert!(!opened_for_slowness(&threshold("Unknown: transport error")));
        assert!(opened_for_slowness(&threshold("DeadlineExceeded: slow")));
        assert!(opened_for_slowness(&TransitionReason::ProbeFailed {
            last: "Cancelled: Timeout expired".to_owned()
        }));
        assert!(!opened_for_slowness(&TransitionReason::OpenPeriodOver));
    }
}
