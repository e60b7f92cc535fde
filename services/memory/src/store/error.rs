//! The store's errors and the kind each one belongs to.

/// What went wrong in a store operation; the message names the field and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// An ID field is empty.
    #[error("{field} is empty")]
    EmptyId {
        /// The field, e.g. `agent_id`.
        field: &'static str,
    },
    /// An ID field is longer than allowed.
    #[error("{field} is {chars} characters long; the limit is {limit}")]
    IdTooLong {
        /// The field, e.g. `session_id`.
        field: &'static str,
        /// Its length in characters.
        chars: usize,
        /// The limit in characters.
        limit: usize,
    },
    /// The turn ID is negative.
    #[error("turn_id is {0}; it must be 0 or more")]
    NegativeTurnId(i64),
    /// The message is empty.
    #[error("message is empty")]
    EmptyMessage,
    /// The message is longer than allowed.
    #[error("message is {bytes} bytes long; the limit is {limit} bytes")]
    MessageTooLong {
        /// Its length in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A numeric request field is outside its range.
    #[error("{field} is {value}; it must be from {min} to {max}")]
    OutOfRange {
        /// The field, e.g. `recent_count`.
        field: &'static str,
        /// The value given.
        value: i64,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// A clear named an agent but no session.
    #[error("agent_id is set but session_id is not; clearing one agent needs its session")]
    AgentWithoutSession,
    /// The turn was stored already with other content.
    #[error(
        "turn {turn_id} of agent `{agent_id}` in session `{session_id}` was already stored with other content"
    )]
    Conflict {
        /// The agent.
        agent_id: String,
        /// The session.
        session_id: String,
        /// The turn.
        turn_id: i64,
    },
    /// The store behind the service (Redis) cannot be reached or failed the operation.
    #[error("the memory store is unavailable: {reason}")]
    Unavailable {
        /// What failed, e.g. `Redis at 127.0.0.1:6379: connection refused`.
        reason: String,
    },
    /// The `--store` value is neither `memory` nor a Redis URL.
    #[error("--store {value}: {reason}")]
    BadStoreUrl {
        /// The value given, quoted (without its password).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis could not be reached (or refused the password) at start.
    #[error("cannot connect to Redis at {address}: {reason}")]
    Connect {
        /// `host:port` of the URL.
        address: String,
        /// Why, e.g. `connection refused`.
        reason: String,
    },
    /// Redis answered something the store never writes.
    #[error("unexpected data in the memory store: {0}")]
    Corrupt(String),
    /// A configured limit is zero.
    #[error("limit {name} is 0; it must be at least 1")]
    ZeroLimit {
        /// The limit, e.g. `max_per_stream`.
        name: &'static str,
    },
    /// A configured limit is larger than the limit that contains it.
    #[error("limit {name} is {value}; it must not exceed {bound} ({bound_value})")]
    LimitAboveBound {
        /// The limit, e.g. `max_per_stream`.
        name: &'static str,
        /// Its value.
        value: u64,
        /// The containing limit, e.g. `max_total`.
        bound: &'static str,
        /// The containing limit's value.
        bound_value: u64,
    },
}

/// The class of a [`MemoryError`], for mapping it to a status code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent bad input (or the store was configured with a bad limit).
    InvalidArgument,
    /// The turn exists already with other content.
    AlreadyExists,
    /// The backing store cannot be reached; trying again later may succeed.
    Unavailable,
    /// The backing store holds data the service never wrote: our fault.
    Internal,
}

impl MemoryError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Conflict { .. } => ErrorKind::AlreadyExists,
            Self::Unavailable { .. } | Self::Connect { .. } => ErrorKind::Unavailable,
            Self::Corrupt(_) => ErrorKind::Internal,
            Self::BadStoreUrl { .. } => ErrorKind::InvalidArgument,
            Self::EmptyId { .. }
            | Self::IdTooLong { .. }
            | Self::NegativeTurnId(_)
            | Self::EmptyMessage
            | Self::MessageTooLong { .. }
            | Self::OutOfRange { .. }
            | Self::AgentWithoutSession
            | Self::ZeroLimit { .. }
            | Self::LimitAboveBound { .. } => ErrorKind::InvalidArgument,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_already_exists_and_bad_input_is_invalid_argument() {
        let conflict = MemoryError::Conflict {
            agent_id: "planner".into(),
            session_id: "s1".into(),
            turn_id: 3,
        };
        assert_eq!(conflict.kind(), ErrorKind::AlreadyExists);
        assert_eq!(MemoryError::EmptyMessage.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            MemoryError::NegativeTurnId(-1).kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn messages_name_the_field_and_the_limit() {
        let err = MemoryError::IdTooLong {
            field: "agent_id",
            chars: 129,
            limit: 128,
        };
        assert_eq!(
            err.to_string(),
            "agent_id is 129 characters long; the limit is 128"
        );
        let err = MemoryError::OutOfRange {
            field: "max_chars",
            value: 70000,
            min: 1,
            max: 65536,
        };
        assert_eq!(
            err.to_string(),
            "max_chars is 70000; it must be from 1 to 65536"
        );
    }
}
