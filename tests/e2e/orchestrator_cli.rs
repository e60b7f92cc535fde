//! The `orchestrator` binary as a user runs it: --help, config errors (exit
//! 2, nothing started), a run against the mesh with transcripts, `health`,
//! `sessions list/show/verify`, `tools`, and a refusal when Audit is down (exit 3).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use heist_e2e::output_text as text;
use std::{
    path::Path,
    process::{Command, Output},
};

use heist_e2e::{
    binary,
    mesh::{TestMesh, closed_endpoint, config_yaml},
};
use tempfile::TempDir;

fn orchestrator(args: &[&str], dir: &Path) -> Output {
    Command::new(binary("orchestrator"))
        .args(args)
        .current_dir(dir)
        .env_remove("HEIST_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Runs the binary off the async runtime (it talks to in-process servers).
async fn orchestrator_async(args: Vec<String>, dir: std::path::PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        orchestrator(&args, &dir)
    })
    .await
    .unwrap()
}

#[test]
fn help_explains_every_command() {
    let dir = TempDir::new().unwrap();
    let help = text(&orchestrator(&["--help"], dir.path()));
    for word in [
        "run",
        "health",
        "sessions",
        "tools",
        "--config",
        "--worker-threads",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
    for bad in ["0", "-1", "many", "257"] {
        let flag = format!("--worker-threads={bad}");
        let output = orchestrator(&[&flag, "health"], dir.path());
        assert_eq!(output.status.code(), Some(2), "--worker-threads {bad}");
        assert!(
            text(&output).contains("--worker-threads"),
            "the error names the flag: {}",
            text(&output)
        );
    }
    let sessions_help = text(&orchestrator(&["sessions", "--help"], dir.path()));
    for command in ["list", "show", "verify"] {
        assert!(
            sessions_help.contains(command),
            "{command} missing from sessions --help:\n{sessions_help}"
        );
    }
    let verify_help = text(&orchestrator(&["sessions", "verify", "--help"], dir.path()));
    for words in [
        "TAMPERED at the message (messages id 7, turn 3)",
        "0 intact or unchained, 1 tampered, 3 OAuth or Audit",
        "4 Audit has no such session",
        "heist-audit verify",
    ] {
        assert!(
            verify_help.contains(words),
            "{words:?} missing from sessions verify --help:\n{verify_help}"
        );
    }
    let run_help = text(&orchestrator(&["run", "--help"], dir.path()));
    for flag in [
        "--turns",
        "--sessions",
        "--seed",
        "--llm-url",
        "--model",
        "--transcript",
        "--quiet",
    ] {
        assert!(
            run_help.contains(flag),
            "{flag} missing from run --help:\n{run_help}"
        );
    }
}

#[test]
fn bad_config_files_exit_2_with_one_clear_error() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "unknown_key.yaml",
            "agents:\n  - name: planner\n    role: Planner\n    system_prompt: Plan.\n    tols: []\n",
            &["unknown_key.yaml", "line", "tols"],
        ),
        (
            "missing_field.yaml",
            "agents:\n  - name: planner\n    system_prompt: Plan.\n",
            &["missing_field.yaml", "role"],
        ),
        (
            "wrong_type.yaml",
            "session:\n  max_turns: many\n",
            &["wrong_type.yaml", "max_turns"],
        ),
        (
            "ghost.yaml",
            "agents:\n  - {name: planner, role: P, system_prompt: x}\n  - {name: mole, role: M, system_prompt: y}\nsession:\n  turn_order: [planner, ghost]\n",
            &["ghost.yaml", "ghost"],
        ),
        (
            "duplicate.yaml",
            "agents:\n  - {name: planner, role: P, system_prompt: x}\n  - {name: planner, role: Q, system_prompt: y}\n",
            &["duplicate.yaml", "planner"],
        ),
        (
            "no_service.yaml",
            "agents:\n  - {name: planner, role: P, system_prompt: x, tools: [calculator]}\n  - {name: mole, role: M, system_prompt: y}\ntool_services: {}\n",
            &["no_service.yaml", "calculator"],
        ),
    ];
    for (file, yaml, words) in cases {
        std::fs::write(dir.path().join(file), yaml).unwrap();
        let output = orchestrator(&["--config", file, "run"], dir.path());
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(2), "{file}: {shown}");
        for word in words {
            assert!(shown.contains(word), "{file}: {word:?} not in {shown}");
        }
        assert!(
            !shown.contains("Session ID"),
            "{file}: nothing may start: {shown}"
        );
    }
    let output = orchestrator(&["--config", "missing.yaml", "health"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("missing.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_then_sessions_tools_and_health_read_the_mesh() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();
    let args = |rest: &[&str]| -> Vec<String> {
        ["--config", "mesh.yaml"]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };
    let run = orchestrator_async(
        args(&[
            "run",
            "--turns",
            "6",
            "--seed",
            "11",
            "--transcript",
            "out/heist",
        ]),
        dir.path().to_owned(),
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("OFFLINE"),
        "the banner says the LLM is offline: {shown}"
    );
    assert!(
        shown.contains("[Turn 1] Strategic Heist Planner (planner):"),
        "{shown}"
    );
    assert!(shown.contains("[Turn 6]"), "{shown}");
    assert!(shown.contains("✅ Audit Service is healthy"), "{shown}");
    let session_id = heist_e2e::session_id_in(&shown);
    assert!(
        session_id.starts_with("heist_") && session_id.len() == "heist_20250116_143052_a1b2".len()
    );
    let json = std::fs::read_to_string(dir.path().join("out/heist.json"))
        .or_else(|_| std::fs::read_to_string(dir.path().join("out").join("heist.json")));
    assert!(json.is_ok(), "transcript written: {shown}");
    assert!(dir.path().join("out/heist.md").exists());

    let list = orchestrator_async(args(&["sessions", "list"]), dir.path().to_owned()).await;
    let listed = text(&list);
    assert_eq!(list.status.code(), Some(0), "{listed}");
    assert!(
        listed.contains(&session_id) && listed.contains("completed"),
        "{listed}"
    );
    let show = orchestrator_async(
        args(&["sessions", "show", &session_id]),
        dir.path().to_owned(),
    )
    .await;
    let shown = text(&show);
    assert_eq!(show.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("[Turn 6]") && shown.contains("(planner)"),
        "{shown}"
    );
    assert!(
        shown.contains("created by orchestrator") && shown.contains("written by orchestrator:"),
        "sessions show names who wrote the rows: {shown}"
    );
    let missing = orchestrator_async(
        args(&["sessions", "show", "heist_nope"]),
        dir.path().to_owned(),
    )
    .await;
    assert_ne!(missing.status.code(), Some(0));
    assert!(text(&missing).contains("No session"));

    let tools = orchestrator_async(args(&["tools"]), dir.path().to_owned()).await;
    let listed = text(&tools);
    assert_eq!(tools.status.code(), Some(0), "{listed}");
    for tool in [
        "calculator",
        "file_reader",
        "database_query",
        "calculator:use",
    ] {
        assert!(listed.contains(tool), "{tool}: {listed}");
    }
    let health = orchestrator_async(args(&["health"]), dir.path().to_owned()).await;
    let report = text(&health);
    assert_eq!(health.status.code(), Some(0), "{report}");
    assert_eq!(
        report.matches("✅").count(),
        8,
        "oauth, audit, memory, 3 tools, llm, all healthy: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_audit_down_a_run_refuses_to_start_and_health_fails() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    let down = closed_endpoint().url;
    let yaml = config_yaml(
        &mesh.oauth.url(),
        &mesh.tools.url(),
        &mesh.memory.url(),
        &down,
    );
    std::fs::write(dir.path().join("mesh.yaml"), yaml).unwrap();
    let run = orchestrator_async(
        ["--config", "mesh.yaml", "run", "--turns", "2"]
            .map(String::from)
            .to_vec(),
        dir.path().to_owned(),
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(3), "{shown}");
    assert!(shown.contains("❌ Audit Service is unreachable"), "{shown}");
    assert!(
        shown.contains("Cannot start: required services are down: Audit Service"),
        "{shown}"
    );
    assert!(!shown.contains("[Turn 1]"), "no turn may run: {shown}");
    let health = orchestrator_async(
        ["--config", "mesh.yaml", "health"]
            .map(String::from)
            .to_vec(),
        dir.path().to_owned(),
    )
    .await;
    assert_eq!(health.status.code(), Some(3), "{}", text(&health));

    // Memory down is only a degraded start.
    let yaml = config_yaml(
        &mesh.oauth.url(),
        &mesh.tools.url(),
        &closed_endpoint().url,
        &mesh.audit.url(),
    );
    std::fs::write(dir.path().join("no_memory.yaml"), yaml).unwrap();
    let run = orchestrator_async(
        [
            "--config",
            "no_memory.yaml",
            "run",
            "--turns",
            "2",
            "--quiet",
        ]
        .map(String::from)
        .to_vec(),
        dir.path().to_owned(),
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("degraded") || shown.contains("Degraded"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sessions_run_at_once() {
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();
    let run = orchestrator_async(
        [
            "--config",
            "mesh.yaml",
            "--worker-threads",
            "2",
            "run",
            "--sessions",
            "3",
            "--turns",
            "5",
            "--quiet",
        ]
        .map(String::from)
        .to_vec(),
        dir.path().to_owned(),
    )
    .await;
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    let ids: std::collections::BTreeSet<_> = shown
        .lines()
        .filter_map(|line| line.strip_prefix("Session ID: "))
        .collect();
    assert_eq!(ids.len(), 3, "{shown}");
    assert_eq!(shown.matches(": completed").count(), 3, "{shown}");
    assert!(
        !shown.contains("[Turn 1]"),
        "--quiet prints no turns: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_session_as_interrupted() {
    use std::io::{BufRead, BufReader};
    let mesh = TestMesh::start().await;
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh.yaml()).unwrap();
    let dir_path = dir.path().to_owned();
    let (code, shown) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary("orchestrator"))
            .args(["--config", "mesh.yaml", "run", "--turns", "100000"])
            .current_dir(&dir_path)
            .env("NO_COLOR", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut shown = String::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            shown.push_str(&line);
            shown.push('\n');
            if line.starts_with("[Turn 3]") {
                break;
            }
        }
        let killed = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        for line in lines {
            shown.push_str(&line.unwrap());
            shown.push('\n');
        }
        (child.wait().unwrap().code(), shown)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(130), "{shown}");
    assert!(shown.contains(": interrupted"), "{shown}");
    let session_id = heist_e2e::session_id_in(&shown);
    let list = orchestrator_async(
        [
            "--config",
            "mesh.yaml",
            "sessions",
            "list",
            "--status",
            "interrupted",
        ]
        .map(String::from)
        .to_vec(),
        dir.path().to_owned(),
    )
    .await;
    assert!(text(&list).contains(&session_id), "{}", text(&list));
}
