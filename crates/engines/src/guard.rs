//! A server process that cannot outlive the process that started it.
//!
//! The server runs under a small `sh` that waits on its standard input: a
//! line `stop` asks the server to shut down cleanly, `kill` kills it with
//! SIGKILL, and end of input (the starting process exited, however it
//! ended) stops it cleanly too and then removes the server's directory,
//! which no handle is left to remove. The shell waits for the server to
//! exit, so waiting for the shell waits for the server.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::EngineError;

/// The shell around the server: `$1` is the signal for a clean stop, the rest the server's command.
/// `$2` the directory to remove when the starting process is gone.
const SCRIPT: &str = r#"stop_signal="$1"; orphaned_dir="$2"; shift 2
"$@" &
pid=$!
read -r request
if [ "$request" = kill ]; then kill -KILL "$pid"; else kill -"$stop_signal" "$pid"; fi
wait "$pid"
if [ -z "$request" ]; then rm -rf "$orphaned_dir"; fi
exit 0"#;

/// A running server under its guard shell.
#[derive(Debug)]
pub(crate) struct Guarded {
    shell: Child,
    requests: Option<ChildStdin>,
}

impl Guarded {
    /// Starts `program args` under the guard, as `user` when given (via `runuser`);
    /// `stop_signal` (e.g. `INT`) stops it cleanly. Its output goes to `log`;
    /// `dir` is removed if the starting process ends without stopping it.
    pub(crate) fn spawn(
        user: Option<&str>,
        stop_signal: &str,
        dir: &std::path::Path,
        program: &std::path::Path,
        args: &[String],
        log: std::fs::File,
    ) -> Result<Self, EngineError> {
        let mut command = match user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--", "sh"]);
                command
            }
            None => Command::new("sh"),
        };
        let errors = log
            .try_clone()
            .map_err(EngineError::io("cloning the log handle"))?;
        command
            .args(["-c", SCRIPT, "guard", stop_signal])
            .arg(dir)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(errors);
        let mut shell = command
            .spawn()
            .map_err(EngineError::io(format!("starting {}", program.display())))?;
        let requests = shell.stdin.take();
        Ok(Self { shell, requests })
    }

    /// True while the server (its shell) runs.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.shell.try_wait(), Ok(None))
    }

    /// Stops the server cleanly and waits for it.
    pub(crate) fn stop(mut self) {
        self.finish("stop");
    }

    /// Kills the server with SIGKILL (a crash) and waits for it.
    pub(crate) fn kill(mut self) {
        self.finish("kill");
    }

    fn finish(&mut self, request: &str) {
        if let Some(mut requests) = self.requests.take() {
            // A shell that already exited cannot read; waiting below still reaps it.
            let _ = writeln!(requests, "{request}");
        }
        let _ = self.shell.wait();
    }
}

/// Where a server keeps its running process, if any.
#[derive(Debug, Default)]
pub(crate) struct Slot(Option<Guarded>);

impl Slot {
    /// Holds `process` (the slot was empty).
    pub(crate) fn hold(&mut self, process: Guarded) {
        self.0 = Some(process);
    }

    /// Stops the process cleanly, if one runs, and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(process) = self.0.take() {
            process.stop();
        }
    }

    /// Kills the process with SIGKILL, if one runs, and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(process) = self.0.take() {
            process.kill();
        }
    }

    /// True while a process runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(Guarded::is_running)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.finish("stop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_whose_starter_is_gone_stops_its_server_and_removes_its_directory() {
        let dir = tempfile::tempdir().expect("a directory");
        let kept = dir.keep();
        let log = std::fs::File::create(kept.join("log")).expect("a log");
        let sleep = std::path::Path::new("sleep");
        let mut guarded =
            Guarded::spawn(None, "TERM", &kept, sleep, &["600".into()], log).expect("starts");
        assert!(guarded.is_running());
        // The starter's end: its pipe closes with nothing written.
        drop(guarded.requests.take());
        let status = guarded.shell.wait().expect("the guard exits");
        assert!(status.success(), "{status}");
        assert!(!kept.exists(), "{} removed", kept.display());
    }

    #[test]
    fn a_stopped_guard_leaves_its_directory_to_its_owner() {
        let dir = tempfile::tempdir().expect("a directory");
        let log = std::fs::File::create(dir.path().join("log")).expect("a log");
        let sleep = std::path::Path::new("sleep");
        let guarded =
            Guarded::spawn(None, "TERM", dir.path(), sleep, &["600".into()], log).expect("starts");
        let started = std::time::Instant::now();
        guarded.stop();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(dir.path().join("log").exists());
    }
}
