//! The Audit writes a spool keeps, and how each one's protobuf payload is
//! encoded and decoded.

use heist_proto::v1 as pb;
use prost::Message;

use super::error::{RecordProblem, SpoolError};

/// One Audit write waiting for Audit to come back.
#[derive(Debug, Clone, PartialEq)]
pub enum SpooledWrite {
    /// `AuditService/CreateSession`.
    CreateSession(pb::CreateSessionRequest),
    /// `AuditService/StoreMessage`.
    StoreMessage(pb::StoreMessageRequest),
    /// `AuditService/StoreToolUsage`.
    StoreToolUsage(pb::StoreToolUsageRequest),
    /// `AuditService/EndSession`.
    EndSession(pb::EndSessionRequest),
    /// `AuditService/StoreSessionEvent` (a breaker change, a replay, ...).
    StoreSessionEvent(pb::StoreSessionEventRequest),
}

/// One `From` per request type, so `spool.append(request.into())` reads well.
macro_rules! from_request {
    ($($variant:ident($request:ident)),*) => {$(
        impl From<pb::$request> for SpooledWrite {
            fn from(request: pb::$request) -> Self {
                Self::$variant(request)
            }
        }
    )*};
}

from_request!(
    CreateSession(CreateSessionRequest),
    StoreMessage(StoreMessageRequest),
    StoreToolUsage(StoreToolUsageRequest),
    EndSession(EndSessionRequest),
    StoreSessionEvent(StoreSessionEventRequest)
);

/// The record type of each write on disk; acknowledgements use [`ACK_KIND`].
const CREATE_SESSION: u8 = 1;
const STORE_MESSAGE: u8 = 2;
const STORE_TOOL_USAGE: u8 = 3;
const END_SESSION: u8 = 4;
const STORE_SESSION_EVENT: u8 = 5;
/// The record type of an acknowledgement.
pub(super) const ACK_KIND: u8 = 16;

impl SpooledWrite {
    /// The session the write belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            Self::CreateSession(request) => &request.session_id,
            Self::StoreMessage(request) => &request.session_id,
            Self::StoreToolUsage(request) => &request.session_id,
            Self::EndSession(request) => &request.session_id,
            Self::StoreSessionEvent(request) => &request.session_id,
        }
    }

    /// The write's idempotency key: Audit stores a replayed write once.
    pub fn idempotency_key(&self) -> &str {
        match self {
            Self::CreateSession(request) => &request.idempotency_key,
            Self::StoreMessage(request) => &request.idempotency_key,
            Self::StoreToolUsage(request) => &request.idempotency_key,
            Self::EndSession(request) => &request.idempotency_key,
            Self::StoreSessionEvent(request) => &request.idempotency_key,
        }
    }

    /// The write's RPC name, e.g. `StoreMessage`, for logs and errors.
    pub fn kind(&self) -> &'static str {
        kind_name(self.tag()).unwrap_or("unknown")
    }

    /// Checks that replaying the write can never store it twice. Creating and
    /// ending a session are idempotent by session ID; a message, a tool call
    /// or a session event is deduplicated only by its key, so it must have one.
    pub(super) fn check_replayable(&self) -> Result<(), SpoolError> {
        let needs_key = matches!(
            self,
            Self::StoreMessage(_) | Self::StoreToolUsage(_) | Self::StoreSessionEvent(_)
        );
        if needs_key && self.idempotency_key().is_empty() {
            return Err(SpoolError::MissingIdempotencyKey { kind: self.kind() });
        }
        Ok(())
    }

    /// The write's record type on disk.
    pub(super) fn tag(&self) -> u8 {
        match self {
            Self::CreateSession(_) => CREATE_SESSION,
            Self::StoreMessage(_) => STORE_MESSAGE,
            Self::StoreToolUsage(_) => STORE_TOOL_USAGE,
            Self::EndSession(_) => END_SESSION,
            Self::StoreSessionEvent(_) => STORE_SESSION_EVENT,
        }
    }

    /// The request's protobuf encoding.
    pub(super) fn payload(&self) -> Vec<u8> {
        match self {
            Self::CreateSession(request) => request.encode_to_vec(),
            Self::StoreMessage(request) => request.encode_to_vec(),
            Self::StoreToolUsage(request) => request.encode_to_vec(),
            Self::EndSession(request) => request.encode_to_vec(),
            Self::StoreSessionEvent(request) => request.encode_to_vec(),
        }
    }

    /// Decodes a payload of record type `tag`.
    pub(super) fn decode(tag: u8, payload: &[u8]) -> Result<Self, RecordProblem> {
        let kind = kind_name(tag).ok_or(RecordProblem::UnknownKind(tag))?;
        let undecodable = |cause| RecordProblem::Undecodable { kind, cause };
        match tag {
            CREATE_SESSION => pb::CreateSessionRequest::decode(payload).map(Self::CreateSession),
            STORE_MESSAGE => pb::StoreMessageRequest::decode(payload).map(Self::StoreMessage),
            STORE_TOOL_USAGE => {
                pb::StoreToolUsageRequest::decode(payload).map(Self::StoreToolUsage)
            }
            END_SESSION => pb::EndSessionRequest::decode(payload).map(Self::EndSession),
            STORE_SESSION_EVENT => {
                pb::StoreSessionEventRequest::decode(payload).map(Self::StoreSessionEvent)
            }
            _ => return Err(RecordProblem::UnknownKind(tag)),
        }
        .map_err(undecodable)
    }
}

/// The RPC name of a write's record type, `None` for anything else.
fn kind_name(tag: u8) -> Option<&'static str> {
    match tag {
        CREATE_SESSION => Some("CreateSession"),
        STORE_MESSAGE => Some("StoreMessage"),
        STORE_TOOL_USAGE => Some("StoreToolUsage"),
        END_SESSION => Some("EndSession"),
        STORE_SESSION_EVENT => Some("StoreSessionEvent"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str) -> SpooledWrite {
        pb::StoreMessageRequest {
            session_id: "heist_1".into(),
            turn_id: 3,
            agent_name: "planner".into(),
            message: "we go at dawn".into(),
            idempotency_key: key.into(),
            ..Default::default()
        }
        .into()
    }

    #[test]
    fn a_message_without_an_idempotency_key_is_not_replayable() {
        let error = message("").check_replayable().unwrap_err();
        assert!(matches!(
            error,
            SpoolError::MissingIdempotencyKey {
                kind: "StoreMessage"
            }
        ));
        assert!(
            error
                .to_string()
                .contains("StoreMessage write needs an idempotency key")
        );
        message("heist_1/turn/3/message")
            .check_replayable()
            .unwrap();
    }

    #[test]
    fn creating_a_session_without_a_key_is_replayable_because_the_id_dedupes_it() {
        let create = SpooledWrite::from(pb::CreateSessionRequest {
            session_id: "heist_1".into(),
            ..Default::default()
        });
        create.check_replayable().unwrap();
        assert_eq!(create.session_id(), "heist_1");
        assert_eq!(create.kind(), "CreateSession");
    }

    #[test]
    fn an_unknown_record_type_is_refused() {
        assert!(matches!(
            SpooledWrite::decode(9, &[]),
            Err(RecordProblem::UnknownKind(9))
        ));
    }

    #[test]
    fn a_payload_that_is_not_protobuf_is_refused_with_its_kind() {
        let error = SpooledWrite::decode(STORE_MESSAGE, &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(
            error,
            RecordProblem::Undecodable {
                kind: "StoreMessage",
                ..
            }
        ));
    }
}
