//! A service's replicas: every address its config gives, a host name resolved to each address
//! it has ([`resolve`]), and [`Balanced`], the one channel over them that sends each call to
//! the replica the call pins ([`Pinned`]) or else to the next in turn.
//!
//! Names are resolved once, when the mesh is built (`tokio::net::lookup_host`); a name that
//! does not resolve then stays a name (the connection resolves it, and fails, as before), so a
//! typo shows in the health report rather than stopping the start.

use std::{
    collections::BTreeSet,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use heist_plumbing::propagation::TracedChannel;
use http::Uri;
use tower::{Service, ServiceExt};

use crate::{config::Endpoint, resilience::is_replica_gone};

/// One address to call: a configured endpoint, or one of the addresses its host name has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// `http://host:port` as called (an IP address once resolved, IPv6 in brackets).
    pub url: String,
    /// The host as called (no brackets), for the spans' `server.address`.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The configured endpoint it came from (the same as `url` unless a name was resolved).
    pub configured: String,
}

impl Address {
    /// `host:port` (IPv6 in brackets), as breaker names and logs show it.
    pub fn authority(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// The host of the configured endpoint (no brackets): the name a
    /// server's certificate must carry.
    pub fn configured_host(&self) -> String {
        let uri: Option<Uri> = self.configured.parse().ok();
        uri.as_ref().and_then(Uri::host).map_or_else(
            || self.host.clone(),
            |host| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            },
        )
    }
}

/// The addresses of `endpoints`, in order: an IP address as it is, a host name as every address
/// it resolves to (`localhost` gives 127.0.0.1 and ::1), each address once.
pub async fn resolve<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Vec<Address> {
    let mut seen = BTreeSet::new();
    let mut addresses = Vec::new();
    for endpoint in endpoints {
        for address in resolve_one(endpoint).await {
            if seen.insert(address.url.clone()) {
                addresses.push(address);
            }
        }
    }
    addresses
}

/// The addresses of one endpoint (its own URL when it names no resolvable host).
async fn resolve_one(endpoint: &Endpoint) -> Vec<Address> {
    let uri: Option<Uri> = endpoint.url.parse().ok();
    let host = uri.as_ref().and_then(Uri::host).map(|host| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    });
    let port = uri.as_ref().and_then(Uri::port_u16);
    let (Some(host), Some(port)) = (host, port) else {
        return Vec::new();
    };
    let as_named = || Address {
        url: endpoint.url.clone(),
        host: host.clone(),
        port,
        configured: endpoint.url.clone(),
    };
    if host.parse::<IpAddr>().is_ok() {
        return vec![as_named()];
    }
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => {
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                return vec![as_named()];
            }
            found
                .into_iter()
                .map(|addr| Address {
                    url: format!("http://{addr}"),
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    configured: endpoint.url.clone(),
                })
                .collect()
        }
        Err(error) => {
            tracing::warn!(endpoint = %endpoint.url, %error, "cannot resolve the host name");
            vec![as_named()]
        }
    }
}

/// Which replica a call goes to: put in a request's extensions (an index into
/// [`Balanced::replicas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned(pub usize);

/// One replica: its address and its traced channel.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Where it is.
    pub address: Address,
    /// Its channel, each call's span naming the replica (`server.address`, `server.port`).
    pub channel: TracedChannel,
}

/// A channel over the replicas of one service. A call whose request carries [`Pinned`] goes to
/// that replica; any other to the next in turn (round-robin). Cheap to clone: clones share the
/// replicas and the turn.
#[derive(Debug, Clone)]
pub struct Balanced {
    replicas: Arc<[Replica]>,
    next: Arc<AtomicUsize>,
}

impl Balanced {
    /// A channel over `replicas`; `None` when there is none.
    pub fn new(replicas: Vec<Replica>) -> Option<Self> {
        if replicas.is_empty() {
            return None;
        }
        Some(Self {
            replicas: replicas.into(),
            next: Arc::default(),
        })
    }

    /// The replicas, in order.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// A channel to replica `index` alone (for its health), `None` past the end.
    pub fn only(&self, index: usize) -> Option<Self> {
        let replica = self.replicas.get(index)?.clone();
        Self::new(vec![replica])
    }

    /// The replica the next call that pins none goes to; advances the turn.
    pub fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.replicas.len()
    }
}

/// Sends a call by `send` to one replica after the other, from `start` (modulo `count`), going
/// on to the next while a replica is gone (see [`is_replica_gone`]); the first other answer, or
/// the last replica's, is the call's. For calls past any breaker (token purchases, listings).
pub async fn failover<T, Fut>(
    count: usize,
    start: usize,
    mut send: impl FnMut(Pinned) -> Fut,
) -> Result<T, tonic::Status>
where
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let count = count.max(1);
    let mut offset = 0;
    loop {
        let outcome = send(Pinned(start.wrapping_add(offset) % count)).await;
        offset += 1;
        match outcome {
            Err(status) if offset < count && is_replica_gone(&status) => {
                tracing::warn!(error = %status.message(), "replica unreachable, trying the next");
            }
            outcome => return outcome,
        }
    }
}

/// A boxed, sendable future.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<http::Request<tonic::body::Body>> for Balanced {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    /// Always ready: the replica is chosen per call, and its channel is made ready then.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let index = match request.extensions().get::<Pinned>() {
            Some(Pinned(index)) => index % self.replicas.len(),
            None => self.next_index(),
        };
        let channel = self.replicas[index].channel.clone();
        Box::pin(channel.oneshot(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[tokio::test]
    async fn ip_addresses_are_kept_as_given_and_repeats_dropped() {
        let endpoints = [
            endpoint("http://127.0.0.1:8002"),
            endpoint("http://[::1]:8002"),
            endpoint("http://127.0.0.1:8002"),
        ];
        let addresses = resolve(&endpoints).await;
        let urls: Vec<&str> = addresses.iter().map(|a| a.url.as_str()).collect();
        assert_eq!(urls, ["http://127.0.0.1:8002", "http://[::1]:8002"]);
        assert_eq!(addresses[1].host, "::1");
        assert_eq!(addresses[1].authority(), "[::1]:8002");
    }

    #[tokio::test]
    async fn localhost_becomes_every_address_it_resolves_to() {
        let addresses = resolve(&[endpoint("http://localhost:8005")]).await;
        assert!(!addresses.is_empty());
        assert!(
            addresses
                .iter()
                .any(|address| address.url == "http://127.0.0.1:8005"),
            "{addresses:?}"
        );
        for address in &addresses {
            assert_eq!(address.port, 8005);
            assert_eq!(address.configured, "http://localhost:8005");
            assert!(address.host.parse::<IpAddr>().is_ok(), "{address:?}");
        }
    }

    #[tokio::test]
    async fn failover_goes_on_past_gone_replicas_only() {
        let sent = std::sync::Mutex::new(Vec::new());
        let answer = failover(3, 1, |Pinned(index)| {
            sent.lock().unwrap().push(index);
            async move {
                match index {
                    1 => Err(tonic::Status::unavailable("connection refused")),
                    _ => Ok(index),
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 2);
        assert_eq!(*sent.lock().unwrap(), [1, 2]);
        let refused: Result<(), _> = failover(3, 0, |_| async {
            Err(tonic::Status::permission_denied("no"))
        })
        .await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
        let gone: Result<(), _> =
            failover(2, 0, |_| async { Err(tonic::Status::unavailable("down")) }).await;
        assert_eq!(gone.unwrap_err().message(), "down");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_stays_a_name() {
        let addresses = resolve(&[endpoint("http://no-such-host.invalid:8005")]).await;
        assert_eq!(addresses.len(), 1);
        assert_eq!(addresses[0].url, "http://no-such-host.invalid:8005");
    }
}
