//! The README's one-command demo, for real: `scripts/run_heist.sh` starts
//! every service as a process on the seed's ports (8001-8006), runs a
//! 20-turn offline session, and stops them all; the audit database and the
//! transcripts hold the whole session. And `scripts/start_services.sh
//! --postgres URL --redis URL`, the mesh on engines (private ones here).
//! Both use the seed's ports, so they take turns.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{net::SocketAddr, process::Command};

use heist_audit::{AuditStore, StoreConfig, store::PageRequest, store::SessionStatus};
use heist_e2e::{binary, binary_dir, repo_root};
use heist_engines::{PostgresServer, RedisServer};
use tempfile::TempDir;
use tokio::sync::Mutex;

/// Held by a test while it uses the seed's ports.
static SEED_PORTS: Mutex<()> = Mutex::const_new(());

/// Fails unless 8001-8006 are free.
fn assert_seed_ports_free() {
    for port in 8001..=8006 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is busy: stop the running mesh (scripts/stop_services.sh) before this test"
        );
    }
}

/// The cargo profile the binaries were built with (`debug` under `cargo test`).
fn profile() -> String {
    binary_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Runs `scripts/NAME ARGS` on the binaries as built, state in `run_dir`.
fn run_script(run_dir: &std::path::Path, name: &str, args: &[&str]) -> std::process::Output {
    Command::new(repo_root().join("scripts").join(name))
        .args(args)
        .env("HEIST_RUN_DIR", run_dir)
        .env("HEIST_PROFILE", profile())
        .env("HEIST_SKIP_BUILD", "1")
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_services_on_postgres_and_redis_keeps_the_state_there_and_no_password_in_argv() {
    let _ports = SEED_PORTS.lock().await;
    assert_seed_ports_free();
    let database = PostgresServer::shared()
        .and_then(PostgresServer::fresh_database)
        .expect("the private PostgreSQL must start");
    let redis = RedisServer::start().expect("the private Redis must start");
    let run_dir = TempDir::new().unwrap();
    let script = |name: &str, args: &[&str]| run_script(run_dir.path(), name, args);
    let started = script(
        "start_services.sh",
        &["--postgres", &database, "--redis", &redis.url()],
    );
    let shown = String::from_utf8_lossy(&started.stdout).into_owned()
        + &String::from_utf8_lossy(&started.stderr);
    let stop = || script("stop_services.sh", &[]);
    if !started.status.success() {
        stop();
        panic!("start_services.sh failed: {shown}");
    }
    assert!(shown.contains("PostgreSQL at 127.0.0.1:"), "{shown}");
    assert!(
        !shown.contains(redis.password()),
        "no password shown: {shown}"
    );
    for pid_file in ["audit.pid", "memory.pid", "oauth.pid"] {
        let pid = std::fs::read_to_string(run_dir.path().join(pid_file)).unwrap();
        let argv = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
        let argv = String::from_utf8_lossy(&argv);
        assert!(
            !argv.contains("postgres://") && !argv.contains("redis://"),
            "{pid_file}: {argv}"
        );
    }

    let run = Command::new(binary("orchestrator"))
        .arg("--config")
        .arg(repo_root().join("orchestrator/heist.yaml"))
        .arg("--spool")
        .arg(run_dir.path().join("audit.spool"))
        .args(["run", "--turns", "6", "--seed", "3", "--quiet"])
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let ran = String::from_utf8_lossy(&run.stdout).into_owned();
    let session_id = ran
        .lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .map(|id| id.trim().to_owned());
    let oauth: SocketAddr = "127.0.0.1:8001".parse().unwrap();
    let audit: SocketAddr = "127.0.0.1:8006".parse().unwrap();
    let trail = match &session_id {
        Some(id) if run.status.success() => Some(heist_e2e::audit_trail(oauth, audit, id).await),
        _ => None,
    };
    let stopped = stop();
    let trail = trail.unwrap_or_else(|| {
        panic!(
            "the run failed: {ran}{}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert!(stopped.status.success());
    assert_eq!(
        trail.session.status(),
        heist_proto::v1::SessionStatus::Completed
    );
    assert_eq!(trail.messages.len(), 6);
    // The state is in the engines, not in files of the run directory.
    assert!(!run_dir.path().join("heist_audit.db").exists());
    assert!(!run_dir.path().join("oauth_revoked.log").exists());
    let memory_keys = redis_key_count(&redis);
    assert!(memory_keys > 0, "Memory keeps its turns in Redis");
}

/// How many keys `redis` holds (`DBSIZE`), asked with `redis-cli`.
fn redis_key_count(redis: &RedisServer) -> u64 {
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "--no-auth-warning", "-a"])
        .arg(redis.password())
        .arg("DBSIZE")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_heist_starts_the_mesh_runs_twenty_turns_and_stops_it() {
    let _ports = SEED_PORTS.lock().await;
    assert_seed_ports_free();
    let run_dir = TempDir::new().unwrap();
    let profile = profile();
    let script = repo_root().join("scripts/run_heist.sh");
    let transcript = run_dir.path().join("heist");
    let output = tokio::task::spawn_blocking({
        let run_dir = run_dir.path().to_owned();
        let transcript = transcript.clone();
        move || {
            Command::new(script)
                .args(["--turns", "20", "--seed", "2025", "--quiet", "--transcript"])
                .arg(&transcript)
                .env("HEIST_RUN_DIR", &run_dir)
                .env("HEIST_PROFILE", profile)
                .env("HEIST_SKIP_BUILD", "1")
                .env_remove("HEIST_CONFIG")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("SERVING") || shown.contains("The mesh is up"),
        "{shown}"
    );
    for name in [
        "oauth",
        "calculator",
        "file_reader",
        "database_query",
        "memory",
        "audit",
    ] {
        assert!(
            shown.contains(&format!("🛑 {name} stopped")),
            "{name} was not stopped cleanly: {shown}"
        );
        assert!(!run_dir.path().join(format!("{name}.pid")).exists());
        // Written to a file, not a terminal: no colour codes (issue 12).
        let log = std::fs::read(run_dir.path().join(format!("{name}.log"))).unwrap();
        assert!(!log.is_empty(), "{name}.log is empty");
        assert!(
            !log.contains(&0x1b),
            "{name}.log holds escape codes:\n{}",
            String::from_utf8_lossy(&log)
        );
    }
    let session_id = heist_e2e::session_id_in(&shown);

    let store = AuditStore::open(StoreConfig::new(run_dir.path().join("heist_audit.db"))).unwrap();
    let session = store.get_session(&session_id).await.unwrap();
    assert_eq!(session.status, SessionStatus::Completed);
    assert_eq!((session.num_turns, session.message_count), (20, 20));
    assert!(session.tool_usage_count > 0);
    let messages = store
        .list_messages(
            &session_id,
            PageRequest {
                page_size: 100,
                page_token: String::new(),
            },
        )
        .await
        .unwrap();
    let turns: Vec<i64> = messages.items.iter().map(|m| m.turn_id).collect();
    assert_eq!(turns, (1..=20).collect::<Vec<_>>());
    assert_eq!(messages.items[0].agent_name, "planner");
    let usage = store
        .list_tool_usage(
            &session_id,
            PageRequest {
                page_size: 100,
                page_token: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(
        usage.items.iter().all(|u| u.success),
        "every service was up"
    );
    assert!(transcript.with_extension("json").exists() && transcript.with_extension("md").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_services_with_tls_serves_mutual_tls_with_the_dev_ca_and_run_heist_tls_runs_over_it()
{
    let _ports = SEED_PORTS.lock().await;
    assert_seed_ports_free();
    let run_dir = TempDir::new().unwrap();
    let script = |name: &str, args: &[&str]| run_script(run_dir.path(), name, args);
    let shown = |output: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let started = script("start_services.sh", &["--tls"]);
    let certs = run_dir.path().join("certs");
    let outcome = std::panic::catch_unwind(|| {
        assert!(started.status.success(), "{}", shown(&started));
        assert!(shown(&started).contains("Mutual TLS on every hop"));
        for name in ["ca", "oauth", "tools", "memory", "audit", "orchestrator"] {
            assert!(certs.join(format!("{name}.pem")).exists(), "{name}.pem");
        }
        let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
        for port in 8001..=8006 {
            let addr = format!("127.0.0.1:{port}");
            let mutual = Command::new("grpcurl")
                .args([
                    "-cacert",
                    &file("ca.pem"),
                    "-cert",
                    &file("orchestrator.pem"),
                ])
                .args([
                    "-key",
                    &file("orchestrator-key.pem"),
                    "-max-time",
                    "5",
                    &addr,
                ])
                .arg("grpc.health.v1.Health/Check")
                .output()
                .unwrap();
            assert!(
                shown(&mutual).contains("SERVING"),
                "{port}: {}",
                shown(&mutual)
            );
            let plaintext = Command::new("grpcurl")
                .args([
                    "-plaintext",
                    "-max-time",
                    "3",
                    &addr,
                    "grpc.health.v1.Health/Check",
                ])
                .output()
                .unwrap();
            assert!(!plaintext.status.success(), "{port} answered plaintext");
        }
    });
    let stopped = script("stop_services.sh", &[]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(stopped.status.success(), "{}", shown(&stopped));

    // run_heist.sh --tls: the same mesh, a session over it, the certificates kept.
    let ca_before = std::fs::read(certs.join("ca.pem")).unwrap();
    let ran = script(
        "run_heist.sh",
        &["--tls", "--turns", "6", "--seed", "7", "--quiet"],
    );
    assert!(ran.status.success(), "{}", shown(&ran));
    assert!(shown(&ran).contains("completed"), "{}", shown(&ran));
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca_before);
    let audit_log = std::fs::read_to_string(run_dir.path().join("audit.log")).unwrap();
    assert!(!audit_log.contains("TLS handshake refused"), "{audit_log}");
}
