//! The few facts of the machine the servers need: who runs us, a random
//! password, file ownership, programs on `PATH`, running a command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EngineError;

/// True when this process's effective user is root (Linux `/proc`).
pub(crate) fn running_as_root() -> Result<bool, EngineError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(EngineError::io("reading /proc/self/status"))?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    Ok(effective_uid == Some("0"))
}

/// `bytes` random bytes from the kernel, in hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, EngineError> {
    let mut buffer = vec![0; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .map_err(EngineError::io("reading /dev/urandom"))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Gives `path` to `user` (and the user's group).
pub(crate) fn chown_to(user: &str, path: &Path) -> Result<(), EngineError> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(EngineError::io("reading /etc/passwd"))?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    });
    let Some((uid, gid)) = ids else {
        return Err(EngineError::Command {
            what: format!("looking up the user `{user}`"),
            output: "no such user in /etc/passwd (the postgresql package creates it)".into(),
        });
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(EngineError::io(format!(
        "giving {} to {user}",
        path.display()
    )))
}

/// The first `name` on `PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// `name` on `PATH`, or in `/usr/bin` (where Debian installs it) when `PATH` lacks it.
pub(crate) fn program(name: &str) -> Option<PathBuf> {
    on_path(name).or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
}

/// Runs `command` to completion; a failure carries its output.
pub(crate) fn run(what: &str, mut command: Command) -> Result<(), EngineError> {
    let output = command
        .output()
        .map_err(EngineError::io(format!("running {what}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(EngineError::Command {
        what: what.to_owned(),
        output: format!("{} ({})", text.trim(), output.status),
    })
}

/// The last 20 lines of the file at `path`, or why it could not be read.
pub(crate) fn tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(error) => format!("(no log at {}: {error})", path.display()),
    }
}
