//! One call to a service with its breaker and retry policy: the loop the engine's calls run in.

use std::{future::Future, time::Duration};

use tonic::Status;

use super::{
    breaker::{BreakerOpen, CircuitBreaker, Outcome},
    classify::{is_replica_gone, is_retryable},
    events::status_text,
    policy::RetryPolicy,
    rng::SplitMix64,
};

/// Why a call through [`call_with_resilience`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResilienceError {
    /// The service's answer to the last attempt.
    #[error("{}", status_text(.0))]
    Status(Status),
    /// The service's breaker is open: the call (or its next attempt) was not sent.
    #[error(transparent)]
    BreakerOpen(#[from] BreakerOpen),
}

impl ResilienceError {
    /// The error as a gRPC status: the service's own, or UNAVAILABLE with
    /// `circuit open for memory: retry in 4.2s`.
    pub fn into_status(self) -> Status {
        match self {
            Self::Status(status) => status,
            Self::BreakerOpen(open) => Status::unavailable(open.to_string()),
        }
    }
}

impl From<ResilienceError> for Status {
    fn from(error: ResilienceError) -> Self {
        error.into_status()
    }
}

/// Runs `op` through `breaker`, trying again after retryable failures as `policy` says.
///
/// `op` gets the attempt number (1 for the first) and must build a fresh request each time,
/// reusing the idempotency key made once outside. Before each attempt the breaker is asked: if
/// it is open, the call stops at once with [`ResilienceError::BreakerOpen`] (no wait). Each
/// outcome is recorded in the breaker. Failures that are not retryable (see
/// [`is_retryable`]), and the last attempt's failure, come back as [`ResilienceError::Status`].
/// Backoffs are slept on the breaker's clock.
pub async fn call_with_resilience<T, F, Fut>(
    breaker: &CircuitBreaker,
    policy: &RetryPolicy,
    idempotent: bool,
    mut op: F,
) -> Result<T, ResilienceError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    call_across(
        std::slice::from_ref(breaker),
        0,
        policy,
        idempotent,
        |tried| op(tried.attempt),
    )
    .await
}

/// One send of a call across replicas (see [`call_across`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Try {
    /// The attempt, as the retry policy counts them (1 for the first).
    pub attempt: u32,
    /// The replica it goes to: an index into the breakers given.
    pub replica: usize,
    /// Whether it is the attempt's first send (the ones after it went on from a gone replica,
    /// within the same attempt and deadline).
    pub first_of_attempt: bool,
}

/// Runs `op` across the replicas of a service, one breaker each (`breakers[i]` guards replica
/// `i`), trying again after retryable failures as `policy` says.
///
/// Each attempt goes to the replicas in turn, from `start` (plus one per attempt): a replica
/// whose breaker refuses is skipped at no cost; one that is gone (see [`is_replica_gone`]:
/// UNAVAILABLE, a failed connection) sends the call on to the next at once, within the same
/// attempt; any other answer ends the attempt. So a call fails over to a live twin, and fails
/// with [`ResilienceError::BreakerOpen`] only when every replica's breaker is open. `op` must
/// build a fresh request each time, reusing the idempotency key made once outside. Each outcome
/// is recorded in its replica's breaker. Backoffs are slept on the first breaker's clock.
pub async fn call_across<T, F, Fut>(
    breakers: &[CircuitBreaker],
    start: usize,
    policy: &RetryPolicy,
    idempotent: bool,
    mut op: F,
) -> Result<T, ResilienceError>
where
    F: FnMut(Try) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let Some(clock) = breakers.first() else {
        return Err(ResilienceError::Status(Status::unavailable(
            "no replica to call",
        )));
    };
    let count = breakers.len();
    let mut rng = SplitMix64::from_time();
    let mut attempt = 1;
    loop {
        let mut last: Option<Status> = None;
        let mut refused: Option<BreakerOpen> = None;
        let first = start.wrapping_add(attempt as usize - 1);
        for offset in 0..count {
            let replica = first.wrapping_add(offset) % count;
            let breaker = &breakers[replica];
            let permit = match breaker.try_acquire() {
                Ok(permit) => permit,
                Err(open) => {
                    refused.get_or_insert(open);
                    continue;
                }
            };
            let tried = Try {
                attempt,
                replica,
                first_of_attempt: last.is_none(),
            };
            let result = op(tried).await;
            permit.record(Outcome::of(&result));
            let status = match result {
                Ok(value) => return Ok(value),
                Err(status) => status,
            };
            let gone = is_replica_gone(&status);
            if gone && offset + 1 < count {
                let error = status_text(&status);
                let service = breaker.service();
                tracing::warn!(
                    service,
                    attempt,
                    error,
                    "replica unreachable, trying the next"
                );
            }
            last = Some(status);
            if !gone {
                break;
            }
        }
        let status = match (last, refused) {
            (Some(status), _) => status,
            (None, Some(open)) => return Err(open.into()),
            (None, None) => Status::unavailable("no replica to call"),
        };
        if attempt >= policy.max_attempts() || !is_retryable(&status, idempotent) {
            return Err(ResilienceError::Status(status));
        }
        let error = status_text(&status);
        let service = clock.service();
        if let Some(open) = every_one_open(breakers) {
            tracing::warn!(
                service,
                attempt,
                error,
                "call failed, breaker open, not retrying"
            );
            return Err(open.into());
        }
        let wait: Duration = policy.backoff(attempt, &mut || rng.next_u64());
        tracing::warn!(service, attempt, ?wait, error, "call failed, retrying");
        clock.sleep(wait).await;
        attempt += 1;
    }
}

/// The first refusal, when every breaker would refuse a call now.
fn every_one_open(breakers: &[CircuitBreaker]) -> Option<BreakerOpen> {
    let mut first = None;
    for breaker in breakers {
        match breaker.check() {
            Ok(()) => return None,
            Err(open) => {
                first.get_or_insert(open);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Instant,
    };

    use super::super::{
        breaker::BreakerSettings,
        clock::{Clock, ManualClock},
        events::BreakerState,
        policy::Jitter,
    };
    use super::*;

    /// A breaker on a manual clock, a 4-attempt policy without jitter (50, 100, 200 ms).
    fn setup(threshold: u32) -> (CircuitBreaker, RetryPolicy, ManualClock) {
        let clock = ManualClock::new();
        let settings = BreakerSettings::new(threshold, Duration::from_secs(5)).unwrap();
        let breaker = CircuitBreaker::new("memory", settings, Arc::new(clock.clone()));
        let policy = RetryPolicy::new(
            4,
            Duration::from_millis(50),
            Duration::from_secs(2),
            2.0,
            Jitter::None,
        )
        .unwrap();
        (breaker, policy, clock)
    }

    /// A fake service answering from a script (then OK), noting each attempt number.
    struct Script {
        answers: Mutex<Vec<Status>>,
        attempts: Mutex<Vec<u32>>,
    }

    impl Script {
        fn new(mut answers: Vec<Status>) -> Self {
            answers.reverse();
            Self {
                answers: Mutex::new(answers),
                attempts: Mutex::new(Vec::new()),
            }
        }

        async fn call(&self, attempt: u32) -> Result<&'static str, Status> {
            self.attempts.lock().unwrap().push(attempt);
            match self.answers.lock().unwrap().pop() {
                Some(status) => Err(status),
                None => Ok("stored"),
            }
        }

        fn attempts(&self) -> Vec<u32> {
            self.attempts.lock().unwrap().clone()
        }
    }

    fn unavailable() -> Status {
        Status::unavailable("connection refused")
    }

    #[tokio::test]
    async fn a_call_succeeds_after_two_unavailable_answers() {
        let (breaker, policy, clock) = setup(5);
        let script = Script::new(vec![unavailable(), unavailable()]);
        let start = clock.now();
        let answer = call_with_resilience(&breaker, &policy, true, |n| script.call(n)).await;
        assert_eq!(answer.unwrap(), "stored");
        assert_eq!(script.attempts(), [1, 2, 3]);
        assert_eq!(clock.now() - start, Duration::from_millis(150));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_call_gives_up_after_max_attempts_with_the_last_status() {
        let (breaker, policy, clock) = setup(10);
        let answers = (1..=5)
            .map(|n| Status::unavailable(format!("down {n}")))
            .collect();
        let script = Script::new(answers);
        let start = clock.now();
        let error = call_with_resilience(&breaker, &policy, true, |n| script.call(n))
            .await
            .unwrap_err();
        assert_eq!(script.attempts(), [1, 2, 3, 4]);
        assert_eq!(error.to_string(), "Unavailable: down 4");
        assert_eq!(clock.now() - start, Duration::from_millis(350));
    }

    #[tokio::test]
    async fn not_found_is_answered_at_once_without_a_retry() {
        let (breaker, policy, clock) = setup(5);
        let script = Script::new(vec![Status::not_found("no such session")]);
        let start = clock.now();
        let error = call_with_resilience(&breaker, &policy, true, |n| script.call(n))
            .await
            .unwrap_err();
        assert_eq!(script.attempts(), [1]);
        assert_eq!(error.into_status().code(), tonic::Code::NotFound);
        assert_eq!(clock.now(), start);
    }

    #[tokio::test]
    async fn a_timeout_is_not_retried_when_the_call_is_not_idempotent() {
        let (breaker, policy, _clock) = setup(5);
        let script = Script::new(vec![Status::cancelled("Timeout expired")]);
        let error = call_with_resilience(&breaker, &policy, false, |n| script.call(n))
            .await
            .unwrap_err();
        assert_eq!(script.attempts(), [1]);
        assert!(matches!(error, ResilienceError::Status(_)));
    }

    #[tokio::test]
    async fn the_retries_stop_as_soon_as_the_breaker_opens() {
        let (breaker, policy, clock) = setup(2);
        let script = Script::new(vec![unavailable(), unavailable(), unavailable()]);
        let start = clock.now();
        let error = call_with_resilience(&breaker, &policy, true, |n| script.call(n))
            .await
            .unwrap_err();
        assert_eq!(script.attempts(), [1, 2]);
        assert_eq!(clock.now() - start, Duration::from_millis(50));
        let ResilienceError::BreakerOpen(open) = error else {
            panic!("expected the breaker to stop the retries, got {error:?}");
        };
        assert_eq!(open.retry_in, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_call_to_an_open_breaker_costs_nothing_and_never_reaches_the_service() {
        let (breaker, policy, clock) = setup(1);
        let script = Script::new(vec![unavailable()]);
        let first = call_with_resilience(&breaker, &policy, true, |n| script.call(n)).await;
        assert!(matches!(first, Err(ResilienceError::BreakerOpen(_))));
        clock.advance(Duration::from_millis(800));
        let on_the_clock = clock.now();
        let wall = Instant::now();
        for _ in 0..1000 {
            let error = call_with_resilience(&breaker, &policy, true, |n| script.call(n))
                .await
                .unwrap_err();
            let status = error.into_status();
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), "circuit open for memory: retry in 4.2s");
        }
        assert!(
            wall.elapsed() < Duration::from_millis(500),
            "{:?}",
            wall.elapsed()
        );
        assert_eq!(clock.now(), on_the_clock);
        assert_eq!(script.attempts(), [1]);
    }

    #[tokio::test]
    async fn a_recovered_service_is_probed_and_the_call_goes_through() {
        let (breaker, policy, clock) = setup(1);
        let script = Script::new(vec![unavailable()]);
        let _ = call_with_resilience(&breaker, &policy, true, |n| script.call(n)).await;
        clock.advance(Duration::from_secs(5));
        let answer = call_with_resilience(&breaker, &policy, true, |n| script.call(n)).await;
        assert_eq!(answer.unwrap(), "stored");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_call_can_run_on_another_task() {
        let (breaker, policy, _clock) = setup(5);
        let task = tokio::spawn(async move {
            let op = |_| async { Ok::<_, Status>(7) };
            call_with_resilience(&breaker, &policy, true, op).await
        });
        assert_eq!(task.await.unwrap().unwrap(), 7);
    }
    /// Two replica breakers (`memory@a`, `memory@b`) on one manual clock.
    fn twins(threshold: u32) -> ([CircuitBreaker; 2], RetryPolicy, ManualClock) {
        let (_, policy, clock) = setup(threshold);
        let settings = BreakerSettings::new(threshold, Duration::from_secs(5)).unwrap();
        let breaker = |name: &str| CircuitBreaker::new(name, settings, Arc::new(clock.clone()));
        ([breaker("memory@a"), breaker("memory@b")], policy, clock)
    }

    /// A replica that is gone (refuses every connection) and one that stores.
    async fn one_gone(tried: Try, sends: &Mutex<Vec<Try>>) -> Result<&'static str, Status> {
        sends.lock().unwrap().push(tried);
        match tried.replica {
            0 => Err(unavailable()),
            _ => Ok("stored"),
        }
    }

    #[tokio::test]
    async fn a_call_to_a_gone_replica_goes_on_to_its_twin_at_once() {
        let (breakers, policy, clock) = twins(5);
        let sends = Mutex::new(Vec::new());
        let start = clock.now();
        let answer = call_across(&breakers, 0, &policy, true, |t| one_gone(t, &sends)).await;
        assert_eq!(answer.unwrap(), "stored");
        let sends = sends.lock().unwrap().clone();
        let first = Try {
            attempt: 1,
            replica: 0,
            first_of_attempt: true,
        };
        let second = Try {
            attempt: 1,
            replica: 1,
            first_of_attempt: false,
        };
        assert_eq!(sends, [first, second]);
        assert_eq!(clock.now(), start, "no backoff before the twin");
    }

    #[tokio::test]
    async fn an_open_replica_is_skipped_and_its_twin_stays_closed() {
        let (breakers, policy, _clock) = twins(1);
        let sends = Mutex::new(Vec::new());
        let first = call_across(&breakers, 0, &policy, true, |t| one_gone(t, &sends)).await;
        assert_eq!(first.unwrap(), "stored");
        assert_eq!(breakers[0].state(), BreakerState::Open);
        sends.lock().unwrap().clear();
        for start in 0..4 {
            let answer =
                call_across(&breakers, start, &policy, true, |t| one_gone(t, &sends)).await;
            assert_eq!(answer.unwrap(), "stored");
        }
        let replicas: Vec<usize> = sends.lock().unwrap().iter().map(|t| t.replica).collect();
        assert_eq!(replicas, [1, 1, 1, 1], "the open replica is never sent to");
        assert_eq!(breakers[1].state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn calls_start_at_the_replica_given() {
        let (breakers, policy, _clock) = twins(5);
        for start in [0, 1, 2, 3] {
            let replica = call_across(&breakers, start, &policy, true, |t| async move {
                Ok::<_, Status>(t.replica)
            })
            .await
            .unwrap();
            assert_eq!(replica, start % 2);
        }
    }

    #[tokio::test]
    async fn a_refusal_is_not_sent_to_the_twin() {
        let (breakers, policy, _clock) = twins(5);
        let sends = Mutex::new(Vec::new());
        let error = call_across(&breakers, 0, &policy, true, |t| {
            sends.lock().unwrap().push(t.replica);
            async { Err::<(), _>(Status::invalid_argument("bad")) }
        })
        .await
        .unwrap_err();
        assert_eq!(error.into_status().code(), tonic::Code::InvalidArgument);
        assert_eq!(*sends.lock().unwrap(), [0]);
    }

    #[tokio::test]
    async fn when_every_replica_is_gone_the_call_fails_and_then_every_breaker_refuses() {
        let (breakers, policy, _clock) = twins(4);
        let sends = Mutex::new(Vec::new());
        let error = call_across(&breakers, 0, &policy, true, |t| {
            sends.lock().unwrap().push((t.attempt, t.replica));
            async { Err::<(), _>(unavailable()) }
        })
        .await
        .unwrap_err();
        // Attempt 1 tries a then b; attempt 2 starts at b; each breaker counts 4 failures.
        assert_eq!(
            *sends.lock().unwrap(),
            [
                (1, 0),
                (1, 1),
                (2, 1),
                (2, 0),
                (3, 0),
                (3, 1),
                (4, 1),
                (4, 0)
            ]
        );
        assert_eq!(error.to_string(), "Unavailable: connection refused");
        let again = call_across(&breakers, 0, &policy, true, |_| async { Ok(()) }).await;
        let Err(ResilienceError::BreakerOpen(open)) = again else {
            panic!("expected every breaker open, got {again:?}");
        };
        assert_eq!(open.service, "memory@a");
    }
}
