//! The library's certificates as rustls sees them: what verifies, and what
//! fails for which reason.

mod support;

use std::time::SystemTime;

use heist_certs::{CA_CERT_FILE, CA_KEY_FILE, DevCa, IssuedCert, Leaf};
use rustls::CertificateError;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use support::{HOUR, certificate_error, der, is_expired, verify_client, verify_server};

fn new_ca() -> DevCa {
    DevCa::new("test CA").expect("a CA")
}

fn server(ca: &DevCa, leaf: &IssuedCert, host: &str) -> Result<(), rustls::Error> {
    verify_server(&ca.cert_pem(), &leaf.cert_pem, host, SystemTime::now())
}

fn client(ca: &DevCa, leaf: &IssuedCert) -> Result<(), rustls::Error> {
    verify_client(&ca.cert_pem(), &leaf.cert_pem, SystemTime::now())
}

#[test]
fn a_service_certificate_verifies_for_its_name_localhost_and_loopback_as_server_and_client() {
    let ca = new_ca();
    let leaf = ca.issue(&Leaf::service("oauth")).unwrap();
    for host in ["oauth", "localhost", "127.0.0.1", "::1"] {
        server(&ca, &leaf, host).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    client(&ca, &leaf).unwrap();
}

#[test]
fn a_service_name_with_an_underscore_still_verifies() {
    let ca = new_ca();
    let leaf = ca.issue(&Leaf::service("database_query")).unwrap();
    server(&ca, &leaf, "database_query").unwrap();
    server(&ca, &leaf, "localhost").unwrap();
}

#[test]
fn the_key_belongs_to_the_certificate_and_rustls_loads_it() {
    let ca = new_ca();
    let leaf = ca.issue(&Leaf::service("tools")).unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![der(&leaf.cert_pem)], signing_key);
    certified.keys_match().unwrap();
}

#[test]
fn an_expired_certificate_fails_as_expired() {
    let ca = new_ca();
    let now = SystemTime::now();
    let expired = Leaf {
        not_before: now - 2 * HOUR,
        not_after: now - HOUR,
        ..Leaf::service("oauth")
    };
    let leaf = ca.issue(&expired).unwrap();
    let error = certificate_error(server(&ca, &leaf, "localhost"));
    assert!(is_expired(&error), "{error:?}");
}

#[test]
fn expiry_set_by_not_after_alone_still_fails_as_expired() {
    let ca = new_ca();
    let expired = Leaf {
        not_after: SystemTime::now() - HOUR,
        ..Leaf::service("oauth")
    };
    let leaf = ca.issue(&expired).unwrap();
    let error = certificate_error(client(&ca, &leaf));
    assert!(is_expired(&error), "{error:?}");
}

#[test]
fn a_certificate_for_another_host_fails_as_not_valid_for_name() {
    let ca = new_ca();
    let other = Leaf {
        dns_names: vec!["other.example".to_owned()],
        ip_addresses: vec![],
        ..Leaf::service("oauth")
    };
    let leaf = ca.issue(&other).unwrap();
    server(&ca, &leaf, "other.example").unwrap();
    for host in ["localhost", "127.0.0.1", "oauth"] {
        let error = certificate_error(server(&ca, &leaf, host));
        assert!(
            matches!(
                error,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{host}: {error:?}"
        );
    }
}

#[test]
fn a_certificate_from_another_ca_fails_as_unknown_issuer_even_under_the_same_name() {
    // The same common name on purpose: a certificate directory made again.
    let ca = new_ca();
    let stranger = new_ca();
    let leaf = stranger.issue(&Leaf::service("oauth")).unwrap();
    let error = certificate_error(server(&ca, &leaf, "localhost"));
    assert_eq!(error, CertificateError::UnknownIssuer);
    let error = certificate_error(client(&ca, &leaf));
    assert_eq!(error, CertificateError::UnknownIssuer);
}

#[test]
fn a_written_ca_loads_back_and_its_new_leaves_verify_against_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    ca.write(dir.path()).unwrap();
    let old_leaf = ca.issue(&Leaf::service("memory")).unwrap();
    let loaded = DevCa::load(
        &dir.path().join(CA_CERT_FILE),
        &dir.path().join(CA_KEY_FILE),
    )
    .unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(loaded.key_pem(), ca.key_pem());
    // Renewing under the loaded CA keeps trust: whoever holds the original
    // ca.pem accepts the new leaf, and the old leaf still verifies.
    let renewed = loaded.issue(&Leaf::service("memory")).unwrap();
    assert_ne!(renewed, old_leaf);
    server(&ca, &renewed, "localhost").unwrap();
    client(&ca, &renewed).unwrap();
    server(&loaded, &old_leaf, "127.0.0.1").unwrap();
}

#[test]
fn a_leaf_is_valid_from_its_not_before_to_its_not_after_and_no_longer() {
    let ca = new_ca();
    let leaf = Leaf::service("audit");
    let (from, until) = (leaf.not_before, leaf.not_after);
    let issued = ca.issue(&leaf).unwrap();
    let cert = issued.cert_pem.as_str();
    verify_server(&ca.cert_pem(), cert, "localhost", from + HOUR / 2).unwrap();
    verify_server(&ca.cert_pem(), cert, "localhost", until - HOUR).unwrap();
    let error = certificate_error(verify_server(
        &ca.cert_pem(),
        cert,
        "localhost",
        until + HOUR,
    ));
    assert!(is_expired(&error), "{error:?}");
    let error = certificate_error(verify_server(
        &ca.cert_pem(),
        cert,
        "localhost",
        from - HOUR,
    ));
    assert!(
        matches!(
            error,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
        ),
        "{error:?}"
    );
}

/// A certificate chain and key for rustls.
fn identity(
    leaf: &IssuedCert,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("a PEM private key");
    (vec![der(&leaf.cert_pem)], key)
}

#[test]
fn a_mutual_tls_handshake_on_loopback_succeeds_both_ways() {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    let ca = new_ca();
    let server_leaf = ca.issue(&Leaf::service("audit")).unwrap();
    let client_leaf = ca.issue(&Leaf::service("orchestrator")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.cert_pem())).unwrap();
    let roots = Arc::new(roots);

    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (chain, key) = identity(&server_leaf);
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let (chain, key) = identity(&client_leaf);
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let connection = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, socket);
        let mut hello = [0; 5];
        tls.read_exact(&mut hello).unwrap();
        tls.write_all(b"world").unwrap();
        tls.flush().unwrap();
        let peer = tls.conn.peer_certificates().unwrap()[0].clone();
        (hello, peer)
    });

    let host = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(client_config), host).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(address).unwrap());
    tls.write_all(b"hello").unwrap();
    let mut answer = [0; 5];
    tls.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"world");
    let (hello, client_cert) = server.join().unwrap();
    assert_eq!(&hello, b"hello");
    assert_eq!(
        client_cert,
        der(&client_leaf.cert_pem),
        "the server saw the orchestrator's certificate"
    );
}

#[test]
fn a_service_certificate_carries_its_spiffe_id_and_both_key_usages() {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    let ca = new_ca();
    let issued = ca.issue(&Leaf::service("memory")).unwrap();
    let der = der(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let names = cert.subject_alternative_name().unwrap().unwrap().value;
    let uris: Vec<_> = names
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://heist.local/memory"]);
    let usage = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(usage.server_auth && usage.client_auth, "{usage:?}");
    assert!(!cert.is_ca());
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "memory"
    );
}
