//! Caller values quoted back in a status are cut short and escaped, through
//! the real servers (issue 11, item 1): a huge or hostile name, id, key, path
//! or expression answers its precise code with a short, printable message,
//! never a transport error because the message outgrew the HTTP/2 header limit.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
#![allow(clippy::needless_update)] // requests may gain fields: `..Default::default()` keeps this file compiling

use std::collections::HashMap;

use heist_e2e::{channel_to, dev_token, mesh::TestMesh};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CallToolRequest, CreateSessionRequest, GetSessionRequest, IssueTokenRequest,
    ListMemoryTurnsRequest, StoreMemoryRequest, StoreMessageRequest,
    memory_service_client::MemoryServiceClient, o_auth_service_client::OAuthServiceClient,
};
use tonic::{Code, Status};

/// One mebibyte: the issue's example size, 64 times the 16 KiB header limit.
/// Methods that take content accept it (4 MiB messages); the others refuse
/// any request over 16 KiB before reading it (RESOURCE_EXHAUSTED).
const MIB: usize = 1 << 20;

/// 6,000 two-byte characters: a value that fits a 16 KiB request, and whose
/// echo, percent-encoded in `grpc-message` (three bytes a byte), would be a
/// 36,000-byte header, over the client's 16 KiB limit.
fn wide(c: char) -> String {
    c.to_string().repeat(6000)
}

/// The longest message a refusal may have here: a few quoted values and a
/// list of what is allowed, far under the 16 KiB header limit.
const SHORT: usize = 1024;

/// A value that would forge a log line and move a terminal's cursor.
const HOSTILE: &str = "x\n2026-12-01T00:00:00Z INFO token issued scope=oauth:admin\u{1b}[2J\u{7}";

const SCOPES: &str = "audit:read audit:write memory:read memory:write calculator:use \
                      file_reader:use database_query:use agents:act_for_any";

/// Asserts `outcome` is refused with `code`, and its message is short and
/// holds no raw control character; returns the message.
fn assert_short_refusal<T: std::fmt::Debug>(
    outcome: Result<T, Status>,
    code: Code,
    case: &str,
) -> String {
    let status = outcome.expect_err(&format!("{case}: accepted"));
    let message = status.message().to_owned();
    assert_eq!(status.code(), code, "{case}: {message:.300}");
    assert!(
        message.len() <= SHORT,
        "{case}: {} bytes: {message:.300}",
        message.len()
    );
    assert!(
        !message.chars().any(char::is_control),
        "{case}: raw control character in {message:?}"
    );
    message
}

fn tool_call(tool: &str, arguments: HashMap<String, String>) -> CallToolRequest {
    CallToolRequest {
        tool_name: tool.into(),
        arguments,
        session_id: "quoting".into(),
        agent_name: String::new(),
        ..CallToolRequest::default()
    }
}

fn one_argument(name: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(name.to_owned(), value.to_owned())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_tool_name_is_invalid_with_a_short_message() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.tool_client(SCOPES).await;
    let huge = "t".repeat(MIB);
    let message = assert_short_refusal(
        client
            .call_tool(tool_call(&huge, one_argument("expression", "1")))
            .await,
        Code::InvalidArgument,
        "1 MiB tool_name",
    );
    assert!(message.contains("tool_name is 1048576 bytes"), "{message}");
    assert!(
        message.contains("calculator"),
        "names the hosted tools: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_thousand_unknown_arguments_are_named_a_few_and_counted() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.tool_client(SCOPES).await;
    let mut arguments: HashMap<String, String> = (0..40_000)
        .map(|n| (format!("unknown_argument_{n:05}"), "v".to_owned()))
        .collect();
    arguments.insert("expression".into(), "1 + 1".into());
    let message = assert_short_refusal(
        client.call_tool(tool_call("calculator", arguments)).await,
        Code::InvalidArgument,
        "40,000 unknown arguments",
    );
    assert!(
        message.contains("'unknown_argument_00000'"),
        "the first, sorted: {message}"
    );
    assert!(message.contains("and 39992 more"), "{message}");
    assert!(message.contains("this tool takes: expression"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_quoted_values_are_escaped() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.tool_client(SCOPES).await;
    let message = assert_short_refusal(
        client
            .call_tool(tool_call(HOSTILE, one_argument("expression", "1")))
            .await,
        Code::NotFound,
        "hostile tool_name",
    );
    assert!(
        message.contains(r"x\n2026-12-01T00:00:00Z INFO token issued"),
        "{message}"
    );
    assert!(message.contains(r"\u{1b}[2J\u{7}"), "{message}");

    let message = assert_short_refusal(
        client
            .call_tool(tool_call("calculator", one_argument(HOSTILE, "1")))
            .await,
        Code::InvalidArgument,
        "hostile argument name",
    );
    assert!(message.contains(r"'x\n2026"), "{message}");

    // A long unknown name is cut to its first characters and its size.
    let long_name = format!("{}(1)", "f".repeat(900));
    let message = assert_short_refusal(
        client
            .call_tool(tool_call(
                "calculator",
                one_argument("expression", &long_name),
            ))
            .await,
        Code::InvalidArgument,
        "long unknown function",
    );
    assert!(message.contains("…(900 bytes)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_expression_or_file_name_is_refused_briefly() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.tool_client(SCOPES).await;
    let huge = "1+".repeat(MIB / 2);
    let message = assert_short_refusal(
        client
            .call_tool(tool_call("calculator", one_argument("expression", &huge)))
            .await,
        Code::InvalidArgument,
        "1 MiB expression",
    );
    assert!(message.contains("over the limit"), "{message}");

    for (case, filename) in [
        ("1 MiB file name", "d".repeat(MIB)),
        ("1 MiB path", format!("../{}", "a/".repeat(MIB / 2))),
        ("hostile file name", HOSTILE.to_owned()),
    ] {
        let outcome = client
            .call_tool(tool_call(
                "file_reader",
                one_argument("filename", &filename),
            ))
            .await;
        assert_short_refusal(outcome, Code::InvalidArgument, case);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ids_keys_and_names_in_audit_are_refused_briefly() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.audit_client(SCOPES).await;
    let huge = "s".repeat(MIB);
    assert_short_refusal(
        client
            .get_session(GetSessionRequest {
                session_id: huge.clone(),
                ..GetSessionRequest::default()
            })
            .await,
        Code::ResourceExhausted,
        "GetSession with a 1 MiB session_id",
    );
    let message = assert_short_refusal(
        client
            .get_session(GetSessionRequest {
                session_id: wide('é'),
                ..GetSessionRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "GetSession with a 12,000-byte session_id",
    );
    assert!(message.contains("session_id"), "{message}");
    assert_short_refusal(
        client
            .get_session(GetSessionRequest {
                session_id: HOSTILE.into(),
                ..GetSessionRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "GetSession with a hostile session_id",
    );
    assert_short_refusal(
        client
            .create_session(CreateSessionRequest {
                session_id: huge.clone(),
                ..CreateSessionRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "CreateSession with a 1 MiB session_id",
    );

    client
        .create_session(CreateSessionRequest {
            session_id: "quoting-audit".into(),
            ..CreateSessionRequest::default()
        })
        .await
        .unwrap();
    let message = |agent_name: &str, idempotency_key: &str| StoreMessageRequest {
        session_id: "quoting-audit".into(),
        turn_id: 1,
        agent_name: agent_name.into(),
        agent_role: "hacker".into(),
        message: "in".into(),
        idempotency_key: idempotency_key.into(),
        ..StoreMessageRequest::default()
    };
    assert_short_refusal(
        client.store_message(message(&huge, "k1")).await,
        Code::InvalidArgument,
        "StoreMessage with a 1 MiB agent_name",
    );
    assert_short_refusal(
        client.store_message(message("hacker", &huge)).await,
        Code::InvalidArgument,
        "StoreMessage with a 1 MiB idempotency_key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_agent_and_session_ids_in_memory_are_refused_briefly() {
    let mesh = TestMesh::start().await;
    let mut client = mesh.memory_client(SCOPES).await;
    let huge = "m".repeat(MIB);
    // (Memory's idempotency_key is not read, so never quoted: turns are keyed by turn_id.)
    let store = |agent_id: &str, session_id: &str| StoreMemoryRequest {
        agent_id: agent_id.into(),
        session_id: session_id.into(),
        turn_id: 1,
        message: "in".into(),
        ..StoreMemoryRequest::default()
    };
    for (case, request) in [
        ("1 MiB agent_id", store(&huge, "s")),
        ("1 MiB session_id", store("hacker", &huge)),
    ] {
        assert_short_refusal(
            client.store_memory(request).await,
            Code::InvalidArgument,
            case,
        );
    }
    let list = |agent_id: String| ListMemoryTurnsRequest {
        agent_id,
        session_id: "s".into(),
        ..ListMemoryTurnsRequest::default()
    };
    assert_short_refusal(
        client.list_memory_turns(list(huge.clone())).await,
        Code::ResourceExhausted,
        "ListMemoryTurns with a 1 MiB agent_id",
    );
    assert_short_refusal(
        client.list_memory_turns(list(wide('é'))).await,
        Code::InvalidArgument,
        "ListMemoryTurns with a 12,000-byte agent_id",
    );

    // An agent acting as another: the refusal names both, briefly.
    let planner = BearerInterceptor::new(
        &dev_token(mesh.oauth.addr, "planner", "memory:write")
            .await
            .unwrap(),
    );
    let mut planner = MemoryServiceClient::with_interceptor(mesh.memory.channel(), planner);
    let message = assert_short_refusal(
        planner.store_memory(store(&huge, "s")).await,
        Code::PermissionDenied,
        "planner storing as a 1 MiB agent",
    );
    assert!(message.contains("…(1048576 bytes)"), "{message}");
    let message = assert_short_refusal(
        planner.store_memory(store(HOSTILE, "s")).await,
        Code::PermissionDenied,
        "planner storing as a hostile agent",
    );
    assert!(message.contains(r"x\n2026"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_client_ids_scopes_and_grant_types_in_oauth_are_refused_briefly() {
    let mesh = TestMesh::start().await;
    let mut client = OAuthServiceClient::new(channel_to(mesh.oauth.addr));
    let huge = wide('ç');
    let issue = |client_id: &str, scope: &str, grant_type: &str| IssueTokenRequest {
        grant_type: grant_type.into(),
        client_id: client_id.into(),
        client_secret: "planner-dev-secret".into(),
        scope: scope.into(),
        ..IssueTokenRequest::default()
    };
    assert_short_refusal(
        client
            .issue_token(issue(&huge, "calculator:use", "client_credentials"))
            .await,
        Code::Unauthenticated,
        "12,000-byte client_id",
    );
    assert_short_refusal(
        client
            .issue_token(issue(HOSTILE, "calculator:use", "client_credentials"))
            .await,
        Code::Unauthenticated,
        "hostile client_id",
    );
    assert_short_refusal(
        client
            .issue_token(issue("planner", &huge, "client_credentials"))
            .await,
        Code::InvalidArgument,
        "12,000-byte scope",
    );
    let message = assert_short_refusal(
        client
            .issue_token(issue(
                "planner",
                "calc\u{1b}[2J\nscope",
                "client_credentials",
            ))
            .await,
        Code::InvalidArgument,
        "hostile scope",
    );
    assert!(message.contains(r"\u{1b}"), "{message}");
    let message = assert_short_refusal(
        client
            .issue_token(issue("planner", "calculator:use", &huge))
            .await,
        Code::InvalidArgument,
        "12,000-byte grant_type",
    );
    assert!(message.contains("…(12000 bytes)"), "{message}");
    assert_short_refusal(
        client
            .issue_token(issue(
                &"c".repeat(MIB),
                "calculator:use",
                "client_credentials",
            ))
            .await,
        Code::ResourceExhausted,
        "1 MiB client_id",
    );
}
