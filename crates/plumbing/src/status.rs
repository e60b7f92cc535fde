//! The one mapping from a service's errors to `tonic::Status`.
//!
//! Each service has one error enum that says which gRPC code each variant
//! is ([`ServiceError::code`]). Callers' faults travel with their readable
//! message; our own faults (`INTERNAL`, `UNKNOWN`, `DATA_LOSS`) are logged
//! with their cause and answered with a plain message, so internals never leak.
//! Every message is capped at [`crate::quote::MAX_MESSAGE_BYTES`] (the last
//! guard: the values it quotes should already be cut by [`crate::quote`]), so a
//! status never exceeds the HTTP/2 header limit whatever a call site forgot, and
//! its control characters are escaped.

use tonic::{Code, Status};

/// An error a service can answer with.
pub trait ServiceError: std::error::Error {
    /// The gRPC code that describes this error to the caller.
    fn code(&self) -> Code;
}

/// Turns a service error into the status sent to the caller.
pub fn to_status<E: ServiceError>(error: &E) -> Status {
    let code = error.code();
    match code {
        Code::Internal | Code::Unknown | Code::DataLoss => {
            tracing::error!(error = %error, "internal error");
            Status::new(code, "internal error; see the service log")
        }
        _ => Status::new(code, guarded(&error.to_string())),
    }
}

/// The last guard on a message sent to a caller: control characters escaped
/// (a message may be printed on a terminal or written to a log), and the whole
/// capped at [`crate::quote::MAX_MESSAGE_BYTES`].
fn guarded(message: &str) -> String {
    let escaped = crate::quote::escape_for_log(message, usize::MAX, false);
    crate::quote::cap_message(escaped)
}

/// `error` and its sources, `: `-separated, each said once: a cause whose
/// text the message already holds (many errors repeat their source in
/// their own message) is not repeated. For one-line start-up errors and
/// for reasons that wrap a driver's error.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The code as gRPC names it (`OK`, `UNAVAILABLE`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key.file: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn a_chain_says_each_cause_once() {
        let io = || std::io::Error::other("is a directory");
        assert_eq!(
            error_chain(&Repeats { source: io() }),
            "cannot read key.file: is a directory"
        );
        assert_eq!(error_chain(&Wraps(io())), "cannot connect: is a directory");
    }

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("turn_id must be >= 0, got -1")]
        Bad,
        #[error("disk controller exploded at 0xdeadbeef")]
        Bug,
    }

    impl ServiceError for Sample {
        fn code(&self) -> Code {
            match self {
                Sample::Bad => Code::InvalidArgument,
                Sample::Bug => Code::Internal,
            }
        }
    }

    #[test]
    fn a_callers_fault_keeps_its_message() {
        let status = to_status(&Sample::Bad);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "turn_id must be >= 0, got -1");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Huge(String);

    impl ServiceError for Huge {
        fn code(&self) -> Code {
            Code::InvalidArgument
        }
    }

    #[test]
    fn a_huge_message_is_capped() {
        let status = to_status(&Huge("x".repeat(1 << 20)));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= crate::quote::MAX_MESSAGE_BYTES);
        assert!(status.message().ends_with("…(message cut; 1048576 bytes)"));
    }

    #[test]
    fn a_control_character_that_reached_a_message_is_escaped() {
        let status = to_status(&Huge("no such column: a\nb\u{1b}[2J".into()));
        assert_eq!(status.message(), "no such column: a\\nb\\u{1b}[2J");
    }

    #[test]
    fn an_internal_fault_hides_its_cause() {
        let status = to_status(&Sample::Bug);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("deadbeef"));
    }
}
