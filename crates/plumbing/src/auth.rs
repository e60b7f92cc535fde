//! Authentication and scopes for every protected service: one layer, shared.
//!
//! [`AuthLayer`] wraps a service: each call must carry
//! `authorization: Bearer <jwt>`. The token is verified locally against the
//! OAuth service's public keys (fetched at start with retry, refreshed when a
//! token names an unknown `kid` and at each revocation poll, so a key OAuth
//! has retired after a rotation stops verifying): signature, `exp` with a
//! small leeway, `iss`, that `aud` names the service's own [`Audience`]
//! (RFC 8707 resource indicators: a token for Tools is refused by Audit and
//! Memory), and the scope the called method requires. Revoked tokens are
//! refused once the service has polled the OAuth revocation list (every
//! `revocation_poll`, 5 s by default). The verified [`Claims`] are handed to
//! the handler through the request's extensions ([`claims`], [`require_scope`]).
//! Health and reflection stay open.
//!
//! Statuses: no, garbled, forged, expired, wrong-audience or revoked token:
//! `UNAUTHENTICATED` (a wrong audience names the token's audiences and the
//! one required: `token is for audience "tools", not "audit"`); valid token
//! without the scope: `PERMISSION_DENIED` naming the scope; keys not loaded
//! yet: `UNAVAILABLE`.
//!
//! Tokens are bound to their holder: a handler that acts for an agent (Memory,
//! Audit) checks [`act_as`], so a client acts only as itself (`sub`) unless
//! its token grants `agents:act_for_any` (`PERMISSION_DENIED` naming both).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use heist_proto::v1::{
    GetPublicKeysRequest, ListRevokedTokensRequest, o_auth_service_client::OAuthServiceClient,
};
/// The audiences of the mesh, one per service (see [`heist_tokens::Audience`]).
pub use heist_tokens::Audience;
use heist_tokens::{
    ACT_FOR_ANY_SCOPE, Claims, Jwk as TokenJwk, KeySet, TokenError, Verifier, unix_now,
};
use http::{HeaderMap, Request, Response};
use tonic::{Code, Status, body::Body, server::NamedService};
use tower::{Layer, Service};

use crate::{
    propagation::{TracedChannel, traced},
    status::{ServiceError, to_status},
};

/// How often a failing key fetch is retried, at most.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Unknown-`kid` refreshes are at most this frequent.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How many verified tokens are remembered (their signature is not checked
/// again until they expire); the cache is emptied when full.
const VERIFIED_CACHE_SIZE: usize = 4096;

/// Why a call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    /// The metadata is not `Bearer <token>`.
    #[error("`authorization` must be `Bearer <token>`")]
    NotBearer,
    /// The token failed a check.
    #[error("invalid token: {0}")]
    Invalid(#[from] TokenError),
    /// The token was revoked.
    #[error("token has been revoked")]
    Revoked,
    /// The token lacks the scope the call needs.
    #[error("token lacks scope `{0}`")]
    MissingScope(String),
    /// The public keys are not loaded yet.
    #[error("public keys are not loaded yet; the OAuth service may be down")]
    KeysUnavailable,
    /// The token's holder asked to act as another agent.
    #[error(
        "client {:?} may act only as itself, not as agent {:?} \
         (acting for any agent needs scope `{scope}`)",
        crate::quote(.client),
        crate::quote(.agent),
        scope = ACT_FOR_ANY_SCOPE
    )]
    NotTheAgent {
        /// The client the token was issued to (`sub`).
        client: String,
        /// The agent the request names.
        agent: String,
    },
}

impl ServiceError for AuthError {
    fn code(&self) -> Code {
        match self {
            Self::MissingScope(_) | Self::NotTheAgent { .. } => Code::PermissionDenied,
            Self::KeysUnavailable => Code::Unavailable,
            _ => Code::Unauthenticated,
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        to_status(&error)
    }
}

/// How the authenticator reaches OAuth and checks tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The OAuth service, e.g. `http://127.0.0.1:8001`, or several replicas
    /// of it, comma-separated: keys and revocations are asked of each in turn
    /// until one answers.
    pub oauth_url: String,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    pub leeway: Duration,
    /// How often the revocation list (and the public keys) are polled.
    pub revocation_poll: Duration,
    /// The TLS for `https://` OAuth URLs (needed for those).
    pub tls: Option<crate::tls::ClientTls>,
}

impl AuthConfig {
    /// Defaults for an OAuth service at `oauth_url`.
    pub fn new(oauth_url: impl Into<String>) -> Self {
        Self {
            oauth_url: oauth_url.into(),
            leeway: Duration::from_secs(heist_tokens::DEFAULT_LEEWAY_SECS),
            revocation_poll: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Verifies tokens; a cheap handle shared by the layer and its tasks.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: RwLock<Option<Verifier>>,
    /// Tokens whose signature and claims were checked, by token text.
    verified: std::sync::Mutex<HashMap<String, Claims>>,
    revoked: RwLock<HashSet<String>>,
    /// The OAuth replicas; empty for a fixed verifier.
    oauth: Vec<OAuthServiceClient<TracedChannel>>,
    /// The replica asked first next time, so a dead one is not always first.
    next_oauth: AtomicUsize,
    leeway: u64,
    revocation_poll: Duration,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys_loaded", &self.keys_loaded())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator that fetches keys from the OAuth service in `config`.
    /// Nothing is fetched until [`Authenticator::load_keys`] runs.
    pub fn new(config: &AuthConfig) -> Result<Self, crate::tls::TlsError> {
        let channel = |url: &str| {
            let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
                .map_err(|source| crate::tls::TlsError::Url {
                    url: url.to_owned(),
                    source,
                })?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(5));
            crate::tls::connect_lazy(endpoint, config.tls.as_ref())
        };
        let replicas = config
            .oauth_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| Ok(OAuthServiceClient::new(traced(channel(url)?))))
            .collect::<Result<Vec<_>, crate::tls::TlsError>>()?;
        if replicas.is_empty() {
            // An empty URL is as invalid as a malformed one.
            channel("")?;
        }
        Ok(Self::build(None, replicas, config))
    }

    /// An authenticator with a fixed verifier and no OAuth connection (the
    /// OAuth service itself, and tests).
    pub fn with_verifier(verifier: Verifier, config: &AuthConfig) -> Self {
        Self::build(Some(verifier), Vec::new(), config)
    }

    /// Replaces the verifier (the OAuth service, after a key rotation). When
    /// a key is gone, the tokens verified with it are forgotten: a key OAuth
    /// no longer publishes (retired after a rotation) must not keep the
    /// tokens it signed alive through the cache of verified ones.
    pub fn set_verifier(&self, verifier: Verifier) {
        let dropped = {
            let Ok(mut slot) = self.inner.verifier.write() else {
                return;
            };
            let dropped = slot
                .as_ref()
                .is_some_and(|old| !old.keys().is_subset_of(verifier.keys()));
            *slot = Some(verifier);
            dropped
        };
        if dropped && let Ok(mut verified) = self.inner.verified.lock() {
            verified.clear();
        }
    }

    fn build(
        verifier: Option<Verifier>,
        oauth: Vec<OAuthServiceClient<TracedChannel>>,
        config: &AuthConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                verifier: RwLock::new(verifier),
                verified: std::sync::Mutex::new(HashMap::new()),
                revoked: RwLock::new(HashSet::new()),
                oauth,
                next_oauth: AtomicUsize::new(0),
                leeway: config.leeway.as_secs(),
                revocation_poll: config.revocation_poll,
                last_refresh: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// True once public keys are loaded.
    pub fn keys_loaded(&self) -> bool {
        self.inner
            .verifier
            .read()
            .map(|verifier| verifier.is_some())
            .unwrap_or(false)
    }

    /// Fetches the public keys, retrying with exponential backoff until it
    /// succeeds; then polls the revocation list in the background. Use it as
    /// a server's readiness future.
    pub async fn load_keys(self) {
        let mut delay = Duration::from_millis(50);
        while let Err(error) = self.fetch_keys().await {
            tracing::warn!(%error, retry_in = ?delay, "cannot fetch oauth public keys");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
        tracing::info!("oauth public keys loaded");
        if !self.inner.oauth.is_empty() {
            tokio::spawn(self.poll_revocations());
        }
    }

    /// Calls the OAuth replicas in turn, starting at the next one, until one
    /// answers; the last refusal when none does.
    async fn ask_oauth<T, Fut>(
        &self,
        call: impl Fn(OAuthServiceClient<TracedChannel>) -> Fut,
    ) -> Result<T, Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let replicas = &self.inner.oauth;
        let first = self.inner.next_oauth.fetch_add(1, Ordering::Relaxed);
        let mut refusal = Status::unavailable("no OAuth service is configured");
        for offset in 0..replicas.len() {
            match call(replicas[(first + offset) % replicas.len()].clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => refusal = status,
            }
        }
        Err(refusal)
    }

    async fn fetch_keys(&self) -> Result<(), String> {
        if self.inner.oauth.is_empty() {
            return Ok(());
        }
        let response = self
            .ask_oauth(
                |mut oauth| async move { oauth.get_public_keys(GetPublicKeysRequest {}).await },
            )
            .await
            .map_err(|status| status.message().to_owned())?;
        let jwks: Vec<TokenJwk> = response
            .keys
            .into_iter()
            .map(crate::jwk::from_proto)
            .collect();
        let keys = KeySet::from_jwks(&jwks).map_err(|error| error.to_string())?;
        self.set_verifier(Verifier::new(response.issuer, keys));
        Ok(())
    }

    /// Polls the revocation list and the public keys every `revocation_poll`.
    async fn poll_revocations(self) {
        let mut ticker = tokio::time::interval(self.inner.revocation_poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let listed = self
                .ask_oauth(|mut oauth| async move {
                    oauth.list_revoked_tokens(ListRevokedTokensRequest {}).await
                })
                .await;
            match listed {
                Ok(response) => {
                    let revoked: HashSet<String> = response
                        .revoked
                        .into_iter()
                        .map(|token| token.jti)
                        .collect();
                    if let Ok(mut slot) = self.inner.revoked.write() {
                        // Keep what we knew: a restarted OAuth may have lost nothing,
                        // but a union never forgets a revocation before expiry.
                        slot.extend(revoked);
                    }
                }
                Err(status) => {
                    tracing::debug!(error = %status.message(), "revocation poll failed");
                }
            }
            // Keys too: a key OAuth retired after a rotation stops verifying here.
            if let Err(error) = self.fetch_keys().await {
                tracing::debug!(%error, "public key poll failed");
            }
        }
    }

    /// Marks a token ID as revoked here (the OAuth service calls this on itself).
    pub fn revoke_locally(&self, jti: &str) {
        if let Ok(mut revoked) = self.inner.revoked.write() {
            revoked.insert(jti.to_owned());
        }
    }

    /// Verifies the bearer token in `headers`, which must be for `audience`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        audience: Audience,
    ) -> Result<Claims, AuthError> {
        let token = bearer_token(headers)?.to_owned();
        self.authenticate_token(&token, audience).await
    }

    /// Verifies a bearer token, which must be for `audience` (its `aud`
    /// names it); else UNAUTHENTICATED naming the token's audiences.
    pub async fn authenticate_token(
        &self,
        token: &str,
        audience: Audience,
    ) -> Result<Claims, AuthError> {
        let claims = match self.verify(token) {
            Err(AuthError::Invalid(TokenError::UnknownKid(_))) if !self.inner.oauth.is_empty() => {
                self.refresh_keys().await;
                self.verify(token)
            }
            outcome => outcome,
        }?;
        claims.require_audience(audience.as_str())?;
        Ok(claims)
    }

    /// Every check but the audience's: signature (or the cache of tokens
    /// already checked), time, issuer, revocation.
    fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = unix_now();
        let cached = self.inner.verified.lock().ok().and_then(|verified| {
            verified
                .get(token)
                .filter(|claims| claims.exp.saturating_add(self.inner.leeway) > now)
                .cloned()
        });
        let claims = match cached {
            Some(claims) => claims,
            None => self.verify_signature(token, now)?,
        };
        let revoked = self
            .inner
            .revoked
            .read()
            .map(|revoked| revoked.contains(&claims.jti))
            .unwrap_or(false);
        if revoked {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// The full check but the audience's (signature, time, issuer); remembers a pass.
    fn verify_signature(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let _span = tracing::info_span!(target: "heist_plumbing::auth", "jwt.verify").entered();
        let claims = {
            let verifier = self
                .inner
                .verifier
                .read()
                .map_err(|_| AuthError::KeysUnavailable)?;
            let verifier = verifier.as_ref().ok_or(AuthError::KeysUnavailable)?;
            verifier.verify_any_audience(token, now, self.inner.leeway)?
        };
        if let Ok(mut verified) = self.inner.verified.lock() {
            if verified.len() >= VERIFIED_CACHE_SIZE {
                verified.clear();
            }
            verified.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    async fn refresh_keys(&self) {
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch_keys().await {
            tracing::warn!(%error, "cannot refresh oauth public keys");
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token.trim())
}

/// The claims of the verified caller of `request`.
pub fn claims<T>(request: &tonic::Request<T>) -> Result<&Claims, Status> {
    request
        .extensions()
        .get::<Claims>()
        .ok_or_else(|| Status::from(AuthError::Missing))
}

/// The caller's claims, if the token grants `scope`; else PERMISSION_DENIED.
pub fn require_scope<'a, T>(
    request: &'a tonic::Request<T>,
    scope: &str,
) -> Result<&'a Claims, Status> {
    let claims = claims(request)?;
    if claims.has_scope(scope) {
        Ok(claims)
    } else {
        Err(AuthError::MissingScope(scope.to_owned()).into())
    }
}

/// Checks that `claims` may act as `agent` ([`Claims::may_act_as`]): the token
/// was issued to that agent or grants `agents:act_for_any`; else
/// PERMISSION_DENIED naming the client and the agent.
pub fn act_as(claims: &Claims, agent: &str) -> Result<(), AuthError> {
    if claims.may_act_as(agent) {
        Ok(())
    } else {
        Err(AuthError::NotTheAgent {
            client: claims.sub.clone(),
            agent: agent.to_owned(),
        })
    }
}

/// The caller's claims, if it may act as `agent` ([`act_as`]); else PERMISSION_DENIED.
pub fn require_agent<'a, T>(
    request: &'a tonic::Request<T>,
    agent: &str,
) -> Result<&'a Claims, Status> {
    let claims = claims(request)?;
    act_as(claims, agent)?;
    Ok(claims)
}

/// The client ID (`sub`) of the verified caller of `request`: who wrote what it stores.
pub fn caller_id<T>(request: &tonic::Request<T>) -> Result<String, Status> {
    Ok(claims(request)?.sub.clone())
}

/// A client interceptor that sends `authorization: Bearer <token>` on every call.
#[derive(Debug, Clone)]
pub struct BearerInterceptor {
    value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl BearerInterceptor {
    /// Sends `token`; a token that cannot be a header value is sent as nothing
    /// (and the server answers UNAUTHENTICATED).
    pub fn new(token: &str) -> Self {
        Self {
            value: format!("Bearer {token}").parse().ok(),
        }
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Wraps a service so every call is authenticated with a token for the
/// service's own audience, and each method listed in `method_scopes` (by
/// method name, e.g. `StoreMessage`) needs its scope.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
    audience: Audience,
    method_scopes: Arc<HashMap<&'static str, &'static str>>,
    open_methods: Arc<HashSet<&'static str>>,
}

impl AuthLayer {
    /// Every method needs a valid token for `audience`; those in
    /// `method_scopes` also a scope.
    pub fn new(
        authenticator: Authenticator,
        audience: Audience,
        method_scopes: &[(&'static str, &'static str)],
    ) -> Self {
        Self {
            authenticator,
            audience,
            method_scopes: Arc::new(method_scopes.iter().copied().collect()),
            open_methods: Arc::new(HashSet::new()),
        }
    }

    /// The authenticator that verifies the tokens.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The audience every token must be for.
    pub fn audience(&self) -> Audience {
        self.audience
    }

    /// Lets `methods` through without a token (e.g. OAuth's `IssueToken`).
    pub fn with_open_methods(mut self, methods: &[&'static str]) -> Self {
        self.open_methods = Arc::new(methods.iter().copied().collect());
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: heist_proto::ServiceDescriptor> heist_proto::ServiceDescriptor for Authenticated<S> {
    const FILE_DESCRIPTOR_SET: &'static [u8] = S::FILE_DESCRIPTOR_SET;
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // Swap in a fresh clone so the ready service serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if layer.open_methods.contains(method.as_str()) {
            return Box::pin(inner.call(request));
        }
        let token = bearer_token(request.headers()).map(str::to_owned);
        Box::pin(async move {
            let verdict = async {
                let claims = layer
                    .authenticator
                    .authenticate_token(&token?, layer.audience)
                    .await?;
                if let Some(scope) = layer.method_scopes.get(method.as_str())
                    && !claims.has_scope(scope)
                {
                    return Err(AuthError::MissingScope((*scope).to_owned()));
                }
                Ok(claims)
            }
            .await;
            match verdict {
                Ok(claims) => {
                    tracing::Span::current().record("client.id", claims.sub.as_str());
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::debug!(%error, method, "call refused");
                    Ok(Status::from(error).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_dropped_from_the_verifier_takes_its_verified_tokens_with_it() {
        use heist_tokens::{SigningKey, TokenIssuer};
        let old = SigningKey::generate().unwrap();
        let new = SigningKey::generate().unwrap();
        let keys = |keys: &[&SigningKey]| -> KeySet {
            keys.iter().map(|key| key.public_key().clone()).collect()
        };
        let auth = Authenticator::with_verifier(
            Verifier::new("iss", keys(&[&old, &new])),
            &AuthConfig::new(""),
        );
        let token = TokenIssuer::new(old.clone(), "iss", Duration::from_secs(600))
            .issue("planner", &["x"], &["tools"], unix_now())
            .unwrap()
            .token;
        auth.verify(&token).unwrap();
        // A new key added: what was verified stays verified.
        auth.set_verifier(Verifier::new("iss", keys(&[&old, &new])));
        auth.verify(&token).unwrap();
        // The old key dropped: its token is checked again, and refused.
        auth.set_verifier(Verifier::new("iss", keys(&[&new])));
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::Invalid(TokenError::UnknownKid(_)))
        ));
    }

    /// An authenticator trusting a fresh key, and a token of that key for
    /// `audiences`.
    fn token_for(audiences: &[&str]) -> (Authenticator, String) {
        use heist_tokens::{SigningKey, TokenIssuer};
        let key = SigningKey::generate().unwrap();
        let issuer = TokenIssuer::new(key, "iss", Duration::from_secs(600));
        let auth = Authenticator::with_verifier(issuer.verifier(), &AuthConfig::new(""));
        let token = issuer
            .issue("planner", &["memory:read"], audiences, unix_now())
            .unwrap()
            .token;
        (auth, token)
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_unauthenticated_naming_both() {
        let (auth, token) = token_for(&["tools"]);
        assert!(
            auth.authenticate_token(&token, Audience::Tools)
                .await
                .is_ok()
        );
        for (required, name) in [(Audience::Audit, "audit"), (Audience::Memory, "memory")] {
            let refused =
                Status::from(auth.authenticate_token(&token, required).await.unwrap_err());
            assert_eq!(refused.code(), Code::Unauthenticated);
            assert_eq!(
                refused.message(),
                format!("invalid token: token is for audience \"tools\", not \"{name}\"")
            );
        }
    }

    #[tokio::test]
    async fn a_token_for_several_audiences_serves_each_of_them_only() {
        let (auth, token) = token_for(&["tools", "memory"]);
        for audience in [Audience::Tools, Audience::Memory] {
            let claims = auth.authenticate_token(&token, audience).await.unwrap();
            assert_eq!(claims.aud, ["tools", "memory"]);
        }
        // A cached pass for one audience is no pass for another.
        let refused = auth
            .authenticate_token(&token, Audience::OAuth)
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("token is for audiences \"tools\", \"memory\", not \"oauth\""),
            "{refused}"
        );
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(
            bearer_token(&headers("Bearer abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer_token(&headers("bearer abc")).unwrap(), "abc");
    }

    #[test]
    fn other_schemes_and_missing_headers_are_refused() {
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            bearer_token(&headers("Basic dXNlcg==")),
            Err(AuthError::NotBearer)
        ));
        assert!(matches!(
            bearer_token(&headers("Bearer ")),
            Err(AuthError::NotBearer)
        ));
        assert!(matches!(
            bearer_token(&headers("token")),
            Err(AuthError::NotBearer)
        ));
    }

    #[test]
    fn refusals_map_to_unauthenticated_or_permission_denied() {
        assert_eq!(
            Status::from(AuthError::Missing).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            Status::from(AuthError::Revoked).code(),
            Code::Unauthenticated
        );
        let denied = Status::from(AuthError::MissingScope("audit:write".into()));
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("audit:write"));
        assert_eq!(
            Status::from(AuthError::KeysUnavailable).code(),
            Code::Unavailable
        );
    }

    fn claims_of(sub: &str, scope: &str) -> Claims {
        Claims {
            iss: "heist-test".into(),
            sub: sub.into(),
            aud: vec![Audience::Memory.as_str().into()],
            scope: scope.into(),
            iat: 0,
            exp: u64::MAX,
            jti: "j".into(),
        }
    }

    #[test]
    fn acting_as_another_agent_is_denied_naming_the_client_and_the_agent() {
        let planner = claims_of("planner", "memory:write");
        assert!(act_as(&planner, "planner").is_ok());
        let denied = Status::from(act_as(&planner, "hacker").unwrap_err());
        assert_eq!(denied.code(), Code::PermissionDenied);
        for needle in ["\"planner\"", "\"hacker\"", ACT_FOR_ANY_SCOPE] {
            assert!(denied.message().contains(needle), "{needle}: {denied:?}");
        }
        let orchestrator = claims_of("orchestrator", ACT_FOR_ANY_SCOPE);
        assert!(act_as(&orchestrator, "hacker").is_ok());
    }
}
