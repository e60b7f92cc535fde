//! The README's one-command demo, for real: `scripts/run_heist.sh` starts
//! every service as a process on the seed's ports (8001-8006), runs a
//! 20-turn offline session, and stops them all; the audit database and the
//! transcripts hold the whole session.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::Command;

use heist_audit::{AuditStore, StoreConfig, store::PageRequest, store::SessionStatus};
use heist_e2e::{binary_dir, repo_root};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_heist_starts_the_mesh_runs_twenty_turns_and_stops_it() {
    for port in 8001..=8006 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is busy: stop the running mesh (scripts/stop_services.sh) before this test"
        );
    }
    let run_dir = TempDir::new().unwrap();
    let profile = binary_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
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
    let session_id = shown
        .lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .unwrap()
        .trim()
        .to_owned();

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
