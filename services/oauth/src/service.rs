//! The gRPC face of OAuth: `heist.v1.OAuthService`.
//!
//! Issue (client credentials), public keys, introspection, revocation. Client
//! secrets are checked with Argon2 on a blocking thread; tokens are signed
//! with the active Ed25519 key of the service's key ring, re-read on each
//! `GetPublicKeys` and periodically ([`OAuthService::watch_keys`]).
//!
//! Who may call what: `IssueToken`, `GetPublicKeys`, `ListRevokedTokens` (it
//! holds only random token IDs and expiry times) and revoking a token one
//! holds are open; introspection needs a bearer token with `oauth:introspect`
//! (RFC 7662 section 2.1), revoking by `jti` one with `oauth:admin`, both for
//! the `oauth` audience.
//!
//! A token request may name its resources (RFC 8707): the audiences it is
//! for, each known and allowed for the client (else INVALID_ARGUMENT,
//! `invalid_target`); none named gives every audience the client may have.
//!
//! Revocation checks read the shared store at each call (so a revocation
//! through another replica holds here at once); a store that cannot answer
//! makes the call UNAVAILABLE: nothing is revoked, nor declared not revoked.

use std::{sync::Arc, time::Duration};

use heist_plumbing::{
    auth::{Audience, AuthError, Authenticator},
    status::{ServiceError, to_status},
};
use heist_proto::v1::{
    self as pb,
    o_auth_service_server::{OAuthService as OAuthRpc, OAuthServiceServer},
    revoke_token_request::Target,
};
use heist_tokens::{Claims, IssueError, TokenError, unix_now};
use tonic::{Code, Request, Response, Status};

use crate::{
    clients::{ClientError, ClientRegistry},
    keys::SigningKeys,
    metrics::{self, Refusal},
    revocations::{RevocationError, RevocationStore},
};

/// The only grant type served.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The scope that may revoke any token by its `jti`.
pub const ADMIN_SCOPE: &str = "oauth:admin";
/// The shortest interval between two periodic re-reads of the key ring.
const MIN_KEY_RELOAD: Duration = Duration::from_millis(50);
/// The scope that may introspect tokens.
pub const INTROSPECT_SCOPE: &str = "oauth:introspect";

/// What an OAuth call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Wrong client ID or secret (the same for both, so IDs cannot be probed).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A grant type other than `client_credentials`.
    #[error("unsupported grant_type {:?}: only \"client_credentials\" is supported", heist_plumbing::quote(.0))]
    UnsupportedGrant(String),
    /// No scope asked for.
    #[error(
        "scope: ask for at least one scope, space-separated (e.g. \"calculator:use memory:read\")"
    )]
    EmptyScope,
    /// A field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The token to revoke is not one of ours.
    #[error("token: cannot revoke it: {0}")]
    NotOurToken(TokenError),
    /// Signing failed.
    #[error("cannot issue the token: {0}")]
    Issue(#[from] IssueError),
    /// The revocation list cannot be read or written: nothing is claimed,
    /// neither a revocation nor that a token is not revoked.
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl ServiceError for OAuthError {
    fn code(&self) -> Code {
        match self {
            Self::Client(ClientError::InvalidClient) => Code::Unauthenticated,
            Self::Client(ClientError::ScopeNotAllowed(_)) => Code::PermissionDenied,
            Self::Client(
                ClientError::InvalidScope(_)
                | ClientError::EmptyResource(_)
                | ClientError::UnknownResource { .. }
                | ClientError::ResourceNotAllowed { .. }
                | ClientError::TooManyResources(_),
            )
            | Self::UnsupportedGrant(_)
            | Self::EmptyScope
            | Self::InvalidField { .. }
            | Self::NotOurToken(_) => Code::InvalidArgument,
            Self::Revocations(_) => Code::Unavailable,
            Self::Issue(_) | Self::Task(_) => Code::Internal,
        }
    }
}

impl OAuthError {
    /// The refusal this is, for the metrics; `known_client` tells an unknown
    /// client ID from a wrong secret.
    fn refusal(&self, known_client: bool) -> Refusal {
        match self {
            Self::Client(ClientError::InvalidClient) if known_client => Refusal::bad_secret,
            Self::Client(ClientError::InvalidClient) => Refusal::bad_client,
            Self::Client(ClientError::InvalidScope(_)) | Self::EmptyScope => Refusal::bad_scope,
            Self::Client(ClientError::ScopeNotAllowed(_)) => Refusal::scope_not_allowed,
            Self::Client(
                ClientError::EmptyResource(_)
                | ClientError::UnknownResource { .. }
                | ClientError::ResourceNotAllowed { .. }
                | ClientError::TooManyResources(_),
            ) => Refusal::invalid_target,
            Self::UnsupportedGrant(_) => Refusal::unsupported_grant,
            Self::InvalidField { .. } | Self::NotOurToken(_) => Refusal::bad_request,
            Self::Revocations(_) | Self::Issue(_) | Self::Task(_) => Refusal::internal,
        }
    }
}

impl From<OAuthError> for Status {
    fn from(error: OAuthError) -> Self {
        to_status(&error)
    }
}

/// The OAuth service; a cheap handle on shared state.
#[derive(Clone)]
pub struct OAuthService {
    clients: Arc<ClientRegistry>,
    /// The key ring: who signs, which keys are published.
    keys: SigningKeys,
    revocations: RevocationStore,
    /// Verifies the bearer token of `oauth:admin` callers.
    authenticator: Authenticator,
}

impl OAuthService {
    /// A service issuing tokens to `clients` with the active key of `keys`.
    pub fn new(
        clients: ClientRegistry,
        keys: SigningKeys,
        revocations: RevocationStore,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            clients: Arc::new(clients),
            keys,
            revocations,
            authenticator,
        }
    }

    /// The service wrapped for a tonic server.
    pub fn into_server(self) -> OAuthServiceServer<Self> {
        OAuthServiceServer::new(self)
    }

    /// Re-reads the key ring (on a blocking thread); after a change, callers'
    /// tokens are checked against the new set of keys.
    async fn reload_keys(&self) {
        let keys = self.keys.clone();
        if let Ok(Some(issuer)) = tokio::task::spawn_blocking(move || keys.reload()).await {
            self.authenticator.set_verifier(issuer.verifier());
        }
    }

    /// Re-reads the key ring every `every`, forever (a rotation by another
    /// process, a retirement); spawn it next to the server.
    pub async fn watch_keys(self, every: Duration) {
        // A zero period would make `interval` panic.
        let mut ticker = tokio::time::interval(every.max(MIN_KEY_RELOAD));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.reload_keys().await;
        }
    }

    /// True when `jti` is revoked in the shared list (whichever replica
    /// revoked it); an error when the list cannot be read.
    async fn is_revoked(&self, jti: &str) -> Result<bool, OAuthError> {
        Ok(self.revocations.is_revoked(jti, unix_now()).await?)
    }

    /// The claims of the caller of `request`, if its bearer token is valid,
    /// for the `oauth` audience, not revoked (the stored list, which survives a restart and is shared
    /// by replicas on an engine) and grants `scope`: else UNAUTHENTICATED, or
    /// PERMISSION_DENIED naming the scope; UNAVAILABLE when the list cannot
    /// be read (fail closed).
    async fn caller_with_scope<T>(
        &self,
        request: &Request<T>,
        scope: &str,
    ) -> Result<Claims, Status> {
        let claims = self
            .authenticator
            .authenticate(&request.metadata().clone().into_headers(), Audience::OAuth)
            .await?;
        if self.is_revoked(&claims.jti).await? {
            return Err(AuthError::Revoked.into());
        }
        if !claims.has_scope(scope) {
            return Err(AuthError::MissingScope(scope.into()).into());
        }
        Ok(claims)
    }

    /// `IssueToken` itself: checks the request, authenticates the client and
    /// signs its token.
    async fn issue(
        &self,
        request: pb::IssueTokenRequest,
    ) -> Result<pb::IssueTokenResponse, OAuthError> {
        if !request.grant_type.is_empty() && request.grant_type != CLIENT_CREDENTIALS {
            return Err(OAuthError::UnsupportedGrant(request.grant_type));
        }
        if request.client_id.is_empty() {
            return Err(OAuthError::InvalidField {
                field: "client_id",
                reason: "must not be empty".into(),
            });
        }
        if request.scope.trim().is_empty() {
            return Err(OAuthError::EmptyScope);
        }
        let clients = self.clients.clone();
        let issuer = self.keys.current();
        // Argon2 takes milliseconds of CPU: keep it off the async workers.
        let span = tracing::info_span!("oauth.authenticate_and_sign");
        let issued = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let client = clients.authenticate(&request.client_id, &request.client_secret)?;
            let scopes = clients.grant_scopes(client, &request.scope)?;
            let audiences = client
                .grant_audiences(&request.resource)?
                .into_iter()
                .map(Audience::as_str)
                .collect::<Vec<_>>();
            Ok::<_, OAuthError>(issuer.issue(client.id(), &scopes, &audiences, unix_now())?)
        })
        .await
        .map_err(|error| OAuthError::Task(error.to_string()))?
        .map_err(|error| {
            tracing::info!(%error, "token refused");
            error
        })?;
        tracing::info!(
            jti = %issued.claims.jti,
            scope = %issued.claims.scope,
            aud = %issued.claims.aud.join(" "),
            "token issued"
        );
        Ok(pb::IssueTokenResponse {
            access_token: issued.token,
            token_type: "Bearer".into(),
            expires_in: i64::try_from(issued.claims.exp.saturating_sub(issued.claims.iat))
                .unwrap_or(i64::MAX),
            scope: issued.claims.scope,
        })
    }

    /// Verifies one of our tokens, for whichever audiences; `leeway` 0 for
    /// introspection.
    fn verify(&self, token: &str, leeway: u64) -> Result<Claims, TokenError> {
        self.keys
            .current()
            .verifier()
            .verify_any_audience(token, unix_now(), leeway)
    }

    async fn revoke(&self, jti: &str, exp: u64) -> Result<pb::RevokeTokenResponse, OAuthError> {
        let newly_revoked = self
            .revocations
            .revoke(jti, exp, unix_now())
            .await
            .inspect_err(|error| tracing::warn!(%error, jti, "revocation not recorded"))?;
        self.authenticator.revoke_locally(jti);
        if newly_revoked {
            metrics::revoked();
        }
        tracing::info!(jti, newly_revoked, "token revoked");
        Ok(pb::RevokeTokenResponse {
            jti: jti.to_owned(),
            newly_revoked,
        })
    }
}

fn is_valid_jti(jti: &str) -> bool {
    !jti.is_empty()
        && jti.len() <= 64
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[tonic::async_trait]
impl OAuthRpc for OAuthService {
    #[tracing::instrument(skip_all, fields(client.id = %heist_plumbing::quote(&request.get_ref().client_id)))]
    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let request = request.into_inner();
        let client_id = request.client_id.clone();
        match self.issue(request).await {
            Ok(response) => {
                metrics::issued();
                Ok(Response::new(response))
            }
            Err(error) => {
                let known_client = self.clients.get(&client_id).is_some();
                metrics::refused(error.refusal(known_client));
                Err(error.into())
            }
        }
    }

    #[tracing::instrument(skip_all)]
    async fn get_public_keys(
        &self,
        _request: Request<pb::GetPublicKeysRequest>,
    ) -> Result<Response<pb::GetPublicKeysResponse>, Status> {
        self.reload_keys().await;
        let issuer = self.keys.current();
        let keys = issuer
            .jwks()
            .into_iter()
            .map(heist_plumbing::jwk::to_proto)
            .collect();
        Ok(Response::new(pb::GetPublicKeysResponse {
            keys,
            issuer: issuer.issuer().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        self.caller_with_scope(&request, INTROSPECT_SCOPE).await?;
        let response = match self.verify(&request.get_ref().token, 0) {
            Ok(claims) if self.is_revoked(&claims.jti).await? => pb::IntrospectTokenResponse {
                reason: "revoked".into(),
                ..claims_response(claims, false)
            },
            Ok(claims) => claims_response(claims, true),
            Err(error) => pb::IntrospectTokenResponse {
                active: false,
                reason: error.reason().into(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        match request.get_ref().target.clone() {
            Some(Target::Token(token)) => match self.verify(&token, 0) {
                Ok(claims) => Ok(Response::new(self.revoke(&claims.jti, claims.exp).await?)),
                // An expired token needs no revocation.
                Err(TokenError::Expired { .. }) => Ok(Response::new(pb::RevokeTokenResponse {
                    jti: String::new(),
                    newly_revoked: false,
                })),
                Err(error) => Err(OAuthError::NotOurToken(error).into()),
            },
            Some(Target::Jti(jti)) => {
                self.caller_with_scope(&request, ADMIN_SCOPE).await?;
                if !is_valid_jti(&jti) {
                    return Err(OAuthError::InvalidField {
                        field: "jti",
                        reason: "must be 1 to 64 letters, digits, '-' or '_'".into(),
                    }
                    .into());
                }
                // The token's expiry is unknown here: keep it for a whole lifetime.
                let exp = unix_now().saturating_add(self.keys.current().lifetime().as_secs());
                Ok(Response::new(self.revoke(&jti, exp).await?))
            }
            None => Err(OAuthError::InvalidField {
                field: "target",
                reason: "give the token or its jti".into(),
            }
            .into()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn list_revoked_tokens(
        &self,
        _request: Request<pb::ListRevokedTokensRequest>,
    ) -> Result<Response<pb::ListRevokedTokensResponse>, Status> {
        let revoked = self
            .revocations
            .active(unix_now())
            .await
            .map_err(OAuthError::from)?
            .into_iter()
            .map(|(jti, exp)| pb::RevokedToken {
                jti,
                exp: i64::try_from(exp).unwrap_or(i64::MAX),
            })
            .collect();
        Ok(Response::new(pb::ListRevokedTokensResponse { revoked }))
    }
}

fn claims_response(claims: Claims, active: bool) -> pb::IntrospectTokenResponse {
    pb::IntrospectTokenResponse {
        active,
        sub: claims.sub,
        scope: claims.scope,
        aud: claims.aud,
        iss: claims.iss,
        iat: i64::try_from(claims.iat).unwrap_or(i64::MAX),
        exp: i64::try_from(claims.exp).unwrap_or(i64::MAX),
        jti: claims.jti,
        reason: String::new(),
    }
}
