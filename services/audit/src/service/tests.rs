//! The handlers called directly, as the server calls them once its layers
//! have run: the auth layer's verified claims and, under mutual TLS, the
//! connection's [`PeerIdentity`] in the request's extensions. The store is a
//! real SQLite file; the TLS itself is `heist_plumbing`'s to test.

use heist_plumbing::peer::PeerIdentity;
use heist_tokens::Claims;
use tempfile::TempDir;

use super::*;

/// The identity the orchestrator's client certificate proves.
const ORCHESTRATOR_PEER: &str = "spiffe://heist.local/orchestrator";

const SESSION: &str = "s1";

/// A service on a fresh SQLite file (kept while the `TempDir` lives).
fn service() -> (AuditService, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(crate::StoreConfig::new(dir.path().join("audit.db"))).unwrap();
    (AuditService::new(store), dir)
}

/// `body` as the orchestrator sends it: its token's claims and, when `peer`
/// is given, the identity its connection proved.
fn from_orchestrator<T>(body: T, peer: Option<&str>) -> Request<T> {
    let mut request = Request::new(body);
    request.extensions_mut().insert(Claims {
        iss: "heist-test".into(),
        sub: "orchestrator".into(),
        aud: vec!["audit".into()],
        scope: "audit:write audit:read agents:act_for_any".into(),
        iat: 0,
        exp: u64::MAX,
        jti: "j1".into(),
    });
    if let Some(peer) = peer {
        request.extensions_mut().insert(PeerIdentity::new(peer));
    }
    request
}

fn said(key: &str) -> pb::StoreMessageRequest {
    pb::StoreMessageRequest {
        session_id: SESSION.into(),
        turn_id: 1,
        agent_name: "planner".into(),
        agent_role: "Strategic Planner".into(),
        message: "we go at dawn".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn called(key: &str) -> pb::StoreToolUsageRequest {
    pb::StoreToolUsageRequest {
        session_id: SESSION.into(),
        turn_id: 1,
        agent_name: "planner".into(),
        tool_name: "calculator".into(),
        tool_params: "2+2".into(),
        tool_result: "4".into(),
        success: true,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn happened(key: &str) -> pb::StoreSessionEventRequest {
    pb::StoreSessionEventRequest {
        session_id: SESSION.into(),
        kind: "breaker.open".into(),
        detail: String::new(),
        idempotency_key: key.into(),
    }
}

/// Creates the session and writes one row of every kind (a message, a tool
/// call, a turn with one tool call, an event) with `peer`; answers
/// `(written_by, written_via)` of every row the writes answered.
async fn write_everything(service: &AuditService, peer: Option<&str>) -> Vec<(String, String)> {
    let session = service
        .create_session(from_orchestrator(
            pb::CreateSessionRequest {
                session_id: SESSION.into(),
                ..Default::default()
            },
            peer,
        ))
        .await
        .unwrap()
        .into_inner();
    let message = service
        .store_message(from_orchestrator(said("m1"), peer))
        .await
        .unwrap()
        .into_inner();
    let call = service
        .store_tool_usage(from_orchestrator(called("t1"), peer))
        .await
        .unwrap()
        .into_inner();
    let turn = service
        .store_turn(from_orchestrator(
            pb::StoreTurnRequest {
                message: Some(said("m2")),
                tool_calls: vec![called("t2")],
            },
            peer,
        ))
        .await
        .unwrap()
        .into_inner();
    let event = service
        .store_session_event(from_orchestrator(happened("e1"), peer))
        .await
        .unwrap()
        .into_inner();
    let turn_message = turn.message.unwrap();
    vec![
        (session.written_by, session.written_via),
        (message.written_by, message.written_via),
        (call.written_by, call.written_via),
        (turn_message.written_by, turn_message.written_via),
        (
            turn.tool_calls[0].written_by.clone(),
            turn.tool_calls[0].written_via.clone(),
        ),
        (event.written_by, event.written_via),
    ]
}

/// `(written_by, written_via)` of every row of the session, as the read
/// RPCs answer them: the session, its messages, tool calls and events.
async fn read_everything(service: &AuditService) -> Vec<(String, String)> {
    let session = service
        .get_session(from_orchestrator(
            pb::GetSessionRequest {
                session_id: SESSION.into(),
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let messages = service
        .list_messages(from_orchestrator(
            pb::ListMessagesRequest {
                session_id: SESSION.into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    let calls = service
        .list_tool_usage(from_orchestrator(
            pb::ListToolUsageRequest {
                session_id: SESSION.into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner()
        .tool_usage;
    let events = service
        .list_session_events(from_orchestrator(
            pb::ListSessionEventsRequest {
                session_id: SESSION.into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let mut rows = vec![(session.written_by, session.written_via)];
    rows.extend(messages.into_iter().map(|m| (m.written_by, m.written_via)));
    rows.extend(calls.into_iter().map(|c| (c.written_by, c.written_via)));
    rows.extend(events.into_iter().map(|e| (e.written_by, e.written_via)));
    rows
}

fn rows(count: usize, by: &str, via: &str) -> Vec<(String, String)> {
    vec![(by.to_owned(), via.to_owned()); count]
}

#[tokio::test]
async fn every_write_over_mutual_tls_records_the_peer_identity_beside_the_callers_sub() {
    let (service, _dir) = service();
    assert_eq!(
        write_everything(&service, Some(ORCHESTRATOR_PEER)).await,
        rows(6, "orchestrator", ORCHESTRATOR_PEER)
    );
    assert_eq!(
        read_everything(&service).await,
        rows(6, "orchestrator", ORCHESTRATOR_PEER),
        "the session, 2 messages, 2 tool calls and 1 event read back with it"
    );
}

#[tokio::test]
async fn a_write_over_plaintext_records_no_peer_identity() {
    let (service, _dir) = service();
    assert_eq!(
        write_everything(&service, None).await,
        rows(6, "orchestrator", "")
    );
    assert_eq!(read_everything(&service).await, rows(6, "orchestrator", ""));
}

#[tokio::test]
async fn a_repeat_from_another_connection_keeps_the_first_writes_identity() {
    let (service, _dir) = service();
    write_everything(&service, Some(ORCHESTRATOR_PEER)).await;
    assert_eq!(
        write_everything(&service, Some("spiffe://heist.local/impostor")).await,
        rows(6, "orchestrator", ORCHESTRATOR_PEER),
        "every repeat answers the stored row"
    );
    assert_eq!(
        write_everything(&service, None).await,
        rows(6, "orchestrator", ORCHESTRATOR_PEER)
    );
    assert_eq!(
        read_everything(&service).await,
        rows(6, "orchestrator", ORCHESTRATOR_PEER)
    );
}

fn usage_of(session_id: &str) -> Request<pb::GetSessionUsageRequest> {
    from_orchestrator(
        pb::GetSessionUsageRequest {
            session_id: session_id.into(),
        },
        None,
    )
}

#[tokio::test]
async fn get_session_usage_sums_the_token_counts_the_writes_carried() {
    let (service, _dir) = service();
    write_everything(&service, None).await;
    let counted = pb::StoreMessageRequest {
        turn_id: 3,
        input_tokens: Some(321),
        output_tokens: Some(12),
        ..said("m3")
    };
    let stored = service
        .store_message(from_orchestrator(counted, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            stored.input_tokens,
            stored.output_tokens,
            stored.tokens_estimated
        ),
        (Some(321), Some(12), false)
    );
    let usage = service
        .get_session_usage(usage_of(SESSION))
        .await
        .unwrap()
        .into_inner();
    let planner = pb::TokenUsage {
        input_tokens: 321,
        output_tokens: 12,
        turns_with_usage: 1,
        turns_without_usage: 2,
        estimated_turns: 0,
    };
    assert_eq!(
        usage,
        pb::SessionUsage {
            session_id: SESSION.into(),
            agents: vec![pb::AgentUsage {
                agent_name: "planner".into(),
                usage: Some(planner),
            }],
            total: Some(planner),
        }
    );
}

/// Asserts that `call` refuses an empty and a malformed session ID
/// (INVALID_ARGUMENT) and an unknown one (NOT_FOUND), naming each.
async fn assert_refuses_bad_session_ids<T: std::fmt::Debug, F>(call: impl Fn(&'static str) -> F)
where
    F: std::future::Future<Output = Result<T, Status>>,
{
    let cases = [
        ("", Code::InvalidArgument, "session_id"),
        ("a b", Code::InvalidArgument, "session_id"),
        ("heist_nope", Code::NotFound, "heist_nope"),
    ];
    for (session_id, code, named) in cases {
        let status = call(session_id).await.unwrap_err();
        assert_eq!(status.code(), code, "{session_id:?}: {status:?}");
        assert!(status.message().contains(named), "{status:?}");
    }
}

#[tokio::test]
async fn get_session_usage_refuses_a_bad_id_and_an_unknown_session_precisely() {
    let (service, _dir) = service();
    assert_refuses_bad_session_ids(|id| service.get_session_usage(usage_of(id))).await;
}

#[tokio::test]
async fn a_negative_or_absurd_token_count_is_invalid_argument_naming_the_field() {
    let (service, _dir) = service();
    write_everything(&service, None).await;
    let cases = [
        (
            pb::StoreMessageRequest {
                input_tokens: Some(-3),
                ..said("m9")
            },
            "input_tokens",
        ),
        (
            pb::StoreMessageRequest {
                output_tokens: Some(i64::MAX),
                ..said("m9")
            },
            "output_tokens",
        ),
        (
            pb::StoreMessageRequest {
                tokens_estimated: true,
                ..said("m9")
            },
            "tokens_estimated",
        ),
    ];
    for (request, field) in cases {
        let status = service
            .store_message(from_orchestrator(request.clone(), None))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
        let status = service
            .store_turn(from_orchestrator(
                pb::StoreTurnRequest {
                    message: Some(request),
                    tool_calls: Vec::new(),
                },
                None,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
}

#[tokio::test]
async fn verify_session_answers_the_chain_head_and_the_checkpoint_the_keys_verify() {
    let (service, _dir) = service();
    write_everything(&service, None).await;
    let verify = |session_id: &str| {
        from_orchestrator(
            pb::VerifySessionRequest {
                session_id: session_id.into(),
            },
            None,
        )
    };
    let active = service
        .verify_session(verify(SESSION))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.integrity(), pb::Integrity::Intact, "{active:?}");
    assert_eq!(active.rows, 6, "the start, 5 rows: {active:?}");
    assert_eq!(active.checkpoint, None, "not signed before the end");
    service
        .end_session(from_orchestrator(
            pb::EndSessionRequest {
                session_id: SESSION.into(),
                num_turns: 2,
                status: pb::SessionStatus::Completed.into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
    let ended = service
        .verify_session(verify(SESSION))
        .await
        .unwrap()
        .into_inner();
    let signed = ended.checkpoint.clone().expect("the end is signed");
    assert_eq!((ended.rows, signed.rows), (7, 7), "{ended:?}");
    assert_eq!(signed.head, ended.chain_head);
    assert_eq!(ended.chain_head.len(), 64, "hex SHA-256");
    assert_eq!(signed.signature.len(), 128, "hex Ed25519");
    let keys = service
        .get_checkpoint_keys(from_orchestrator(pb::GetCheckpointKeysRequest {}, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.checkpoint_every, 100);
    let [key] = keys.keys.as_slice() else {
        panic!("one key: {keys:?}");
    };
    assert_eq!(
        (key.kid.as_str(), key.crv.as_str()),
        (signed.key_id.as_str(), "Ed25519")
    );
    let public = heist_plumbing::jwk::from_proto(key.clone())
        .to_public_key()
        .unwrap();
    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    let head: [u8; 32] = bytes(&signed.head).try_into().unwrap();
    let signature: [u8; 64] = bytes(&signed.signature).try_into().unwrap();
    assert!(public.verifies(
        &crate::store::checkpoint_statement(SESSION, 7, &head),
        &signature
    ));
}

#[tokio::test]
async fn verify_session_refuses_a_bad_id_and_an_unknown_session_precisely() {
    let (service, _dir) = service();
    assert_refuses_bad_session_ids(|id| {
        let request = from_orchestrator(
            pb::VerifySessionRequest {
                session_id: id.into(),
            },
            None,
        );
        service.verify_session(request)
    })
    .await;
}

#[test]
fn the_integrity_rpcs_need_the_read_scope() {
    for method in ["GetCheckpointKeys", "VerifySession"] {
        assert!(
            METHOD_SCOPES.contains(&(method, "audit:read")),
            "{method} is not mapped to audit:read"
        );
    }
}
