//! Where the store's timestamps come from: the system clock, or an injected one in tests.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;

/// A source of the current time (cheap to clone).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::from_fn(Timestamp::now)
    }

    /// A clock that asks `now` for the time (for tests: fixed or stepping clocks).
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The current time as stored: RFC 3339 in UTC with exactly six fractional
    /// digits, so that the text sorts in time order.
    pub fn now_rfc3339(&self) -> String {
        format!("{:.6}", (self.0)())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_a_fixed_width_so_text_order_is_time_order() {
        let whole = Clock::from_fn(|| Timestamp::from_second(1_700_000_000).unwrap_or_default());
        let fraction =
            Clock::from_fn(|| Timestamp::new(1_700_000_000, 100_000_000).unwrap_or_default());
        assert_eq!(whole.now_rfc3339(), "2023-11-14T22:13:20.000000Z");
        assert_eq!(fraction.now_rfc3339(), "2023-11-14T22:13:20.100000Z");
        assert!(whole.now_rfc3339() < fraction.now_rfc3339());
    }

    #[test]
    fn the_system_clock_parses_back_as_a_timestamp() {
        let text = Clock::system().now_rfc3339();
        assert!(text.parse::<Timestamp>().is_ok(), "{text}");
    }
}
