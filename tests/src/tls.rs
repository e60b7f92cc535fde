//! Certificates for tests that run the mesh over TLS: a development CA and a
//! leaf per service in a directory, renewed on demand; and the clients that
//! reach a TLS server.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use heist_certs::{DevCa, IssuedCert, Leaf};
use heist_plumbing::tls::{ClientTls, ClientTlsFiles, connect_lazy};
use tonic::transport::{Channel, Endpoint};

/// How a mesh speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Servers show certificates; clients show none.
    ServerOnly,
    /// Every hop is mutual TLS: servers take only clients whose
    /// certificate the CA signed.
    Mutual,
}

/// A CA and a certificate per name, as files in one directory.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
    ca: DevCa,
}

impl TestCerts {
    /// A fresh CA in `dir` and a service certificate for each of `names`.
    pub fn new(dir: &Path, names: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("certificate directory");
        let ca = DevCa::new("heist test CA").expect("CA");
        ca.write(dir).expect("write CA");
        let certs = Self {
            dir: dir.to_owned(),
            ca,
        };
        for name in names {
            certs.issue_as(name, &Leaf::service(name));
        }
        certs
    }

    /// Issues `leaf` and writes it as `name`'s certificate and key
    /// (atomically: a server reloading never reads half a file).
    pub fn issue_as(&self, name: &str, leaf: &Leaf) -> IssuedCert {
        let issued = self.ca.issue(leaf).expect("issue certificate");
        issued.write(&self.dir, name).expect("write certificate");
        issued
    }

    /// A new certificate for `name`, replacing the one on disk.
    pub fn renew(&self, name: &str) -> IssuedCert {
        self.issue_as(name, &Leaf::service(name))
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join(heist_certs::CA_CERT_FILE)
    }

    /// `name`'s certificate file.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(heist_certs::cert_file(name))
    }

    /// `name`'s key file.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(heist_certs::key_file(name))
    }

    /// A client trusting this CA, showing `name`'s certificate when given.
    pub fn client(&self, name: Option<&str>) -> ClientTls {
        ClientTls::load(
            ClientTlsFiles {
                ca: self.ca(),
                identity: name.map(|name| (self.cert(name), self.key(name))),
            },
            Duration::from_secs(1),
        )
        .expect("client TLS")
    }

    /// The server arguments of `name`: its certificate, the CA for its own
    /// calls, and under mutual TLS the CA its clients must come from.
    pub fn server_args(&self, name: &str, mode: TlsMode) -> Vec<String> {
        let text = |path: PathBuf| path.to_string_lossy().into_owned();
        let mut args = vec![
            "--tls-cert".to_owned(),
            text(self.cert(name)),
            "--tls-key".to_owned(),
            text(self.key(name)),
            "--tls-ca".to_owned(),
            text(self.ca()),
            "--tls-reload".to_owned(),
            "200ms".to_owned(),
        ];
        if mode == TlsMode::Mutual {
            args.extend(["--tls-client-ca".to_owned(), text(self.ca())]);
        }
        args
    }

    /// The orchestrator config's `tls` section (showing `orchestrator`'s
    /// certificate).
    pub fn config_section(&self) -> String {
        format!(
            "\ntls:\n  ca: \"{}\"\n  cert: \"{}\"\n  key: \"{}\"\n  reload: 200ms\n",
            self.ca().display(),
            self.cert("orchestrator").display(),
            self.key("orchestrator").display()
        )
    }
}

/// A lazy channel to `https://addr` with `tls`.
pub fn tls_channel_to(addr: SocketAddr, tls: &ClientTls) -> Channel {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    connect_lazy(endpoint, Some(tls)).expect("https channel")
}
