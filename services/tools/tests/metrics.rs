//! The Tool service's own metrics, read from the process's registry as a
//! scrape would see them, with the handlers called as the server calls them
//! once its auth layer has run (the verified claims in the request's
//! extensions). A test binary of its own (the registry is process-wide)
//! with one test: every count is exact.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{collections::HashMap, time::Duration};

use heist_plumbing::metrics::{encode, sample};
use heist_proto::v1::{self as pb, tool_service_server::ToolService as _};
use heist_tokens::Claims;
use heist_tools::{ToolSet, ToolsConfig, service::ToolService};
use tonic::{Code, Request};

fn now(series: &str) -> f64 {
    sample(&encode(), series).unwrap_or(0.0)
}

fn calls(tool: &str, outcome: &str) -> f64 {
    now(&format!(
        "heist_tools_calls_total{{tool=\"{tool}\",outcome=\"{outcome}\"}}"
    ))
}

/// A call of `tool` with one argument, by a token holding `scope`.
fn call(tool: &str, argument: (&str, &str), scope: &str) -> Request<pb::CallToolRequest> {
    let mut request = Request::new(pb::CallToolRequest {
        tool_name: tool.into(),
        arguments: HashMap::from([(argument.0.to_owned(), argument.1.to_owned())]),
        ..Default::default()
    });
    request.extensions_mut().insert(Claims {
        iss: "heist-test".into(),
        sub: "hacker".into(),
        aud: vec!["tools".into()],
        scope: scope.into(),
        iat: 0,
        exp: u64::MAX,
        jti: "j1".into(),
    });
    request
}

#[tokio::test]
async fn calls_are_counted_by_tool_and_outcome_and_queries_are_timed() {
    let tools = ToolSet::from_names("calculator, database_query", &ToolsConfig::default()).unwrap();
    let service = ToolService::new(tools, Duration::from_secs(10));
    let outcomes = [
        (
            call("calculator", ("expression", "2+2"), "calculator:use"),
            Code::Ok,
        ),
        (
            call("calculator", ("expression", "2+"), "calculator:use"),
            Code::InvalidArgument,
        ),
        (
            call("database_query", ("query", "SELECT 1"), "calculator:use"),
            Code::PermissionDenied,
        ),
        (
            call(
                "database_query",
                ("query", "SELECT 1"),
                "database_query:use",
            ),
            Code::Ok,
        ),
        (
            call("vault_opener", ("door", "main"), "calculator:use"),
            Code::NotFound,
        ),
    ];
    for (request, code) in outcomes {
        let outcome = service.call_tool(request).await;
        assert_eq!(outcome.err().map_or(Code::Ok, |status| status.code()), code);
    }

    assert_eq!(calls("calculator", "ok"), 1.0);
    assert_eq!(calls("calculator", "refused"), 1.0);
    assert_eq!(calls("database_query", "refused"), 1.0);
    assert_eq!(calls("database_query", "ok"), 1.0);
    assert_eq!(calls("unknown", "refused"), 1.0, "{}", encode());
    assert!(
        !encode().contains("vault_opener"),
        "a caller's name never labels"
    );
    // Only the query that ran was timed.
    assert_eq!(
        now("heist_tools_database_query_duration_seconds_count"),
        1.0
    );
    assert!(now("heist_tools_database_query_duration_seconds_sum") > 0.0);
}
