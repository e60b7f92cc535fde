//! Checks of the caller's input, each failing with an error that names the field.

use super::error::MemoryError;

/// The longest agent or session ID, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// The default number of recent turns returned verbatim (asked for with 0).
pub const DEFAULT_RECENT_COUNT: i64 = 5;
/// The fewest recent turns one may ask for.
pub const MIN_RECENT_COUNT: i64 = 1;
/// The most recent turns one may ask for.
pub const MAX_RECENT_COUNT: i64 = 100;
/// The default summary length limit in characters (asked for with 0).
pub const DEFAULT_MAX_CHARS: i64 = 2000;
/// The smallest summary length limit one may ask for.
pub const MIN_MAX_CHARS: i64 = 1;
/// The largest summary length limit one may ask for.
pub const MAX_MAX_CHARS: i64 = 65536;

/// Checks an agent or session ID: not empty, at most [`MAX_ID_CHARS`] characters.
pub(super) fn id(field: &'static str, value: &str) -> Result<(), MemoryError> {
    if value.is_empty() {
        return Err(MemoryError::EmptyId { field });
    }
    // Counting stops just past the limit, so a huge ID costs no more than a long one.
    let chars = value.chars().take(MAX_ID_CHARS + 1).count();
    if chars > MAX_ID_CHARS {
        return Err(MemoryError::IdTooLong {
            field,
            chars: value.chars().count(),
            limit: MAX_ID_CHARS,
        });
    }
    Ok(())
}

/// Checks both IDs of a stream.
pub(super) fn stream(agent_id: &str, session_id: &str) -> Result<(), MemoryError> {
    id("agent_id", agent_id)?;
    id("session_id", session_id)
}

/// Checks a turn ID: 0 or more.
pub(super) fn turn_id(value: i64) -> Result<(), MemoryError> {
    if value < 0 {
        return Err(MemoryError::NegativeTurnId(value));
    }
    Ok(())
}

/// Checks a message: not empty, at most `limit` bytes.
pub(super) fn message(value: &str, limit: usize) -> Result<(), MemoryError> {
    if value.is_empty() {
        return Err(MemoryError::EmptyMessage);
    }
    if value.len() > limit {
        return Err(MemoryError::MessageTooLong {
            bytes: value.len(),
            limit,
        });
    }
    Ok(())
}

/// Checks that `value` lies in `min..=max` and returns it as a count.
pub(super) fn in_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<usize, MemoryError> {
    let out_of_range = MemoryError::OutOfRange {
        field,
        value,
        min,
        max,
    };
    if !(min..=max).contains(&value) {
        return Err(out_of_range);
    }
    usize::try_from(value).map_err(|_| out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_is_rejected_by_field() {
        assert_eq!(
            id("agent_id", ""),
            Err(MemoryError::EmptyId { field: "agent_id" })
        );
    }

    #[test]
    fn an_id_of_128_characters_is_accepted_and_129_rejected() {
        let ok = "é".repeat(MAX_ID_CHARS);
        assert_eq!(id("session_id", &ok), Ok(()));
        let long = "é".repeat(MAX_ID_CHARS + 1);
        assert_eq!(
            id("session_id", &long),
            Err(MemoryError::IdTooLong {
                field: "session_id",
                chars: 129,
                limit: 128
            })
        );
    }

    #[test]
    fn a_negative_turn_is_rejected_and_zero_accepted() {
        assert_eq!(turn_id(0), Ok(()));
        assert_eq!(turn_id(-4), Err(MemoryError::NegativeTurnId(-4)));
    }

    #[test]
    fn a_message_is_limited_in_bytes_not_characters() {
        assert_eq!(message("ééé", 6), Ok(()));
        assert_eq!(
            message("éééé", 6),
            Err(MemoryError::MessageTooLong { bytes: 8, limit: 6 })
        );
        assert_eq!(message("", 6), Err(MemoryError::EmptyMessage));
    }

    #[test]
    fn a_value_outside_its_range_is_rejected_with_the_range() {
        assert_eq!(in_range("recent_count", 100, 1, 100), Ok(100));
        assert_eq!(
            in_range("recent_count", 101, 1, 100),
            Err(MemoryError::OutOfRange {
                field: "recent_count",
                value: 101,
                min: 1,
                max: 100
            })
        );
        assert!(in_range("recent_count", -1, 1, 100).is_err());
    }
}
