//! The OAuth service's own metrics, read from the process's registry as a
//! scrape would see them, while the service runs on a real socket. A test
//! binary of its own (the registry is process-wide) with one test: every
//! count is exact.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use heist_oauth::{OAuthConfig, revocations::RevocationBackend};
use heist_plumbing::{
    ServeOptions,
    metrics::{encode, sample},
};
use heist_proto::v1::{
    self as pb, o_auth_service_client::OAuthServiceClient, revoke_token_request::Target,
};
use tonic::Code;

fn now(series: &str) -> f64 {
    sample(&encode(), series).unwrap_or(0.0)
}

fn refused(reason: &str) -> f64 {
    now(&format!(
        "heist_oauth_tokens_refused_total{{reason=\"{reason}\"}}"
    ))
}

fn request(client_id: &str, secret: &str, scope: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        client_id: client_id.into(),
        client_secret: secret.into(),
        scope: scope.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn tokens_issued_refused_by_reason_and_revoked_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = OAuthConfig {
        clients_file: None,
        key_file: dir.path().join("signing.key"),
        key_leeway: Duration::from_secs(heist_tokens::DEFAULT_LEEWAY_SECS),
        key_reload: Duration::from_secs(2),
        revocations: RevocationBackend::File(dir.path().join("revoked.log")),
        issuer: "heist-oauth".into(),
        token_lifetime: Duration::from_secs(300),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(heist_oauth::run(
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
        ServeOptions::default(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = OAuthServiceClient::new(channel);

    let issued = client
        .issue_token(request("planner", "planner-dev-secret", "calculator:use"))
        .await
        .unwrap()
        .into_inner();
    client
        .issue_token(request("planner", "planner-dev-secret", "memory:read"))
        .await
        .unwrap();
    let refusals = [
        (
            request("nobody", "x", "calculator:use"),
            "bad_client",
            Code::Unauthenticated,
        ),
        (
            request("planner", "wrong", "calculator:use"),
            "bad_secret",
            Code::Unauthenticated,
        ),
        (
            request("planner", "planner-dev-secret", " "),
            "bad_scope",
            Code::InvalidArgument,
        ),
        (
            request("planner", "planner-dev-secret", "file_reader:use"),
            "scope_not_allowed",
            Code::PermissionDenied,
        ),
        (
            pb::IssueTokenRequest {
                resource: vec!["vault".into()],
                ..request("planner", "planner-dev-secret", "calculator:use")
            },
            "invalid_target",
            Code::InvalidArgument,
        ),
        (
            pb::IssueTokenRequest {
                grant_type: "password".into(),
                ..request("planner", "planner-dev-secret", "calculator:use")
            },
            "unsupported_grant",
            Code::InvalidArgument,
        ),
        (
            request("", "x", "calculator:use"),
            "bad_request",
            Code::InvalidArgument,
        ),
    ];
    for (refused_request, _, code) in refusals.clone() {
        let status = client.issue_token(refused_request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    // A revocation counts once, however often it is asked for.
    for _ in 0..2 {
        client
            .revoke_token(pb::RevokeTokenRequest {
                target: Some(Target::Token(issued.access_token.clone())),
            })
            .await
            .unwrap();
    }

    assert_eq!(now("heist_oauth_tokens_issued_total"), 2.0);
    for (_, reason, _) in refusals {
        assert_eq!(refused(reason), 1.0, "{reason}");
    }
    assert_eq!(refused("internal"), 0.0);
    assert_eq!(now("heist_oauth_revocations_total"), 1.0);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
