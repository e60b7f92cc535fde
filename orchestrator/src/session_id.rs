//! Session IDs: `heist_YYYYMMDD_HHMMSS_xxxx`, the seed's form plus a suffix
//! so that sessions started in the same second never collide: within one
//! process the suffixes count up from a random start; across processes they
//! are random (and Audit refuses a reused ID with other data).

use std::time::{SystemTime, UNIX_EPOCH};

/// A new session ID for the current UTC time.
pub fn new_session_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let suffix = random_suffix(now.as_nanos());
    format_session_id(now.as_secs(), suffix)
}

/// `heist_YYYYMMDD_HHMMSS_xxxx` for `unix_seconds` (UTC) and a 16-bit suffix.
pub fn format_session_id(unix_seconds: u64, suffix: u16) -> String {
    let (year, month, day, hour, minute, second) = civil_from_unix(unix_seconds);
    format!("heist_{year:04}{month:02}{day:02}_{hour:02}{minute:02}{second:02}_{suffix:04x}")
}

/// A per-process random start plus a counter: unique within the process
/// (for up to 65 536 sessions a second), random across processes.
fn random_suffix(nanos: u128) -> u16 {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU16, Ordering},
    };
    static BASE: OnceLock<u16> = OnceLock::new();
    static COUNTER: AtomicU16 = AtomicU16::new(0);
    let base = *BASE.get_or_init(|| {
        let seed = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
        (crate::turn_order::mix(seed) & 0xFFFF) as u16
    });
    base.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Days-to-civil (Howard Hinnant's algorithm), UTC.
fn civil_from_unix(seconds: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year as u64,
        month as u64,
        day as u64,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_seeds_shape_with_a_suffix() {
        // 2025-01-16 14:30:52 UTC
        assert_eq!(
            format_session_id(1_737_037_852, 0xa1b2),
            "heist_20250116_143052_a1b2"
        );
        assert_eq!(
            format_session_id(951_782_400, 1),
            "heist_20000229_000000_0001"
        );
    }

    #[test]
    fn ids_made_in_the_same_second_differ() {
        let ids: std::collections::HashSet<_> = (0..200).map(|_| new_session_id()).collect();
        assert!(
            ids.len() >= 199,
            "suffixes collide too often: {}",
            ids.len()
        );
        assert!(
            ids.iter()
                .all(|id| id.len() == "heist_20250116_143052_a1b2".len())
        );
    }
}
