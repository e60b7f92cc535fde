//! One start helper per service: its `run` in-process on `127.0.0.1:0`
//! through [`TestServer`], for tests that want one service with their own
//! settings (a test authenticator, limits, serve options) rather than the
//! whole [`TestMesh`](crate::mesh::TestMesh).

use std::{net::SocketAddr, path::Path, time::Duration};

use heist_plumbing::{ServeOptions, auth::Authenticator};

use crate::TestServer;

/// OAuth's test settings: built-in development clients, key and revocation
/// list in `dir`, issuer `heist-oauth`, 5-minute tokens.
pub fn oauth_config(dir: &Path) -> heist_oauth::OAuthConfig {
    heist_oauth::OAuthConfig {
        clients_file: None,
        key_file: dir.join("signing.key"),
        key_leeway: Duration::from_secs(heist_tokens::DEFAULT_LEEWAY_SECS),
        key_reload: Duration::from_secs(2),
        revocations: heist_oauth::revocations::RevocationBackend::File(dir.join("revoked.log")),
        issuer: "heist-oauth".into(),
        token_lifetime: Duration::from_secs(300),
    }
}

/// Starts OAuth with `config`.
pub async fn oauth(config: heist_oauth::OAuthConfig, options: ServeOptions) -> TestServer {
    TestServer::start(move |listener, shutdown| {
        heist_oauth::run(listener, config, shutdown, options)
    })
    .await
}

/// Starts Audit on `store`, trusting `auth`.
pub async fn audit(
    store: heist_audit::StoreConfig,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    audit_at(ANY_PORT, store, auth, options).await
}

/// Like [`audit`], listening on `addr`.
pub async fn audit_at(
    addr: SocketAddr,
    store: heist_audit::StoreConfig,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    TestServer::start_at(addr, move |listener, shutdown| {
        heist_audit::run(listener, store, auth, shutdown, options)
    })
    .await
}

/// Starts Memory in memory bounded by `limits`, trusting `auth`.
pub async fn memory(
    limits: heist_memory::Limits,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    memory_at(ANY_PORT, limits, auth, options).await
}

/// Like [`memory`], listening on `addr`.
pub async fn memory_at(
    addr: SocketAddr,
    limits: heist_memory::Limits,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    let store = heist_memory::Backend::in_memory(limits).expect("valid memory limits");
    memory_on_at(addr, store, auth, options).await
}

/// Starts Memory on `store` (in memory or on Redis), trusting `auth`.
pub async fn memory_on(
    store: heist_memory::Backend,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    memory_on_at(ANY_PORT, store, auth, options).await
}

/// Like [`memory_on`], listening on `addr`.
pub async fn memory_on_at(
    addr: SocketAddr,
    store: heist_memory::Backend,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    TestServer::start_at(addr, move |listener, shutdown| {
        heist_memory::run(listener, store, auth, shutdown, options)
    })
    .await
}

/// Starts a Tool service hosting `tools`, each call bounded by
/// `call_timeout`, trusting `auth`.
pub async fn tools(
    tools: heist_tools::ToolSet,
    call_timeout: Duration,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    tools_at(ANY_PORT, tools, call_timeout, auth, options).await
}

/// Like [`tools`], listening on `addr`.
pub async fn tools_at(
    addr: SocketAddr,
    tools: heist_tools::ToolSet,
    call_timeout: Duration,
    auth: Authenticator,
    options: ServeOptions,
) -> TestServer {
    TestServer::start_at(addr, move |listener, shutdown| {
        heist_tools::run(listener, tools, call_timeout, auth, shutdown, options)
    })
    .await
}

/// `127.0.0.1:0`: a free port.
pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
