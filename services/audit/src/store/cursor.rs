//! Page sizes and page tokens.
//!
//! Listings are keyset-paged: a token names the last row of the previous page
//! and the next page starts right after it, so rows written meanwhile never
//! shift a page. Tokens are opaque to callers; their format is:
//!
//! - messages: `m` and the last row ID in base 10 (`m250`);
//! - tool usage: `t` and the last row ID (`t17`);
//! - session events: `e` and the last row ID (`e4`);
//! - sessions: `s`, the last session's start time, `/`, its session ID
//!   (`s2025-01-16T14:30:52.000000Z/heist_a1b2`).
//!
//! A token of another listing, or anything else, is [`StoreError::InvalidPageToken`].

use jiff::Timestamp;

use super::error::StoreError;
use super::types::{Page, SessionRow};
use super::validate;

/// The page size used when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page size a request may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The number of rows to return for a requested page size (0 means the default).
pub(crate) fn page_size(requested: i64) -> Result<usize, StoreError> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(StoreError::InvalidPageSize { size: requested }),
    }
}

/// A listing paged by row ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdListing {
    /// `messages`, in ID order.
    Messages,
    /// `tool_usage`, in ID order.
    ToolUsage,
    /// `session_events`, in ID order.
    SessionEvents,
}

impl IdListing {
    fn prefix(self) -> char {
        match self {
            IdListing::Messages => 'm',
            IdListing::ToolUsage => 't',
            IdListing::SessionEvents => 'e',
        }
    }

    /// The token that resumes this listing after row `id`.
    pub(crate) fn token(self, id: i64) -> String {
        format!("{}{id}", self.prefix())
    }

    /// The row ID the page starts after: 0 for an empty token.
    pub(crate) fn after(self, token: &str) -> Result<i64, StoreError> {
        if token.is_empty() {
            return Ok(0);
        }
        let digits = token
            .strip_prefix(self.prefix())
            .ok_or(StoreError::InvalidPageToken)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::InvalidPageToken);
        }
        digits.parse().map_err(|_| StoreError::InvalidPageToken)
    }
}

/// Where a listing of sessions, newest first, resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionCursor {
    /// The start time of the last session of the previous page.
    pub(crate) start_time: String,
    /// Its session ID, which orders sessions that started together.
    pub(crate) session_id: String,
}

impl SessionCursor {
    /// The token that resumes the listing after `row`.
    pub(crate) fn token(row: &SessionRow) -> String {
        format!("s{}/{}", row.start_time, row.session_id)
    }

    /// The cursor a token names; `None` for an empty token (the first page).
    pub(crate) fn parse(token: &str) -> Result<Option<SessionCursor>, StoreError> {
        if token.is_empty() {
            return Ok(None);
        }
        let (start_time, session_id) = token
            .strip_prefix('s')
            .and_then(|rest| rest.split_once('/'))
            .ok_or(StoreError::InvalidPageToken)?;
        if start_time.parse::<Timestamp>().is_err() || validate::session_id(session_id).is_err() {
            return Err(StoreError::InvalidPageToken);
        }
        Ok(Some(SessionCursor {
            start_time: start_time.to_owned(),
            session_id: session_id.to_owned(),
        }))
    }
}

/// Makes a page from up to `limit + 1` rows: the extra row only says that
/// another page follows, whose token `token` makes from this page's last row.
pub(crate) fn into_page<T>(
    mut rows: Vec<T>,
    limit: usize,
    token: impl Fn(&T) -> String,
) -> Page<T> {
    let next_page_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(token).unwrap_or_default()
    } else {
        String::new()
    };
    Page {
        items: rows,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::SessionStatus;

    #[test]
    fn page_size_zero_means_one_hundred() {
        assert_eq!(page_size(0), Ok(100));
    }

    #[test]
    fn page_sizes_up_to_one_thousand_are_kept() {
        assert_eq!(page_size(1), Ok(1));
        assert_eq!(page_size(1000), Ok(1000));
    }

    #[test]
    fn page_sizes_over_one_thousand_or_negative_are_refused() {
        assert_eq!(
            page_size(1001),
            Err(StoreError::InvalidPageSize { size: 1001 })
        );
        assert_eq!(page_size(-1), Err(StoreError::InvalidPageSize { size: -1 }));
    }

    #[test]
    fn an_id_token_round_trips() {
        let token = IdListing::Messages.token(250);
        assert_eq!(token, "m250");
        assert_eq!(IdListing::Messages.after(&token), Ok(250));
        assert_eq!(IdListing::ToolUsage.after(""), Ok(0));
        assert_eq!(IdListing::SessionEvents.token(4), "e4");
        assert_eq!(IdListing::SessionEvents.after("e4"), Ok(4));
    }

    #[test]
    fn garbage_id_tokens_are_refused() {
        for token in [
            "x",
            "m",
            "m-1",
            "m+1",
            "m1a",
            "t5",
            "m99999999999999999999",
            "250",
        ] {
            assert_eq!(
                IdListing::Messages.after(token),
                Err(StoreError::InvalidPageToken),
                "{token}"
            );
        }
    }

    #[test]
    fn a_token_of_another_id_listing_is_refused() {
        assert_eq!(
            IdListing::SessionEvents.after("m4"),
            Err(StoreError::InvalidPageToken)
        );
        assert_eq!(
            IdListing::Messages.after("e4"),
            Err(StoreError::InvalidPageToken)
        );
    }

    #[test]
    fn a_session_token_round_trips() {
        let row = SessionRow {
            session_id: "heist_a1b2".into(),
            start_time: "2025-01-16T14:30:52.000000Z".into(),
            end_time: String::new(),
            num_turns: 0,
            status: SessionStatus::Active,
            metadata: String::new(),
            message_count: 0,
            tool_usage_count: 0,
            written_by: String::new(),
            written_via: String::new(),
        };
        let token = SessionCursor::token(&row);
        assert_eq!(
            SessionCursor::parse(&token),
            Ok(Some(SessionCursor {
                start_time: row.start_time,
                session_id: row.session_id,
            }))
        );
        assert_eq!(SessionCursor::parse(""), Ok(None));
    }

    #[test]
    fn garbage_session_tokens_are_refused() {
        for token in [
            "s",
            "m12",
            "snot-a-time/heist",
            "s2025-01-16T14:30:52.000000Z",
            "s2025-01-16T14:30:52.000000Z/",
            "s2025-01-16T14:30:52.000000Z/a b",
        ] {
            assert_eq!(
                SessionCursor::parse(token),
                Err(StoreError::InvalidPageToken),
                "{token}"
            );
        }
    }

    #[test]
    fn a_full_page_with_an_extra_row_has_a_next_token() {
        let page = into_page(vec![1, 2, 3], 2, |n| format!("after {n}"));
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next_page_token, "after 2");
    }

    #[test]
    fn the_last_page_has_no_next_token() {
        let page = into_page(vec![1, 2], 2, |n| format!("after {n}"));
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next_page_token, "");
    }
}
