//! Telling a running session from one whose orchestrator crashed: each
//! session's metadata names the host and process that run it.

/// This machine's host name, or empty if it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the process that ran a session (from its metadata JSON) is known
/// to be gone: it ran on this host and its PID no longer exists. Unknown
/// (other host, no PID) is not gone.
pub fn owner_is_gone(metadata: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(metadata) else {
        return false;
    };
    let Some(pid) = value.get("pid").and_then(serde_json::Value::as_u64) else {
        return false;
    };
    let host = value
        .get("host")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if host.is_empty() || host != host_name() {
        return false;
    }
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_on_this_host_is_not_gone() {
        let metadata = serde_json::json!({"pid": std::process::id(), "host": host_name()});
        assert!(!owner_is_gone(&metadata.to_string()));
    }

    #[test]
    fn a_dead_process_on_this_host_is_gone() {
        let metadata = serde_json::json!({"pid": u32::MAX - 1, "host": host_name()});
        assert!(owner_is_gone(&metadata.to_string()));
    }

    #[test]
    fn unknown_owners_are_not_called_gone() {
        assert!(!owner_is_gone(""));
        assert!(!owner_is_gone(r#"{"seed": 1}"#));
        assert!(!owner_is_gone(
            r#"{"pid": 4294967294, "host": "elsewhere.example"}"#
        ));
    }
}
