//! Access tokens for agents and for the orchestrator itself, bought once
//! with client credentials and cached. A token is renewed when 60% of its
//! lifetime has passed; if OAuth is down then, the cached token is used
//! until shortly before it expires (a margin of a tenth of the lifetime, at
//! most 5 s), so turns go on while OAuth restarts, whatever the lifetime:
//! the fallback window is always 30% of it or more. Each such fallback is
//! logged and counted ([`TokenCache::fallbacks`]).
//!
//! A caller with no usable token waits for OAuth
//! ([`TokenCache::token_within`], retrying with backoff within the call's
//! deadline) instead of sending its call without one.
//!
//! One purchase per token at a time: callers that need a token while it is
//! being bought wait for that purchase and share its outcome (or, while
//! their cached token is still valid, use it without waiting). Many
//! sessions starting at once make one token request per client, not one
//! each (each request costs OAuth an Argon2 check of the secret).
//!
//! Tokens are per audience (RFC 8707 resource indicators): each names the
//! one service it is for (`resource`), so a token for a tool call is refused
//! by Audit and Memory. A token is cached by client, scopes and audience.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use heist_plumbing::auth::Audience;
use tonic::Status;

use crate::{clients::OAuthClient, resilience::is_retryable};

/// A token is renewed once this share of its lifetime has passed.
const RENEW_AFTER: f64 = 0.6;
/// The most margin kept before a token's expiry, for clock skew and the call in flight.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// The margin's share of a short lifetime (so the renewal point always
/// comes well before the end of the usable life).
const EXPIRY_MARGIN_SHARE: f64 = 0.1;
/// The first pause between two purchases while OAuth is unreachable.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two purchases while OAuth is unreachable.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(500);

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
        let margin = lifetime.mul_f64(EXPIRY_MARGIN_SHARE).min(MAX_EXPIRY_MARGIN);
        Self {
            token,
            renew_at: now + lifetime.mul_f64(RENEW_AFTER),
            expires_at: now + lifetime.saturating_sub(margin),
        }
    }
}

/// One client's token with one set of scopes, for one audience.
#[derive(Debug)]
struct Entry {
    client_id: String,
    scopes: Vec<String>,
    audience: Audience,
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
    oauth: OAuthClient,
    /// A handful of entries (one per agent and the orchestrator), searched
    /// in place: a cache hit allocates nothing.
    entries: Arc<Mutex<Vec<Entry>>>,
    /// How many times a failed renewal fell back to the cached token.
    fallbacks: Arc<AtomicU64>,
}

impl TokenCache {
    /// A cache buying tokens through `oauth` (see [`crate::mesh::Mesh::oauth_client`]).
    pub fn new(oauth: OAuthClient) -> Self {
        Self {
            oauth,
            entries: Arc::default(),
            fallbacks: Arc::default(),
        }
    }

    /// How many times a renewal failed (OAuth unreachable) and the cached
    /// token, still valid, was used instead.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Like [`TokenCache::token`], but while OAuth is unreachable (and no
    /// cached token is still valid) buys again with backoff until `wait`
    /// has passed: a caller gets a token or an error, and never has to send
    /// its call without one. A refusal (bad secret, scope not allowed) is
    /// returned at once.
    pub async fn token_within(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
        audience: Audience,
        wait: Duration,
    ) -> Result<Arc<str>, Status> {
        retry_within(wait, || self.token(client_id, secret, scopes, audience)).await
    }

    /// A valid token for `client_id` with `scopes`, for `audience`: cached,
    /// or bought now. A cache hit makes no span and allocates nothing.
    pub async fn token(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
        audience: Audience,
    ) -> Result<Arc<str>, Status> {
        self.get_or_buy(client_id, scopes, audience, || {
            self.buy(client_id, secret, scopes, audience)
        })
        .await
    }

    /// The cached token for (`client_id`, `scopes`, `audience`) while it
    /// needs no renewal; else the outcome of one purchase (`buy`, or the one
    /// another caller is making).
    async fn get_or_buy<F, Fut>(
        &self,
        client_id: &str,
        scopes: &[String],
        audience: Audience,
        buy: F,
    ) -> Result<Arc<str>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Cached, Status>>,
    {
        let (cached, buying) = self.state(client_id, scopes, audience, |entry| {
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
        let (cached, failure) = self.state(client_id, scopes, audience, |entry| {
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
                self.state(client_id, scopes, audience, |entry| {
                    entry.cached = Some(bought);
                    entry.failure = None;
                });
                Ok(token)
            }
            Err(status) => {
                let now = Instant::now();
                self.state(client_id, scopes, audience, |entry| {
                    entry.failure = Some((now, status.clone()));
                });
                // OAuth is down while the cached token is still valid: keep using it.
                match cached {
                    Some(cached) if now < cached.expires_at => {
                        self.fallbacks.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            client.id = client_id,
                            error = %status.message(),
                            valid_for_ms = cached.expires_at.saturating_duration_since(now).as_millis() as u64,
                            "token renewal failed; using the cached token"
                        );
                        Ok(cached.token)
                    }
                    _ => Err(status),
                }
            }
        }
    }

    /// Buys a token from OAuth (the `token` span of a trace).
    #[tracing::instrument(
        name = "token",
        skip_all,
        fields(client.id = client_id, token.audience = %audience)
    )]
    async fn buy(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[String],
        audience: Audience,
    ) -> Result<Cached, Status> {
        let issued = self
            .oauth
            .issue_token(client_id, secret, scopes, audience)
            .await?;
        let lifetime = Duration::from_secs(u64::try_from(issued.expires_in).unwrap_or(0));
        Ok(Cached::new(
            issued.access_token.into(),
            lifetime,
            Instant::now(),
        ))
    }

    /// Runs `f` on the entry of (`client_id`, `scopes`, `audience`), made if missing.
    fn state<R>(
        &self,
        client_id: &str,
        scopes: &[String],
        audience: Audience,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match entries.iter().position(|entry| {
            entry.client_id == client_id && entry.scopes == scopes && entry.audience == audience
        }) {
            Some(index) => index,
            None => {
                entries.push(Entry {
                    client_id: client_id.to_owned(),
                    scopes: scopes.to_vec(),
                    audience,
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

/// Runs `attempt` until it succeeds, fails for good, or `wait` has passed
/// (then the last failure is returned); pauses with backoff in between.
async fn retry_within<F, Fut>(wait: Duration, mut attempt: F) -> Result<Arc<str>, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<str>, Status>>,
{
    let started = Instant::now();
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        match attempt().await {
            Err(status) if is_retryable(&status, true) => {
                let left = wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(status);
                }
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use heist_plumbing::propagation::traced;
    use heist_proto::v1::o_auth_service_client::OAuthServiceClient;
    use tokio::sync::oneshot;

    use super::*;
    use crate::rpc_timing::Timed;

    /// A cache whose OAuth client is never called (the tests buy with closures).
    fn cache() -> TokenCache {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let replica = crate::replicas::Replica {
            address: crate::replicas::Address {
                url: "http://127.0.0.1:9".into(),
                host: "127.0.0.1".into(),
                port: 9,
                configured: "http://127.0.0.1:9".into(),
            },
            channel: traced(channel),
        };
        let balanced = crate::replicas::Balanced::new(vec![replica]).unwrap();
        TokenCache::new(OAuthClient::new(
            OAuthServiceClient::new(Timed::untimed(balanced)),
            1,
            Duration::from_secs(1),
        ))
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
                .get_or_buy("safecracker", &scopes(), Audience::Tools, || async {
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
                    .get_or_buy("mole", &scopes(), Audience::Tools, || async move {
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
                        .get_or_buy("mole", &scopes(), Audience::Tools, || async move {
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
                    .get_or_buy("hacker", &scopes(), Audience::Tools, || async move {
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
                    .get_or_buy("hacker", &scopes(), Audience::Tools, || async move {
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
        cache.state("planner", &scopes(), Audience::Tools, |entry| {
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
                    .get_or_buy("planner", &scopes(), Audience::Tools, || async move {
                        let _ = released.await;
                        Ok(fresh("new"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let meanwhile = cache
            .get_or_buy("planner", &scopes(), Audience::Tools, || async {
                Ok(fresh("not bought"))
            })
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
            .get_or_buy("planner", &scopes(), Audience::Tools, || async {
                Err(Status::unavailable("oauth restarting"))
            })
            .await
            .unwrap();
        assert_eq!(&*token, "old");
    }

    #[test]
    fn every_lifetime_leaves_a_fallback_window_after_the_renewal_point() {
        let now = Instant::now();
        for secs in [1, 2, 5, 8, 10, 20, 25, 60, 300, 3600] {
            let lifetime = Duration::from_secs(secs);
            let cached = Cached::new("t".into(), lifetime, now);
            let window = cached.expires_at - cached.renew_at;
            assert!(
                window >= lifetime.mul_f64(0.3) - Duration::from_millis(1),
                "{secs} s: renewal at {:?}, usable until {:?}",
                cached.renew_at - now,
                cached.expires_at - now
            );
            assert!(cached.expires_at - now <= lifetime);
        }
        // Long tokens keep the full 5 s margin.
        let long = Cached::new("t".into(), Duration::from_secs(300), now);
        assert_eq!(long.expires_at - now, Duration::from_secs(295));
        assert_eq!(long.renew_at - now, Duration::from_secs(180));
    }

    #[tokio::test]
    async fn an_eight_second_token_renewed_during_an_outage_falls_back_and_is_counted() {
        let cache = cache();
        let start = Instant::now();
        cache.state("planner", &scopes(), Audience::Tools, |entry| {
            // Bought 5 s ago with an 8 s lifetime: past its renewal point.
            entry.cached = Some(Cached::new(
                "old".into(),
                Duration::from_secs(8),
                start - Duration::from_secs(5),
            ));
        });
        let token = cache
            .get_or_buy("planner", &scopes(), Audience::Tools, || async {
                Err(Status::unavailable("oauth down"))
            })
            .await
            .unwrap();
        assert_eq!(&*token, "old");
        assert_eq!(cache.fallbacks(), 1);
    }

    #[tokio::test]
    async fn a_caller_without_a_token_waits_for_oauth_within_its_deadline() {
        let attempts = AtomicUsize::new(0);
        let token = retry_within(Duration::from_secs(2), || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(Status::unavailable("oauth restarting"))
                } else {
                    Ok(Arc::<str>::from("fresh"))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(&*token, "fresh");
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn waiting_for_a_token_ends_at_the_deadline_or_at_a_refusal() {
        let started = Instant::now();
        let status = retry_within(Duration::from_millis(300), || async {
            Err(Status::unavailable("oauth down"))
        })
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let attempts = AtomicUsize::new(0);
        let refused = retry_within(Duration::from_secs(10), || {
            attempts.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unauthenticated("bad client secret")) }
        })
        .await
        .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "a refusal is not retried"
        );
    }

    #[tokio::test]
    async fn audiences_are_cached_apart() {
        let cache = cache();
        let tools = cache
            .get_or_buy("orchestrator", &scopes(), Audience::Tools, || async {
                Ok(fresh("for tools"))
            })
            .await
            .unwrap();
        let audit = cache
            .get_or_buy("orchestrator", &scopes(), Audience::Audit, || async {
                Ok(fresh("for audit"))
            })
            .await
            .unwrap();
        assert_eq!((&*tools, &*audit), ("for tools", "for audit"));
        let again = cache
            .get_or_buy("orchestrator", &scopes(), Audience::Tools, || async {
                Ok(fresh("bought again"))
            })
            .await
            .unwrap();
        assert_eq!(&*again, "for tools");
    }

    #[tokio::test]
    async fn clients_and_scopes_are_cached_apart_and_clear_forgets_them() {
        let cache = cache();
        let other = vec!["file_reader:use".to_owned()];
        let a = cache
            .get_or_buy("hacker", &scopes(), Audience::Tools, || async {
                Ok(fresh("a"))
            })
            .await
            .unwrap();
        let b = cache
            .get_or_buy("hacker", &other, Audience::Tools, || async {
                Ok(fresh("b"))
            })
            .await
            .unwrap();
        assert_eq!((&*a, &*b), ("a", "b"));
        cache.clear();
        let c = cache
            .get_or_buy("hacker", &scopes(), Audience::Tools, || async {
                Ok(fresh("c"))
            })
            .await
            .unwrap();
        assert_eq!(&*c, "c");
    }
}
