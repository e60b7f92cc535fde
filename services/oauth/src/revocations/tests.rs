//! The revocation list's behaviour, run against every backend: the file,
//! PostgreSQL and Redis (private engines from `heist-engines`; a test fails,
//! never skips, when its engine cannot start).

use std::time::{Duration, Instant};

use heist_engines::{Durability, PostgresServer, RedisServer};

use super::{RevocationBackend, RevocationError, RevocationStore, STORE_TIMEOUT};

/// The backends under test; the guard keeps an engine of its own running.
enum Engine {
    Postgres,
    Redis,
}

/// A fresh, empty list on `engine`, and what keeps its engine alive.
fn fresh(engine: &Engine) -> (RevocationBackend, Option<RedisServer>) {
    match engine {
        Engine::Postgres => {
            let url = PostgresServer::shared()
                .and_then(PostgresServer::fresh_database)
                .expect("PostgreSQL must start for this test");
            (RevocationBackend::Postgres(url), None)
        }
        Engine::Redis => {
            let server = RedisServer::start().expect("Redis must start for this test");
            (RevocationBackend::Redis(server.url()), Some(server))
        }
    }
}

/// What every backend must do, on a list that starts empty.
async fn behaves_as_a_revocation_list(store: &RevocationStore) {
    let what = store.describe();
    assert!(store.active(100).await.unwrap().is_empty(), "{what}");
    assert!(store.revoke("a", 500, 100).await.unwrap(), "{what}: new");
    assert!(store.revoke("b", 150, 100).await.unwrap(), "{what}: new");
    assert!(
        !store.revoke("a", 500, 100).await.unwrap(),
        "{what}: a repeat"
    );
    assert!(store.is_revoked("a", 100).await.unwrap(), "{what}");
    assert!(store.is_revoked("b", 100).await.unwrap(), "{what}");
    assert!(
        !store.is_revoked("c", 100).await.unwrap(),
        "{what}: unknown"
    );
    assert_eq!(
        store.active(100).await.unwrap(),
        vec![("a".to_owned(), 500), ("b".to_owned(), 150)],
        "{what}"
    );
    // At 200, b has expired: neither answered nor listed.
    assert!(!store.is_revoked("b", 200).await.unwrap(), "{what}");
    assert_eq!(
        store.active(200).await.unwrap(),
        vec![("a".to_owned(), 500)],
        "{what}"
    );
    // An expired entry does not make a new revocation of its ID a repeat.
    assert!(store.revoke("b", 900, 200).await.unwrap(), "{what}");
    assert!(store.is_revoked("b", 600).await.unwrap(), "{what}");
    assert_eq!(
        store.active(600).await.unwrap(),
        vec![("b".to_owned(), 900)],
        "{what}"
    );
}

#[tokio::test]
async fn every_backend_answers_as_a_revocation_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = RevocationBackend::File(dir.path().join("revoked.log"));
    let store = RevocationStore::open(&file, 100).await.unwrap();
    behaves_as_a_revocation_list(&store).await;
    behaves_as_a_revocation_list(&RevocationStore::in_memory()).await;
    for engine in [Engine::Postgres, Engine::Redis] {
        let (backend, _guard) = fresh(&engine);
        let store = RevocationStore::open(&backend, 100).await.unwrap();
        behaves_as_a_revocation_list(&store).await;
    }
}

#[tokio::test]
async fn replicas_on_one_engine_see_each_others_revocations() {
    for engine in [Engine::Postgres, Engine::Redis] {
        let (backend, _guard) = fresh(&engine);
        // Opened at once, as replicas starting together would.
        let (a, b) = tokio::join!(
            RevocationStore::open(&backend, 100),
            RevocationStore::open(&backend, 100)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.revoke("seen-by-b", 500, 100).await.unwrap());
        assert!(b.is_revoked("seen-by-b", 100).await.unwrap(), "{backend}");
        assert_eq!(
            b.active(100).await.unwrap(),
            vec![("seen-by-b".to_owned(), 500)],
            "{backend}"
        );
        assert!(
            !b.revoke("seen-by-b", 500, 100).await.unwrap(),
            "{backend}: revoked already, through the other replica"
        );
    }
}

#[tokio::test]
async fn the_file_list_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let file = RevocationBackend::File(dir.path().join("revoked.log"));
    let store = RevocationStore::open(&file, 100).await.unwrap();
    assert!(store.revoke("kept", 500, 100).await.unwrap());
    drop(store);
    let reopened = RevocationStore::open(&file, 100).await.unwrap();
    assert!(reopened.is_revoked("kept", 100).await.unwrap());
}

/// Each call is refused as unavailable, within the store's timeout.
async fn every_call_is_unavailable(store: &RevocationStore) {
    let started = Instant::now();
    let outcomes = [
        store.revoke("while-down", 500, 100).await.map(|_| ()),
        store.is_revoked("while-down", 100).await.map(|_| ()),
        store.active(100).await.map(|_| ()),
    ];
    for outcome in outcomes {
        let error = outcome.expect_err("the engine is down");
        assert!(
            matches!(error, RevocationError::Unavailable { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("password="), "{error}");
    }
    assert!(
        started.elapsed() < STORE_TIMEOUT * 3 + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_engine_that_goes_down_makes_every_call_unavailable_until_it_is_back() {
    let mut redis = RedisServer::start().expect("Redis must start for this test");
    let store = RevocationStore::open(&RevocationBackend::Redis(redis.url()), 100)
        .await
        .unwrap();
    redis.stop();
    every_call_is_unavailable(&store).await;
    redis.start_again().expect("Redis starts again");
    assert!(store.revoke("after", 500, 100).await.unwrap());

    // The shared PostgreSQL server must not stop: this test takes its own.
    let mut postgres =
        PostgresServer::start(Durability::Relaxed).expect("PostgreSQL must start for this test");
    let store = RevocationStore::open(&RevocationBackend::Postgres(postgres.url()), 100)
        .await
        .unwrap();
    postgres.stop();
    every_call_is_unavailable(&store).await;
    postgres.start_again().expect("PostgreSQL starts again");
    assert!(store.revoke("after", 500, 100).await.unwrap());
}

#[tokio::test]
async fn a_wrong_password_or_a_closed_port_fails_at_open_with_a_readable_reason() {
    let redis = RedisServer::start().expect("Redis must start for this test");
    let postgres = PostgresServer::shared().expect("PostgreSQL must start for this test");
    let closed = closed_port();
    let cases = [
        (
            RevocationBackend::Redis(format!("redis://:wrong@127.0.0.1:{}/", redis.port())),
            "redis",
        ),
        (
            RevocationBackend::Postgres(format!(
                "postgres://heist:wrong@127.0.0.1:{}/heist",
                postgres.port()
            )),
            "password",
        ),
        (
            RevocationBackend::Redis(format!("redis://127.0.0.1:{closed}/")),
            "refused",
        ),
        (
            RevocationBackend::Postgres(format!("postgres://heist:x@127.0.0.1:{closed}/heist")),
            "refused",
        ),
    ];
    for (backend, words) in cases {
        let error = RevocationStore::open(&backend, 100).await.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, RevocationError::Unavailable { .. }),
            "{text}"
        );
        assert!(text.to_lowercase().contains(words), "{backend}: {text}");
        assert!(!text.contains("wrong"), "no password in {text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap()
}
