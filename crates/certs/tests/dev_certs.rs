//! `heist-dev-certs` run as a real process on a temporary directory.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use support::{HOUR, certificate_error, der, is_expired, verify_client, verify_server};

const SERVICES: [&str; 5] = ["oauth", "tools", "memory", "audit", "orchestrator"];

fn dev_certs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heist-dev-certs"))
        .args(args)
        .output()
        .expect("heist-dev-certs runs")
}

/// Runs `heist-dev-certs --out OUT ARGS...`, expecting success; gives stdout.
fn dev_certs_in(out: &Path, args: &[&str]) -> String {
    let out = out.to_str().expect("a UTF-8 path");
    let output = dev_certs(&[&["--out", out], args].concat());
    assert!(
        output.status.success(),
        "heist-dev-certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs it expecting the exit code `code`; gives stderr.
fn dev_certs_failing(args: &[&str], code: i32) -> String {
    let output = dev_certs(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[cfg(unix)]
fn mode(dir: &Path, name: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(dir.join(name))
        .expect("the file was written")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_first_run_makes_a_ca_and_a_trusted_certificate_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run/certs");
    let stdout = dev_certs_in(&out, &[]);
    assert!(stdout.starts_with("made CA "), "{stdout}");
    let ca = read(&out, "ca.pem");
    let now = SystemTime::now();
    for name in SERVICES {
        let cert = read(&out, &format!("{name}.pem"));
        assert!(stdout.contains(&format!("{name}-key.pem")), "{stdout}");
        assert!(
            stdout.contains(&format!("spiffe://heist.local/{name}")),
            "{stdout}"
        );
        for host in [name, "localhost", "127.0.0.1", "::1"] {
            verify_server(&ca, &cert, host, now)
                .unwrap_or_else(|e| panic!("{name} as {host}: {e}"));
        }
        verify_client(&ca, &cert, now).unwrap_or_else(|e| panic!("{name} as client: {e}"));
        #[cfg(unix)]
        {
            assert_eq!(mode(&out, &format!("{name}-key.pem")), 0o600, "{name}");
            assert_eq!(mode(&out, &format!("{name}.pem")), 0o644, "{name}");
        }
    }
    #[cfg(unix)]
    assert_eq!(mode(&out, "ca-key.pem"), 0o600);
    // Only the files named: no temporary file is left behind.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 2 + 2 * SERVICES.len());
}

#[test]
fn a_second_run_keeps_the_ca_and_issues_new_leaves_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs_in(dir.path(), &[]);
    let (ca, ca_key) = (read(dir.path(), "ca.pem"), read(dir.path(), "ca-key.pem"));
    let first = read(dir.path(), "tools.pem");
    let stdout = dev_certs_in(dir.path(), &[]);
    assert!(stdout.starts_with("kept CA "), "{stdout}");
    assert_eq!(read(dir.path(), "ca.pem"), ca);
    assert_eq!(read(dir.path(), "ca-key.pem"), ca_key);
    let second = read(dir.path(), "tools.pem");
    assert_ne!(der(&second), der(&first));
    verify_server(&ca, &second, "tools", SystemTime::now()).unwrap();
}

#[test]
fn renew_reissues_only_that_leaf_under_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs_in(dir.path(), &[]);
    let ca = read(dir.path(), "ca.pem");
    let (oauth, oauth_key) = (
        read(dir.path(), "oauth.pem"),
        read(dir.path(), "oauth-key.pem"),
    );
    let others: Vec<String> = SERVICES[1..]
        .iter()
        .map(|name| read(dir.path(), &format!("{name}.pem")))
        .collect();

    let stdout = dev_certs_in(dir.path(), &["--renew", "oauth"]);
    assert_eq!(stdout.lines().count(), 2, "the CA kept, one leaf: {stdout}");
    assert_eq!(read(dir.path(), "ca.pem"), ca);
    let renewed = read(dir.path(), "oauth.pem");
    assert_ne!(renewed, oauth);
    assert_ne!(read(dir.path(), "oauth-key.pem"), oauth_key);
    verify_server(&ca, &renewed, "localhost", SystemTime::now()).unwrap();
    verify_client(&ca, &renewed, SystemTime::now()).unwrap();
    for (name, before) in SERVICES[1..].iter().zip(&others) {
        assert_eq!(
            &read(dir.path(), &format!("{name}.pem")),
            before,
            "{name} untouched"
        );
    }
}

#[test]
fn days_and_names_choose_the_validity_and_the_services() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs_in(
        dir.path(),
        &["--names", "calculator,file_reader", "--days", "2"],
    );
    assert!(!dir.path().join("oauth.pem").exists());
    let ca = read(dir.path(), "ca.pem");
    let cert = read(dir.path(), "file_reader.pem");
    let now = SystemTime::now();
    verify_server(&ca, &cert, "file_reader", now + 47 * HOUR).unwrap();
    let error = certificate_error(verify_server(&ca, &cert, "file_reader", now + 49 * HOUR));
    assert!(is_expired(&error), "{error:?}");
    verify_server(&ca, &read(dir.path(), "calculator.pem"), "calculator", now).unwrap();
}

#[test]
fn renew_without_a_ca_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let stderr = dev_certs_failing(&["--out", out.to_str().unwrap(), "--renew", "oauth"], 1);
    assert!(stderr.contains("no CA in"), "{stderr}");
    assert!(stderr.contains("without --renew"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn renew_of_a_name_outside_names_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dev_certs_failing(
        &["--out", dir.path().to_str().unwrap(), "--renew", "memroy"],
        2,
    );
    assert!(
        stderr.contains("--renew memroy: not one of the --names"),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn garbage_ca_files_are_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    fs::write(out.join("ca.pem"), "not a certificate").unwrap();
    fs::write(out.join("ca-key.pem"), "not a key").unwrap();
    let stderr = dev_certs_failing(&["--out", out.to_str().unwrap()], 1);
    assert!(
        stderr.starts_with("error: cannot use the CA already there: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("ca-key.pem is not a usable CA file"),
        "{stderr}"
    );
    assert_eq!(read(out, "ca.pem"), "not a certificate");
    assert!(!out.join("oauth.pem").exists());

    // Half a CA (the key lost) is not silently replaced either.
    fs::remove_file(out.join("ca-key.pem")).unwrap();
    let stderr = dev_certs_failing(&["--out", out.to_str().unwrap()], 1);
    assert!(
        stderr.contains("cannot read") && stderr.contains("ca-key.pem"),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_output_directory_is_a_readable_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let out = file.join("certs");
    let stderr = dev_certs_failing(&["--out", out.to_str().unwrap()], 1);
    assert!(stderr.starts_with("error: cannot write "), "{stderr}");
    assert!(stderr.contains("a-file/certs"), "{stderr}");
}

#[test]
fn bad_names_and_days_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for (args, says) in [
        (&["--names", "ca"][..], "`ca` names the CA's own files"),
        (&["--names", "oauth,../escape"][..], "it starts with a dot"),
        (&["--names", "a/b"][..], "use only ASCII letters"),
        (&["--renew", ""][..], "it is empty"),
        (&["--days", "0"][..], "0 is not in 1..=3650"),
        (&["--days", "many"][..], "invalid digit"),
    ] {
        let stderr = dev_certs_failing(&[&["--out", out], args].concat(), 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn help_explains_the_files_the_names_and_renewal() {
    let output = dev_certs(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "ca.pem",
        "NAME-key.pem",
        "127.0.0.1",
        "spiffe://heist.local/NAME",
        "--renew",
        "run/certs",
        "0600",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// Runs `scripts/dev_certs.sh ARGS...` in `cwd` on the binary cargo built for
/// these tests, with `HEIST_RUN_DIR` set to `run_dir`.
fn script(cwd: &Path, run_dir: &Path, args: &[&str]) -> Output {
    let binary = Path::new(env!("CARGO_BIN_EXE_heist-dev-certs"));
    let profile = binary
        .parent()
        .and_then(Path::file_name)
        .expect("target/<profile>/heist-dev-certs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(root.join("scripts/dev_certs.sh"))
        .args(args)
        .current_dir(cwd)
        .env("HEIST_RUN_DIR", run_dir)
        .env("HEIST_PROFILE", profile)
        .env("HEIST_SKIP_BUILD", "1")
        .output()
        .expect("scripts/dev_certs.sh runs")
}

#[test]
fn the_script_writes_to_the_run_directory_by_default_and_to_out_relative_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = script(dir.path(), &run_dir, &["--names", "oauth"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let certs = run_dir.join("certs");
    let ca = read(&certs, "ca.pem");
    verify_server(
        &ca,
        &read(&certs, "oauth.pem"),
        "localhost",
        SystemTime::now(),
    )
    .unwrap();

    let output = script(
        dir.path(),
        &run_dir,
        &["--out", "elsewhere", "--names", "tools"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("elsewhere/tools.pem").exists());
    assert!(!certs.join("tools.pem").exists());

    let output = script(dir.path(), &run_dir, &["--renew", "nobody"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "the binary's exit code comes through"
    );
}
