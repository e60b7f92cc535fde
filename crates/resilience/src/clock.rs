//! Time for the breakers and the retry loop, injected so tests run without sleeping.
//!
//! [`TokioClock`] is the real one; [`ManualClock`] only moves when told to (or when something
//! sleeps on it), so a test can cross a breaker's open period in no time at all.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// A sleep in progress, as returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic time that can also wait.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Tokio's clock: real time, or tokio's paused time in tests that pause it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that stands still until advanced; sleeping on it advances it at once.
///
/// Cheap to clone: clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// The current instant, shared by every clone.
    now: Arc<Mutex<Instant>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock starting at the real current instant.
    pub fn new() -> Self {
        Self {
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock forward by `duration` (left as it is if the sum is not representable).
    pub fn advance(&self, duration: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add(duration).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(3));
        assert_eq!(clock.now() - start, Duration::from_secs(3));
    }

    #[tokio::test]
    async fn sleeping_on_a_manual_clock_advances_it_at_once() {
        let clock = ManualClock::new();
        let copy = clock.clone();
        let start = clock.now();
        clock.sleep(Duration::from_millis(250)).await;
        assert_eq!(copy.now() - start, Duration::from_millis(250));
    }
}
