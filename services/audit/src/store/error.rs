//! The store's one error enum and the kind of each error, for the gRPC layer's status mapping.

use rusqlite::ErrorCode;

use super::types::SessionStatus;

/// What went wrong, in words a caller can act on.
///
/// Errors are `Clone` because one failed commit answers every command of its batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The session ID is empty.
    #[error("session_id must not be empty")]
    EmptySessionId,
    /// The session ID has a character outside `[A-Za-z0-9_.:-]`.
    #[error(
        "session_id may contain only letters, digits, '_', '-', '.' and ':', found {character:?}"
    )]
    SessionIdCharacter {
        /// The first character that is not allowed.
        character: char,
    },
    /// A session event's kind has a character outside `[a-z0-9._-]`.
    #[error(
        "kind may contain only lowercase letters, digits, '.', '_' and '-', found {character:?}"
    )]
    EventKindCharacter {
        /// The first character that is not allowed.
        character: char,
    },
    /// A required text field is empty.
    #[error("{field} must not be empty")]
    EmptyField {
        /// The field's name in the request.
        field: &'static str,
    },
    /// A text field has more characters than allowed.
    #[error("{field} must be at most {max} characters, got {len}")]
    TooManyChars {
        /// The field's name in the request.
        field: &'static str,
        /// The limit, in characters.
        max: usize,
        /// The field's length, in characters.
        len: usize,
    },
    /// A text field has more bytes than allowed.
    #[error("{field} must be at most {max} bytes, got {len}")]
    TooManyBytes {
        /// The field's name in the request.
        field: &'static str,
        /// The limit, in bytes.
        max: usize,
        /// The field's length, in bytes.
        len: usize,
    },
    /// A number that must be zero or more is negative.
    #[error("{field} must be >= 0, got {value}")]
    Negative {
        /// The field's name in the request.
        field: &'static str,
        /// The value given.
        value: i64,
    },
    /// A session can only be ended with a final status.
    #[error("status must be completed, failed or interrupted to end a session, got {status}")]
    NotAFinalStatus {
        /// The status given (`active`).
        status: SessionStatus,
    },
    /// A field the layer above the store checks itself is invalid.
    #[error("{field} {reason}")]
    Invalid {
        /// The field's name in the request.
        field: &'static str,
        /// What is wrong with it, e.g. `must be >= 0`.
        reason: String,
    },
    /// A tool call of a turn is invalid (`tool_calls[2].turn_id: ...`).
    #[error("tool_calls[{index}].{reason}")]
    InvalidToolCall {
        /// The tool call's position in the turn.
        index: usize,
        /// What is wrong, starting with the field (`turn_id: 7 is not ...`).
        reason: String,
    },
    /// The page size is out of range.
    #[error("page_size must be between 0 and {max} (0 means {default}), got {size}", max = super::cursor::MAX_PAGE_SIZE, default = super::cursor::DEFAULT_PAGE_SIZE)]
    InvalidPageSize {
        /// The page size given.
        size: i64,
    },
    /// The page token was not made by this listing.
    #[error("page_token is not a token this listing returned")]
    InvalidPageToken,
    /// No session has this ID.
    #[error("session {:?} not found", heist_plumbing::quote(.session_id))]
    SessionNotFound {
        /// The session ID asked for.
        session_id: String,
    },
    /// A session with this ID exists with other metadata.
    #[error("session {:?} already exists with other metadata", heist_plumbing::quote(.session_id))]
    SessionExists {
        /// The session ID.
        session_id: String,
    },
    /// The idempotency key was already used in the session for other content.
    #[error(
        "idempotency_key {:?} was already used in session {:?} for a different write",
        heist_plumbing::quote(.key),
        heist_plumbing::quote(.session_id)
    )]
    IdempotencyConflict {
        /// The session ID.
        session_id: String,
        /// The idempotency key.
        key: String,
    },
    /// The session has ended, so nothing more can be written to it.
    #[error("session {:?} has ended ({status}); it accepts no more writes", heist_plumbing::quote(.session_id))]
    SessionEnded {
        /// The session ID.
        session_id: String,
        /// The status it ended with.
        status: SessionStatus,
    },
    /// The session already ended with another turn count or status.
    #[error(
        "session {:?} already ended as {status} after {num_turns} turns; it cannot end differently",
        heist_plumbing::quote(.session_id)
    )]
    EndedDifferently {
        /// The session ID.
        session_id: String,
        /// The status it ended with.
        status: SessionStatus,
        /// The turn count it ended with.
        num_turns: i64,
    },
    /// The database file was written by a newer version of this service.
    #[error(
        "audit database schema version {found} is newer than this build supports ({supported})"
    )]
    SchemaTooNew {
        /// The file's `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The disk, or the configured `max_db_pages`, is full.
    #[error("audit database is full")]
    Full,
    /// The storage cannot serve the request now (I/O, read-only file, lock, writer gone).
    #[error("audit storage unavailable: {cause}")]
    Unavailable {
        /// What failed.
        cause: String,
    },
    /// A bug in the store; the cause is for the log, not for the caller.
    #[error("internal audit store error: {cause}")]
    Internal {
        /// What failed.
        cause: String,
    },
}

/// The class of a [`StoreError`], one per gRPC status code the store can cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed (INVALID_ARGUMENT).
    InvalidArgument,
    /// The session does not exist (NOT_FOUND).
    NotFound,
    /// The write clashes with a stored one (ALREADY_EXISTS).
    AlreadyExists,
    /// The session is not in a state that allows the write (FAILED_PRECONDITION).
    FailedPrecondition,
    /// Storage failed; retrying later may work (UNAVAILABLE).
    Unavailable,
    /// A bug (INTERNAL).
    Internal,
}

impl StoreError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::EmptySessionId
            | StoreError::SessionIdCharacter { .. }
            | StoreError::EventKindCharacter { .. }
            | StoreError::EmptyField { .. }
            | StoreError::TooManyChars { .. }
            | StoreError::TooManyBytes { .. }
            | StoreError::Negative { .. }
            | StoreError::NotAFinalStatus { .. }
            | StoreError::Invalid { .. }
            | StoreError::InvalidToolCall { .. }
            | StoreError::InvalidPageSize { .. }
            | StoreError::InvalidPageToken => ErrorKind::InvalidArgument,
            StoreError::SessionNotFound { .. } => ErrorKind::NotFound,
            StoreError::SessionExists { .. } | StoreError::IdempotencyConflict { .. } => {
                ErrorKind::AlreadyExists
            }
            StoreError::SessionEnded { .. }
            | StoreError::EndedDifferently { .. }
            | StoreError::SchemaTooNew { .. } => ErrorKind::FailedPrecondition,
            StoreError::Full | StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// True for a write the store refused by its rules (bad input, unknown
    /// session, a clash, a session's state), as opposed to storage failing.
    pub(crate) fn is_refusal(&self) -> bool {
        !matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Internal)
    }

    /// An `InvalidArgument` error for a field checked outside the store
    /// (e.g. `invalid("after_message_id", "must be >= 0")`).
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// An `Unavailable` error with the given cause.
    pub(crate) fn unavailable(cause: impl Into<String>) -> Self {
        StoreError::Unavailable {
            cause: cause.into(),
        }
    }

    /// An `Internal` error with the given cause.
    pub fn internal(cause: impl Into<String>) -> Self {
        StoreError::Internal {
            cause: cause.into(),
        }
    }
}

/// Sorts SQLite's failures: a full disk, storage trouble the caller may retry, or our bug.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::FileLockingProtocolFailed,
            ) => StoreError::unavailable(error.to_string()),
            _ => StoreError::internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_is_the_full_error() {
        let error = StoreError::from(sqlite_error(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(error, StoreError::Full);
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(error.to_string(), "audit database is full");
    }

    #[test]
    fn io_and_readonly_failures_are_unavailable_with_their_cause() {
        for code in [rusqlite::ffi::SQLITE_IOERR, rusqlite::ffi::SQLITE_READONLY] {
            let error = StoreError::from(sqlite_error(code));
            assert_eq!(error.kind(), ErrorKind::Unavailable);
            assert!(error.to_string().starts_with("audit storage unavailable: "));
        }
    }

    #[test]
    fn other_sqlite_failures_are_internal() {
        let error = StoreError::from(rusqlite::Error::InvalidColumnIndex(9));
        assert_eq!(error.kind(), ErrorKind::Internal);
        let error = StoreError::from(sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert_eq!(error.kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_field_checked_outside_the_store_is_an_invalid_argument() {
        let error = StoreError::invalid("after_message_id", "must be >= 0");
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(error.to_string(), "after_message_id must be >= 0");
    }

    #[test]
    fn messages_name_the_field_and_the_limit() {
        let error = StoreError::TooManyChars {
            field: "agent_name",
            max: 128,
            len: 129,
        };
        assert_eq!(
            error.to_string(),
            "agent_name must be at most 128 characters, got 129"
        );
        let error = StoreError::EventKindCharacter { character: 'B' };
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            error.to_string(),
            "kind may contain only lowercase letters, digits, '.', '_' and '-', found 'B'"
        );
        let error = StoreError::InvalidPageSize { size: 1001 };
        assert_eq!(
            error.to_string(),
            "page_size must be between 0 and 1000 (0 means 100), got 1001"
        );
    }
}
