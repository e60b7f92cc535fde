//! The scrape targets and the `prometheus.yml` they become.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::EngineError;

/// How often every target is scraped (and rules evaluated).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// One scrape job: a name (the `job` label) and the `host:port` addresses
/// whose `/metrics` it scrapes over plain HTTP (each the `instance` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The job name, unique among the targets of one server.
    pub job: String,
    /// `host:port` of each process, e.g. `127.0.0.1:9464`.
    pub addresses: Vec<String>,
}

impl ScrapeTarget {
    /// A job named `job` scraping each of `addresses`.
    pub fn new(
        job: impl Into<String>,
        addresses: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            job: job.into(),
            addresses: addresses.into_iter().map(Into::into).collect(),
        }
    }
}

/// The configuration for `targets`, or why one of them is unusable.
pub(crate) fn render(targets: &[ScrapeTarget]) -> Result<String, EngineError> {
    let mut jobs = BTreeSet::new();
    for target in targets {
        check(target)?;
        if !jobs.insert(target.job.as_str()) {
            return Err(bad(target, "the job name is used twice".into()));
        }
    }
    let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
    let mut yaml = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: {interval}\n"
    );
    if targets.is_empty() {
        yaml.push_str("scrape_configs: []\n");
    } else {
        yaml.push_str("scrape_configs:\n");
    }
    for target in targets {
        // A JSON string is a YAML double-quoted scalar: escaping solved once.
        let addresses: Vec<String> = target.addresses.iter().map(|a| quote(a)).collect();
        yaml.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
            quote(&target.job),
            addresses.join(", ")
        ));
    }
    Ok(yaml)
}

fn check(target: &ScrapeTarget) -> Result<(), EngineError> {
    if target.job.trim().is_empty() {
        return Err(bad(target, "the job name is empty".into()));
    }
    if target.addresses.is_empty() {
        return Err(bad(target, "no address to scrape".into()));
    }
    for address in &target.addresses {
        let port = address
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty() && !host.contains(['/', ' ']))
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if port.is_none() {
            return Err(bad(target, format!("address `{address}` is not host:port")));
        }
    }
    Ok(())
}

fn bad(target: &ScrapeTarget, reason: String) -> EngineError {
    EngineError::BadTarget {
        job: target.job.clone(),
        reason,
    }
}

fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_one_job_each_scraped_every_second() {
        let yaml = render(&[
            ScrapeTarget::new("audit", ["127.0.0.1:9001", "127.0.0.1:9002"]),
            ScrapeTarget::new("odd \"job\"", ["localhost:9003"]),
        ])
        .expect("valid targets");
        assert_eq!(
            yaml,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: \"audit\"\n    static_configs:\n      - targets: [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n\
             \x20 - job_name: \"odd \\\"job\\\"\"\n    static_configs:\n      - targets: [\"localhost:9003\"]\n"
        );
    }

    #[test]
    fn no_target_is_an_empty_list_of_jobs() {
        assert!(
            render(&[])
                .expect("valid")
                .ends_with("scrape_configs: []\n")
        );
    }

    #[test]
    fn unusable_targets_are_refused_with_the_job_and_the_reason() {
        let cases = [
            (
                ScrapeTarget::new("", ["127.0.0.1:1"]),
                "the job name is empty",
            ),
            (ScrapeTarget::new("a", Vec::<String>::new()), "no address"),
            (
                ScrapeTarget::new("a", ["127.0.0.1"]),
                "`127.0.0.1` is not host:port",
            ),
            (ScrapeTarget::new("a", ["http://h:1/x"]), "is not host:port"),
            (ScrapeTarget::new("a", [":9090"]), "is not host:port"),
            (ScrapeTarget::new("a", ["h:99999"]), "is not host:port"),
        ];
        for (target, expected) in cases {
            let error = render(std::slice::from_ref(&target))
                .expect_err("refused")
                .to_string();
            assert!(error.contains(expected), "{target:?}: {error}");
        }
        let twice = [
            ScrapeTarget::new("a", ["h:1"]),
            ScrapeTarget::new("a", ["h:2"]),
        ];
        let error = render(&twice).expect_err("refused").to_string();
        assert!(
            error.contains("`a`") && error.contains("used twice"),
            "{error}"
        );
    }
}
