//! Signing-key rotation: `heist-oauth rotate-key` on the ring file shared by
//! two running replicas, while tokens signed by each key are in use at a Tool
//! service trusting one replica. Old tokens verify until they expire, new ones
//! carry the new key, a key past its retirement verifies nothing. Also: a
//! malformed ring stops the binary with one line, `rotate-key --help`
//! explains the rule, a key file of earlier versions is a ring of one, and
//! orchestrator sessions on a process mesh run through two rotations.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use heist_e2e::{ServiceProcess, TestServer, binary, dev_token};
use heist_plumbing::auth::{AuthConfig, BearerInterceptor};
use heist_proto::v1::{self as pb, tool_service_client::ToolServiceClient};
use heist_tokens::{KeyRing, KeySet, TokenIssuer, Verifier, unix_now};
use tempfile::TempDir;
use tonic::Code;

use crate::oauth_replicas::{
    POLL, introspect, published_kids, replica, replica_args, serving, tool_service_with,
};

/// Token lifetime of the replicas under test: short, so keys retire quickly.
const LIFETIME: &str = "4s";

/// Runs `heist-oauth rotate-key` on `ring` (no leeway, [`LIFETIME`]) and
/// gives the new key ID it prints.
fn rotate_key(ring: &Path) -> String {
    rotate_key_with(ring, &["--token-lifetime", LIFETIME, "--key-leeway", "0s"])
}

/// Runs `heist-oauth rotate-key` on `ring` with `args` and gives the new key
/// ID it prints.
fn rotate_key_with(ring: &Path, args: &[&str]) -> String {
    let output = Command::new(binary("heist-oauth"))
        .args(["rotate-key", "--key-file", ring.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kid = stdout
        .strip_prefix("new active key ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    assert_eq!(kid, KeyRing::read(ring).unwrap().unwrap().active().kid());
    kid.to_owned()
}

/// A replica on `ring` with short tokens, no leeway and a fast ring reload.
fn rotating_replica(root: &Path, name: &str, ring: &Path) -> ServiceProcess {
    let revocations = root.join(format!("{name}.log"));
    let mut args = replica_args(ring, revocations.to_str().unwrap());
    args.extend([
        "--token-lifetime",
        LIFETIME,
        "--key-leeway",
        "0s",
        "--key-reload",
        "200ms",
    ]);
    replica(root, name, &args)
}

/// `ListTools` at `tools` with `token`: Ok, or the refusal.
async fn list_tools(tools: &TestServer, token: &str) -> Result<(), tonic::Status> {
    ToolServiceClient::with_interceptor(tools.channel(), BearerInterceptor::new(token))
        .list_tools(pb::ListToolsRequest {})
        .await
        .map(drop)
}

/// True when `token` is signed by the active key of the ring at `ring`.
fn signed_by_active_key(ring: &Path, token: &str) -> bool {
    let ring = KeyRing::read(ring).unwrap().unwrap();
    let keys: KeySet = [ring.active().public_key().clone()].into_iter().collect();
    Verifier::new("heist-oauth", keys)
        .verify(token, "tools", unix_now(), 0)
        .is_ok()
}

/// Polls `condition` every 50 ms until it holds; fails after `within`.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rotating_twice_keeps_old_tokens_valid_until_they_expire_and_retires_the_old_keys() {
    let dir = TempDir::new().unwrap();
    let ring = dir.path().join("keys/ring.key");
    let a = rotating_replica(dir.path(), "a", &ring);
    serving(&a).await;
    let b = rotating_replica(dir.path(), "b", &ring);
    serving(&b).await;
    // No leeway here either: a token is refused the second it expires.
    let mut auth = AuthConfig::new(format!("http://{}", a.addr));
    auth.revocation_poll = POLL;
    auth.leeway = Duration::ZERO;
    let tools = tool_service_with(&auth).await;
    // The first key, kept aside to forge a token once it has retired.
    let first_key = KeyRing::read(&ring).unwrap().unwrap().active().clone();
    let k1 = first_key.kid().to_owned();

    let t1 = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    assert!(signed_by_active_key(&ring, &t1));
    list_tools(&tools, &t1).await.unwrap();

    let k2 = rotate_key(&ring);
    assert_ne!(k2, k1);
    // Both replicas re-read the ring on GetPublicKeys: they agree at once.
    assert_eq!(published_kids(&a).await, [k2.clone(), k1.clone()]);
    assert_eq!(published_kids(&b).await, [k2.clone(), k1.clone()]);
    let t2 = dev_token(b.addr, "planner", "calculator:use")
        .await
        .unwrap();
    assert!(signed_by_active_key(&ring, &t2), "t2 carries the new key");
    // The Tool service fetches the new key by its kid; the old token still works.
    list_tools(&tools, &t2).await.unwrap();
    list_tools(&tools, &t1).await.unwrap();

    // Rotations are minutes apart in practice; the Tool service refreshes
    // keys for an unknown kid at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let k3 = rotate_key(&ring);
    // Without a GetPublicKeys, replica A switches within its --key-reload.
    let switched = Instant::now();
    let t3 = loop {
        let token = dev_token(a.addr, "planner", "calculator:use")
            .await
            .unwrap();
        if signed_by_active_key(&ring, &token) {
            break token;
        }
        assert!(
            switched.elapsed() < Duration::from_secs(3),
            "a still signs with k2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        published_kids(&b).await,
        [k3.clone(), k2.clone(), k1.clone()]
    );
    for token in [&t1, &t2, &t3] {
        list_tools(&tools, token).await.unwrap();
    }

    // The first token works until it expires, not a second less; then its
    // key retires (no leeway) and is dropped.
    let introspector = dev_token(b.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    let t1_exp = introspect(&b, &introspector, &t1).await.unwrap().exp;
    eventually(Duration::from_secs(10), "t1 refused", || async {
        list_tools(&tools, &t1).await.is_err()
    })
    .await;
    assert!(
        unix_now() >= u64::try_from(t1_exp).unwrap(),
        "t1 refused early"
    );
    let refused = list_tools(&tools, &t1).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let reason = refused.message();
    assert!(
        reason.contains("expired") || reason.contains("not a known key"),
        "{refused:?}"
    );
    eventually(Duration::from_secs(10), "k1 dropped", || async {
        !published_kids(&a).await.contains(&k1)
    })
    .await;
    assert_eq!(published_kids(&b).await[..2], [k3.clone(), k2.clone()]);

    // A token signed now by the retired key (say, a leaked one) is refused:
    // at OAuth at once, at the Tool service once it has polled the keys.
    let forged = TokenIssuer::new(first_key, "heist-oauth", Duration::from_secs(60))
        .issue("planner", &["calculator:use"], &["tools"], unix_now())
        .unwrap()
        .token;
    let answer = introspect(&b, &introspector, &forged).await.unwrap();
    assert!(!answer.active, "{answer:?}");
    assert_eq!(answer.reason, "unknown key");
    eventually(Duration::from_secs(5), "forged token refused", || async {
        list_tools(&tools, &forged).await.is_err()
    })
    .await;
    let refused = list_tools(&tools, &forged).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("key"), "{refused:?}");
    // The active key keeps working.
    let fresh = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();
    list_tools(&tools, &fresh).await.unwrap();
}

#[test]
fn rotate_key_help_explains_the_retirement_rule_and_its_flags() {
    let output = Command::new(binary("heist-oauth"))
        .args(["rotate-key", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for words in [
        "new signing key active",
        "--key-file",
        "--token-lifetime",
        "--key-leeway",
        "retires at the next key's activation time",
    ] {
        assert!(help.contains(words), "{words:?} missing from:\n{help}");
    }
}

#[test]
fn a_malformed_key_ring_stops_the_binary_with_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let ring = dir.path().join("ring.key");
    let good = KeyRing::load_or_generate(&ring, 1_000).unwrap();
    let text = std::fs::read_to_string(&ring).unwrap();
    std::fs::write(&ring, format!("{text}soon not-a-seed\n")).unwrap();
    assert!(good.len() == 1);
    crate::oauth_replicas::the_one_error_line(
        dir.path(),
        &["--key-file", ring.to_str().unwrap()],
        &["ring.key", "corrupt", "line 3", "activation time"],
        "not-a-seed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_through_two_key_rotations_without_a_failed_turn() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use heist_e2e::processes::{MeshOptions, ProcessMesh};
    use heist_orchestrator::{app, config::Config, llm::OfflineBackend, mesh::Mesh};

    use crate::replicas::{session, spool, tokens_issued};

    let options = MeshOptions::for_tests()
        .replicas("oauth", 2)
        .args("oauth", &["--key-reload", "200ms"]);
    let mut processes = ProcessMesh::start_with(options).await;
    let ring = processes.dir.path().join("oauth.key");
    let config = Arc::new(Config::load(&processes.write_config("rotation.yaml")).unwrap());
    let clients = Mesh::connect(&config).await.unwrap();
    let (orchestrator, _) =
        app::prepare(config, clients, Arc::new(OfflineBackend::new(9)), spool()).await;
    let logs = [processes.log_of("oauth", 0), processes.log_of("oauth", 1)];
    let issued = || logs.iter().map(|log| tokens_issued(log)).sum::<usize>();

    // Sessions back to back until both rotations have been used.
    let done = Arc::new(AtomicBool::new(false));
    let running = {
        let (orchestrator, done) = (orchestrator.clone(), done.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let id = format!("heist_20261201_120000_kr{:02}", outcomes.len());
                outcomes.push(session(&orchestrator, &id, 12).await);
            }
            outcomes
        })
    };
    let mut kids = Vec::new();
    for _ in 0..2 {
        kids.push(rotate_key_with(&ring, &["--token-lifetime", "8s"]));
        // Both replicas re-read the ring within 200 ms; then a token the
        // sessions ask for (8-second tokens are renewed during a run) is
        // signed by the new key.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = issued();
        eventually(Duration::from_secs(20), "a token issued", || async {
            issued() > before
        })
        .await;
        // Keep the services' one-a-second unknown-kid refresh out of play.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    done.store(true, Ordering::SeqCst);
    let outcomes = running.await.unwrap();
    assert!(outcomes.len() >= 2, "{}", outcomes.len());
    for outcome in &outcomes {
        assert_eq!(outcome.failed_turns, 0, "{:?}", outcome.breaker_events);
        assert_eq!(outcome.failed_tool_calls, 0, "{:?}", outcome.breaker_events);
        assert_eq!(outcome.memory_failures, 0, "{:?}", outcome.breaker_events);
        assert_eq!(outcome.audit_failures, 0, "{:?}", outcome.breaker_events);
    }
    let ring_now = KeyRing::read(&ring).unwrap().unwrap();
    assert_eq!(ring_now.active().kid(), kids[1]);
    assert_eq!(ring_now.len(), 3);
    processes.stop();
}

#[tokio::test]
async fn a_single_key_file_of_earlier_versions_is_served_and_rotated_as_a_ring_of_one() {
    let dir = TempDir::new().unwrap();
    let ring = dir.path().join("old.key");
    // The old format: one line, the base64url seed (this one is RFC 8037's).
    std::fs::write(&ring, "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\n").unwrap();
    let old_kid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".to_owned();
    let a = rotating_replica(dir.path(), "a", &ring);
    serving(&a).await;
    assert_eq!(published_kids(&a).await, std::slice::from_ref(&old_kid));
    let old_token = dev_token(a.addr, "planner", "calculator:use")
        .await
        .unwrap();

    let new_kid = rotate_key(&ring);
    assert_eq!(published_kids(&a).await, [new_kid, old_kid]);
    let introspector = dev_token(a.addr, "orchestrator", "oauth:introspect")
        .await
        .unwrap();
    assert!(signed_by_active_key(&ring, &introspector));
    let answer = introspect(&a, &introspector, &old_token).await.unwrap();
    assert!(answer.active, "{answer:?}");
}
