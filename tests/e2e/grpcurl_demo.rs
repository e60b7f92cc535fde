//! The README's grpcurl walk-through, run for real: the OAuth and Tool
//! binaries as processes, `scripts/grpcurl_demo.sh` getting a token and
//! calling the calculator with it, and the same call refused without one.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::Command;

use heist_e2e::{ServiceProcess, binary, repo_root, wait_until_serving};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_script_gets_a_token_and_calls_the_calculator() {
    let dir = TempDir::new().unwrap();
    let oauth =
        ServiceProcess::start(&binary("heist-oauth"), &[], "127.0.0.1:0", dir.path()).unwrap();
    let oauth_url = format!("http://{}", oauth.addr);
    let tools = ServiceProcess::start(
        &binary("heist-tools"),
        &["--tools", "calculator", "--oauth-url", &oauth_url],
        "127.0.0.1:0",
        dir.path(),
    )
    .unwrap();
    wait_until_serving(tools.addr, "heist.v1.ToolService")
        .await
        .unwrap();

    let script = repo_root().join("scripts/grpcurl_demo.sh");
    let output = Command::new(script)
        .arg("6 * 7")
        .env("OAUTH_ADDR", oauth.addr.to_string())
        .env("TOOLS_ADDR", tools.addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "script failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("6 * 7 = 42"), "{stdout}");

    let anonymous = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"tool_name": "calculator", "arguments": {"expression": "1"}}"#,
        ])
        .arg(tools.addr.to_string())
        .arg("heist.v1.ToolService/CallTool")
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("Unauthenticated"));
}
