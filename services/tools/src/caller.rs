//! Who calls a tool and until when: the client (the token's `sub`), the
//! caller's deadline (its `grpc-timeout`) and whether it is still waiting
//! for the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// The caller of one tool call, as a tool running it sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client id the caller's token was issued to.
    client: String,
    /// When the caller stops waiting, if it said.
    deadline: Option<Instant>,
    /// Set once nobody waits for the answer any more.
    cancelled: Arc<AtomicBool>,
}

/// Marks its [`Caller`] cancelled when dropped: hold it in the request's
/// future, so that a caller who goes away (or whose deadline the server
/// enforces) stops the work it started.
#[derive(Debug)]
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Caller {
    /// A caller `client` waiting until `deadline`, and the guard that
    /// cancels it when dropped.
    pub fn new(client: impl Into<String>, deadline: Option<Instant>) -> (Self, CancelOnDrop) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let caller = Self {
            client: client.into(),
            deadline,
            cancelled: Arc::clone(&cancelled),
        };
        (caller, CancelOnDrop(cancelled))
    }

    /// The service itself: no deadline, never cancelled.
    pub fn internal() -> Self {
        Self {
            client: "(internal)".to_owned(),
            deadline: None,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The client id the caller's token was issued to.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether nobody waits for the answer any more.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the caller's deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// The deadline a gRPC request carries in its `grpc-timeout` header
/// (`<up to 8 digits><H|M|S|m|u|n>`); `None` if absent or malformed, as
/// tonic treats it.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = text.len().checked_sub(1)?;
    let (digits, unit) = (text.get(..unit_at)?, text.get(unit_at..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&metadata)
    }

    #[test]
    fn every_unit_of_the_grpc_timeout_header_is_read() {
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout_of("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            timeout_of("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn a_malformed_or_missing_header_is_no_deadline() {
        for bad in ["", "S", "12", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(timeout_of(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn dropping_the_guard_cancels_the_caller() {
        let (caller, guard) = Caller::new("planner", None);
        let copy = caller.clone();
        assert!(!caller.is_cancelled());
        drop(guard);
        assert!(caller.is_cancelled() && copy.is_cancelled());
        assert_eq!(caller.client(), "planner");
        assert!(!caller.deadline_passed());
        let (late, _guard) = Caller::new("x", Some(Instant::now()));
        assert!(late.deadline_passed());
        assert!(!Caller::internal().is_cancelled());
    }
}
