//! Why a retry policy or a breaker setting from the config was refused.

use std::time::Duration;

/// A retry or breaker setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A call must be tried at least once.
    #[error("max_attempts must be at least 1, got 0")]
    ZeroAttempts,
    /// The backoff multiplier is not a finite number of at least 1.
    #[error("backoff multiplier must be a finite number of at least 1, got {0}")]
    BadMultiplier(f64),
    /// The first backoff is longer than the longest one.
    #[error("initial backoff {initial:?} is longer than max backoff {max:?}")]
    BackoffRange {
        /// The initial backoff given.
        initial: Duration,
        /// The max backoff given.
        max: Duration,
    },
    /// A breaker must need at least one failure to open.
    #[error("failure_threshold must be at least 1, got 0")]
    ZeroThreshold,
    /// A breaker's open period is zero (it would protect nothing) or longer than a day.
    #[error("open_for must be more than zero and at most 1 day, got {0:?}")]
    OpenFor(Duration),
}
