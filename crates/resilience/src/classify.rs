//! Which failed calls are worth another attempt, and which say that a service is unwell.
//!
//! The two are the same classes: UNAVAILABLE, a deadline or a cancellation (tonic reports its own
//! client timeout as CANCELLED), and UNKNOWN when its message shows the transport failed. Every
//! other code is an answer from a working service (bad input, no permission, not found, ...):
//! repeating the call would get the same answer, and the service is fine.

use tonic::{Code, Status};

/// Parts of an UNKNOWN status's message (lowercase) that mean the connection failed, not the call.
const TRANSPORT_MARKERS: [&str; 6] = [
    "transport error",
    "connect",
    "broken pipe",
    "h2 protocol error",
    "reset by peer",
    "channel closed",
];

/// Whether a call that failed with `status` may be tried again.
///
/// UNAVAILABLE always (the request was not served, or the call carries an idempotency key);
/// DEADLINE_EXCEEDED, CANCELLED and transport-level UNKNOWN only when the call is `idempotent`,
/// since the first attempt may have been served; never any other code.
pub fn is_retryable(status: &Status, idempotent: bool) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::DeadlineExceeded | Code::Cancelled => idempotent,
        Code::Unknown => idempotent && is_transport_failure(status.message()),
        _ => false,
    }
}

/// Whether a call that failed with `status` says the service is unwell (what a circuit breaker
/// counts): the retryable classes, whatever the call.
pub fn is_health_failure(status: &Status) -> bool {
    is_retryable(status, true)
}

/// Whether a call that failed with `status` was not served because the replica it went to is
/// gone or unreachable (UNAVAILABLE, or UNKNOWN from a failed connection): a call across
/// replicas goes on to the next one at once.
pub fn is_replica_gone(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown => is_transport_failure(status.message()),
        _ => false,
    }
}

/// Whether an UNKNOWN status's message describes a failed connection.
fn is_transport_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    TRANSPORT_MARKERS
        .iter()
        .any(|marker| message.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_replica_sends_a_call_on_to_the_next() {
        assert!(is_replica_gone(&Status::unavailable("tcp connect error")));
        assert!(is_replica_gone(&Status::unknown("transport error")));
        assert!(!is_replica_gone(&Status::unknown("a tool panicked")));
        assert!(!is_replica_gone(&Status::deadline_exceeded("slow")));
        assert!(!is_replica_gone(&Status::invalid_argument("bad")));
    }

    /// Every code with a message that is not about the transport: (code, retryable when
    /// idempotent, retryable when not, a health failure).
    const TABLE: [(Code, bool, bool, bool); 17] = [
        (Code::Ok, false, false, false),
        (Code::Cancelled, true, false, true),
        (Code::Unknown, false, false, false),
        (Code::InvalidArgument, false, false, false),
        (Code::DeadlineExceeded, true, false, true),
        (Code::NotFound, false, false, false),
        (Code::AlreadyExists, false, false, false),
        (Code::PermissionDenied, false, false, false),
        (Code::ResourceExhausted, false, false, false),
        (Code::FailedPrecondition, false, false, false),
        (Code::Aborted, false, false, false),
        (Code::OutOfRange, false, false, false),
        (Code::Unimplemented, false, false, false),
        (Code::Internal, false, false, false),
        (Code::Unavailable, true, true, true),
        (Code::DataLoss, false, false, false),
        (Code::Unauthenticated, false, false, false),
    ];

    #[test]
    fn every_code_is_classified_as_the_table_says() {
        for (code, idempotent, not_idempotent, unwell) in TABLE {
            let status = Status::new(code, "the answer");
            assert_eq!(
                is_retryable(&status, true),
                idempotent,
                "{code:?} idempotent"
            );
            assert_eq!(is_retryable(&status, false), not_idempotent, "{code:?}");
            assert_eq!(is_health_failure(&status), unwell, "{code:?} health");
        }
    }

    #[test]
    fn unknown_from_a_failed_transport_is_retried_only_when_idempotent() {
        for message in [
            "transport error",
            "error trying to connect: tcp connect error: Connection refused",
            "connection error: Broken pipe (os error 32)",
            "h2 protocol error: stream no longer needed",
            "Connection reset by peer (os error 104)",
        ] {
            let status = Status::unknown(message);
            assert!(is_retryable(&status, true), "{message}");
            assert!(!is_retryable(&status, false), "{message}");
            assert!(is_health_failure(&status), "{message}");
        }
    }

    #[test]
    fn unknown_from_the_service_itself_is_never_retried() {
        let status = Status::unknown("tool raised an exception");
        assert!(!is_retryable(&status, true));
        assert!(!is_health_failure(&status));
    }

    #[test]
    fn a_message_about_connections_does_not_make_other_codes_retryable() {
        let status = Status::invalid_argument("connection string is malformed");
        assert!(!is_retryable(&status, true));
        assert!(!is_health_failure(&status));
    }
}
