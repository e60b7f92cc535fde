//! The audit trail of a run, checked row by row: a run counts only if every
//! session completed with every message and tool call stored.

use heist_e2e::dev_token_on;
use heist_orchestrator::{
    engine::SessionOutcome,
    trail::{session_messages, session_tool_usage},
};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{GetSessionRequest, SessionStatus, audit_service_client::AuditServiceClient};
use tonic::{codegen::InterceptedService, transport::Channel};

type Audit = AuditServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// Checks every session of `outcomes` against Audit behind `audit` (with a
/// token from OAuth behind `oauth`): completed,
/// `turns` messages with turn ids 1..=turns and no error, and as many tool
/// rows as the session made tool calls. Returns the first problem found.
pub(crate) async fn audit_rows(
    oauth: Channel,
    audit: Channel,
    outcomes: &[SessionOutcome],
    turns: u64,
) -> Result<(), String> {
    let token = dev_token_on(oauth, "orchestrator", "audit:read", &["audit"])
        .await
        .map_err(|status| format!("no token to read Audit: {}", status.message()))?;
    let mut client = AuditServiceClient::with_interceptor(audit, BearerInterceptor::new(&token));
    for outcome in outcomes {
        session(&mut client, outcome, turns)
            .await
            .map_err(|problem| format!("session {}: {problem}", outcome.session_id))?;
    }
    Ok(())
}

async fn session(client: &mut Audit, outcome: &SessionOutcome, turns: u64) -> Result<(), String> {
    if outcome.status != "completed" || outcome.failed_turns > 0 || outcome.audit_failures > 0 {
        return Err(format!(
            "ended {} with {} failed turns and {} failed audit writes",
            outcome.status, outcome.failed_turns, outcome.audit_failures
        ));
    }
    let session_id = outcome.session_id.clone();
    let stored = client
        .get_session(GetSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .map_err(|status| format!("not in Audit: {}", status.message()))?
        .into_inner();
    if stored.status != SessionStatus::Completed as i32 || stored.num_turns != turns as i64 {
        return Err(format!(
            "stored with status {} and {} turns",
            stored.status, stored.num_turns
        ));
    }
    let messages = session_messages(&session_id, |list| {
        let mut client = client.clone();
        async move { Ok(client.list_messages(list).await?.into_inner()) }
    })
    .await
    .map_err(|status| format!("cannot list messages: {}", status.message()))?;
    let mut turn_ids = Vec::new();
    for message in messages {
        if message.is_error {
            return Err(format!("turn {} stored as an error", message.turn_id));
        }
        turn_ids.push(message.turn_id);
    }
    turn_ids.sort_unstable();
    let expected: Vec<i64> = (1..=turns as i64).collect();
    if turn_ids != expected {
        return Err(format!(
            "{} messages stored, turn ids {:?}..{:?}; expected 1..={turns}",
            turn_ids.len(),
            turn_ids.first(),
            turn_ids.last()
        ));
    }
    let tool_rows = session_tool_usage(&session_id, |list| {
        let mut client = client.clone();
        async move { Ok(client.list_tool_usage(list).await?.into_inner()) }
    })
    .await
    .map_err(|status| format!("cannot list tool usage: {}", status.message()))?
    .len();
    if tool_rows != outcome.tool_calls() {
        return Err(format!(
            "{tool_rows} tool rows stored for {} tool calls",
            outcome.tool_calls()
        ));
    }
    Ok(())
}
