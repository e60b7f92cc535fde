//! The Tool service against the real server on 127.0.0.1:0, through the
//! generated client: listing, every tool, every bad input, scopes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use heist_e2e::{TestAuth, TestServer, services};
use heist_plumbing::{ServeOptions, auth::BearerInterceptor};
use heist_proto::v1::{
    CallToolRequest, CallToolResponse, ListToolsRequest, tool_service_client::ToolServiceClient,
};
use heist_tools::{ToolSet, ToolsConfig};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

type Client = ToolServiceClient<InterceptedService<Channel, BearerInterceptor>>;

const ALL_SCOPES: [&str; 3] = ["calculator:use", "file_reader:use", "database_query:use"];

struct Tools {
    server: TestServer,
    auth: TestAuth,
}

impl Tools {
    fn client(&self, scopes: &[&str]) -> Client {
        ToolServiceClient::with_interceptor(self.server.channel(), self.auth.bearer(scopes))
    }
}

async fn start_tools_with(names: &str, config: ToolsConfig, call_timeout: Duration) -> Tools {
    let tools = ToolSet::from_names(names, &config).unwrap();
    let auth = TestAuth::new();
    let authenticator = auth.authenticator.clone();
    let server = services::tools(tools, call_timeout, authenticator, ServeOptions::default()).await;
    Tools { server, auth }
}

async fn start_tools() -> Tools {
    start_tools_with(
        "calculator,file_reader,database_query",
        ToolsConfig {
            documents_dir: heist_e2e::documents_dir(),
            ..ToolsConfig::default()
        },
        Duration::from_secs(5),
    )
    .await
}

async fn call(
    client: &mut Client,
    tool: &str,
    argument: (&str, &str),
) -> Result<CallToolResponse, Status> {
    client
        .call_tool(CallToolRequest {
            tool_name: tool.into(),
            arguments: [(argument.0.to_owned(), argument.1.to_owned())].into(),
            session_id: "heist_test".into(),
            agent_name: String::new(), // anonymous: the token is the tester's
            turn_id: 1,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_tool_list_names_scopes_and_parameter_schemas() {
    let tools = start_tools().await;
    let listed = tools
        .client(&[])
        .list_tools(ListToolsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(names, ["calculator", "file_reader", "database_query"]);
    for tool in &listed.tools {
        assert_eq!(tool.required_scope, format!("{}:use", tool.name));
        let schema: serde_json::Value = serde_json::from_str(&tool.parameters_schema).unwrap();
        assert_eq!(schema["type"], "object");
        assert!(
            schema["properties"][&tool.primary_argument].is_object(),
            "{schema}"
        );
        assert!(!tool.description.is_empty());
    }
}

#[tokio::test]
async fn the_calculator_evaluates_and_refuses_bad_expressions_with_their_position() {
    let tools = start_tools().await;
    let mut client = tools.client(&ALL_SCOPES);
    let answer = call(
        &mut client,
        "calculator",
        ("expression", "2 * (3 + 4) - 2^3"),
    )
    .await
    .unwrap();
    assert_eq!(answer.text, "2 * (3 + 4) - 2^3 = 6");
    let data: serde_json::Value = serde_json::from_str(&answer.data_json).unwrap();
    assert_eq!(data["result"], 6);
    for bad in [
        "",
        "1 / 0",
        "1e308 * 10",
        "sqrt(-1)",
        "2 +* 3",
        "(1 + 2",
        &"(".repeat(100),
        &"1+".repeat(600),
    ] {
        let status = call(&mut client, "calculator", ("expression", bad))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        if !bad.is_empty() {
            assert!(status.message().contains("position"), "{bad:?}: {status:?}");
        }
    }
}

#[tokio::test]
async fn the_file_reader_reads_documents_and_nothing_outside_them() {
    let tools = start_tools().await;
    let mut client = tools.client(&ALL_SCOPES);
    let answer = call(&mut client, "file_reader", ("filename", "vault_specs.md"))
        .await
        .unwrap();
    assert!(answer.text.contains("Sentinel"), "{}", answer.text);
    for (bad, code) in [
        ("../Cargo.toml", Code::PermissionDenied),
        ("/etc/passwd", Code::PermissionDenied),
        ("no_such_plan.md", Code::NotFound),
        ("", Code::InvalidArgument),
        ("*", Code::InvalidArgument),
    ] {
        let status = call(&mut client, "file_reader", ("filename", bad))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{bad:?}: {status:?}");
    }
}

#[tokio::test]
async fn the_database_answers_questions_and_selects_and_refuses_every_write() {
    let tools = start_tools().await;
    let mut client = tools.client(&ALL_SCOPES);
    let schedule = call(&mut client, "database_query", ("query", "guard schedule"))
        .await
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(&schedule.data_json).unwrap();
    assert!(!data["rows"].as_array().unwrap().is_empty(), "{data}");
    let count_guards = || "SELECT COUNT(*) AS n FROM guards";
    let before = call(&mut client, "database_query", ("query", count_guards()))
        .await
        .unwrap();
    for (bad, code) in [
        ("DELETE FROM guards", Code::PermissionDenied),
        ("UPDATE guards SET name = 'x'", Code::PermissionDenied),
        ("DROP TABLE guards", Code::PermissionDenied),
        ("ATTACH DATABASE '/tmp/x.db' AS x", Code::PermissionDenied),
        ("PRAGMA writable_schema = 1", Code::PermissionDenied),
        ("SELECT 1; DELETE FROM guards", Code::InvalidArgument),
        ("what is the meaning of life", Code::InvalidArgument),
    ] {
        let outcome = call(&mut client, "database_query", ("query", bad)).await;
        let status = outcome.expect_err(bad);
        assert_eq!(status.code(), code, "{bad:?}: {status:?}");
    }
    let after = call(&mut client, "database_query", ("query", count_guards()))
        .await
        .unwrap();
    assert_eq!(
        before.data_json, after.data_json,
        "the database is unchanged"
    );
}

#[tokio::test]
async fn a_runaway_query_stops_at_the_time_limit() {
    let config = ToolsConfig {
        query_time_limit: Duration::from_millis(100),
        ..ToolsConfig::default()
    };
    let tools = start_tools_with("database_query", config, Duration::from_secs(5)).await;
    let mut client = tools.client(&ALL_SCOPES);
    let forever =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT MAX(i) FROM n";
    let status = call(&mut client, "database_query", ("query", forever))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn unknown_tools_and_arguments_are_refused() {
    let tools =
        start_tools_with("calculator", ToolsConfig::default(), Duration::from_secs(5)).await;
    let mut client = tools.client(&ALL_SCOPES);
    let status = call(&mut client, "file_reader", ("filename", "vault_specs.md"))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "this process hosts only the calculator"
    );
    assert!(status.message().contains("calculator"), "{status:?}");
    let status = call(&mut client, "calculator", ("formula", "1 + 1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("expression"), "{status:?}");
}

#[tokio::test]
async fn each_tool_needs_its_own_scope() {
    let tools = start_tools().await;
    let mut client = tools.client(&["file_reader:use"]);
    let status = call(&mut client, "calculator", ("expression", "1 + 1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("calculator:use"), "{status:?}");
    call(&mut client, "file_reader", ("filename", "vault_specs.md"))
        .await
        .unwrap();
    let mut anonymous = ToolServiceClient::new(tools.server.channel());
    let status = anonymous.list_tools(ListToolsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
