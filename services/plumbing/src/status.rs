//! The one mapping from a service's errors to `tonic::Status`.
//!
//! Each service has one error enum that says which gRPC code each variant
//! is ([`ServiceError::code`]). Callers' faults travel with their readable
//! message; our own faults (`INTERNAL`, `UNKNOWN`, `DATA_LOSS`) are logged
//! with their cause and answered with a plain message, so internals never leak.

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
        _ => Status::new(code, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_internal_fault_hides_its_cause() {
        let status = to_status(&Sample::Bug);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("deadbeef"));
    }
}
