//! Access tokens for agents and for the orchestrator itself, bought once
//! with client credentials and cached. A token is renewed when 80% of its
//! lifetime has passed; if OAuth is down then, the cached token is used
//! until shortly before it expires, so turns go on while OAuth restarts.
//!
//! One purchase per token at a time: callers that need a token while it is
//! being bought wait for that purchase and share its outcome (or, while
//! their cached token is still valid, use it without waiting). Many
//! sessions starting at once make one token request per client, not one
//! each (each request costs OAuth an Argon2 check of the secret).

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use heist_proto::v1::{IssueTokenRequest, o_auth_service_client::OAuthServiceClient};
use tonic::Status;

use crate::mesh::{MeshChannel, request};

/// A token is renewed when less than this share of its lifetime is left.
const RENEW_FRACTION: f64 = 0.2;
/// The margin kept before a token's expiry, for clock skew and the call in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// A token and when to renew it.
#[derive(Debug, Clone)]
struct Cached {
    token: Arc<str>,
    renew_at: Instant,
    expires_at: Instant,
}

impl Cached {
    /// A token bought at `now`, valid for `lifetime`.
    fn new(token: Arc<str>, lifetime: Duration, now: Instant) -> Self {
        Self {
            token,
            renew_at: now + lifetime.mul_f64(1.0 - RENEW_FRACTION),
            expires_at: now + lifetime.saturating_sub(EXPIRY_MARGIN),
        }
    }
}

/// One client's token with one set of scopes.
#[derive(Debug)]
struct Entry {
    client_id: String,
    scopes: Vec<String>,
    cached: Option<Cached>,
    /// When the last purchase failed, and why: callers that waited for it
    /// get its answer instead of asking again.
    failure: Option<(Instant, Status)>,
    /// Held by the caller buying this token.
    buying: Arc<tokio::sync::Mutex<()>>,
}

/// The token cache, shared by every session of the process.
#[derive(Clone)]
pub struct TokenCache {
    oauth: OAuthServiceClient<MeshChannel>,
    deadline: Duration,
    /// A handful of entries (one per agent and the orchestrator), searched
    /// in place: a cache hit allocates nothing.
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl TokenCache {
    /// A cache buying tokens from `oauth`, each call within `deadline`.
    pub fn new(oauth: OAuthServiceClient<MeshChannel>, deadline: Duration) -> Self {
        Self {
            oauth,
            deadline,
            entries: Arc::default(),
        }
    }

    /// A valid token for `client_id` with `scopes`: cached, or bought now.
    /// A cache hit makes no span and allocates nothing.
    pub async fn token(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
    ) -> Result<Arc<str>, Status> {
        self.get_or_buy(client_id, scopes, || self.buy(client_id, secret, scopes))
            .await
    }

    /// The cached token for (`client_id`, `scopes`) while it needs no
    /// renewal; else the outcome of one purchase (`buy`, or the one another
    /// caller is making).
    async fn get_or_buy<F, Fut>(
        &self,
        client_id: &str,
        scopes: &[String],
        buy: F,
    ) -> Result<Arc<str>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Cached, Status>>,
    {
        let (cached, buying) = self.state(client_id, scopes, |entry| {
            (entry.cached.clone(), entry.buying.clone())
        });
        let now = Instant::now();
        if let Some(cached) = &cached
            && now < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        let waited_from = now;
        let _buyer = match buying.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Being bought now: a token still valid serves meanwhile.
                if let Some(cached) = &cached
                    && now < cached.expires_at
                {
                    return Ok(cached.token.clone());
                }
                buying.lock().await
            }
        };
        // A purchase may have ended since the first look: share its outcome.
        let (cached, failure) = self.state(client_id, scopes, |entry| {
            (entry.cached.clone(), entry.failure.clone())
        });
        if let Some(cached) = &cached
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        if let Some((failed_at, status)) = failure
            && failed_at >= waited_from
        {
            return Err(status);
        }
        match buy().await {
            Ok(bought) => {
                let token = bought.token.clone();
                self.state(client_id, scopes, |entry| {
                    entry.cached = Some(bought);
                    entry.failure = None;
                });
                Ok(token)
            }
            Err(status) => {
                let now = Instant::now();
                self.state(client_id, scopes, |entry| {
                    entry.failure = Some((now, status.clone()));
                });
                // OAuth is down while the cached token is still valid: keep using it.
                match cached {
                    Some(cached) if now < cached.expires_at => {
                        tracing::warn!(error = %status.message(), "token renewal failed; using the cached token");
                        Ok(cached.token)
                    }
                    _ => Err(status),
                }
            }
        }
    }

    /// Buys a token from OAuth (the `token` span of a trace).
    #[tracing::instrument(name = "token", skip_all, fields(client.id = client_id))]
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
        Ok(Cached::new(
            issued.access_token.into(),
            lifetime,
            Instant::now(),
        ))
    }

    /// Runs `f` on the entry of (`client_id`, `scopes`), made if missing.
    fn state<R>(&self, client_id: &str, scopes: &[String], f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match entries
            .iter()
            .position(|entry| entry.client_id == client_id && entry.scopes == scopes)
        {
            Some(index) => index,
            None => {
                entries.push(Entry {
                    client_id: client_id.to_owned(),
                    scopes: scopes.to_vec(),
                    cached: None,
                    failure: None,
                    buying: Arc::default(),
                });
                entries.len() - 1
            }
        };
        f(&mut entries[index])
    }

    /// Forgets every token (e.g. after OAuth said one was revoked).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in entries.iter_mut() {
            entry.cached = None;
            entry.failure = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use heist_plumbing::propagation::traced;
    use tokio::sync::oneshot;

    use super::*;
    use crate::rpc_timing::Timed;

    /// A cache whose OAuth client is never called (the tests buy with closures).
    fn cache() -> TokenCache {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        TokenCache::new(
            OAuthServiceClient::new(Timed::untimed(traced(channel))),
            Duration::from_secs(1),
        )
    }

    fn scopes() -> Vec<String> {
        vec!["calculator:use".to_owned()]
    }

    fn fresh(token: &str) -> Cached {
        Cached::new(token.into(), Duration::from_secs(300), Instant::now())
    }

    #[tokio::test]
    async fn a_cached_token_is_served_without_buying_again() {
        let cache = cache();
        let bought = AtomicUsize::new(0);
        for _ in 0..3 {
            let token = cache
                .get_or_buy("safecracker", &scopes(), || async {
                    bought.fetch_add(1, Ordering::SeqCst);
                    Ok(fresh("t1"))
                })
                .await
                .unwrap();
            assert_eq!(&*token, "t1");
        }
        assert_eq!(bought.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn callers_without_a_token_share_the_one_purchase_in_flight() {
        let cache = cache();
        let bought = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let first = {
            let (cache, bought) = (cache.clone(), bought.clone());
            tokio::spawn(async move {
                cache
                    .get_or_buy("mole", &scopes(), || async move {
                        bought.fetch_add(1, Ordering::SeqCst);
                        let _ = released.await;
                        Ok(fresh("shared"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (cache, bought) = (cache.clone(), bought.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_buy("mole", &scopes(), || async move {
                            bought.fetch_add(1, Ordering::SeqCst);
                            Ok(fresh("second purchase"))
                        })
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(&*first.await.unwrap().unwrap(), "shared");
        for waiter in waiters {
            assert_eq!(&*waiter.await.unwrap().unwrap(), "shared");
        }
        assert_eq!(bought.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_purchase_answers_the_callers_that_waited_for_it() {
        let cache = cache();
        let (release, released) = oneshot::channel::<()>();
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_buy("hacker", &scopes(), || async move {
                        let _ = released.await;
                        Err(Status::unavailable("oauth is down"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let asked_again = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (cache, asked_again) = (cache.clone(), asked_again.clone());
            tokio::spawn(async move {
                cache
                    .get_or_buy("hacker", &scopes(), || async move {
                        asked_again.fetch_add(1, Ordering::SeqCst);
                        Ok(fresh("never"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(
            first.await.unwrap().unwrap_err().code(),
            tonic::Code::Unavailable
        );
        let status = waiter.await.unwrap().unwrap_err();
        assert_eq!(status.message(), "oauth is down");
        assert_eq!(asked_again.load(Ordering::SeqCst), 0);
    }

    /// A cache holding the planner's token "old": still valid, due for renewal.
    fn cache_with_a_token_due_for_renewal() -> TokenCache {
        let cache = cache();
        let now = Instant::now();
        cache.state("planner", &scopes(), |entry| {
            entry.cached = Some(Cached {
                token: "old".into(),
                renew_at: now,
                expires_at: now + Duration::from_secs(60),
            });
        });
        cache
    }

    #[tokio::test]
    async fn while_a_renewal_is_in_flight_the_still_valid_token_serves_at_once() {
        let cache = cache_with_a_token_due_for_renewal();
        let (release, released) = oneshot::channel::<()>();
        let renewal = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_buy("planner", &scopes(), || async move {
                        let _ = released.await;
                        Ok(fresh("new"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let meanwhile = cache
            .get_or_buy("planner", &scopes(), || async { Ok(fresh("not bought")) })
            .await
            .unwrap();
        assert_eq!(&*meanwhile, "old");
        release.send(()).unwrap();
        assert_eq!(&*renewal.await.unwrap().unwrap(), "new");
    }

    #[tokio::test]
    async fn a_failed_renewal_falls_back_to_the_token_still_valid() {
        let cache = cache_with_a_token_due_for_renewal();
        let token = cache
            .get_or_buy("planner", &scopes(), || async {
                Err(Status::unavailable("oauth restarting"))
            })
            .await
            .unwrap();
        assert_eq!(&*token, "old");
    }

    #[tokio::test]
    async fn clients_and_scopes_are_cached_apart_and_clear_forgets_them() {
        let cache = cache();
        let other = vec!["file_reader:use".to_owned()];
        let a = cache
            .get_or_buy("hacker", &scopes(), || async { Ok(fresh("a")) })
            .await
            .unwrap();
        let b = cache
            .get_or_buy("hacker", &other, || async { Ok(fresh("b")) })
            .await
            .unwrap();
        assert_eq!((&*a, &*b), ("a", "b"));
        cache.clear();
        let c = cache
            .get_or_buy("hacker", &scopes(), || async { Ok(fresh("c")) })
            .await
            .unwrap();
        assert_eq!(&*c, "c");
    }
}
