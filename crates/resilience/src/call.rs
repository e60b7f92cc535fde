//! One call to a service with its breaker and retry policy: the loop the engine's calls run in.

use std::{future::Future, time::Duration};

use tonic::Status;

use super::{
    breaker::{BreakerOpen, CircuitBreaker, Outcome},
    classify::is_retryable,
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
    let mut rng = SplitMix64::from_time();
    let mut attempt = 1;
    loop {
        let permit = breaker.try_acquire()?;
        let result = op(attempt).await;
        permit.record(Outcome::of(&result));
        let status = match result {
            Ok(value) => return Ok(value),
            Err(status) => status,
        };
        if attempt >= policy.max_attempts() || !is_retryable(&status, idempotent) {
            return Err(ResilienceError::Status(status));
        }
        let error = status_text(&status);
        let service = breaker.service();
        if let Err(open) = breaker.check() {
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
        breaker.sleep(wait).await;
        attempt += 1;
    }
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
}
