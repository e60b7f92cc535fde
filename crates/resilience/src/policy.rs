//! The retry policy: how many attempts, and how long to wait between them (exponential
//! backoff with jitter, capped); [`exponential_backoff`], the formula without jitter.

use std::time::Duration;

use super::settings_error::SettingsError;

/// How a backoff is spread so that clients do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// A uniform wait between zero and the exponential backoff ("full jitter").
    #[default]
    Full,
    /// Half the exponential backoff, plus a uniform wait up to the other half ("equal jitter").
    Equal,
    /// Exactly the exponential backoff.
    None,
}

impl Jitter {
    /// Spreads `ceiling` with random numbers from `rng`.
    fn apply(self, ceiling: Duration, rng: &mut impl FnMut() -> u64) -> Duration {
        match self {
            Self::Full => uniform_up_to(ceiling, rng),
            Self::Equal => {
                let half = ceiling / 2;
                half + uniform_up_to(ceiling - half, rng)
            }
            Self::None => ceiling,
        }
    }
}

/// A uniform duration in `0..=max` (at nanosecond resolution, `max` clamped to ~584 years).
fn uniform_up_to(max: Duration, rng: &mut impl FnMut() -> u64) -> Duration {
    let span = u128::from(u64::try_from(max.as_nanos()).unwrap_or(u64::MAX)) + 1;
    let pick = (u128::from(rng()) * span) >> 64;
    Duration::from_nanos(u64::try_from(pick).unwrap_or(u64::MAX))
}

/// When and how often a failed call is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    max_attempts: u32,
    /// The backoff after the first failed attempt, before jitter.
    initial_backoff: Duration,
    /// The longest backoff, before jitter.
    max_backoff: Duration,
    /// How much the backoff grows per attempt (finite, at least 1).
    multiplier: f64,
    /// How the backoff is spread.
    jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 4 attempts; 50 ms doubling up to 2 s, with full jitter.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// A policy from config values, refused if it cannot work.
    pub fn new(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        multiplier: f64,
        jitter: Jitter,
    ) -> Result<Self, SettingsError> {
        if max_attempts == 0 {
            return Err(SettingsError::ZeroAttempts);
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(SettingsError::BadMultiplier(multiplier));
        }
        if initial_backoff > max_backoff {
            return Err(SettingsError::BackoffRange {
                initial: initial_backoff,
                max: max_backoff,
            });
        }
        Ok(Self {
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
            jitter,
        })
    }

    /// Attempts in all, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff after the first failed attempt, before jitter.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The longest backoff, before jitter.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// How much the backoff grows per attempt.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// How the backoff is spread.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The wait after failed attempt number `attempt` (1 for the first call; 0 counts as 1):
    /// `initial_backoff * multiplier^(attempt - 1)`, capped at `max_backoff`, then jittered
    /// with random numbers from `rng`. Never overflows, whatever `attempt`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl FnMut() -> u64) -> Duration {
        self.jitter.apply(self.ceiling(attempt), rng)
    }

    /// The backoff after failed attempt `attempt`, before jitter.
    fn ceiling(&self, attempt: u32) -> Duration {
        exponential_backoff(
            self.initial_backoff,
            self.multiplier,
            self.max_backoff,
            attempt.saturating_sub(1),
        )
    }
}

/// Exponential backoff without jitter: `initial * multiplier^growths`, capped at `max`.
///
/// The one backoff formula of the mesh: [`RetryPolicy`] jitters it, the LLM client's HTTP
/// retries use it as it is. Zero when `initial` is zero; never overflows, whatever `growths`.
pub fn exponential_backoff(
    initial: Duration,
    multiplier: f64,
    max: Duration,
    growths: u32,
) -> Duration {
    if initial.is_zero() {
        return Duration::ZERO;
    }
    let exponent = i32::try_from(growths).unwrap_or(i32::MAX);
    let seconds = initial.as_secs_f64() * multiplier.powi(exponent);
    Duration::try_from_secs_f64(seconds).map_or(max, |backoff| backoff.min(max))
}

#[cfg(test)]
mod tests {
    use super::super::rng::SplitMix64;
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy::new(4, ms(50), ms(2000), 2.0, jitter).unwrap()
    }

    fn no_rng() -> u64 {
        panic!("an unjittered backoff must not draw random numbers")
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_and_is_capped() {
        let policy = policy(Jitter::None);
        let waits: Vec<Duration> = (1..=8).map(|n| policy.backoff(n, &mut no_rng)).collect();
        let expected = [50, 100, 200, 400, 800, 1600, 2000, 2000].map(ms);
        assert_eq!(waits, expected);
    }

    #[test]
    fn attempt_zero_waits_like_the_first_attempt() {
        let policy = policy(Jitter::None);
        assert_eq!(policy.backoff(0, &mut no_rng), ms(50));
    }

    #[test]
    fn a_huge_attempt_number_neither_overflows_nor_passes_the_cap() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::None] {
            let policy = policy(jitter);
            assert_eq!(policy.backoff(u32::MAX, &mut || u64::MAX), ms(2000));
        }
        let unbounded = |jitter| RetryPolicy::new(3, ms(50), Duration::MAX, 10.0, jitter).unwrap();
        assert_eq!(
            unbounded(Jitter::None).backoff(u32::MAX, &mut no_rng),
            Duration::MAX
        );
        assert_eq!(
            unbounded(Jitter::Full).backoff(u32::MAX, &mut || u64::MAX),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn full_jitter_stays_between_zero_and_the_exponential_backoff() {
        let policy = policy(Jitter::Full);
        assert_eq!(policy.backoff(3, &mut || 0), Duration::ZERO);
        assert_eq!(policy.backoff(3, &mut || u64::MAX), ms(200));
        let mut rng = SplitMix64::new(1);
        for attempt in 1..=10 {
            let ceiling = policy.backoff(attempt, &mut || u64::MAX);
            for _ in 0..100 {
                let wait = policy.backoff(attempt, &mut || rng.next_u64());
                assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn equal_jitter_stays_between_half_and_all_of_the_exponential_backoff() {
        let policy = policy(Jitter::Equal);
        assert_eq!(policy.backoff(3, &mut || 0), ms(100));
        assert_eq!(policy.backoff(3, &mut || u64::MAX), ms(200));
        let mut rng = SplitMix64::new(2);
        for _ in 0..100 {
            let wait = policy.backoff(5, &mut || rng.next_u64());
            assert!((ms(400)..=ms(800)).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let policy = policy(Jitter::Full);
        let mut rng = SplitMix64::new(3);
        let waits: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| policy.backoff(4, &mut || rng.next_u64()))
            .collect();
        assert!(waits.len() > 15, "{waits:?}");
    }

    #[test]
    fn a_fixed_rng_gives_the_same_backoffs_every_time() {
        let policy = policy(Jitter::Full);
        let run = || {
            let mut rng = SplitMix64::new(99);
            (1..=6)
                .map(|n| policy.backoff(n, &mut || rng.next_u64()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_zero_initial_backoff_never_waits() {
        let policy = RetryPolicy::new(3, Duration::ZERO, ms(100), 2.0, Jitter::None).unwrap();
        assert_eq!(policy.backoff(u32::MAX, &mut no_rng), Duration::ZERO);
    }

    #[test]
    fn the_default_policy_is_four_attempts_from_50_ms_to_2_s_with_full_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 4);
        assert_eq!(policy.initial_backoff(), ms(50));
        assert_eq!(policy.max_backoff(), ms(2000));
        assert_eq!(policy.multiplier(), 2.0);
        assert_eq!(policy.jitter(), Jitter::Full);
    }

    #[test]
    fn zero_attempts_are_refused() {
        let error = RetryPolicy::new(0, ms(50), ms(100), 2.0, Jitter::Full).unwrap_err();
        assert_eq!(error, SettingsError::ZeroAttempts);
        assert_eq!(error.to_string(), "max_attempts must be at least 1, got 0");
    }

    #[test]
    fn a_multiplier_below_one_or_not_finite_is_refused() {
        for multiplier in [0.5, -2.0, f64::NAN, f64::INFINITY] {
            let error = RetryPolicy::new(3, ms(50), ms(100), multiplier, Jitter::Full).unwrap_err();
            assert!(
                matches!(error, SettingsError::BadMultiplier(_)),
                "{multiplier}"
            );
        }
        let error = RetryPolicy::new(3, ms(50), ms(100), 0.5, Jitter::Full).unwrap_err();
        assert_eq!(
            error.to_string(),
            "backoff multiplier must be a finite number of at least 1, got 0.5"
        );
    }

    #[test]
    fn an_initial_backoff_longer_than_the_max_is_refused() {
        let error = RetryPolicy::new(3, ms(500), ms(100), 2.0, Jitter::Full).unwrap_err();
        assert_eq!(
            error.to_string(),
            "initial backoff 500ms is longer than max backoff 100ms"
        );
    }
}
