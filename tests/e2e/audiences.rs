//! Per-service audiences (RFC 8707 resource indicators) on the real binaries:
//! a token asked for `resource: ["tools"]` works on the Tool service and is
//! refused by Audit, Memory and OAuth's own protected calls (UNAUTHENTICATED,
//! naming the audiences); bad resources are refused at issue
//! (INVALID_ARGUMENT, `invalid_target`); and a whole heist, whose orchestrator
//! asks for one token per service it calls, still lands in Audit.

use std::{path::Path, process::Command};

use heist_e2e::{
    audit_trail, binary, channel_to, dev_token_for,
    processes::{MeshOptions, ProcessMesh},
};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CallToolRequest, GetStatsRequest, IntrospectTokenRequest, IntrospectTokenResponse,
    ListSessionsRequest, ListToolsRequest, SessionStatus, audit_service_client::AuditServiceClient,
    memory_service_client::MemoryServiceClient, o_auth_service_client::OAuthServiceClient,
    tool_service_client::ToolServiceClient,
};
use tempfile::TempDir;
use tonic::{Code, Status};

/// The orchestrator's scopes for every call below.
const SCOPES: &str = "calculator:use audit:read memory:read oauth:introspect";

/// The shipped orchestrator client, and `scout`, restricted to `tools`.
const CLIENTS: &str = "clients:
  - client_id: orchestrator
    secret: orchestrator-dev-secret
    allowed_scopes: [calculator:use, audit:read, memory:read, oauth:introspect]
  - client_id: scout
    secret: scout-dev-secret
    allowed_scopes: [calculator:use]
    allowed_audiences: [tools]
";

/// The mesh as processes, OAuth on [`CLIENTS`] (written in `dir`).
async fn start_mesh(dir: &Path) -> ProcessMesh {
    let clients = dir.join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let options = MeshOptions::for_tests().args("oauth", &["--clients", clients.to_str().unwrap()]);
    ProcessMesh::start_with(options).await
}

/// What each service answers to a call with `token`: Tools' `ListTools` and
/// a calculation, Audit's `ListSessions`, Memory's `GetStats`, OAuth's
/// `IntrospectToken`.
struct Answers {
    tools: Result<(), Status>,
    audit: Result<(), Status>,
    memory: Result<(), Status>,
    oauth: Result<IntrospectTokenResponse, Status>,
}

async fn call_each_service(mesh: &ProcessMesh, token: &str) -> Answers {
    let bearer = BearerInterceptor::new(token);
    let mut tools =
        ToolServiceClient::with_interceptor(channel_to(mesh.addr("tools")), bearer.clone());
    let tools = async {
        tools.list_tools(ListToolsRequest {}).await?;
        let answer = tools
            .call_tool(CallToolRequest {
                tool_name: "calculator".into(),
                arguments: [("expression".to_owned(), "6 * 7".to_owned())].into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(answer.text, "6 * 7 = 42", "{answer:?}");
        Ok(())
    }
    .await;
    let audit =
        AuditServiceClient::with_interceptor(channel_to(mesh.addr("audit")), bearer.clone())
            .list_sessions(ListSessionsRequest::default())
            .await
            .map(drop);
    let memory =
        MemoryServiceClient::with_interceptor(channel_to(mesh.addr("memory")), bearer.clone())
            .get_stats(GetStatsRequest {})
            .await
            .map(drop);
    let oauth = OAuthServiceClient::with_interceptor(channel_to(mesh.addr("oauth")), bearer)
        .introspect_token(IntrospectTokenRequest {
            token: token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner);
    Answers {
        tools,
        audit,
        memory,
        oauth,
    }
}

/// Asserts that `outcome` is UNAUTHENTICATED with exactly `message`.
fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, Status>, message: &str, service: &str) {
    let status = outcome.expect_err(&format!("{service} accepted the token"));
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "{service}: {status:?}"
    );
    assert_eq!(status.message(), message, "{service}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_tools_works_on_tools_and_is_refused_by_audit_memory_and_oauth() {
    let dir = TempDir::new().unwrap();
    let mesh = start_mesh(dir.path()).await;
    let oauth = mesh.addr("oauth");

    let for_tools = dev_token_for(oauth, "orchestrator", SCOPES, &["tools"])
        .await
        .unwrap();
    let answers = call_each_service(&mesh, &for_tools).await;
    answers.tools.unwrap();
    let refusal = |service: &str| {
        format!("invalid token: token is for audience \"tools\", not \"{service}\"")
    };
    assert_refused(answers.audit, &refusal("audit"), "Audit");
    assert_refused(answers.memory, &refusal("memory"), "Memory");
    assert_refused(answers.oauth, &refusal("oauth"), "OAuth");

    // The same scopes for the other services: the mirror image.
    let for_the_rest = dev_token_for(oauth, "orchestrator", SCOPES, &["audit", "memory", "oauth"])
        .await
        .unwrap();
    let answers = call_each_service(&mesh, &for_the_rest).await;
    answers.audit.unwrap();
    answers.memory.unwrap();
    let introspected = answers.oauth.unwrap();
    assert!(introspected.active, "{introspected:?}");
    assert_eq!(introspected.aud, ["audit", "memory", "oauth"]);
    assert_refused(
        answers.tools,
        "invalid token: token is for audiences \"audit\", \"memory\", \"oauth\", not \"tools\"",
        "Tools",
    );

    // No resource named: every audience the client may have, so every service.
    let for_all = dev_token_for(oauth, "orchestrator", SCOPES, &[])
        .await
        .unwrap();
    let answers = call_each_service(&mesh, &for_all).await;
    answers.tools.unwrap();
    answers.audit.unwrap();
    answers.memory.unwrap();
    let introspected = answers.oauth.unwrap();
    assert_eq!(introspected.aud, ["oauth", "tools", "memory", "audit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resources_are_refused_at_issue_naming_the_resource_and_the_allowed_ones() {
    let dir = TempDir::new().unwrap();
    let mesh = start_mesh(dir.path()).await;
    let oauth = mesh.addr("oauth");
    let refused = |outcome: Result<String, Status>| {
        let status = outcome.expect_err("a token was issued");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    };

    let unknown = refused(dev_token_for(oauth, "orchestrator", SCOPES, &["tools", "vault"]).await);
    assert!(unknown.starts_with("invalid_target: "), "{unknown}");
    assert!(
        unknown.contains("resource \"vault\" is not an audience"),
        "{unknown}"
    );
    assert!(
        unknown.contains("\"oauth\", \"tools\", \"memory\", \"audit\""),
        "{unknown}"
    );
    let empty = refused(dev_token_for(oauth, "orchestrator", SCOPES, &[""]).await);
    assert!(empty.contains("resource[0] is empty"), "{empty}");
    let not_allowed = refused(dev_token_for(oauth, "scout", "calculator:use", &["audit"]).await);
    assert_eq!(
        not_allowed,
        "invalid_target: resource \"audit\" is not allowed for this client; it may ask for \"tools\""
    );

    // The scout's token, no resource named, is for its one audience.
    let scout = dev_token_for(oauth, "scout", "calculator:use", &[])
        .await
        .unwrap();
    let answers = call_each_service(&mesh, &scout).await;
    answers.tools.unwrap();
    assert_refused(
        answers.audit,
        "invalid token: token is for audience \"tools\", not \"audit\"",
        "Audit",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heist_with_a_token_per_service_lands_every_turn_in_audit() {
    const TURNS: usize = 8;
    let mesh = ProcessMesh::start().await;
    let config = mesh.write_config("heist.yaml");
    let run = Command::new(binary("orchestrator"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--turns", &TURNS.to_string(), "--seed", "42"])
        .current_dir(mesh.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let session_id = heist_e2e::session_id_in(&stdout);
    // Every token the run bought was for one service, and each service had its own.
    let log = std::fs::read_to_string(mesh.log_of("oauth", 0)).unwrap();
    let audiences: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("token issued"))
        .map(|line| line.rsplit_once(" aud=").map_or("", |(_, aud)| aud.trim()))
        .collect();
    assert!(
        audiences
            .iter()
            .all(|aud| ["tools", "memory", "audit"].contains(aud)),
        "{audiences:?}"
    );
    for wanted in ["tools", "memory", "audit"] {
        assert!(
            audiences.contains(&wanted),
            "no token for {wanted}: {audiences:?}"
        );
    }
    let trail = audit_trail(mesh.addr("oauth"), mesh.addr("audit"), &session_id).await;
    assert_eq!(trail.session.status(), SessionStatus::Completed, "{stdout}");
    assert_eq!(trail.messages.len(), TURNS, "{stdout}");
    assert!(
        trail.messages.iter().all(|message| !message.is_error),
        "{stdout}"
    );
    // The agents' tool calls, with their tokens for `tools`, went through.
    assert!(!trail.tool_usage.is_empty(), "{stdout}");
    assert!(
        trail.tool_usage.iter().all(|call| call.success),
        "{:?}",
        trail.tool_usage
    );
    assert!(
        !stderr.contains("UNAUTHENTICATED") && !stderr.contains("audience"),
        "{stderr}"
    );
}
