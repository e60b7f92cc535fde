//! The OAuth service against the real server on 127.0.0.1:0: every RPC and
//! every bad input, and tokens that survive a restart.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{path::Path, time::Duration};

use heist_e2e::{TestServer, channel_to, dev_token, services};
use heist_plumbing::{
    ServeOptions,
    auth::{Audience, BearerInterceptor},
};
use heist_proto::v1::{
    GetPublicKeysRequest, IntrospectTokenRequest, IssueTokenRequest, ListRevokedTokensRequest,
    RevokeTokenRequest, o_auth_service_client::OAuthServiceClient, revoke_token_request::Target,
};
use heist_tokens::{KeySet, SigningKey, TokenIssuer, Verifier, unix_now};
use tempfile::TempDir;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

async fn start_oauth(dir: &Path) -> TestServer {
    services::oauth(services::oauth_config(dir), ServeOptions::default()).await
}

fn client(server: &TestServer) -> OAuthServiceClient<Channel> {
    OAuthServiceClient::new(server.channel())
}

type Authorized = OAuthServiceClient<InterceptedService<Channel, BearerInterceptor>>;

/// A client calling with `token` as its bearer token.
fn client_with(server: &TestServer, token: &str) -> Authorized {
    OAuthServiceClient::with_interceptor(server.channel(), BearerInterceptor::new(token))
}

/// A client allowed to introspect: the orchestrator with `oauth:introspect`.
async fn introspector(server: &TestServer) -> Authorized {
    let token = dev_token(server.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    client_with(server, &token)
}

fn request(client_id: &str, secret: &str, scope: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        scope: scope.into(),
        session_id: String::new(),
        resource: Vec::new(),
    }
}

/// A token signed with the service's own key but otherwise of our making.
fn forge(dir: &Path, audience: &str, issued_at: u64) -> String {
    let key = SigningKey::load_or_generate(&dir.join("signing.key")).unwrap();
    TokenIssuer::new(key, "heist-oauth", Duration::from_secs(60))
        .issue("planner", &["calculator:use"], &[audience], issued_at)
        .unwrap()
        .token
}

#[tokio::test]
async fn a_client_gets_a_signed_token_that_the_public_keys_verify() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let mut oauth = client(&server);
    let issued = oauth
        .issue_token(request(
            "planner",
            "planner-dev-secret",
            "calculator:use memory:read",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.expires_in, 300);
    assert_eq!(issued.scope, "calculator:use memory:read");

    let keys = oauth
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    let jwk = &keys.keys[0];
    assert_eq!(
        (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    let jwks = vec![heist_tokens::Jwk {
        kty: jwk.kty.clone(),
        crv: jwk.crv.clone(),
        x: jwk.x.clone(),
        kid: jwk.kid.clone(),
        alg: jwk.alg.clone(),
        use_: jwk.r#use.clone(),
    }];
    let verifier = Verifier::new(keys.issuer.clone(), KeySet::from_jwks(&jwks).unwrap());
    let claims = verifier
        .verify(&issued.access_token, "tools", unix_now(), 0)
        .unwrap();
    // No resource named: every audience the client may have.
    assert_eq!(claims.aud, Audience::names());
    assert_eq!(claims.sub, "planner");
    assert_eq!(claims.iss, "heist-oauth");
    assert!(claims.has_scope("calculator:use") && claims.has_scope("memory:read"));
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.jti.len(), 32);
}

#[tokio::test]
async fn an_unknown_client_and_a_wrong_secret_are_refused_alike() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let mut oauth = client(&server);
    let wrong_secret = oauth
        .issue_token(request("planner", "not-the-secret", "calculator:use"))
        .await
        .unwrap_err();
    let unknown = oauth
        .issue_token(request("burglar", "planner-dev-secret", "calculator:use"))
        .await
        .unwrap_err();
    assert_eq!(wrong_secret.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(
        wrong_secret.message(),
        unknown.message(),
        "ids must not be probeable"
    );
    let empty_id = oauth
        .issue_token(request("", "x", "calculator:use"))
        .await
        .unwrap_err();
    assert_eq!(empty_id.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn scopes_must_be_asked_for_well_formed_and_allowed() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let mut oauth = client(&server);
    let not_allowed = oauth
        .issue_token(request(
            "mole",
            "mole-dev-secret",
            "memory:read calculator:use",
        ))
        .await
        .unwrap_err();
    assert_eq!(not_allowed.code(), Code::PermissionDenied);
    assert!(
        not_allowed.message().contains("calculator:use"),
        "{not_allowed:?}"
    );
    for scope in ["", "   ", "calculator:use bad!scope", "drop;table"] {
        let status = oauth
            .issue_token(request("planner", "planner-dev-secret", scope))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{scope:?}: {status:?}"
        );
        assert!(status.message().contains("scope"), "{status:?}");
    }
    let mut grant = request("planner", "planner-dev-secret", "calculator:use");
    grant.grant_type = "password".into();
    let status = oauth.issue_token(grant).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("grant_type"), "{status:?}");
}

#[tokio::test]
async fn introspection_tells_active_expired_garbage_and_revoked_tokens_apart() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let mut oauth = client(&server);
    let mut introspector = introspector(&server).await;
    let token = dev_token(server.addr, "hacker", "file_reader:use")
        .await
        .unwrap();
    let active = introspector
        .introspect_token(IntrospectTokenRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    assert_eq!(active.sub, "hacker");
    assert_eq!(active.scope, "file_reader:use");
    assert_eq!(active.aud, Audience::names());

    for (garbage, reason) in [
        ("", "malformed"),
        ("a.b", "malformed"),
        ("x.y.z", "malformed"),
    ] {
        let answer = introspector
            .introspect_token(IntrospectTokenRequest {
                token: garbage.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.active);
        assert_eq!(answer.reason, reason, "{garbage:?}");
    }
    let expired = forge(dir.path(), "tools", unix_now() - 3600);
    let answer = introspector
        .introspect_token(IntrospectTokenRequest { token: expired })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.active);
    assert_eq!(answer.reason, "expired");
    // A token for one service is one of ours: introspection reports its audience.
    let for_tools = forge(dir.path(), "tools", unix_now());
    let answer = introspector
        .introspect_token(IntrospectTokenRequest { token: for_tools })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.active, answer.aud),
        (true, vec!["tools".to_owned()])
    );

    let revoked = oauth
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token(token.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.newly_revoked);
    assert_eq!(revoked.jti, active.jti);
    let again = oauth
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token(token.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.newly_revoked);
    let answer = introspector
        .introspect_token(IntrospectTokenRequest { token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.active, answer.reason.as_str()), (false, "revoked"));
    let list = oauth
        .list_revoked_tokens(ListRevokedTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.revoked.iter().any(|entry| entry.jti == active.jti));
}

#[tokio::test]
async fn revoking_by_jti_needs_the_admin_scope_and_bad_targets_are_invalid() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let mut anonymous = client(&server);
    let jti = Target::Jti("0123456789abcdef0123456789abcdef".into());
    let status = anonymous
        .revoke_token(RevokeTokenRequest {
            target: Some(jti.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let planner = dev_token(server.addr, "planner", "memory:read")
        .await
        .unwrap();
    let mut as_planner = OAuthServiceClient::with_interceptor(
        channel_to(server.addr),
        BearerInterceptor::new(&planner),
    );
    let status = as_planner
        .revoke_token(RevokeTokenRequest {
            target: Some(jti.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("oauth:admin"));
    let admin = dev_token(server.addr, "orchestrator", "oauth:admin")
        .await
        .unwrap();
    let mut as_admin = OAuthServiceClient::with_interceptor(
        channel_to(server.addr),
        BearerInterceptor::new(&admin),
    );
    let revoked = as_admin
        .revoke_token(RevokeTokenRequest { target: Some(jti) })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.newly_revoked);
    let status = as_admin
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Jti("../etc".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = anonymous
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token("garbage".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = anonymous
        .revoke_token(RevokeTokenRequest { target: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn tokens_and_revocations_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let kept = dev_token(server.addr, "planner", "calculator:use")
        .await
        .unwrap();
    let revoked = dev_token(server.addr, "planner", "calculator:use")
        .await
        .unwrap();
    client(&server)
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token(revoked.clone())),
        })
        .await
        .unwrap();
    server.stop().await.unwrap();

    let restarted = start_oauth(dir.path()).await;
    let mut oauth = introspector(&restarted).await;
    let answer = oauth
        .introspect_token(IntrospectTokenRequest { token: kept })
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer.active,
        "a token issued before the restart stays valid"
    );
    let answer = oauth
        .introspect_token(IntrospectTokenRequest { token: revoked })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.active, answer.reason.as_str()), (false, "revoked"));
}

#[tokio::test]
async fn introspection_needs_a_caller_whose_token_grants_oauth_introspect() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let subject = dev_token(server.addr, "hacker", "file_reader:use")
        .await
        .unwrap();
    let ask = || IntrospectTokenRequest {
        token: subject.clone(),
    };

    let status = client(&server).introspect_token(ask()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("authorization"), "{status:?}");
    for garbage in ["not-a-jwt", "a.b.c"] {
        let status = client_with(&server, garbage)
            .introspect_token(ask())
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{garbage}: {status:?}"
        );
    }
    let forged = {
        let stranger = TokenIssuer::new(
            SigningKey::generate().unwrap(),
            "heist-oauth",
            Duration::from_secs(60),
        );
        stranger
            .issue(
                "orchestrator",
                &["oauth:introspect"],
                &["oauth"],
                unix_now(),
            )
            .unwrap()
            .token
    };
    let status = client_with(&server, &forged)
        .introspect_token(ask())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "forged: {status:?}");

    // A valid token without the scope, even the admin's, is not enough.
    for (holder, scope) in [("planner", "memory:read"), ("orchestrator", "oauth:admin")] {
        let token = dev_token(server.addr, holder, scope).await.unwrap();
        let status = client_with(&server, &token)
            .introspect_token(ask())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{scope}: {status:?}");
        assert!(
            status.message().contains("oauth:introspect"),
            "{scope}: {status:?}"
        );
    }

    let mut introspector = introspector(&server).await;
    let answer = introspector
        .introspect_token(ask())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.active);
    assert_eq!(answer.sub, "hacker");

    // A revoked introspector is refused, here and after a restart.
    let token = dev_token(server.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    client(&server)
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token(token.clone())),
        })
        .await
        .unwrap();
    let status = client_with(&server, &token)
        .introspect_token(ask())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "revoked: {status:?}");
    server.stop().await.unwrap();
    let restarted = start_oauth(dir.path()).await;
    let status = client_with(&restarted, &token)
        .introspect_token(ask())
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "revoked, after a restart: {status:?}"
    );
}

#[tokio::test]
async fn the_open_revocation_list_holds_only_opaque_ids_and_expiry_times() {
    let dir = TempDir::new().unwrap();
    let server = start_oauth(dir.path()).await;
    let token = dev_token(server.addr, "planner", "calculator:use memory:read")
        .await
        .unwrap();
    let claims = introspector(&server)
        .await
        .introspect_token(IntrospectTokenRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut anonymous = client(&server);
    anonymous
        .revoke_token(RevokeTokenRequest {
            target: Some(Target::Token(token.clone())),
        })
        .await
        .unwrap();

    let list = anonymous
        .list_revoked_tokens(ListRevokedTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.revoked.len(), 1);
    let entry = &list.revoked[0];
    assert_eq!(entry.jti, claims.jti);
    assert_eq!(entry.exp, claims.exp);
    assert!(
        entry.jti.len() == 32 && entry.jti.chars().all(|c| c.is_ascii_hexdigit()),
        "a random 128-bit id: {entry:?}"
    );
    // Every field of every entry, as the Debug form spells them all.
    let wire = format!("{list:?}");
    for secret in [
        token.as_str(),
        "planner",
        "calculator:use",
        "memory:read",
        "heist-oauth",
        "tools",
        "audit",
    ] {
        assert!(
            !wire.contains(secret),
            "the list reveals {secret:?}: {list:?}"
        );
    }
}
