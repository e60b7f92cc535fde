//! Access tokens for agents and for the orchestrator itself, bought once
//! with client credentials and cached. A token is renewed when 80% of its
//! lifetime has passed; if OAuth is down then, the cached token is used
//! until shortly before it expires, so turns go on while OAuth restarts.

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
    expires_at: Instant,
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
        let cached = self.cached(&key);
        let now = Instant::now();
        if let Some(cached) = &cached
            && now < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        match self.buy(client_id, secret, scopes).await {
            Ok(bought) => {
                if let Ok(mut entries) = self.entries.lock() {
                    entries.insert(key, bought.clone());
                }
                Ok(bought.token)
            }
            // OAuth is down while the cached token is still valid: keep using it.
            Err(status) => match cached {
                Some(cached) if now < cached.expires_at => {
                    tracing::warn!(error = %status.message(), "token renewal failed; using the cached token");
                    Ok(cached.token)
                }
                _ => Err(status),
            },
        }
    }

    async fn buy(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
    ) -> Result<Cached, Status> {
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
        let now = Instant::now();
        Ok(Cached {
            token: issued.access_token.into(),
            renew_at: now + lifetime.mul_f64(1.0 - RENEW_FRACTION),
            // Leave a margin for clock skew and the call in flight.
            expires_at: now + lifetime.saturating_sub(Duration::from_secs(5)),
        })
    }

    /// The cached entry for `key`, renewed or not.
    fn cached(&self, key: &str) -> Option<Cached> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Forgets every token (e.g. after OAuth said one was revoked).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
