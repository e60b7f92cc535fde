//! The harness itself: the builder's settings reach the services, and the
//! typed clients call with a token of the scopes asked for.

use heist_e2e::mesh::TestMesh;
use heist_proto::v1::{ListSessionsRequest, ListToolsRequest};
use tonic::Code;

async fn tool_names(mesh: &TestMesh) -> Vec<String> {
    let mut client = mesh.tool_client("calculator:use").await;
    let tools = client
        .list_tools(ListToolsRequest {})
        .await
        .unwrap()
        .into_inner()
        .tools;
    tools.into_iter().map(|tool| tool.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mesh_hosts_every_tool_and_the_builder_hosts_the_ones_named() {
    let mesh = TestMesh::start().await;
    let mut names = tool_names(&mesh).await;
    names.sort();
    assert_eq!(names, ["calculator", "database_query", "file_reader"]);

    let mesh = TestMesh::builder().tools("calculator").start().await;
    assert_eq!(tool_names(&mesh).await, ["calculator"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_client_calls_with_the_scopes_it_was_asked_for() {
    let mesh = TestMesh::start().await;
    let mut reader = mesh.audit_client("audit:read").await;
    reader
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap();
    let mut writer = mesh.audit_client("audit:write").await;
    let status = writer
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}
