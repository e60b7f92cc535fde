//! Access tokens for agents and for the orchestrator itself, bought once
//! with client credentials and cached until shortly before they expire.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use heist_plumbing::propagation::TracedChannel;
use heist_proto::v1::{IssueTokenRequest, o_auth_service_client::OAuthServiceClient};
use tonic::Status;

use crate::mesh::request;

/// A token is renewed when less than this share of its lifetime is left.
const RENEW_FRACTION: f64 = 0.2;

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    renew_at: Instant,
}

/// The token cache, shared by every session of the process.
#[derive(Clone)]
pub struct TokenCache {
    oauth: OAuthServiceClient<TracedChannel>,
    deadline: Duration,
    entries: Arc<Mutex<HashMap<String, Cached>>>,
}

impl TokenCache {
    /// A cache buying tokens from `oauth`, each call within `deadline`.
    pub fn new(oauth: OAuthServiceClient<TracedChannel>, deadline: Duration) -> Self {
        Self {
            oauth,
            deadline,
            entries: Arc::default(),
        }
    }

    /// A valid token for `client_id` with `scopes`: cached, or bought now.
    #[tracing::instrument(skip_all, fields(client.id = client_id))]
    pub async fn token(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
    ) -> Result<Arc<str>, Status> {
        let key = format!("{client_id} {}", scopes.join(" "));
        if let Some(cached) = self.lookup(&key) {
            return Ok(cached);
        }
        let mut oauth = self.oauth.clone();
        let issued = oauth
            .issue_token(request(
                IssueTokenRequest {
                    grant_type: "client_credentials".into(),
                    client_id: client_id.to_owned(),
                    client_secret: secret.to_owned(),
                    scope: scopes.join(" "),
                    session_id: String::new(),
                },
                None,
                self.deadline,
            ))
            .await?
            .into_inner();
        let lifetime = Duration::from_secs(u64::try_from(issued.expires_in).unwrap_or(0));
        let token: Arc<str> = issued.access_token.into();
        let cached = Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.mul_f64(1.0 - RENEW_FRACTION),
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, cached);
        }
        Ok(token)
    }

    /// The cached token for `key`, if it is not due for renewal.
    fn lookup(&self, key: &str) -> Option<Arc<str>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|cached| Instant::now() < cached.renew_at)
            .map(|cached| cached.token.clone())
    }

    /// Forgets every token (e.g. after OAuth said one was revoked).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
