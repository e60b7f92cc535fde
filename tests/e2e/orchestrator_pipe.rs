//! The `orchestrator` binary in a pipe: every command piped into `head -1`
//! exits 0 or 141 with nothing on stderr, as `ls | head` does, and a run
//! whose reader went away stops after its turn (the session interrupted).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use heist_e2e::{binary, mesh::TestMesh};
use tempfile::TempDir;

/// What `orchestrator ARGS | head -1` did.
#[derive(Debug)]
struct Piped {
    /// The orchestrator's exit code.
    code: Option<i32>,
    /// What it wrote on stderr.
    stderr: String,
    /// The line `head` printed.
    first_line: String,
}

/// Runs `orchestrator --config mesh.yaml ARGS | head -1` in `dir`.
fn piped_into_head(args: &[&str], dir: &Path) -> Piped {
    let mut orchestrator = Command::new(binary("orchestrator"))
        .args(["--config", "mesh.yaml"])
        .args(args)
        .current_dir(dir)
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let head = Command::new("head")
        .arg("-1")
        .stdin(orchestrator.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let mut stderr = String::new();
    orchestrator
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = orchestrator.wait().unwrap();
    Piped {
        code: status.code(),
        stderr,
        first_line: String::from_utf8_lossy(&head.stdout).into_owned(),
    }
}

/// Like [`piped_into_head`], off the async runtime (the mesh runs on it).
async fn piped(args: &[&str], dir: &Path) -> Piped {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let dir: PathBuf = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        piped_into_head(&args, &dir)
    })
    .await
    .unwrap()
}

fn assert_quiet(what: &str, piped: &Piped) {
    assert!(
        matches!(piped.code, Some(0 | 141)),
        "`orchestrator {what} | head -1` exited {:?}: {piped:?}",
        piped.code
    );
    assert_eq!(
        piped.stderr, "",
        "`orchestrator {what} | head -1` wrote on stderr"
    );
    assert!(
        !piped.first_line.is_empty(),
        "`{what}` printed a first line"
    );
}

/// The ID in a `Session ID: ...` line of `text`.
fn session_id(text: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix("Session ID: "))
        .unwrap_or_else(|| panic!("no session ID in {text}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_piped_into_head_exits_quietly() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();

    // A session long enough that `sessions show` prints far more than a
    // pipe holds (64 KiB), so its writes do meet a closed pipe however
    // slowly `head` is scheduled.
    let long = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new(binary("orchestrator"))
                .args([
                    "--config",
                    "mesh.yaml",
                    "run",
                    "--turns",
                    "500",
                    "--seed",
                    "3",
                ])
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&long.stdout).into_owned();
    assert_eq!(long.status.code(), Some(0), "{shown}");
    assert!(
        long.stdout.len() > 128 * 1024,
        "{} bytes",
        long.stdout.len()
    );
    let long_id = session_id(&shown);

    let cases: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["run", "--help"],
        vec!["resume", "--help"],
        vec!["sessions", "--help"],
        vec!["health"],
        vec!["tools"],
        vec!["sessions", "list"],
        vec!["sessions", "show", &long_id],
        vec!["run", "--quiet", "--turns", "3"],
        vec!["run", "--turns", "100000"],
    ];
    for args in &cases {
        let what = args.join(" ");
        let result = piped(args, dir.path()).await;
        assert_quiet(&what, &result);
    }
    let show = piped(&["sessions", "show", &long_id], dir.path()).await;
    assert_eq!(
        show.code,
        Some(141),
        "more than a pipe holds met the closed pipe"
    );
    assert!(show.first_line.starts_with(&format!("Session {long_id}")));

    // The endless run stopped after its turn when its reader went away.
    let list = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new(binary("orchestrator"))
                .args(["--config", "mesh.yaml", "sessions", "list"])
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listed.contains(" interrupted "),
        "the endless run was interrupted: {listed}"
    );
    assert!(!listed.contains(" active "), "no session runs on: {listed}");
}
