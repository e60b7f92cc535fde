//! Who is on the other end of a connection, as its TLS client certificate
//! proves it.
//!
//! Under mutual TLS the server reads the identity from the client's
//! certificate once per connection (its first URI subject alternative name,
//! e.g. `spiffe://heist.local/orchestrator`, else its first DNS name) and
//! hands it to every request on that connection; [`peer_identity`] reads it.
//! Plaintext and server-only TLS connections carry none.

use std::sync::Arc;

/// The identity a client's certificate proved; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(Arc<str>);

impl PeerIdentity {
    /// The identity `name` (a SAN of the client's certificate).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity the client of `request` proved with its certificate, if it
/// came over mutual TLS.
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    request.extensions().get::<PeerIdentity>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_the_identity_its_connection_proved() {
        let mut request = tonic::Request::new(());
        assert_eq!(peer_identity(&request), None);
        request
            .extensions_mut()
            .insert(PeerIdentity::new("spiffe://heist.local/orchestrator"));
        assert_eq!(
            peer_identity(&request).map(PeerIdentity::as_str),
            Some("spiffe://heist.local/orchestrator")
        );
    }
}
