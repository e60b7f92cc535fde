//! A session's trail read back from Audit: its messages and tool calls,
//! page by page, joined into turns. `sessions show` and `resume` read a
//! session through [`session_trail`]; [`session_messages`] and
//! [`session_tool_usage`] are its paged listings, for readers (the test
//! harness) that want the rows as stored, over their own client.

use std::{collections::BTreeMap, time::Duration};

use std::future::Future;

use heist_proto::v1::{
    ListMessagesRequest, ListMessagesResponse, ListToolUsageRequest, ListToolUsageResponse,
    Message, ToolUsage, audit_service_client::AuditServiceClient,
};

use crate::{
    clients::read_across,
    engine::{ToolRecord, TurnRecord},
    llm::TokenUsage,
    mesh::MeshChannel,
};

/// How many rows one page of a listing asks for.
const PAGE_SIZE: i32 = 1000;

/// One turn as Audit stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTurn {
    /// The turn, with its tool calls.
    pub turn: TurnRecord,
    /// The client that wrote its message (empty for rows from before
    /// writers were recorded).
    pub written_by: String,
}

/// Why a session's trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// A page of its messages was refused.
    #[error("cannot read the session's messages from Audit: {}", .0.message())]
    Messages(tonic::Status),
    /// A page of its tool calls was refused.
    #[error("cannot read the session's tool calls from Audit: {}", .0.message())]
    ToolUsage(tonic::Status),
}

/// Reads every page of a listing: `page` gets the page token and answers
/// the page's items and the next token (empty after the last page).
async fn all_pages<T, Fut>(mut page: impl FnMut(String) -> Fut) -> Result<Vec<T>, tonic::Status>
where
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (found, next) = page(token).await?;
        items.extend(found);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

/// Every message session `session_id` has stored, in order: `list` sends
/// one page's request (over the caller's client, token and deadline) and
/// answers the page.
pub async fn session_messages<Fut>(
    session_id: &str,
    mut list: impl FnMut(ListMessagesRequest) -> Fut,
) -> Result<Vec<Message>, tonic::Status>
where
    Fut: Future<Output = Result<ListMessagesResponse, tonic::Status>>,
{
    all_pages(|page_token| {
        let page = list(ListMessagesRequest {
            session_id: session_id.to_owned(),
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = page.await?;
            Ok((page.messages, page.next_page_token))
        }
    })
    .await
}

/// Every tool call session `session_id` has stored, in order: `list` sends
/// one page's request and answers the page, as for [`session_messages`].
pub async fn session_tool_usage<Fut>(
    session_id: &str,
    mut list: impl FnMut(ListToolUsageRequest) -> Fut,
) -> Result<Vec<ToolUsage>, tonic::Status>
where
    Fut: Future<Output = Result<ListToolUsageResponse, tonic::Status>>,
{
    all_pages(|page_token| {
        let page = list(ListToolUsageRequest {
            session_id: session_id.to_owned(),
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = page.await?;
            Ok((page.tool_usage, page.next_page_token))
        }
    })
    .await
}

/// The turns session `session_id` has stored in Audit, in order, each with
/// its tool calls and the client that wrote it; read with `token`, each
/// page within `deadline`, from the first of Audit's `replicas` that is not
/// gone.
pub async fn session_trail(
    audit: &AuditServiceClient<MeshChannel>,
    replicas: usize,
    token: &str,
    deadline: Duration,
    session_id: &str,
) -> Result<Vec<StoredTurn>, TrailError> {
    let messages = session_messages(session_id, |list| async move {
        read_across(replicas, &list, Some(token), deadline, |list| {
            let mut audit = audit.clone();
            async move { Ok(audit.list_messages(list).await?.into_inner()) }
        })
        .await
    })
    .await
    .map_err(TrailError::Messages)?;
    let usage = session_tool_usage(session_id, |list| async move {
        read_across(replicas, &list, Some(token), deadline, |list| {
            let mut audit = audit.clone();
            async move { Ok(audit.list_tool_usage(list).await?.into_inner()) }
        })
        .await
    })
    .await
    .map_err(TrailError::ToolUsage)?;
    let mut calls: BTreeMap<i64, Vec<ToolRecord>> = BTreeMap::new();
    for usage in usage {
        calls.entry(usage.turn_id).or_default().push(ToolRecord {
            tool: usage.tool_name,
            params: usage.tool_params,
            result: usage.tool_result,
            success: usage.success,
            duration_ms: u64::try_from(usage.duration_ms).unwrap_or(0),
        });
    }
    Ok(messages
        .into_iter()
        .filter(|message| message.turn_id > 0)
        .map(|message| StoredTurn {
            turn: TurnRecord {
                tool_calls: calls.remove(&message.turn_id).unwrap_or_default(),
                turn: message.turn_id,
                agent: message.agent_name,
                role: message.agent_role,
                usage: TokenUsage {
                    input: message.input_tokens.and_then(|n| u64::try_from(n).ok()),
                    output: message.output_tokens.and_then(|n| u64::try_from(n).ok()),
                    estimated: message.tokens_estimated,
                },
                message: message.message,
                is_error: message.is_error,
            },
            written_by: message.written_by,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_page_is_read_in_order() {
        let pages = [(vec![1, 2], "p2"), (vec![3], "p3"), (vec![], "")];
        let mut asked = Vec::new();
        let items = all_pages(|token| {
            asked.push(token.clone());
            let index = asked.len() - 1;
            let (items, next) = pages[index].clone();
            async move { Ok((items, next.to_owned())) }
        })
        .await
        .unwrap();
        assert_eq!(items, vec![1, 2, 3]);
        assert_eq!(asked, vec!["", "p2", "p3"]);
    }

    #[tokio::test]
    async fn a_refused_page_ends_the_listing_with_its_status() {
        let mut calls = 0;
        let refused: Result<Vec<i32>, _> = all_pages(|_| {
            calls += 1;
            let answer = if calls == 1 {
                Ok((vec![1], "next".to_owned()))
            } else {
                Err(tonic::Status::unavailable("audit down"))
            };
            async move { answer }
        })
        .await;
        let status = refused.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(calls, 2);
    }

    #[test]
    fn trail_errors_say_what_could_not_be_read() {
        let messages = TrailError::Messages(tonic::Status::permission_denied("no audit:read"));
        assert_eq!(
            messages.to_string(),
            "cannot read the session's messages from Audit: no audit:read"
        );
        let usage = TrailError::ToolUsage(tonic::Status::unavailable("down"));
        assert_eq!(
            usage.to_string(),
            "cannot read the session's tool calls from Audit: down"
        );
    }
}
