//! `promtool check metrics`: Prometheus's own lint of a metrics exposition.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{EngineError, system};

/// Runs `promtool check metrics` on `text` (a Prometheus text-format
/// exposition, as a `/metrics` endpoint serves it). `Err` holds promtool's
/// complaints, e.g. `foo counter metrics should have "_total" suffix` or a
/// parse error naming the line, or why promtool could not run.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let program = system::program("promtool").ok_or_else(|| {
        EngineError::NotInstalled {
            engine: "Prometheus",
            missing: "promtool",
            package: "prometheus",
        }
        .to_string()
    })?;
    let mut child = Command::new(&program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("starting {}: {error}", program.display()))?;
    let mut stdin = child.stdin.take().ok_or("promtool's stdin is not a pipe")?;
    // Written beside the wait: a large exposition cannot fill a pipe and stall both sides.
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(text.as_bytes()));
        let output = child.wait_with_output();
        // promtool may stop reading at a broken line; its complaint says more than the pipe error.
        let _ = writer.join();
        output
    })
    .map_err(|error| format!("running promtool: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut complaints = String::from_utf8_lossy(&output.stdout).into_owned();
    complaints.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(format!("{} ({})", complaints.trim(), output.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_exposition_passes() {
        let text = "# HELP heist_requests_total Requests served.\n\
                    # TYPE heist_requests_total counter\n\
                    heist_requests_total{service=\"audit\",code=\"OK\"} 7\n\
                    # HELP heist_request_seconds How long requests took.\n\
                    # TYPE heist_request_seconds histogram\n\
                    heist_request_seconds_bucket{le=\"0.1\"} 3\n\
                    heist_request_seconds_bucket{le=\"+Inf\"} 4\n\
                    heist_request_seconds_sum 0.9\n\
                    heist_request_seconds_count 4\n";
        assert_eq!(promtool_check_metrics(text), Ok(()));
    }

    #[test]
    fn a_counter_without_total_is_reported_in_promtools_words() {
        let text = "# HELP heist_requests Requests served.\n\
                    # TYPE heist_requests counter\n\
                    heist_requests 7\n";
        let complaint = promtool_check_metrics(text).expect_err("a lint problem");
        assert!(
            complaint.starts_with(r#"heist_requests counter metrics should have "_total" suffix"#),
            "{complaint}"
        );
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let text = "# HELP heist_up Whether it is up.\n\
                    # TYPE heist_up gauge\n\
                    heist_up{service=audit} 1\n";
        let complaint = promtool_check_metrics(text).expect_err("a parse error");
        assert!(
            complaint.contains("text format parsing error in line 3"),
            "{complaint}"
        );
    }
}
