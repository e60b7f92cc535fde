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
    /// `AuditService/StoreTurn`: a turn's message and tool calls at once.
    StoreTurn(pb::StoreTurnRequest),
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
    StoreSessionEvent(StoreSessionEventRequest),
    StoreTurn(StoreTurnRequest)
);

/// The record type of each write on disk; acknowledgements use [`ACK_KIND`].
const CREATE_SESSION: u8 = 1;
const STORE_MESSAGE: u8 = 2;
const STORE_TOOL_USAGE: u8 = 3;
const END_SESSION: u8 = 4;
const STORE_SESSION_EVENT: u8 = 5;
const STORE_TURN: u8 = 6;
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
            Self::StoreTurn(request) => request
                .message
                .as_ref()
                .map_or("", |message| &message.session_id),
        }
    }

    /// The write's idempotency key: Audit stores a replayed write once. (A
    /// turn's is its message's; each of its tool calls has its own.)
    pub fn idempotency_key(&self) -> &str {
        match self {
            Self::CreateSession(request) => &request.idempotency_key,
            Self::StoreMessage(request) => &request.idempotency_key,
            Self::StoreToolUsage(request) => &request.idempotency_key,
            Self::EndSession(request) => &request.idempotency_key,
            Self::StoreSessionEvent(request) => &request.idempotency_key,
            Self::StoreTurn(request) => request
                .message
                .as_ref()
                .map_or("", |message| &message.idempotency_key),
        }
    }

    /// The turn a message or a turn write belongs to.
    pub fn turn_id(&self) -> Option<i64> {
        match self {
            Self::StoreMessage(request) => Some(request.turn_id),
            Self::StoreTurn(request) => request.message.as_ref().map(|message| message.turn_id),
            _ => None,
        }
    }

    /// The write's RPC name, e.g. `StoreMessage`, for logs and errors.
    pub fn kind(&self) -> &'static str {
        kind_name(self.tag()).unwrap_or("unknown")
    }

    /// Checks that replaying the write can never store it twice. Creating and
    /// ending a session are idempotent by session ID; a message, a tool call
    /// or a session event is deduplicated only by its key, so it must have
    /// one (a turn: its message and every tool call).
    pub(super) fn check_replayable(&self) -> Result<(), SpoolError> {
        let needs_key = matches!(
            self,
            Self::StoreMessage(_)
                | Self::StoreToolUsage(_)
                | Self::StoreSessionEvent(_)
                | Self::StoreTurn(_)
        );
        let tool_call_without_key = match self {
            Self::StoreTurn(request) => request
                .tool_calls
                .iter()
                .any(|call| call.idempotency_key.is_empty()),
            _ => false,
        };
        if needs_key && (self.idempotency_key().is_empty() || tool_call_without_key) {
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
            Self::StoreTurn(_) => STORE_TURN,
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
            Self::StoreTurn(request) => request.encode_to_vec(),
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
            STORE_TURN => pb::StoreTurnRequest::decode(payload).map(Self::StoreTurn),
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
        STORE_TURN => Some("StoreTurn"),
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
    fn a_turn_is_replayable_only_when_its_message_and_every_tool_call_have_keys() {
        let SpooledWrite::StoreMessage(message) = message("heist_1/turn/3/message") else {
            unreachable!("a message")
        };
        let call = |key: &str| pb::StoreToolUsageRequest {
            session_id: "heist_1".into(),
            turn_id: 3,
            agent_name: "planner".into(),
            tool_name: "calculator".into(),
            idempotency_key: key.into(),
            ..Default::default()
        };
        let turn = |calls: Vec<pb::StoreToolUsageRequest>| {
            SpooledWrite::from(pb::StoreTurnRequest {
                message: Some(message.clone()),
                tool_calls: calls,
            })
        };
        let keyed = turn(vec![call("heist_1/turn/3/tool/0/0")]);
        keyed.check_replayable().unwrap();
        assert_eq!(keyed.session_id(), "heist_1");
        assert_eq!(keyed.turn_id(), Some(3));
        assert_eq!(keyed.kind(), "StoreTurn");
        assert!(matches!(
            turn(vec![call("heist_1/turn/3/tool/0/0"), call("")]).check_replayable(),
            Err(SpoolError::MissingIdempotencyKey { kind: "StoreTurn" })
        ));
        let no_message = SpooledWrite::from(pb::StoreTurnRequest::default());
        assert!(no_message.check_replayable().is_err());
        assert_eq!(no_message.turn_id(), None);
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
