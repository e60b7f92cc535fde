//! The bounds that keep the store's memory use finite.

use std::time::Duration;

use super::error::MemoryError;

/// How much the store keeps, and for how long.
///
/// Memory use is bounded by these limits: at most `max_total` turns holding at most
/// `max_total_bytes` of message text, in at most `max_sessions` sessions and `max_total`
/// (agent, session) streams (a stream always holds a turn), each ID at most 128 characters.
/// With the defaults that is 256 MiB of text, plus roughly 100 B of bookkeeping per turn and
/// at most about 1.5 KiB of IDs and maps per stream: about 400 MiB in the worst case, far
/// less in practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Turns kept per (agent, session); the oldest are evicted beyond it.
    pub max_per_stream: usize,
    /// Turns kept in all; whole sessions, least recently written first, are evicted beyond it.
    pub max_total: usize,
    /// Bytes of message text kept in all; evicts like `max_total`.
    pub max_total_bytes: usize,
    /// Sessions kept; evicts like `max_total`.
    pub max_sessions: usize,
    /// The longest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How long a session lives after its last write.
    pub ttl: Duration,
}

impl Limits {
    /// The default turns per (agent, session).
    pub const DEFAULT_MAX_PER_STREAM: usize = 1000;
    /// The default total turns.
    pub const DEFAULT_MAX_TOTAL: usize = 100_000;
    /// The default total bytes of message text (256 MiB).
    pub const DEFAULT_MAX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
    /// The default number of sessions.
    pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
    /// The default longest message (64 KiB).
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
    /// The default session lifetime after its last write (1 hour).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Checks that every limit is at least 1 and that no limit exceeds the one containing it.
    pub fn validate(&self) -> Result<(), MemoryError> {
        let counts = [
            ("max_per_stream", self.max_per_stream),
            ("max_total", self.max_total),
            ("max_total_bytes", self.max_total_bytes),
            ("max_sessions", self.max_sessions),
            ("max_message_bytes", self.max_message_bytes),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(MemoryError::ZeroLimit { name });
        }
        if self.ttl.is_zero() {
            return Err(MemoryError::ZeroLimit { name: "ttl" });
        }
        check_within(
            ("max_per_stream", self.max_per_stream),
            ("max_total", self.max_total),
        )?;
        check_within(
            ("max_message_bytes", self.max_message_bytes),
            ("max_total_bytes", self.max_total_bytes),
        )
    }
}

/// Fails when the limit `inner` exceeds the limit `outer` that contains it.
fn check_within(
    (name, value): (&'static str, usize),
    (bound, bound_value): (&'static str, usize),
) -> Result<(), MemoryError> {
    if value <= bound_value {
        return Ok(());
    }
    Err(MemoryError::LimitAboveBound {
        name,
        value: u64::try_from(value).unwrap_or(u64::MAX),
        bound,
        bound_value: u64::try_from(bound_value).unwrap_or(u64::MAX),
    })
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_per_stream: Self::DEFAULT_MAX_PER_STREAM,
            max_total: Self::DEFAULT_MAX_TOTAL,
            max_total_bytes: Self::DEFAULT_MAX_TOTAL_BYTES,
            max_sessions: Self::DEFAULT_MAX_SESSIONS,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            ttl: Self::DEFAULT_TTL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_limit_is_rejected_by_name() {
        let limits = Limits {
            max_sessions: 0,
            ..Limits::default()
        };
        assert_eq!(
            limits.validate(),
            Err(MemoryError::ZeroLimit {
                name: "max_sessions"
            })
        );
    }

    #[test]
    fn a_zero_ttl_is_rejected() {
        let limits = Limits {
            ttl: Duration::ZERO,
            ..Limits::default()
        };
        assert_eq!(
            limits.validate(),
            Err(MemoryError::ZeroLimit { name: "ttl" })
        );
    }

    #[test]
    fn a_per_stream_limit_above_the_total_is_rejected() {
        let limits = Limits {
            max_per_stream: 11,
            max_total: 10,
            ..Limits::default()
        };
        assert_eq!(
            limits.validate(),
            Err(MemoryError::LimitAboveBound {
                name: "max_per_stream",
                value: 11,
                bound: "max_total",
                bound_value: 10,
            })
        );
    }

    #[test]
    fn a_message_limit_above_the_total_bytes_is_rejected() {
        let limits = Limits {
            max_message_bytes: 2048,
            max_total_bytes: 1024,
            ..Limits::default()
        };
        assert!(matches!(
            limits.validate(),
            Err(MemoryError::LimitAboveBound {
                name: "max_message_bytes",
                ..
            })
        ));
    }
}
