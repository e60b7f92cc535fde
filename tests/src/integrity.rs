//! Audit's verdict on a session's hash chain (`VerifySession`), asked as
//! the orchestrator asks it, and the check the end-to-end tests make at the
//! end of a session written through faults: intact, one chain row per row.

use std::net::SocketAddr;

use heist_proto::v1::{
    Integrity, ListSessionEventsRequest, SessionVerification, VerifySessionRequest,
};

use crate::{audit_reader, audit_trail};

/// Audit's verdict on `session_id` (at `audit`), asked with an
/// orchestrator `audit:read` token from the OAuth service at `oauth`.
pub async fn verify_session(
    oauth: SocketAddr,
    audit: SocketAddr,
    session_id: &str,
) -> Result<SessionVerification, tonic::Status> {
    let verdict = audit_reader(oauth, audit)
        .await?
        .verify_session(VerifySessionRequest {
            session_id: session_id.to_owned(),
        })
        .await?;
    Ok(verdict.into_inner())
}

/// Asserts that Audit at `audit` finds `session_id` intact and signed to
/// its end, its chain one row per stored row (the start, every message,
/// tool call and session event, the end); answers the verdict.
pub async fn assert_chain_intact(
    oauth: SocketAddr,
    audit: SocketAddr,
    session_id: &str,
) -> SessionVerification {
    let verdict = verify_session(oauth, audit, session_id)
        .await
        .unwrap_or_else(|status| panic!("VerifySession {session_id}: {status}"));
    assert_eq!(verdict.integrity(), Integrity::Intact, "{verdict}");
    let trail = audit_trail(oauth, audit, session_id).await;
    let events = audit_reader(oauth, audit)
        .await
        .expect("an audit:read token")
        .list_session_events(ListSessionEventsRequest {
            session_id: session_id.to_owned(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("the session's events")
        .into_inner();
    assert!(events.next_page_token.is_empty(), "one page of events");
    let rows = 2 + trail.messages.len() + trail.tool_usage.len() + events.events.len();
    assert_eq!(
        verdict.rows,
        i64::try_from(rows).unwrap_or(i64::MAX),
        "start, {} messages, {} tool calls, {} events, end: {verdict}",
        trail.messages.len(),
        trail.tool_usage.len(),
        events.events.len()
    );
    let signed = verdict
        .checkpoint
        .as_ref()
        .unwrap_or_else(|| panic!("an ended session is signed: {verdict}"));
    assert_eq!(signed.rows, verdict.rows, "signed to its end: {verdict}");
    assert_eq!(signed.head, verdict.chain_head, "{verdict}");
    verdict
}
